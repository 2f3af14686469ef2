// lstm_step.cl: decoupled LSTM cells (recurrence mode `self`) under step stimuli.
//
// Kernel lstm_step_trajectory
//   One work-item simulates one (cell, stimulus) pair through every step, state in registers,
//   and writes the probed signal at each step.
//   Global size: (n_cells, n_stim), either may be rounded up; work-items past the end return.
//   params  [12 * n_cells]  gate-major: params[(q*4 + k)*n_cells + j], q = 0 w, 1 r, 2 b;
//                           k = 0 i, 1 f, 2 g, 3 o (METHOD.md §1 order).
//   amps    [n_stim]        step amplitude A of each stimulus.
//   traj    [n_cells * n_stim * (t_pre + t_obs)]   laid out [cell][stimulus][step].
//   u(t) = A for t >= t_pre, else 0; h = c = 0 before the first step.
// Variants (-D):
//   PROBE_C       record c instead of h.
//   NATIVE_MATH   use native_exp / native_divide (faster, less precise).

#include "cell_math.h"

__kernel void lstm_step_trajectory(__global const float* restrict params,
                                   __global const float* restrict amps,
                                   __global float* restrict traj,
                                   const int n_cells,
                                   const int n_stim,
                                   const int t_pre,
                                   const int t_obs)
{
    const int j = get_global_id(0);
    const int s = get_global_id(1);
    if (j >= n_cells || s >= n_stim) return;

    const float wi = params[0 * n_cells + j], wf = params[1 * n_cells + j];
    const float wg = params[2 * n_cells + j], wo = params[3 * n_cells + j];
    const float ri = params[4 * n_cells + j], rf = params[5 * n_cells + j];
    const float rg = params[6 * n_cells + j], ro = params[7 * n_cells + j];
    const float bi = params[8 * n_cells + j], bf = params[9 * n_cells + j];
    const float bg = params[10 * n_cells + j], bo = params[11 * n_cells + j];
    const float amplitude = amps[s];

    const int steps = t_pre + t_obs;
    __global float* out = traj + ((size_t)j * n_stim + s) * steps;
    float h = 0.0f, c = 0.0f;
    for (int t = 0; t < steps; ++t) {
        const float u = t >= t_pre ? amplitude : 0.0f;
        const float i = sigm(wi * u + ri * h + bi);
        const float f = sigm(wf * u + rf * h + bf);
        const float g = tanh(wg * u + rg * h + bg);
        const float o = sigm(wo * u + ro * h + bo);
        c = f * c + i * g;
        h = o * tanh(c);
#ifdef PROBE_C
        out[t] = c;
#else
        out[t] = h;
#endif
    }
}
