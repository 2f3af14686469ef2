// lstm_response.cl: decoupled LSTM cells (modes self and clamped) under a stimulus bank.
//
// One work-item runs NV * VW neighbouring cells under one stimulus through the whole run, state
// in registers: NV independent chains of VW cells, one cell per vector lane. VW = NV = 1 on GPUs,
// whose lanes are work-items and whose other work-items hide latency; on CPUs VW is the native
// width and NV = 4 gives the core independent chains of exp/divide latencies to overlap, since
// PoCL runs a work-item's loop to its end before starting the next work-item. Global size
// (ceil(n_cells / (NV * VW)), n_stim), either rounded up (extra work-items return); the local
// size should be (L, 1) so a group shares its stimulus: every work-item of the group reads the
// same waveform samples and takes the same branches.
//
// Common arguments
//   params  [12 * n_pad]          gate-major decoupled parameters, params[(q*4 + k)*n_pad + j],
//                                 q = 0 w, 1 r, 2 b; k = 0 i, 1 f, 2 g, 3 o. n_pad = n_cells
//                                 rounded up to a multiple of NV * VW (padding cells are zero).
//   amps    [n_stim]              amplitude A: u(t) = A * wave[s][t].
//   sched   [5 * n_stim] int      per stimulus: kind (0 step, 1 sine), onset, end, analysis
//                                 start, analysis length.
//   wave    [n_stim * steps]      1[t >= onset] for steps, sin(2 pi f (t - onset)) for sinusoids.
//
// Kernel lstm_response_metrics: every metric of METHOD.md section 4; nothing else leaves the
//   device. out [15 * n_cells * n_stim], plane m at out[(m * n_cells + j) * n_stim + s], in the
//   order y0, y_final, gain, peak, peak_time, overshoot_pct, undershoot_pct, rise_time,
//   settling_time, ringing, sine_gain, phase_deg, dc_shift, thd, responded (1/0); NaN where a
//   metric does not apply. Steps run twice: pass 1 finds y0, y_final and the extrema, pass 2
//   recomputes the trajectory (rather than storing it) for peak time, undershoot, crossings,
//   settling and ringing. Sinusoids run once, accumulating the DFT at k f for k <= harmonics[s]
//   against quad (cos) and wave (sin). The Float operations match the Swift reference, so on
//   the same trajectory the step metrics are identical.
// Kernel lstm_response_trajectory: the probed signal at every step, traj [n_cells * n_stim *
//   steps] laid out [cell][stimulus][step], NaN after the stimulus's end.
// Variants (-D): VW=1|4|8|16 vector lanes and NV=1|2|4 chains per work-item; PROBE_C records c
//   instead of h; NATIVE_MATH uses native exp/recip in the sigmoid.

#pragma OPENCL FP_CONTRACT OFF
#include "cell_math.h"

#ifndef VW
#define VW 1
#endif
#ifndef NV
#define NV 1
#endif
// Runs the statement once per chain (a constant trip count: the compiler unrolls it and keeps
// the per-chain arrays in registers).
#define FOR_CHAINS for (int v = 0; v < NV; ++v)

#if VW == 1
#define REAL_T float
#define INT_T int
#define LOADV(i, p) ((p)[i])
#define ANY(m) ((m) != 0)
#define LANE(v, l) (v)
#else
#define REAL_T CAT(float, VW)
#define INT_T CAT(int, VW)
#define LOADV(i, p) CAT(vload, VW)(i, p)
#define ANY(m) any(m)
#define LANE(v, l) (((float*)&(v))[l])
#endif
typedef REAL_T realv;
typedef INT_T intv;
DEFINE_CELL_MATH(REAL_T, INT_T, v)

#define N_METRICS 15
#define NO_RESPONSE 1e-6f
#define PEAK_TOLERANCE 1e-3f

#ifdef PROBE_C
#define PROBED(h, c) (c)
#else
#define PROBED(h, c) (h)
#endif

typedef struct { realv wi, wf, wg, wo, ri, rf, rg, ro, bi, bf, bg, bo; } cells_v;

