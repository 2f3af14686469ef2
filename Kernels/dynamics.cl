// dynamics.cl: one recurrent layer as a map on its state, in double precision (docs/METHOD.md
// section 8): s' = F(s, x) with s = h (GRU, RNN) or (h, c) (LSTM, D = 2H, h first), its Jacobian
// dF/ds, and runs that settle. The kernels' twin of LayerMap in
// Sources/CellAuditCore/Dynamics/LayerMap.swift; the Jacobians are the same analytic derivatives.
// Needs cl_khr_fp64 (the host refuses a device without it).
//
// Both kernels give one work-group to one row (a state); work-items stride over gate rows and
// cells. Global size (WG, rows), local size (WG, 1).
//   W [G*H, I], R [G*H, H], b [G*H] (b_ih + b_hh, the GRU's n block b_in only), bhn [H] (a
//     peephole LSTM's p [3H] instead: p_i, p_f, p_o): the canonical layout of RecurrentLayer,
//     widened to double by the host
//   scratch [rows, G*H + 2H]: per row, the gate pre-activations without the GRU's R_n part, R_n h
//     (or R_n (r . h) for the reset-before GRU), and r . h
//
// Kernel map_step: states [rows, D] -> next [rows, D], and with JACOBIAN=1 jac [rows, D, D]
//   (output index first). inputs: [rows, I] when input_stride = I, or one [I] row for all when 0.
// Kernel map_settle: each row from states [rows, D], pulse_steps steps under pulses [rows, I],
//   then under xbar [I] until max |s' - s| < tol or max_steps steps; states is updated in place,
//   settled [rows] (1/0) written. red: __local [WG] doubles.
// Variants (-D): CELL_KIND (one of the CELL_KIND_* names the host defines), RESET_AFTER (GRU),
//   PEEPHOLE (LSTM), JACOBIAN.
#pragma OPENCL EXTENSION cl_khr_fp64 : enable

#ifndef RESET_AFTER
#define RESET_AFTER 1
#endif
#ifndef JACOBIAN
#define JACOBIAN 0
#endif
#ifndef PEEPHOLE
#define PEEPHOLE 0
#endif

#if CELL_KIND == CELL_KIND_LSTM
#define GATES 4
#define DIM (2 * H)
#elif CELL_KIND == CELL_KIND_GRU
#define GATES 3
#define DIM H
#else
#define GATES 1
#define DIM H
#endif

inline double sigm_d(double x) { return 1.0 / (1.0 + exp(-x)); }

