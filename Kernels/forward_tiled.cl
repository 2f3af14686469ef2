// forward_tiled.cl: the full forward as tiled matrix products with the gates fused in, the layout
// that suits GPUs (forward.cl's layer_forward, one work-group per sequence, stays for the
// relevance pass, which records its tape). Per layer:
//   1. input_projection: P = X W^T + b for every step of every sequence at once, one GEMM
//      ([rows, I] x [G*H, I]^T), 64 x 64 output tiles in local memory, float4 loads along I.
//   2. recurrent_step, once per step t: A = P(t) + h(t-1) R^T for a 32-sequence x 32-cell tile,
//      every gate block of those cells in the same work-group, so each work-item holds all gate
//      pre-activations of its outputs in registers and applies the cell update (cell.h) before
//      anything is written: h(t) (and the LSTM's c) leave the kernel, the gates never do.
// Both kernels sum each output in one fixed order (k tiles in order, k within a tile in order),
// whatever tile or chunk an output falls in, so a configuration's numbers never depend on the
// others computed with it.
//
// Variants (-D): CELL_KIND (cell.h); PEEPHOLE=0|1 for the LSTM; RESET_AFTER=0|1 for the GRU; NATIVE_MATH. The reset-before
// GRU (Keras reset_after=False: n = tanh(W_n x + b_n + R_n (r h))) needs every cell's r before
// the n block's product, so its step is two launches: STEP_PHASE=1 computes the r and z blocks
// and writes r h(t-1) and z's pre-activation; STEP_PHASE=2 multiplies R_n by r h and updates h.

#include "cell_math.h"
DEFINE_CELL_MATH(float, int, cell)
#include "cell.h"

#ifndef RESET_AFTER
#define RESET_AFTER 1
#endif
#ifndef STEP_PHASE
#define STEP_PHASE 0
#endif

// Loads row `row` of a row-major matrix (leading dimension ld), elements k..k+3, zero outside
// rows x K. vload4 needs only float alignment, so any ld and k work.
inline float4 load_row4(__global const float* m, int row, int rows, int k, int K, int ld)
{
    if (row >= rows) return (float4)(0.0f);
    __global const float* p = m + (size_t)row * ld + k;
    if (k + 3 < K) return vload4(0, p);
    return (float4)(k < K ? p[0] : 0.0f, k + 1 < K ? p[1] : 0.0f, k + 2 < K ? p[2] : 0.0f, 0.0f);
}

// ---------------------------------------------------------------------------------------------
// input_projection: C[M, N] = A[M, K] B[N, K]^T + bias[N]; A, B, C row-major with leading
// dimensions lda, ldb, ldc. Work-groups of PT x PT items, each item PW x PW outputs strided by
// PT (so local reads are conflict-free); global size (ceil(N / PB) * PT, ceil(M / PB) * PT).
#define PT 16
#define PW 4
#define PB (PT * PW)
#define PK 16

