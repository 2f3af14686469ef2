// relevance.cl: layer-wise relevance propagation backwards through one recurrent layer
// (METHOD.md section 7; the rules of Arras et al. 2019, reference code ArrasL/LRP_for_LSTM).
// The kernels' twin of LayerTape.lrpBackward in Sources/CellAuditCore/Relevance/CPURelevance.swift.
//
// Kernel lrp_backward
//   One work-group walks one sequence backwards in the layer's own time (from step T-1 down to
//   0, or from 0 up to T-1 for a reverse layer: reverse = 1); work-item j owns cell j (items
//   past H only help with reductions and the input products). Global size (WG, n_seq), local
//   size (WG, 1), WG >= H.
//   x          [n_seq, T, I] the layer's input (the data, or the layer below's h)
//   W [G*H, I], R [G*H, H], b [G*H], bhn [H]: the canonical layout (see forward.cl)
//   tape_pre, tape_aux, tape_c, hs: the forward's record (forward.cl with RECORD_TAPE=1), hs the
//              level's h [n_seq, T, y_stride], this layer's at columns y_offset .. y_offset + H
//   injected   [n_seq, T, y_stride] relevance reaching the level's h(t) from outside (readout or
//              the level above); this layer reads its columns
//   to_input   [n_seq, T, I] out: relevance of every input value, added to what is there when
//              accumulate = 1 (a level's second direction reads the same input)
//   cells      [n_seq, T, C] out: columns cell_offset .. cell_offset + H, the relevance of h(t)
//   rest       [n_seq] out: relevance reaching this layer's initial state (h and c)
//   min_den    [n_seq] out: the smallest |z + eps sign(z)| any rule of this layer divided by
//   msg, msg2  __local [H]: the messages m_j = R_j / (z_j + eps s_j) of a step's maps
//   red        __local [WG]: reductions
// Every map's bias-and-stabiliser share, bias_factor * sum_j (b_j + eps s_j) m_j / N, is one
// value per step shared by all inputs of the map (N = 2H for an element-wise sum of two signals,
// I + H for a gate pre-activation over x and h, H for the GRU's R_n h + b_hn).
// Variants (-D): CELL_KIND (cell.h), RESET_AFTER for the GRU, NATIVE_MATH.

#include "cell_math.h"
DEFINE_CELL_MATH(float, int, cell)
#include "cell.h"

#ifndef RESET_AFTER
#define RESET_AFTER 1
#endif

// The gate block whose pre-activation carries the signal: LSTM g (2), GRU n (2), RNN (0).
#if CELL_KIND == CELL_KIND_LSTM || CELL_KIND == CELL_KIND_GRU
#define SIGNAL_BLOCK 2
#else
#define SIGNAL_BLOCK 0
#endif

inline float stabilised(float z, float eps) { return z >= 0.0f ? z + eps : z - eps; }
inline float stabiliser(float z, float eps) { return z >= 0.0f ? eps : -eps; }