// Chain v of work-item g: cells (g * NV + v) * VW onwards.
inline cells_v load_cells(__global const float* params, int g, int v, int n_pad)
{
    const int i = g * NV + v;
    cells_v p;
    p.wi = LOADV(i, params + 0 * n_pad); p.wf = LOADV(i, params + 1 * n_pad);
    p.wg = LOADV(i, params + 2 * n_pad); p.wo = LOADV(i, params + 3 * n_pad);
    p.ri = LOADV(i, params + 4 * n_pad); p.rf = LOADV(i, params + 5 * n_pad);
    p.rg = LOADV(i, params + 6 * n_pad); p.ro = LOADV(i, params + 7 * n_pad);
    p.bi = LOADV(i, params + 8 * n_pad); p.bf = LOADV(i, params + 9 * n_pad);
    p.bg = LOADV(i, params + 10 * n_pad); p.bo = LOADV(i, params + 11 * n_pad);
    return p;
}

// One step of the decoupled cells under input u: c' = f c + i g, h' = o tanh(c'); the gate
// pre-activations are w u + (r h + b), fused as in the Swift backend.
#define GATE(w, r, b, u, h) fma((w), (realv)(u), fma((r), (h), (b)))
#define CELL_STEP(p, u, h, c) do {                                  \
        const realv i_ = sigm_v(GATE((p).wi, (p).ri, (p).bi, u, h));  \
        const realv f_ = sigm_v(GATE((p).wf, (p).rf, (p).bf, u, h));  \
        const realv g_ = tanh_v(GATE((p).wg, (p).rg, (p).bg, u, h)); \
        const realv o_ = sigm_v(GATE((p).wo, (p).ro, (p).bo, u, h));  \
        (c) = fma(f_, (c), i_ * g_);                                 \
        (h) = o_ * tanh_v(c);                                        \
    } while (0)

// Writes lane l of chain v (cell (g * NV + v) * VW + l) for every cell that exists.
#define FOR_CELLS(g, n_cells) \
    FOR_CHAINS for (int l = 0, j = ((g) * NV + v) * VW; l < VW && j < (n_cells); ++l, ++j)

__kernel void lstm_response_trajectory(__global const float* restrict params,
                                       __global const float* restrict amps,
                                       __global const int* restrict sched,
                                       __global const float* restrict wave,
                                       __global float* restrict traj,
                                       const int n_cells, const int n_pad, const int n_stim, const int steps)
{
    const int g = get_global_id(0), s = get_global_id(1);
    if (g * NV * VW >= n_cells || s >= n_stim) return;
    cells_v p[NV];
    realv h[NV], c[NV];
    FOR_CHAINS { p[v] = load_cells(params, g, v, n_pad); h[v] = 0.0f; c[v] = 0.0f; }
    const float A = amps[s];
    const int end = sched[5 * s + 2];
    __global const float* w = wave + (size_t)s * steps;
    for (int t = 0; t < end; ++t) {
        const float u = A * w[t];
        FOR_CHAINS CELL_STEP(p[v], u, h[v], c[v]);
        FOR_CELLS(g, n_cells) {
            const realv y = PROBED(h[v], c[v]);
            traj[((size_t)j * n_stim + s) * steps + t] = LANE(y, l);
        }
    }
    FOR_CELLS(g, n_cells)
        for (int t = end; t < steps; ++t) traj[((size_t)j * n_stim + s) * steps + t] = NAN;
}

