// lstm_response.cl: decoupled LSTM cells (modes self and clamped) under a stimulus bank.
//
// One work-item runs one (cell, stimulus) pair through its whole run with the state in
// registers. Global size (n_cells, n_stim), either rounded up (extra work-items return); all
// work-items of a group should share the stimulus (local size (L, 1)) so they read the same
// waveform samples and take the same branches.
//
// Common arguments
//   params  [12 * n_cells]        gate-major decoupled parameters (see cell_math.h).
//   amps    [n_stim]              amplitude A: u(t) = A * wave[s][t].
//   sched   [5 * n_stim] int      per stimulus: kind (0 step, 1 sine), onset, end, analysis
//                                 start, analysis length; harmonics in the metrics kernel's hk.
//   wave    [n_stim * steps]      1[t >= onset] for steps, sin(2 pi f (t - onset)) for sinusoids.
//
// Kernel lstm_response_metrics: every metric of METHOD.md section 4, nothing else leaves the
//   device. out [15 * n_cells * n_stim], plane m at out[(m * n_cells + j) * n_stim + s], in the
//   order y0, y_final, gain, peak, peak_time, overshoot_pct, undershoot_pct, rise_time,
//   settling_time, ringing, sine_gain, phase_deg, dc_shift, thd, responded (1/0); NaN where a
//   metric does not apply. Steps run twice: pass 1 finds y0, y_final and the extrema, pass 2
//   recomputes the trajectory (rather than storing it) for peak time, undershoot, crossings,
//   settling and ringing. Sinusoids run once, accumulating the DFT at k f for k <= harmonics
//   against quad (cos) and wave (sin). The Float operations match the Swift reference, so on the
//   same trajectory the step metrics are identical.
// Kernel lstm_response_trajectory: the probed signal at every step, traj [n_cells * n_stim *
//   steps] laid out [cell][stimulus][step], NaN after the stimulus's end.
// Variants (-D): PROBE_C records c instead of h; NATIVE_MATH uses native exp/recip.

#pragma OPENCL FP_CONTRACT OFF
#include "cell_math.h"

#define N_METRICS 15
#define NO_RESPONSE 1e-6f
#define PEAK_TOLERANCE 1e-3f

#ifdef PROBE_C
#define PROBED(h, c) (c)
#else
#define PROBED(h, c) (h)
#endif

__kernel void lstm_response_trajectory(__global const float* restrict params,
                                       __global const float* restrict amps,
                                       __global const int* restrict sched,
                                       __global const float* restrict wave,
                                       __global float* restrict traj,
                                       const int n_cells, const int n_stim, const int steps)
{
    const int j = get_global_id(0), s = get_global_id(1);
    if (j >= n_cells || s >= n_stim) return;
    const decoupled_cell p = load_cell(params, j, n_cells);
    const float A = amps[s];
    const int end = sched[5 * s + 2];
    __global const float* w = wave + (size_t)s * steps;
    __global float* out = traj + ((size_t)j * n_stim + s) * steps;
    float h = 0.0f, c = 0.0f;
    for (int t = 0; t < end; ++t) {
        cell_step(&p, A * w[t], &h, &c);
        out[t] = PROBED(h, c);
    }
    for (int t = end; t < steps; ++t) out[t] = NAN;
}

