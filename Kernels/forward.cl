// forward.cl: one recurrent layer over whole sequences, for many ablation configurations at once.
//
// Kernel layer_forward
//   One work-group runs one (configuration, sequence) pair through every step; work-item j
//   owns cell j (work-items past H only help with barriers). h is shared in local memory.
//   Global size: (WG, configs * n_seq) with local size (WG, 1), WG >= H.
//   x       layer input. x_per_config = 0: [n_seq, T, I] shared by all configurations (layer 0);
//           x_per_config = 1: [configs * n_seq, T, I] (the layer below's output).
//   W       [G*H, I] row-major, R [G*H, H], b [G*H]: the canonical layout of the kind (G gate
//           blocks: LSTM i, f, g, o; GRU r, z, n; RNN one).
//   bhn     [H] the GRU's recurrent bias of n, inside the reset gate; a peephole LSTM's (PEEPHOLE=1)
//           p [3H], planes p_i, p_f, p_o (cell_lstm.h); unused by other kinds.
//   keep    [configs, H]: 1 runs the cell free, 0 clamps its h (and c) after every step to
//           clamp_h[j] (and clamp_c[j]): 0 for plain ablation, the data mean for mean ablation.
//   clamp_h, clamp_c [H].
//   y       [configs * n_seq, T, y_stride]: h at every step, at columns y_offset .. y_offset + H
//           (a level's directions side by side, forward first).
//   reverse 1: the layer runs from step T-1 down to 0 (its state at t follows the one at t + 1).
//   local_h __local [2 H]: h(t-1), then (reset-before GRU) r * h(t-1).
// Variants (-D): CELL_KIND (cell.h); PEEPHOLE=0|1 for the LSTM (cell_lstm.h); RESET_AFTER=0|1 for the GRU (1: n = tanh(W_n x + b_in +
//   r (R_n h + b_hn)), PyTorch; 0: n = tanh(W_n x + b_n + R_n (r h)), Keras reset_after=False);
//   NATIVE_MATH (native_exp, native_recip); RECORD_TAPE=1 adds three outputs for the relevance
//   pass (relevance.cl), all [configs * n_seq, T, ...]: tape_pre [.., G*H] every gate's
//   pre-activation (the reset-after GRU's n block without r (R_n h + b_hn); a peephole LSTM's with
//   its peephole terms), tape_aux [.., H] the
//   GRU's R_n h(t-1) (reset-after) or r h(t-1) (reset-before), tape_c [.., H] the LSTM's c(t).

#include "cell_math.h"
DEFINE_CELL_MATH(float, int, cell)
#include "cell.h"

#ifndef RESET_AFTER
#define RESET_AFTER 1
#endif
#ifndef RECORD_TAPE
#define RECORD_TAPE 0
#endif

__kernel void layer_forward(__global const float* restrict x,
                            const int x_per_config,
                            __global const float* restrict W,
                            __global const float* restrict R,
                            __global const float* restrict b,
                            __global const float* restrict bhn,
                            __global const float* restrict keep,
                            __global const float* restrict clamp_h,
                            __global const float* restrict clamp_c,
                            __global float* restrict y,
#if RECORD_TAPE
                            __global float* restrict tape_pre,
                            __global float* restrict tape_aux,
                            __global float* restrict tape_c,
#endif
                            const int n_seq,
                            const int T,
                            const int I,
                            const int H,
                            const int reverse,
                            const int y_stride,
                            const int y_offset,
                            __local float* local_h)
{
    const int j = get_local_id(0);
    const int pair = get_group_id(1);
    const int config = pair / n_seq;
    const int seq = pair % n_seq;
    const bool active = j < H;
    __global const float* xs = x + (size_t)(x_per_config ? pair : seq) * T * I;
    __global float* ys = y + (size_t)pair * T * y_stride + y_offset;
    __local float* local_rh = local_h + H;
    const float k = active ? keep[config * H + j] : 0.0f;
    const float fill_h = active ? (1.0f - k) * clamp_h[j] : 0.0f, fill_c = active ? (1.0f - k) * clamp_c[j] : 0.0f;
    float c = 0.0f, h = 0.0f;
    if (active) local_h[j] = 0.0f;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = 0; s < T; ++s) {
        const int t = reverse ? T - 1 - s : s;
        // a[g]: gate g's pre-activation; for the GRU's n block, the input part only (hn holds
        // the recurrent part, which the reset gate scales).
        float a[CELL_GATES];
        float hn = 0.0f;
        if (active) {
            __global const float* xt = xs + (size_t)t * I;
            for (int g = 0; g < CELL_GATES; ++g) {
                const size_t row = (size_t)g * H + j;
                float acc = b[row];
                for (int i = 0; i < I; ++i) acc += W[row * I + i] * xt[i];
                a[g] = acc;
            }
            for (int g = 0; g < CELL_GATES; ++g) {
                const size_t row = (size_t)g * H + j;
                float acc = 0.0f;
                for (int m = 0; m < H; ++m) acc += R[row * H + m] * local_h[m];
#if CELL_KIND == CELL_KIND_GRU
                if (g == 2) { hn = acc; continue; }
#endif
                a[g] += acc;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);   // every read of h(t-1) is done
#if CELL_KIND == CELL_KIND_GRU && !RESET_AFTER
        // n = tanh(W_n x + b_n + R_n (r h)): every cell's r h first.
        float r = 0.0f;
        if (active) { r = sigm_cell(a[0]); local_rh[j] = r * h; }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (active) {
            float acc = 0.0f;
            for (int m = 0; m < H; ++m) acc += R[((size_t)2 * H + j) * H + m] * local_rh[m];
            a[2] += acc;
        }
#endif
#if RECORD_TAPE
        const size_t at = (size_t)pair * T + t;
        if (active && !PEEPHOLE) {
            for (int g = 0; g < CELL_GATES; ++g) tape_pre[at * CELL_GATES * H + (size_t)g * H + j] = a[g];
#if CELL_KIND == CELL_KIND_GRU && RESET_AFTER
            tape_aux[at * H + j] = hn;
#elif CELL_KIND == CELL_KIND_GRU
            tape_aux[at * H + j] = local_rh[j];
#endif
        }
#endif
        if (active) {
#if CELL_KIND == CELL_KIND_LSTM && PEEPHOLE
            LSTM_PEEPHOLE_UPDATE(float, cell, a[0], a[1], a[2], a[3], bhn[j], bhn[H + j], bhn[2 * H + j], c, h);
            c = c * k + fill_c;
#if RECORD_TAPE
            for (int g = 0; g < CELL_GATES; ++g) tape_pre[at * CELL_GATES * H + (size_t)g * H + j] = a[g];
            tape_c[at * H + j] = c;
#endif
#elif CELL_KIND == CELL_KIND_LSTM
            LSTM_UPDATE(float, cell, a[0], a[1], a[2], a[3], c, h);
            c = c * k + fill_c;
#if RECORD_TAPE
            tape_c[at * H + j] = c;
#endif
#elif CELL_KIND == CELL_KIND_GRU
#if RESET_AFTER
            const float an = fma(sigm_cell(a[0]), hn + bhn[j], a[2]);
#else
            const float an = a[2];
#endif
            GRU_UPDATE(float, cell, a[1], an, h);
#else
            RNN_UPDATE(float, cell, a[0], h);
#endif
            h = h * k + fill_h;
            local_h[j] = h;
            ys[(size_t)t * y_stride + j] = h;
        }
        barrier(CLK_LOCAL_MEM_FENCE);   // h(t) is visible to all
    }
}