__kernel void lstm_response_metrics(__global const float* restrict params,
                                    __global const float* restrict amps,
                                    __global const int* restrict sched,
                                    __global const float* restrict wave,
                                    __global const float* restrict quad,
                                    __global const int* restrict harmonics,
                                    __global float* restrict out,
                                    const int n_cells, const int n_pad, const int n_stim, const int steps,
                                    const float settling_band)
{
    const int g = get_global_id(0), s = get_global_id(1);
    if (g * NV * VW >= n_cells || s >= n_stim) return;
    cells_v p[NV];
    FOR_CHAINS p[v] = load_cells(params, g, v, n_pad);
    const float A = amps[s];
    const int kind = sched[5 * s], onset = sched[5 * s + 1], end = sched[5 * s + 2];
    const int a_start = sched[5 * s + 3], a_len = sched[5 * s + 4];
    __global const float* w = wave + (size_t)s * steps;
    realv m[NV][N_METRICS];
    FOR_CHAINS for (int k = 0; k < N_METRICS; ++k) m[v][k] = NAN;

    realv h[NV], c[NV], y0[NV], sum[NV];
    FOR_CHAINS { h[v] = 0.0f; c[v] = 0.0f; y0[v] = 0.0f; sum[v] = 0.0f; }
    if (kind == 1) {
        // Sinusoid: one pass, DFT at the fundamental and its harmonics below Nyquist.
        __global const float* q = quad + (size_t)s * steps;
        const int hk = harmonics[s];
        realv re[NV][6], im[NV][6];
        FOR_CHAINS for (int k = 0; k < 6; ++k) { re[v][k] = 0.0f; im[v][k] = 0.0f; }
        for (int t = 0; t < end; ++t) {
            const float u = A * w[t];
            FOR_CHAINS CELL_STEP(p[v], u, h[v], c[v]);
            if (t == onset - 1) FOR_CHAINS y0[v] = PROBED(h[v], c[v]);
            if (t >= a_start && t < a_start + a_len) {
                const float c1 = q[t], s1 = w[t];
                float ck = c1, sk = s1;
                FOR_CHAINS {
                    const realv y = PROBED(h[v], c[v]);
                    sum[v] += y;
                    re[v][1] += y * ck;
                    im[v][1] -= y * sk;
                }
                for (int k = 2; k <= hk; ++k) {
                    const float cn = ck * c1 - sk * s1, sn = sk * c1 + ck * s1;
                    ck = cn; sk = sn;
                    FOR_CHAINS {
                        const realv y = PROBED(h[v], c[v]);
                        re[v][k] += y * ck;
                        im[v][k] -= y * sk;
                    }
                }
            }
        }
        const float len = (float)a_len;
        FOR_CHAINS {
            const realv mag = sqrt(re[v][1] * re[v][1] + im[v][1] * im[v][1]);
            const realv fundamental = 2.0f * mag / len;
            m[v][0] = y0[v];
            m[v][12] = sum[v] / len - y0[v];
            m[v][10] = A != 0.0f ? fundamental / fabs(A) : (realv)NAN;
            const intv responded = (fundamental >= NO_RESPONSE) & isfinite(fundamental);
            m[v][14] = select((realv)0.0f, (realv)1.0f, responded);
            realv phi = atan2(re[v][1], -im[v][1]) * (180.0f / M_PI_F);
            if (A < 0.0f) phi -= 180.0f;
            phi = select(phi, phi + 360.0f, phi <= -180.0f);
            phi = select(phi, phi - 360.0f, phi > 180.0f);
            m[v][11] = select((realv)NAN, phi, responded);
            if (hk >= 2) {
                realv power = 0.0f;
                for (int k = 2; k <= hk; ++k) power += re[v][k] * re[v][k] + im[v][k] * im[v][k];
                m[v][13] = select((realv)NAN, sqrt(power) / mag, responded);
            }
        }
    } else {
        // Step, pass 1: y0, y_final, extrema after onset.
        realv max_y[NV], min_y[NV];
        FOR_CHAINS { max_y[v] = -INFINITY; min_y[v] = INFINITY; }
        for (int t = 0; t < end; ++t) {
            const float u = A * w[t];
            FOR_CHAINS {
                CELL_STEP(p[v], u, h[v], c[v]);
                const realv y = PROBED(h[v], c[v]);
                if (t == onset - 1) y0[v] = y;
                if (t >= a_start) sum[v] += y;
                if (t >= onset) { max_y[v] = fmax(max_y[v], y); min_y[v] = fmin(min_y[v], y); }
            }
        }
        realv final_y[NV], mag[NV], sgn[NV], reached[NV], l10[NV], l90[NV], band[NV];
        intv responded[NV];
        int any_responded = 0;
        FOR_CHAINS {
            final_y[v] = sum[v] / (float)a_len;
            const realv delta = final_y[v] - y0[v];
            m[v][0] = y0[v];
            m[v][1] = final_y[v];
            m[v][2] = A != 0.0f ? delta / A : (realv)NAN;
            mag[v] = fabs(delta);
            responded[v] = (mag[v] >= NO_RESPONSE) & isfinite(mag[v]);
            m[v][14] = select((realv)0.0f, (realv)1.0f, responded[v]);
            any_responded |= ANY(responded[v]);
            sgn[v] = select((realv)-1.0f, (realv)1.0f, delta > 0.0f);
            const intv rising = sgn[v] > 0.0f;
            const realv max_along = select((min_y[v] - y0[v]) * sgn[v], max_y[v] - y0[v], rising);
            reached[v] = max_along - PEAK_TOLERANCE * mag[v];
            l10[v] = 0.1f * mag[v]; l90[v] = 0.9f * mag[v]; band[v] = settling_band * mag[v];
        }
        if (any_responded) {
            intv found[NV], f10[NV], f90[NV];
            realv peak_t[NV], against[NV], x10[NV], x90[NV], prev[NV], last_out[NV], last_sign[NV], changes[NV];
            FOR_CHAINS {
                found[v] = 0; f10[v] = 0; f90[v] = 0;
                peak_t[v] = 0.0f; against[v] = INFINITY; x10[v] = NAN; x90[v] = NAN; prev[v] = 0.0f;
                last_out[v] = -1.0f; last_sign[v] = 0.0f; changes[v] = 0.0f;
                // Pass 2: the same run again.
                h[v] = 0.0f; c[v] = 0.0f;
            }
            for (int t = 0; t < end; ++t) {
                const float u = A * w[t];
                FOR_CHAINS CELL_STEP(p[v], u, h[v], c[v]);
                if (t < onset) continue;
                const realv k = (realv)((float)(t - onset));
                FOR_CHAINS {
                    const realv y = PROBED(h[v], c[v]);
                    const realv a = (y - y0[v]) * sgn[v];
                    const intv searching = found[v] == 0;
                    against[v] = select(against[v], fmin(against[v], a), searching);
                    const intv hit = searching & (a >= reached[v]);
                    peak_t[v] = select(peak_t[v], k, hit);
                    found[v] = found[v] | hit;
                    const realv span = a - prev[v];
                    const intv positive = span > 0.0f;
                    const intv h10 = (f10[v] == 0) & (a >= l10[v]);
                    const realv fr10 = select((realv)1.0f, (l10[v] - prev[v]) / span, positive);
                    x10[v] = select(x10[v], (k - 1.0f) + fmin(fmax(fr10, 0.0f), 1.0f), h10);
                    f10[v] = f10[v] | h10;
                    const intv h90 = (f90[v] == 0) & (a >= l90[v]);
                    const realv fr90 = select((realv)1.0f, (l90[v] - prev[v]) / span, positive);
                    x90[v] = select(x90[v], (k - 1.0f) + fmin(fmax(fr90, 0.0f), 1.0f), h90);
                    f90[v] = f90[v] | h90;
                    prev[v] = a;
                    const realv e = y - final_y[v];
                    const intv outside = fabs(e) > band[v];
                    last_out[v] = select(last_out[v], k, outside);
                    const realv sg = select((realv)-1.0f, (realv)1.0f, e > 0.0f);
                    const intv counted = (found[v] != 0) & outside;
                    changes[v] += select((realv)0.0f, (realv)1.0f, counted & (last_sign[v] != 0.0f) & (sg != last_sign[v]));
                    last_sign[v] = select(last_sign[v], sg, counted);
                }
            }
            FOR_CHAINS {
                const realv peak = select(min_y[v], max_y[v], sgn[v] > 0.0f);
                m[v][3] = select((realv)NAN, peak, responded[v]);
                m[v][4] = select((realv)NAN, peak_t[v], responded[v]);
                m[v][5] = select((realv)NAN, 100.0f * fmax(0.0f, (peak - final_y[v]) * sgn[v]) / mag[v], responded[v]);
                m[v][6] = select((realv)NAN, 100.0f * fmax(0.0f, -against[v]) / mag[v], responded[v]);
                m[v][7] = select((realv)NAN, x90[v] - x10[v], responded[v]);
                m[v][8] = select((realv)NAN, last_out[v] + 1.0f, responded[v]);
                m[v][9] = select((realv)NAN, changes[v], responded[v]);
            }
        }
    }
    const size_t plane = (size_t)n_cells * n_stim;
    FOR_CELLS(g, n_cells) {
        __global float* o = out + (size_t)j * n_stim + s;
        for (int k = 0; k < N_METRICS; ++k) o[k * plane] = LANE(m[v][k], l);
    }
}
