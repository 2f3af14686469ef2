// cell_gru.h: the GRU step (METHOD.md section 1), the kernels' twin of
// Sources/CellAuditCore/Cells/GRUCell.swift. Included by cell.h when CELL_KIND == CELL_KIND_GRU.
//
// CELL_GATES 3 (r, z, n); CELL_PARAMS 10 decoupled parameters per cell: planes w_r, w_z, w_n,
// r_r, r_z, r_n, b_r, b_z, b_n, b_hn. A decoupled cell's n pre-activation is
// w_n u + b_n + r (r_n h + b_hn); for one cell r_n (r h) = r (r_n h), so the reset-before
// variant is the same step with b_hn = 0 (the host folds what differs into b_n).
// GRU_UPDATE(T, S, az, an, h): h' = (1 - z) n + z h = n + z (h - n), z = s(az), n = tanh(an).
#define CELL_GATES 3
#define CELL_PARAMS 10
#define CELL_HAS_C 0

#define GRU_UPDATE(T, S, az, an, h) do {                                           \
        const T z_ = CAT(sigm_, S)(az), n_ = CAT(tanh_, S)(an);    \
        (h) = fma(z_, (h) - n_, n_);                                           \
    } while (0)

#ifdef CELL_DECOUPLED
typedef struct { realv wr, wz, wn, rr, rz, rn, br, bz, bn, bhn; } cells_v;

inline cells_v load_cells(__global const float* params, int i, int n_pad)
{
    cells_v p;
    p.wr = LOADV(i, params + 0 * n_pad); p.wz = LOADV(i, params + 1 * n_pad); p.wn = LOADV(i, params + 2 * n_pad);
    p.rr = LOADV(i, params + 3 * n_pad); p.rz = LOADV(i, params + 4 * n_pad); p.rn = LOADV(i, params + 5 * n_pad);
    p.br = LOADV(i, params + 6 * n_pad); p.bz = LOADV(i, params + 7 * n_pad); p.bn = LOADV(i, params + 8 * n_pad);
    p.bhn = LOADV(i, params + 9 * n_pad);
    return p;
}

#define CELL_STEP(p, u, h, c) do {                                                           \
        const realv r_ = sigm_v(GATE((p).wr, (p).rr, (p).br, u, h));                         \
        const realv an_ = fma((p).wn, (realv)(u), fma(r_, fma((p).rn, (h), (p).bhn), (p).bn)); \
        GRU_UPDATE(realv, v, GATE((p).wz, (p).rz, (p).bz, u, h), an_, h);                           \
    } while (0)
#endif
