// lstm_forward.cl: one LSTM layer over whole sequences, for many ablation configurations at once.
//
// Kernel lstm_layer_forward
//   One work-group runs one (configuration, sequence) pair through every step; work-item j
//   owns cell j (work-items past H only help with barriers). h is shared in local memory.
//   Global size: (WG, configs * n_seq) with local size (WG, 1), WG >= H.
//   x       layer input. x_per_config = 0: [n_seq, T, I] shared by all configurations (layer 0);
//           x_per_config = 1: [configs * n_seq, T, I] (the layer below's output).
//   W       [4H, I] row-major, R [4H, H], b [4H]: canonical gate order i, f, g, o.
//   keep    [configs, H]: 1 runs the cell free, 0 clamps its h and c after every step to
//           clamp_h[j] and clamp_c[j] (0 for plain ablation, the data mean for mean ablation).
//   clamp_h, clamp_c [H].
//   y       [configs * n_seq, T, H]: h at every step.
//   h_local __local [H].
// Variants (-D): NATIVE_MATH (native_exp, native_recip).

#include "cell_math.h"
DEFINE_CELL_MATH(float, int, cell)

__kernel void lstm_layer_forward(__global const float* restrict x,
                                 const int x_per_config,
                                 __global const float* restrict W,
                                 __global const float* restrict R,
                                 __global const float* restrict b,
                                 __global const float* restrict keep,
                                 __global const float* restrict clamp_h,
                                 __global const float* restrict clamp_c,
                                 __global float* restrict y,
                                 const int n_seq,
                                 const int T,
                                 const int I,
                                 const int H,
                                 __local float* h_local)
{
    const int j = get_local_id(0);
    const int pair = get_group_id(1);
    const int config = pair / n_seq;
    const int seq = pair % n_seq;
    const bool active = j < H;
    __global const float* xs = x + (size_t)(x_per_config ? pair : seq) * T * I;
    __global float* ys = y + (size_t)pair * T * H;
    const float k = active ? keep[config * H + j] : 0.0f;
    const float fill_h = active ? (1.0f - k) * clamp_h[j] : 0.0f, fill_c = active ? (1.0f - k) * clamp_c[j] : 0.0f;
    float c = 0.0f;
    if (active) h_local[j] = 0.0f;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int t = 0; t < T; ++t) {
        float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
        if (active) {
            a0 = b[j]; a1 = b[H + j]; a2 = b[2 * H + j]; a3 = b[3 * H + j];
            __global const float* xt = xs + (size_t)t * I;
            for (int i = 0; i < I; ++i) {
                const float xi = xt[i];
                a0 += W[(size_t)j * I + i] * xi;
                a1 += W[(size_t)(H + j) * I + i] * xi;
                a2 += W[(size_t)(2 * H + j) * I + i] * xi;
                a3 += W[(size_t)(3 * H + j) * I + i] * xi;
            }
            for (int m = 0; m < H; ++m) {
                const float hm = h_local[m];
                a0 += R[(size_t)j * H + m] * hm;
                a1 += R[(size_t)(H + j) * H + m] * hm;
                a2 += R[(size_t)(2 * H + j) * H + m] * hm;
                a3 += R[(size_t)(3 * H + j) * H + m] * hm;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);   // every read of h(t-1) is done
        if (active) {
            c = (sigm_cell(a1) * c + sigm_cell(a0) * tanh_cell(a2)) * k + fill_c;
            const float h = sigm_cell(a3) * tanh_cell(c) * k + fill_h;
            h_local[j] = h;
            ys[(size_t)t * H + j] = h;
        }
        barrier(CLK_LOCAL_MEM_FENCE);   // h(t) is visible to all
    }
}
