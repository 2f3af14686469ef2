// response.cl: decoupled cells of one kind (modes self and clamped) under a stimulus bank.
//
// One work-item runs CHAINS * VW neighbouring cells under one stimulus through the whole run,
// state in registers: CHAINS independent chains of VW cells, one cell per vector lane.
// VW = CHAINS = 1 on GPUs, whose lanes are work-items and whose other work-items hide latency; on
// CPUs VW is the native width and CHAINS = 4 gives the core independent chains of exp/divide
// latencies to overlap, since PoCL runs a work-item's loop to its end before starting the next
// work-item. Global size (ceil(n_cells / (CHAINS * VW)), n_stim), either rounded up (extra
// work-items return); the local size should be (L, 1) so a group shares its stimulus: every
// work-item of the group reads the same waveform samples and takes the same branches.
//
// Common arguments
//   params  [CELL_PARAMS * n_pad] gate-major decoupled parameters of the kind's header
//                                 (cell_lstm.h, cell_gru.h, cell_rnn.h), plane q at
//                                 params[q * n_pad + j]. n_pad = n_cells rounded up to a
//                                 multiple of CHAINS * VW (padding cells are zero).
//   amps    [n_stim]              amplitude A: u(t) = A * wave[s][t].
//   sched   [5 * n_stim] int      per stimulus: kind (0 step, 1 sine), onset, end, analysis
//                                 start, analysis length.
//   wave    [n_stim * steps]      1[t >= onset] for steps, sin(2 pi f (t - onset)) for sinusoids.
//
// Kernel response_metrics: every metric of METHOD.md section 4; nothing else leaves the device.
//   out [N_METRICS * n_cells * n_stim], plane M_<METRIC> at out[(m * n_cells + j) * n_stim + s];
//   NaN where a metric does not apply. Steps run twice: pass 1 finds y0, y_final and the
//   extrema, pass 2 recomputes the trajectory (rather than storing it) for peak time,
//   undershoot, crossings, settling and ringing. Sinusoids run once, accumulating the DFT at
//   k f for k <= harmonics[s] against quad (cos) and wave (sin). The Float operations match the
//   Swift reference, so on the same trajectory the step metrics are identical.
// Kernel response_trajectory: the probed signal at every step, traj [n_cells * n_stim * steps]
//   laid out [cell][stimulus][step], NaN after the stimulus's end.
// Variants (-D): CELL_KIND (cell.h) selects the cell; VW=1|4|8|16 vector lanes and
//   CHAINS=1|2|4 chains per work-item; PROBE_C records c instead of h (LSTM only);
//   NATIVE_MATH uses native exp/recip in the sigmoid.

#pragma OPENCL FP_CONTRACT OFF
#include "cell_math.h"

#ifndef VW
#define VW 1
#endif
#ifndef CHAINS
#define CHAINS 1
#endif
// Runs the statement once per chain (a constant trip count: the compiler unrolls it and keeps
// the per-chain arrays in registers).
#define FOR_CHAINS for (int v = 0; v < CHAINS; ++v)

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

#define CELL_DECOUPLED
#include "cell.h"

// The host<->kernel contract comes from the host as -D options (OpenCLBackend.contractDefines,
// generated from the Swift definitions): N_METRICS and the plane index M_<METRIC> of every
// metric, NO_RESPONSE (the |delta| below which a cell did not respond) and PEAK_TOLERANCE.
#if !defined(N_METRICS) || !defined(NO_RESPONSE) || !defined(PEAK_TOLERANCE) || !defined(M_RESPONDED)
#error "the host passes the metric contract as -D options"
#endif

#ifdef PROBE_C
#if !CELL_HAS_C
#error "PROBE_C needs a cell with a memory c (LSTM)"
#endif
#define PROBED(h, c) (c)
#else
#define PROBED(h, c) (h)
#endif

// Writes lane l of chain v (cell (g * CHAINS + v) * VW + l) for every cell that exists.
#define FOR_CELLS(g, n_cells) \
    FOR_CHAINS for (int l = 0, j = ((g) * CHAINS + v) * VW; l < VW && j < (n_cells); ++l, ++j)

