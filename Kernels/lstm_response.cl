// lstm_response.cl: decoupled LSTM cells (modes self and clamped) under a stimulus bank.
//
// One work-item runs VW neighbouring cells (one per vector lane; VW = 1 on GPUs) under one
// stimulus through the whole run, state in registers. Global size (ceil(n_cells / VW), n_stim),
// either rounded up (extra work-items return); the local size should be (L, 1) so a group
// shares its stimulus: every work-item of the group reads the same waveform samples and takes
// the same branches.
//
// Common arguments
//   params  [12 * n_pad]          gate-major decoupled parameters, params[(q*4 + k)*n_pad + j],
//                                 q = 0 w, 1 r, 2 b; k = 0 i, 1 f, 2 g, 3 o. n_pad = n_cells
//                                 rounded up to a multiple of VW (padding cells are all zero).
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
// Variants (-D): VW=1|4|8|16 cells per work-item; PROBE_C records c instead of h; NATIVE_MATH
//   uses native exp/recip in the sigmoid.

#pragma OPENCL FP_CONTRACT OFF
#include "cell_math.h"

#ifndef VW
#define VW 1
#endif

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

inline cells_v load_cells(__global const float* params, int g, int n_pad)
{
    cells_v p;
    p.wi = LOADV(g, params + 0 * n_pad); p.wf = LOADV(g, params + 1 * n_pad);
    p.wg = LOADV(g, params + 2 * n_pad); p.wo = LOADV(g, params + 3 * n_pad);
    p.ri = LOADV(g, params + 4 * n_pad); p.rf = LOADV(g, params + 5 * n_pad);
    p.rg = LOADV(g, params + 6 * n_pad); p.ro = LOADV(g, params + 7 * n_pad);
    p.bi = LOADV(g, params + 8 * n_pad); p.bf = LOADV(g, params + 9 * n_pad);
    p.bg = LOADV(g, params + 10 * n_pad); p.bo = LOADV(g, params + 11 * n_pad);
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

__kernel void lstm_response_trajectory(__global const float* restrict params,
                                       __global const float* restrict amps,
                                       __global const int* restrict sched,
                                       __global const float* restrict wave,
                                       __global float* restrict traj,
                                       const int n_cells, const int n_pad, const int n_stim, const int steps)
{
    const int g = get_global_id(0), s = get_global_id(1);
    if (g * VW >= n_cells || s >= n_stim) return;
    const cells_v p = load_cells(params, g, n_pad);
    const float A = amps[s];
    const int end = sched[5 * s + 2];
    const int lanes = min(VW, n_cells - g * VW);
    __global const float* w = wave + (size_t)s * steps;
    realv h = 0.0f, c = 0.0f;
    for (int t = 0; t < end; ++t) {
        CELL_STEP(p, A * w[t], h, c);
        realv v = PROBED(h, c);
        for (int l = 0; l < lanes; ++l) traj[((size_t)(g * VW + l) * n_stim + s) * steps + t] = LANE(v, l);
    }
    for (int l = 0; l < lanes; ++l)
        for (int t = end; t < steps; ++t) traj[((size_t)(g * VW + l) * n_stim + s) * steps + t] = NAN;
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
    if (g * VW >= n_cells || s >= n_stim) return;
    const cells_v p = load_cells(params, g, n_pad);
    const float A = amps[s];
    const int kind = sched[5 * s], onset = sched[5 * s + 1], end = sched[5 * s + 2];
    const int a_start = sched[5 * s + 3], a_len = sched[5 * s + 4];
    __global const float* w = wave + (size_t)s * steps;
    realv m[N_METRICS];
    for (int k = 0; k < N_METRICS; ++k) m[k] = NAN;

    realv h = 0.0f, c = 0.0f, y0 = 0.0f;
    if (kind == 1) {
        // Sinusoid: one pass, DFT at the fundamental and its harmonics below Nyquist.
        __global const float* q = quad + (size_t)s * steps;
        const int hk = harmonics[s];
        realv re[6], im[6];
        for (int k = 0; k < 6; ++k) { re[k] = 0.0f; im[k] = 0.0f; }
        realv sum = 0.0f;
        for (int t = 0; t < end; ++t) {
            CELL_STEP(p, A * w[t], h, c);
            const realv v = PROBED(h, c);
            if (t == onset - 1) y0 = v;
            if (t >= a_start && t < a_start + a_len) {
                sum += v;
                const float c1 = q[t], s1 = w[t];
                float ck = c1, sk = s1;
                re[1] += v * ck;
                im[1] -= v * sk;
                for (int k = 2; k <= hk; ++k) {
                    const float cn = ck * c1 - sk * s1, sn = sk * c1 + ck * s1;
                    ck = cn; sk = sn;
                    re[k] += v * ck;
                    im[k] -= v * sk;
                }
            }
        }
        const float len = (float)a_len;
        const realv mag = sqrt(re[1] * re[1] + im[1] * im[1]);
        const realv fundamental = 2.0f * mag / len;
        m[0] = y0;
        m[12] = sum / len - y0;
        m[10] = A != 0.0f ? fundamental / fabs(A) : (realv)NAN;
        const intv responded = (fundamental >= NO_RESPONSE) & isfinite(fundamental);
        m[14] = select((realv)0.0f, (realv)1.0f, responded);
        realv phi = atan2(re[1], -im[1]) * (180.0f / M_PI_F);
        if (A < 0.0f) phi -= 180.0f;
        phi = select(phi, phi + 360.0f, phi <= -180.0f);
        phi = select(phi, phi - 360.0f, phi > 180.0f);
        m[11] = select((realv)NAN, phi, responded);
        if (hk >= 2) {
            realv power = 0.0f;
            for (int k = 2; k <= hk; ++k) power += re[k] * re[k] + im[k] * im[k];
            m[13] = select((realv)NAN, sqrt(power) / mag, responded);
        }
    } else {
        // Step, pass 1: y0, y_final, extrema after onset.
        realv sum = 0.0f, max_y = -INFINITY, min_y = INFINITY;
        for (int t = 0; t < end; ++t) {
            CELL_STEP(p, A * w[t], h, c);
            const realv v = PROBED(h, c);
            if (t == onset - 1) y0 = v;
            if (t >= a_start) sum += v;
            if (t >= onset) { max_y = fmax(max_y, v); min_y = fmin(min_y, v); }
        }
        const realv final_y = sum / (float)a_len;
        const realv delta = final_y - y0;
        m[0] = y0;
        m[1] = final_y;
        m[2] = A != 0.0f ? delta / A : (realv)NAN;
        const realv mag = fabs(delta);
        const intv responded = (mag >= NO_RESPONSE) & isfinite(mag);
        m[14] = select((realv)0.0f, (realv)1.0f, responded);
        if (ANY(responded)) {
            const realv sgn = select((realv)-1.0f, (realv)1.0f, delta > 0.0f);
            const intv rising = sgn > 0.0f;
            const realv max_along = select((min_y - y0) * sgn, max_y - y0, rising);
            const realv reached = max_along - PEAK_TOLERANCE * mag;
            const realv peak = select(min_y, max_y, rising);
            const realv l10 = 0.1f * mag, l90 = 0.9f * mag, band = settling_band * mag;
            intv found = 0, f10 = 0, f90 = 0;
            realv peak_t = 0.0f, against = INFINITY, x10 = NAN, x90 = NAN, prev = 0.0f;
            realv last_out = -1.0f, last_sign = 0.0f, changes = 0.0f;
            // Pass 2: the same run again.
            h = 0.0f; c = 0.0f;
            for (int t = 0; t < end; ++t) {
                CELL_STEP(p, A * w[t], h, c);
                if (t < onset) continue;
                const realv v = PROBED(h, c);
                const realv k = (realv)((float)(t - onset));
                const realv a = (v - y0) * sgn;
                const intv searching = found == 0;
                against = select(against, fmin(against, a), searching);
                const intv hit = searching & (a >= reached);
                peak_t = select(peak_t, k, hit);
                found = found | hit;
                const realv span = a - prev;
                const intv positive = span > 0.0f;
                const intv h10 = (f10 == 0) & (a >= l10);
                const realv fr10 = select((realv)1.0f, (l10 - prev) / span, positive);
                x10 = select(x10, (k - 1.0f) + fmin(fmax(fr10, 0.0f), 1.0f), h10);
                f10 = f10 | h10;
                const intv h90 = (f90 == 0) & (a >= l90);
                const realv fr90 = select((realv)1.0f, (l90 - prev) / span, positive);
                x90 = select(x90, (k - 1.0f) + fmin(fmax(fr90, 0.0f), 1.0f), h90);
                f90 = f90 | h90;
                prev = a;
                const realv e = v - final_y;
                const intv outside = fabs(e) > band;
                last_out = select(last_out, k, outside);
                const realv sg = select((realv)-1.0f, (realv)1.0f, e > 0.0f);
                const intv counted = (found != 0) & outside;
                changes += select((realv)0.0f, (realv)1.0f, counted & (last_sign != 0.0f) & (sg != last_sign));
                last_sign = select(last_sign, sg, counted);
            }
            m[3] = select((realv)NAN, peak, responded);
            m[4] = select((realv)NAN, peak_t, responded);
            m[5] = select((realv)NAN, 100.0f * fmax(0.0f, (peak - final_y) * sgn) / mag, responded);
            m[6] = select((realv)NAN, 100.0f * fmax(0.0f, -against) / mag, responded);
            m[7] = select((realv)NAN, x90 - x10, responded);
            m[8] = select((realv)NAN, last_out + 1.0f, responded);
            m[9] = select((realv)NAN, changes, responded);
        }
    }
    const size_t plane = (size_t)n_cells * n_stim;
    const int lanes = min(VW, n_cells - g * VW);
    for (int l = 0; l < lanes; ++l) {
        __global float* o = out + (size_t)(g * VW + l) * n_stim + s;
        for (int k = 0; k < N_METRICS; ++k) o[k * plane] = LANE(m[k], l);
    }
}