// One step of one row by the whole work-group: s [D] -> out [D]; jac [D, D] when not null.
// Ends with a barrier, so out (and jac) are complete on return.
void row_step(__global const double* s, __global const double* x, __global const double* W, __global const double* R,
              __global const double* b, __global const double* bhn, __global double* pre, __global double* out,
              __global double* jac, const int I, const int H, const int lid, const int wg)
{
    __global double* rec_n = pre + GATES * H;   // R_n h, or R_n (r . h)
    __global double* rh = rec_n + H;            // r . h (reset-before GRU)
    for (int q = lid; q < GATES * H; q += wg) {
        double a = b[q];
        for (int k = 0; k < I; ++k) a += W[q * I + k] * x[k];
        double r = 0.0;
        for (int m = 0; m < H; ++m) r += R[q * H + m] * s[m];
#if CELL_KIND == CELL_KIND_GRU
        if (q >= 2 * H) { rec_n[q - 2 * H] = r; r = 0.0; }
#endif
        pre[q] = a + r;
    }
    barrier(CLK_GLOBAL_MEM_FENCE);
#if CELL_KIND == CELL_KIND_GRU && !RESET_AFTER
    for (int m = lid; m < H; m += wg) rh[m] = sigm_d(pre[m]) * s[m];
    barrier(CLK_GLOBAL_MEM_FENCE);
    for (int i = lid; i < H; i += wg) {
        double acc = 0.0;
        for (int m = 0; m < H; ++m) acc += R[(2 * H + i) * H + m] * rh[m];
        rec_n[i] = acc;
    }
    barrier(CLK_GLOBAL_MEM_FENCE);
#endif
    for (int i = lid; i < H; i += wg) {
#if CELL_KIND == CELL_KIND_RNN_TANH || CELL_KIND == CELL_KIND_RNN_RELU
        const double a = pre[i];
#if CELL_KIND == CELL_KIND_RNN_TANH
        const double y = tanh(a), dy = 1.0 - y * y;
#else
        const double y = fmax(0.0, a), dy = a > 0.0 ? 1.0 : 0.0;
#endif
        out[i] = y;
        if (jac) for (int k = 0; k < H; ++k) jac[i * DIM + k] = dy * R[i * H + k];
#elif CELL_KIND == CELL_KIND_LSTM
        const double c = s[H + i];
#if PEEPHOLE
        // bhn holds p_i, p_f, p_o: i and f read c, o reads c'.
        const double ig = sigm_d(pre[i] + bhn[i] * c), fg = sigm_d(pre[H + i] + bhn[H + i] * c), g = tanh(pre[2 * H + i]);
        const double c2 = fg * c + ig * g, tc = tanh(c2), og = sigm_d(pre[3 * H + i] + bhn[2 * H + i] * c2);
#else
        const double ig = sigm_d(pre[i]), fg = sigm_d(pre[H + i]), g = tanh(pre[2 * H + i]), og = sigm_d(pre[3 * H + i]);
        const double c2 = fg * c + ig * g, tc = tanh(c2);
#endif
        out[i] = og * tc;
        out[H + i] = c2;
        if (jac) {
            const double di = g * ig * (1.0 - ig), df = c * fg * (1.0 - fg), dg = ig * (1.0 - g * g);
            const double dho = tc * og * (1.0 - og), dhc = og * (1.0 - tc * tc);
#if PEEPHOLE
            const double dhdc = dhc + dho * bhn[2 * H + i], dcdc = fg + di * bhn[i] + df * bhn[H + i];
#else
            const double dhdc = dhc, dcdc = fg;
#endif
            for (int k = 0; k < H; ++k) {
                const double dc = di * R[i * H + k] + df * R[(H + i) * H + k] + dg * R[(2 * H + i) * H + k];
                jac[(H + i) * DIM + k] = dc;
                jac[i * DIM + k] = dho * R[(3 * H + i) * H + k] + dhdc * dc;
                jac[(H + i) * DIM + H + k] = k == i ? dcdc : 0.0;
                jac[i * DIM + H + k] = k == i ? dhdc * dcdc : 0.0;
            }
        }
#else
        const double rg = sigm_d(pre[i]), z = sigm_d(pre[H + i]);
#if RESET_AFTER
        const double m = rec_n[i] + bhn[i];
        const double n = tanh(pre[2 * H + i] + rg * m);
#else
        const double n = tanh(pre[2 * H + i] + rec_n[i]);
#endif
        out[i] = (1.0 - z) * n + z * s[i];
        if (jac) {
            const double dn = (1.0 - z) * (1.0 - n * n), dz = (s[i] - n) * z * (1.0 - z);
            for (int k = 0; k < H; ++k) {
                const double rn = R[(2 * H + i) * H + k];
#if RESET_AFTER
                const double through_n = m * rg * (1.0 - rg) * R[i * H + k] + rg * rn;
#else
                // R_n diag(r) + R_n diag(h . r(1 - r)) R_r, row i, column k.
                double through_n = rn * sigm_d(pre[k]);
                for (int q = 0; q < H; ++q) {
                    const double rq = sigm_d(pre[q]);
                    through_n += R[(2 * H + i) * H + q] * s[q] * rq * (1.0 - rq) * R[q * H + k];
                }
#endif
                jac[i * DIM + k] = dn * through_n + dz * R[(H + i) * H + k] + (k == i ? z : 0.0);
            }
        }
#endif
    }
    barrier(CLK_GLOBAL_MEM_FENCE);
}

__kernel void map_step(__global const double* states, __global const double* inputs, const int input_stride,
                       __global const double* W, __global const double* R, __global const double* b, __global const double* bhn,
                       __global double* scratch, __global double* next, __global double* jac, const int I, const int H)
{
    const int row = get_group_id(1), lid = get_local_id(0), wg = get_local_size(0);
    __global double* pre = scratch + (size_t)row * (GATES * H + 2 * H);
#if JACOBIAN
    __global double* j = jac + (size_t)row * DIM * DIM;
#else
    __global double* j = 0;
#endif
    row_step(states + (size_t)row * DIM, inputs + (size_t)row * input_stride, W, R, b, bhn, pre, next + (size_t)row * DIM, j, I, H, lid, wg);
}

__kernel void map_settle(__global double* states, __global const double* pulses, __global const double* xbar,
                         __global const double* W, __global const double* R, __global const double* b, __global const double* bhn,
                         __global double* scratch, __global double* work, __global int* settled,
                         const int I, const int H, const int pulse_steps, const int max_steps, const double tol,
                         __local double* red)
{
    const int row = get_group_id(1), lid = get_local_id(0), wg = get_local_size(0);
    __global double* pre = scratch + (size_t)row * (GATES * H + 2 * H);
    __global double* s = states + (size_t)row * DIM;
    __global double* nxt = work + (size_t)row * DIM;
    int done = 0;
    for (int t = 0; t < max_steps && !done; ++t) {
        __global const double* x = t < pulse_steps ? pulses + (size_t)row * I : xbar;
        row_step(s, x, W, R, b, bhn, pre, nxt, 0, I, H, lid, wg);
        double change = 0.0;
        for (int d = lid; d < DIM; d += wg) {
            const double v = nxt[d];
            const double e = fabs(v - s[d]);
            change = (e > change || isnan(e)) ? e : change;
            s[d] = v;
        }
        red[lid] = change;
        barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);
        for (int stride = wg / 2; stride > 0; stride /= 2) {
            if (lid < stride) {
                const double o = red[lid + stride];
                red[lid] = (o > red[lid] || isnan(o)) ? o : red[lid];
            }
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        done = t >= pulse_steps && red[0] < tol;
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) settled[row] = done;
}