__kernel __attribute__((reqd_work_group_size(PT, PT, 1)))
void input_projection(__global const float* restrict A, const int lda,
                      __global const float* restrict B, const int ldb,
                      __global const float* restrict bias,
                      __global float* restrict C, const int ldc,
                      const int M, const int N, const int K)
{
    __local float As[PK][PB + 1];
    __local float Bs[PK][PB + 1];
    const int tx = get_local_id(0), ty = get_local_id(1), tid = ty * PT + tx;
    const int n0 = get_group_id(0) * PB, m0 = get_group_id(1) * PB;
    float acc[PW][PW];
    for (int a = 0; a < PW; ++a)
        for (int b = 0; b < PW; ++b) acc[a][b] = 0.0f;
    for (int k0 = 0; k0 < K; k0 += PK) {
        // PB rows x PK columns = PB * PK / 4 float4 per matrix: exactly one per item.
        for (int q = tid; q < PB * (PK / 4); q += PT * PT) {
            const int r = q / (PK / 4), kq = (q % (PK / 4)) * 4;
            const float4 va = load_row4(A, m0 + r, M, k0 + kq, K, lda);
            const float4 vb = load_row4(B, n0 + r, N, k0 + kq, K, ldb);
            As[kq][r] = va.x; As[kq + 1][r] = va.y; As[kq + 2][r] = va.z; As[kq + 3][r] = va.w;
            Bs[kq][r] = vb.x; Bs[kq + 1][r] = vb.y; Bs[kq + 2][r] = vb.z; Bs[kq + 3][r] = vb.w;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int k = 0; k < PK; ++k) {
            float av[PW], bv[PW];
            for (int a = 0; a < PW; ++a) av[a] = As[k][ty + a * PT];
            for (int b = 0; b < PW; ++b) bv[b] = Bs[k][tx + b * PT];
            for (int a = 0; a < PW; ++a)
                for (int b = 0; b < PW; ++b) acc[a][b] = fma(av[a], bv[b], acc[a][b]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    for (int a = 0; a < PW; ++a) {
        const int m = m0 + ty + a * PT;
        if (m >= M) continue;
        for (int b = 0; b < PW; ++b) {
            const int n = n0 + tx + b * PT;
            if (n < N) C[(size_t)m * ldc + n] = acc[a][b] + bias[n];
        }
    }
}

// ---------------------------------------------------------------------------------------------
// recurrent_step: step t of one layer for `pairs` (configuration, sequence) pairs, pairs
// pair0..pair0+pairs-1 of the job (configuration = pair / n_seq, sequence = pair % n_seq).
//   proj     pre-activations W x + b, rows of G*H: row seq*T + t when proj_shared (layer 0, one
//            row per sequence for every configuration), else row p*T + t (p local to the chunk).
//   src      the vector R multiplies, row p at src + src_offset + p*src_stride: h(t-1) (y,
//            offset (t-1)*H, stride T*H) or, in phase 2 of the reset-before GRU, r h(t-1) (rh,
//            offset 0, stride H).
//   R        [G*H, H] row-major; bhn [H] the GRU's recurrent bias of n (reset-after), or a
//            peephole LSTM's p [3H] (PEEPHOLE=1, cell_lstm.h).
//   keep     [configs, H]; clamp_h, clamp_c [H]: as in forward.cl (ablation with clamp values).
//   y        [pairs, T, y_stride], this layer's h at columns y_offset .. y_offset + H (a level's
//            directions side by side, forward first): writes step t, reads h at step t_prev, the
//            step processed before t (t - 1 forward, t + 1 reverse; -1 at the first: h = 0).
//   state    LSTM: c [pairs, H], read (t_prev >= 0) and written; reset-before GRU: z's
//            pre-activation [pairs, H], written in phase 1, read in phase 2.
//   rh       reset-before GRU, phase 1: r h(t-1) [pairs, H].
// Work-groups of RT x RT items over (cells, pairs); each item RW x RW outputs strided by RT,
// every gate block's; global size (ceil(H / RB) * RT, ceil(pairs / RB) * RT).
#ifndef RT
#define RT 16
#endif
#ifndef RW
#define RW 2
#endif
#define RB (RT * RW)
#define RK 16

#if CELL_KIND == CELL_KIND_GRU && !RESET_AFTER
#if STEP_PHASE == 2
#define BLOCK0 2
#define BLOCKS 1
#else
#define BLOCK0 0
#define BLOCKS 2
#endif
#else
#define BLOCK0 0
#define BLOCKS CELL_GATES
#endif

__kernel __attribute__((reqd_work_group_size(RT, RT, 1)))
void recurrent_step(__global const float* restrict proj, const int proj_shared,
                    __global const float* src, const int src_offset, const int src_stride,
                    __global const float* restrict R,
                    __global const float* restrict bhn,
                    __global const float* restrict keep,
                    __global const float* restrict clamp_h,
                    __global const float* restrict clamp_c,
                    __global float* y,
                    __global float* restrict state,
                    __global float* restrict rh,
                    const int pair0, const int pairs, const int n_seq,
                    const int T, const int t, const int H,
                    const int t_prev, const int y_stride, const int y_offset)
{
    __local float Hs[RK][RB + 1];
    __local float Rs[BLOCKS][RK][RB + 1];
    const int tx = get_local_id(0), ty = get_local_id(1), tid = ty * RT + tx;
    const int j0 = get_group_id(0) * RB, p0 = get_group_id(1) * RB;
    const int GH = CELL_GATES * H;
    float acc[BLOCKS][RW][RW];
    for (int g = 0; g < BLOCKS; ++g)
        for (int a = 0; a < RW; ++a)
            for (int b = 0; b < RW; ++b) acc[g][a][b] = 0.0f;
    if (t_prev >= 0) {   // the first step's h = 0: the product vanishes (a uniform branch, barriers stay matched)
        for (int k0 = 0; k0 < H; k0 += RK) {
            for (int q = tid; q < RB * (RK / 4); q += RT * RT) {
                const int r = q / (RK / 4), kq = (q % (RK / 4)) * 4;
                const float4 v = load_row4(src + src_offset, p0 + r, pairs, k0 + kq, H, src_stride);
                Hs[kq][r] = v.x; Hs[kq + 1][r] = v.y; Hs[kq + 2][r] = v.z; Hs[kq + 3][r] = v.w;
            }
            for (int q = tid; q < BLOCKS * RB * (RK / 4); q += RT * RT) {
                const int g = q / (RB * (RK / 4)), rest = q % (RB * (RK / 4));
                const int r = rest / (RK / 4), kq = (rest % (RK / 4)) * 4;
                // Row (BLOCK0 + g) * H + j of R, for cell j = j0 + r < H.
                const float4 v = j0 + r < H ? load_row4(R, (BLOCK0 + g) * H + j0 + r, GH, k0 + kq, H, H) : (float4)(0.0f);
                Rs[g][kq][r] = v.x; Rs[g][kq + 1][r] = v.y; Rs[g][kq + 2][r] = v.z; Rs[g][kq + 3][r] = v.w;
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            for (int k = 0; k < RK; ++k) {
                float hv[RW];
                for (int a = 0; a < RW; ++a) hv[a] = Hs[k][ty + a * RT];
                for (int g = 0; g < BLOCKS; ++g)
                    for (int b = 0; b < RW; ++b) {
                        const float rv = Rs[g][k][tx + b * RT];
                        for (int a = 0; a < RW; ++a) acc[g][a][b] = fma(hv[a], rv, acc[g][a][b]);
                    }
            }
            barrier(CLK_LOCAL_MEM_FENCE);
        }
    }
    // The cell update, from registers.
    for (int a = 0; a < RW; ++a) {
        const int p = p0 + ty + a * RT;
        if (p >= pairs) continue;
        const int pair = pair0 + p, config = pair / n_seq, seq = pair % n_seq;
        __global const float* pre = proj + ((size_t)(proj_shared ? seq : p) * T + t) * GH;
        __global float* yt = y + ((size_t)p * T + t) * y_stride + y_offset;
        __global const float* yp = y + ((size_t)p * T + t_prev) * y_stride + y_offset;
        for (int b = 0; b < RW; ++b) {
            const int j = j0 + tx + b * RT;
            if (j >= H) continue;
            const float k = keep[config * H + j];
            const float h_prev = t_prev >= 0 ? yp[j] : 0.0f;
            float h = h_prev;
#if CELL_KIND == CELL_KIND_LSTM && PEEPHOLE
            float c = t_prev >= 0 ? state[(size_t)p * H + j] : 0.0f;
            float ai = pre[j] + acc[0][a][b], af = pre[H + j] + acc[1][a][b], ao = pre[3 * H + j] + acc[3][a][b];
            LSTM_PEEPHOLE_UPDATE(float, cell, ai, af, pre[2 * H + j] + acc[2][a][b], ao, bhn[j], bhn[H + j], bhn[2 * H + j], c, h);
            state[(size_t)p * H + j] = c * k + (1.0f - k) * clamp_c[j];
#elif CELL_KIND == CELL_KIND_LSTM
            float c = t_prev >= 0 ? state[(size_t)p * H + j] : 0.0f;
            LSTM_UPDATE(float, cell, pre[j] + acc[0][a][b], pre[H + j] + acc[1][a][b],
                        pre[2 * H + j] + acc[2][a][b], pre[3 * H + j] + acc[3][a][b], c, h);
            state[(size_t)p * H + j] = c * k + (1.0f - k) * clamp_c[j];
#elif CELL_KIND == CELL_KIND_GRU && RESET_AFTER
            const float an = fma(sigm_cell(pre[j] + acc[0][a][b]), acc[2][a][b] + bhn[j], pre[2 * H + j]);
            GRU_UPDATE(float, cell, pre[H + j] + acc[1][a][b], an, h);
#elif CELL_KIND == CELL_KIND_GRU && STEP_PHASE == 1
            rh[(size_t)p * H + j] = sigm_cell(pre[j] + acc[0][a][b]) * h_prev;
            state[(size_t)p * H + j] = pre[H + j] + acc[1][a][b];
            continue;
#elif CELL_KIND == CELL_KIND_GRU
            GRU_UPDATE(float, cell, state[(size_t)p * H + j], pre[2 * H + j] + acc[0][a][b], h);
#else
            RNN_UPDATE(float, cell, pre[j] + acc[0][a][b], h);
#endif
            yt[j] = h * k + (1.0f - k) * clamp_h[j];
        }
    }
}