__kernel void response_trajectory(__global const float* restrict params,
                                       __global const float* restrict init,
                                       __global const float* restrict amps,
                                       __global const int* restrict sched,
                                       __global const float* restrict wave,
                                       __global float* restrict traj,
                                       const int n_cells, const int n_pad, const int n_stim, const int steps)
{
    const int g = get_global_id(0), s = get_global_id(1);
    if (g * CHAINS * VW >= n_cells || s >= n_stim) return;
    cells_v p[CHAINS];
    realv h[CHAINS], c[CHAINS];
    FOR_CHAINS {
        const int i = g * CHAINS + v;
        p[v] = load_cells(params, i, n_pad); h[v] = LOADV(i, init); c[v] = LOADV(i, init + n_pad);
    }
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

__kernel void response_metrics(__global const float* restrict params,
                                    __global const float* restrict init,
                                    __global const float* restrict base,
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
    if (g * CHAINS * VW >= n_cells || s >= n_stim) return;
    cells_v p[CHAINS];
    FOR_CHAINS p[v] = load_cells(params, g * CHAINS + v, n_pad);
    const float A = amps[s];
    const int kind = sched[5 * s], onset = sched[5 * s + 1], end = sched[5 * s + 2];
    const int a_start = sched[5 * s + 3], a_len = sched[5 * s + 4];
    __global const float* w = wave + (size_t)s * steps;
    realv m[CHAINS][N_METRICS];
    FOR_CHAINS for (int k = 0; k < N_METRICS; ++k) m[v][k] = NAN;

    // Every metric is taken on r(t) = y(t) - b(t), b the cell's unstimulated run (base); y0 =
    // b(onset - 1), or the probed start state when the stimulus starts at t = 0.
    realv h[CHAINS], c[CHAINS], y0[CHAINS], sum[CHAINS], anchor[CHAINS];
    FOR_CHAINS {
        const int i = g * CHAINS + v;
        h[v] = LOADV(i, init); c[v] = LOADV(i, init + n_pad); sum[v] = 0.0f; anchor[v] = 0.0f;
        y0[v] = onset > 0 ? LOADV(i, base + (size_t)(onset - 1) * n_pad) : PROBED(h[v], c[v]);
    }
    if (kind == 1) {
        // Sinusoid: one pass, DFT at the fundamental and its harmonics below Nyquist.
        __global const float* q = quad + (size_t)s * steps;
        const int hk = harmonics[s];
        realv re[CHAINS][6], im[CHAINS][6];
        FOR_CHAINS for (int k = 0; k < 6; ++k) { re[v][k] = 0.0f; im[v][k] = 0.0f; }
        for (int t = 0; t < end; ++t) {
            const float u = A * w[t];
            FOR_CHAINS CELL_STEP(p[v], u, h[v], c[v]);
            if (t >= a_start && t < a_start + a_len) {
                const float c1 = q[t], s1 = w[t];
                float ck = c1, sk = s1;
                realv r[CHAINS];
                FOR_CHAINS r[v] = PROBED(h[v], c[v]) - LOADV(g * CHAINS + v, base + (size_t)t * n_pad);
                FOR_CHAINS {
                    const realv y = r[v];
                    sum[v] += y;
                    re[v][1] += y * ck;
                    im[v][1] -= y * sk;
                }
                for (int k = 2; k <= hk; ++k) {
                    const float cn = ck * c1 - sk * s1, sn = sk * c1 + ck * s1;
                    ck = cn; sk = sn;
                    FOR_CHAINS {
                        const realv y = r[v];
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
            m[v][M_Y0] = y0[v];
            m[v][M_DC_SHIFT] = sum[v] / len;
            m[v][M_SINE_GAIN] = A != 0.0f ? fundamental / fabs(A) : (realv)NAN;
            const intv responded = (fundamental >= NO_RESPONSE) & isfinite(fundamental);
            m[v][M_RESPONDED] = select((realv)0.0f, (realv)1.0f, responded);
            realv phi = atan2(re[v][1], -im[v][1]) * (180.0f / M_PI_F);
            if (A < 0.0f) phi -= 180.0f;
            phi = select(phi, phi + 360.0f, phi <= -180.0f);
            phi = select(phi, phi - 360.0f, phi > 180.0f);
            m[v][M_PHASE_DEG] = select((realv)NAN, phi, responded);
            if (hk >= 2) {
                realv power = 0.0f;
                for (int k = 2; k <= hk; ++k) power += re[v][k] * re[v][k] + im[v][k] * im[v][k];
                m[v][M_THD] = select((realv)NAN, sqrt(power) / mag, responded);
            }
        }
    } else {
        // Step, pass 1: y0, y_final, extrema after onset.
        realv max_y[CHAINS], min_y[CHAINS];
        FOR_CHAINS { max_y[v] = -INFINITY; min_y[v] = INFINITY; }
        for (int t = 0; t < end; ++t) {
            const float u = A * w[t];
            FOR_CHAINS {
                CELL_STEP(p[v], u, h[v], c[v]);
                const realv y = PROBED(h[v], c[v]) - LOADV(g * CHAINS + v, base + (size_t)t * n_pad);
                // The tail mean relative to its first sample: exact on a constant tail.
                if (t == a_start) anchor[v] = y;
                if (t >= a_start) sum[v] += y - anchor[v];
                if (t >= onset) { max_y[v] = fmax(max_y[v], y); min_y[v] = fmin(min_y[v], y); }
            }
        }
        realv final_y[CHAINS], mag[CHAINS], sgn[CHAINS], reached[CHAINS], l10[CHAINS], l90[CHAINS], band[CHAINS];
        intv responded[CHAINS];
        int any_responded = 0;
        FOR_CHAINS {
            final_y[v] = anchor[v] + sum[v] / (float)a_len;
            const realv delta = final_y[v];
            m[v][M_Y0] = y0[v];
            m[v][M_Y_FINAL] = y0[v] + final_y[v];
            m[v][M_GAIN] = A != 0.0f ? delta / A : (realv)NAN;
            mag[v] = fabs(delta);
            responded[v] = (mag[v] >= NO_RESPONSE) & isfinite(mag[v]);
            m[v][M_RESPONDED] = select((realv)0.0f, (realv)1.0f, responded[v]);
            any_responded |= ANY(responded[v]);
            sgn[v] = select((realv)-1.0f, (realv)1.0f, delta > 0.0f);
            const intv rising = sgn[v] > 0.0f;
            const realv max_along = select(min_y[v] * sgn[v], max_y[v], rising);
            reached[v] = max_along - PEAK_TOLERANCE * mag[v];
            l10[v] = 0.1f * mag[v]; l90[v] = 0.9f * mag[v]; band[v] = settling_band * mag[v];
        }
        if (any_responded) {
            intv found[CHAINS], f10[CHAINS], f90[CHAINS];
            realv peak_t[CHAINS], against[CHAINS], x10[CHAINS], x90[CHAINS], prev[CHAINS], last_out[CHAINS], last_sign[CHAINS], changes[CHAINS];
            FOR_CHAINS {
                found[v] = 0; f10[v] = 0; f90[v] = 0;
                peak_t[v] = 0.0f; against[v] = INFINITY; x10[v] = NAN; x90[v] = NAN; prev[v] = 0.0f;
                last_out[v] = -1.0f; last_sign[v] = 0.0f; changes[v] = 0.0f;
                // Pass 2: the same run again.
                h[v] = LOADV(g * CHAINS + v, init); c[v] = LOADV(g * CHAINS + v, init + n_pad);
            }
            for (int t = 0; t < end; ++t) {
                const float u = A * w[t];
                FOR_CHAINS CELL_STEP(p[v], u, h[v], c[v]);
                if (t < onset) continue;
                const realv k = (realv)((float)(t - onset));
                FOR_CHAINS {
                    const realv y = PROBED(h[v], c[v]) - LOADV(g * CHAINS + v, base + (size_t)t * n_pad);
                    const realv a = y * sgn[v];
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
                m[v][M_PEAK] = select((realv)NAN, y0[v] + peak, responded[v]);
                m[v][M_PEAK_TIME] = select((realv)NAN, peak_t[v], responded[v]);
                m[v][M_OVERSHOOT_PCT] = select((realv)NAN, 100.0f * fmax(0.0f, (peak - final_y[v]) * sgn[v]) / mag[v], responded[v]);
                m[v][M_UNDERSHOOT_PCT] = select((realv)NAN, 100.0f * fmax(0.0f, -against[v]) / mag[v], responded[v]);
                m[v][M_RISE_TIME] = select((realv)NAN, x90[v] - x10[v], responded[v]);
                m[v][M_SETTLING_TIME] = select((realv)NAN, last_out[v] + 1.0f, responded[v]);
                m[v][M_RINGING] = select((realv)NAN, changes[v], responded[v]);
            }
        }
    }
    const size_t plane = (size_t)n_cells * n_stim;
    FOR_CELLS(g, n_cells) {
        __global float* o = out + (size_t)j * n_stim + s;
        for (int k = 0; k < N_METRICS; ++k) o[k * plane] = LANE(m[v][k], l);
    }
}