__kernel void lstm_response_metrics(__global const float* restrict params,
                                    __global const float* restrict amps,
                                    __global const int* restrict sched,
                                    __global const float* restrict wave,
                                    __global const float* restrict quad,
                                    __global const int* restrict harmonics,
                                    __global float* restrict out,
                                    const int n_cells, const int n_stim, const int steps,
                                    const float settling_band)
{
    const int j = get_global_id(0), s = get_global_id(1);
    if (j >= n_cells || s >= n_stim) return;
    const decoupled_cell p = load_cell(params, j, n_cells);
    const float A = amps[s];
    const int kind = sched[5 * s], onset = sched[5 * s + 1], end = sched[5 * s + 2];
    const int a_start = sched[5 * s + 3], a_len = sched[5 * s + 4];
    __global const float* w = wave + (size_t)s * steps;
    const size_t plane = (size_t)n_cells * n_stim;
    __global float* o = out + (size_t)j * n_stim + s;
    float m[N_METRICS];
    for (int k = 0; k < N_METRICS; ++k) m[k] = NAN;

    float h = 0.0f, c = 0.0f, y0 = 0.0f;
    if (kind == 1) {
        // Sinusoid: one pass, DFT at the fundamental and its harmonics below Nyquist.
        __global const float* q = quad + (size_t)s * steps;
        const int hk = harmonics[s];
        float re[6] = {0, 0, 0, 0, 0, 0}, im[6] = {0, 0, 0, 0, 0, 0};
        float sum = 0.0f;
        for (int t = 0; t < end; ++t) {
            cell_step(&p, A * w[t], &h, &c);
            const float v = PROBED(h, c);
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
        const float mag = sqrt(re[1] * re[1] + im[1] * im[1]);
        const float fundamental = 2.0f * mag / len;
        m[0] = y0;
        m[12] = sum / len - y0;
        m[10] = A != 0.0f ? fundamental / fabs(A) : NAN;
        const int responded = fundamental >= NO_RESPONSE && isfinite(fundamental);
        m[14] = responded ? 1.0f : 0.0f;
        if (responded) {
            float phi = atan2(re[1], -im[1]) * (180.0f / M_PI_F);
            if (A < 0.0f) phi -= 180.0f;
            while (phi <= -180.0f) phi += 360.0f;
            while (phi > 180.0f) phi -= 360.0f;
            m[11] = phi;
            if (hk >= 2) {
                float power = 0.0f;
                for (int k = 2; k <= hk; ++k) power += re[k] * re[k] + im[k] * im[k];
                m[13] = sqrt(power) / mag;
            }
        }
    } else {
        // Step, pass 1: y0, y_final, extrema after onset.
        float sum = 0.0f, max_y = -INFINITY, min_y = INFINITY;
        for (int t = 0; t < end; ++t) {
            cell_step(&p, A * w[t], &h, &c);
            const float v = PROBED(h, c);
            if (t == onset - 1) y0 = v;
            if (t >= a_start) sum += v;
            if (t >= onset) { max_y = fmax(max_y, v); min_y = fmin(min_y, v); }
        }
        const float final_y = sum / (float)a_len;
        const float delta = final_y - y0;
        m[0] = y0;
        m[1] = final_y;
        m[2] = A != 0.0f ? delta / A : NAN;
        const float mag = fabs(delta);
        const int responded = mag >= NO_RESPONSE && isfinite(mag);
        m[14] = responded ? 1.0f : 0.0f;
        if (responded) {
            const float sgn = delta > 0.0f ? 1.0f : -1.0f;
            const float max_along = sgn > 0.0f ? (max_y - y0) : (min_y - y0) * sgn;
            const float reached = max_along - PEAK_TOLERANCE * mag;
            const float peak = sgn > 0.0f ? max_y : min_y;
            const float l10 = 0.1f * mag, l90 = 0.9f * mag, band = settling_band * mag;
            int found = 0, f10 = 0, f90 = 0;
            float peak_t = 0.0f, against = INFINITY, x10 = NAN, x90 = NAN, prev = 0.0f;
            float last_out = -1.0f, last_sign = 0.0f, changes = 0.0f;
            // Pass 2: the same run again.
            h = 0.0f; c = 0.0f;
            for (int t = 0; t < end; ++t) {
                cell_step(&p, A * w[t], &h, &c);
                if (t < onset) continue;
                const float v = PROBED(h, c);
                const float k = (float)(t - onset);
                const float a = (v - y0) * sgn;
                if (!found) {
                    against = fmin(against, a);
                    if (a >= reached) { found = 1; peak_t = k; }
                }
                const float span = a - prev;
                if (!f10 && a >= l10) {
                    const float fr = span > 0.0f ? (l10 - prev) / span : 1.0f;
                    x10 = (k - 1.0f) + fmin(fmax(fr, 0.0f), 1.0f);
                    f10 = 1;
                }
                if (!f90 && a >= l90) {
                    const float fr = span > 0.0f ? (l90 - prev) / span : 1.0f;
                    x90 = (k - 1.0f) + fmin(fmax(fr, 0.0f), 1.0f);
                    f90 = 1;
                }
                prev = a;
                const float e = v - final_y;
                if (fabs(e) > band) {
                    last_out = k;
                    if (found) {
                        const float sg = e > 0.0f ? 1.0f : -1.0f;
                        if (last_sign != 0.0f && sg != last_sign) changes += 1.0f;
                        last_sign = sg;
                    }
                }
            }
            m[3] = peak;
            m[4] = peak_t;
            m[5] = 100.0f * fmax(0.0f, (peak - final_y) * sgn) / mag;
            m[6] = 100.0f * fmax(0.0f, -against) / mag;
            m[7] = x90 - x10;
            m[8] = last_out + 1.0f;
            m[9] = changes;
        }
    }
    for (int k = 0; k < N_METRICS; ++k) o[k * plane] = m[k];
}