// The sum (or minimum) of v over the work-group, returned to every item.
inline float group_reduce(float v, __local float* red, int minimum)
{
    const int lid = get_local_id(0), n = get_local_size(0);
    barrier(CLK_LOCAL_MEM_FENCE);   // the previous reduction's result has been read
    red[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    int p = 1;
    while (p < n) p <<= 1;
    for (int s = p >> 1; s > 0; s >>= 1) {
        if (lid < s && lid + s < n) red[lid] = minimum ? fmin(red[lid], red[lid + s]) : red[lid] + red[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    return red[0];
}

__kernel void lrp_backward(__global const float* restrict x,
                           __global const float* restrict W,
                           __global const float* restrict R,
                           __global const float* restrict b,
                           __global const float* restrict bhn,
                           __global const float* restrict tape_pre,
                           __global const float* restrict tape_aux,
                           __global const float* restrict tape_c,
                           __global const float* restrict hs,
                           __global const float* restrict injected,
                           __global float* restrict to_input,
                           __global float* restrict cells,
                           __global float* restrict rest,
                           __global float* restrict min_den,
                           const int T,
                           const int I,
                           const int H,
                           const int C,
                           const int cell_offset,
                           const float eps,
                           const float bf,
                           const int reverse,
                           const int y_stride,
                           const int y_offset,
                           const int accumulate,
                           __local float* msg,
                           __local float* msg2,
                           __local float* red)
{
    const int j = get_local_id(0), wg = get_local_size(0);
    const int seq = get_group_id(1);
    const bool active = j < H;
    const int GH = CELL_GATES * H;
    const float n_in = (float)(I + H);
    float rec = 0.0f, mem = 0.0f, smallest = INFINITY;
    for (int s = 0; s < T; ++s) {
        // t in the layer's own time backwards; tp the step its state at t followed (-1: none).
        const int t = reverse ? s : T - 1 - s;
        const int has_prev = reverse ? t < T - 1 : t > 0;
        const size_t row = (size_t)seq * T + t, prow = reverse ? row + 1 : row - 1;
        __global const float* pre = tape_pre + row * GH;
        const float hp = (active && has_prev) ? hs[prow * y_stride + y_offset + j] : 0.0f;
        float rh = 0.0f;
        if (active) {
            rh = injected[row * y_stride + y_offset + j] + rec;
            cells[row * C + cell_offset + j] = rh;
        }
        float k_in, k_u = 0.0f, direct = 0.0f;
#if CELL_KIND == CELL_KIND_LSTM
        // h = o tanh(c) sends all to c; c = f c(t-1) + i g: two signals, N = 2H.
        const float ct = active ? tape_c[row * H + j] : 0.0f;
        const float cp = (active && has_prev) ? tape_c[prow * H + j] : 0.0f;
        const float dc = stabilised(ct, eps);
        const float mc = active ? (mem + rh) / dc : 0.0f;
        if (active) smallest = fmin(smallest, fabs(dc));
        const float share = bf * group_reduce(active ? stabiliser(ct, eps) * mc : 0.0f, red, 0) / (float)(2 * H);
        float mg = 0.0f, term = 0.0f;
        if (active) {
            const float i = sigm_cell(pre[j]), f = sigm_cell(pre[H + j]), ag = pre[2 * H + j], g = tanh_cell(ag);
            mem = f * cp * mc + share;
            const float dg = stabilised(ag, eps);
            smallest = fmin(smallest, fabs(dg));
            mg = (i * g * mc + share) / dg;
            term = (b[2 * H + j] + stabiliser(ag, eps)) * mg;
        }
        k_in = bf * group_reduce(term, red, 0) / n_in;
        if (active) msg[j] = mg;
#elif CELL_KIND == CELL_KIND_GRU
        // h' = (1 - z) n + z h: two signals, N = 2H; n = tanh(a) passes.
        const float ht = active ? hs[row * y_stride + y_offset + j] : 0.0f;
        const float dh = stabilised(ht, eps);
        const float mh = active ? rh / dh : 0.0f;
        if (active) smallest = fmin(smallest, fabs(dh));
        const float share = bf * group_reduce(active ? stabiliser(ht, eps) * mh : 0.0f, red, 0) / (float)(2 * H);
        float ma = 0.0f, term = 0.0f, u = 0.0f, reset = 0.0f;
        if (active) {
            const float z = sigm_cell(pre[H + j]);
            reset = sigm_cell(pre[j]);
#if RESET_AFTER
            u = tape_aux[row * H + j] + bhn[j];
            const float a = pre[2 * H + j] + reset * u;
#else
            const float a = pre[2 * H + j];
#endif
            const float n = tanh_cell(a);
            direct = z * hp * mh + share;
            const float da = stabilised(a, eps);
            smallest = fmin(smallest, fabs(da));
            ma = ((1.0f - z) * n * mh + share) / da;
            term = (b[2 * H + j] + stabiliser(a, eps)) * ma;
        }
        k_in = bf * group_reduce(term, red, 0) / n_in;
        if (active) msg[j] = ma;
#if RESET_AFTER
        // a reads x and m = r u (identity); m sends all to u = R_n h + b_hn, a map over h (N = H).
        float mu = 0.0f, term_u = 0.0f;
        if (active) {
            const float du = stabilised(u, eps);
            smallest = fmin(smallest, fabs(du));
            mu = (reset * u * ma + k_in) / du;
            term_u = (bhn[j] + stabiliser(u, eps)) * mu;
        }
        k_u = bf * group_reduce(term_u, red, 0) / (float)H;
        if (active) msg2[j] = mu;
#endif
#else
        // h' = act(W x + R h + b): the activation passes; one map over x and h.
        float ma = 0.0f, term = 0.0f;
        if (active) {
            const float a = pre[j], da = stabilised(a, eps);
            smallest = fmin(smallest, fabs(da));
            ma = rh / da;
            term = (b[j] + stabiliser(a, eps)) * ma;
        }
        k_in = bf * group_reduce(term, red, 0) / n_in;
        if (active) msg[j] = ma;
#endif
        barrier(CLK_LOCAL_MEM_FENCE);   // every message of this step is in local memory
        for (int i = j; i < I; i += wg) {
            float acc = 0.0f;
            for (int m = 0; m < H; ++m) acc += W[((size_t)SIGNAL_BLOCK * H + m) * I + i] * msg[m];
            const float v = x[row * I + i] * acc + k_in;
            to_input[row * I + i] = accumulate ? to_input[row * I + i] + v : v;
        }
        if (active) {
            float acc = 0.0f;
#if CELL_KIND == CELL_KIND_GRU && RESET_AFTER
            for (int m = 0; m < H; ++m) acc += R[((size_t)SIGNAL_BLOCK * H + m) * H + j] * msg2[m];
            rec = hp * acc + k_u + direct;
#elif CELL_KIND == CELL_KIND_GRU
            // a's map reads r h (N = I + H); the product sends everything to h.
            for (int m = 0; m < H; ++m) acc += R[((size_t)SIGNAL_BLOCK * H + m) * H + j] * msg[m];
            rec = tape_aux[row * H + j] * acc + k_in + direct;
#else
            for (int m = 0; m < H; ++m) acc += R[((size_t)SIGNAL_BLOCK * H + m) * H + j] * msg[m];
            rec = hp * acc + k_in;
#endif
        }
    }
    const float total = group_reduce(active ? rec + mem : 0.0f, red, 0);
    const float least = group_reduce(smallest, red, 1);
    if (j == 0) { rest[seq] = total; min_den[seq] = least; }
}
