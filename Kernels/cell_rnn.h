// cell_rnn.h: the Elman RNN step (METHOD.md section 1), the kernels' twin of
// Sources/CellAuditCore/Cells/RNNCell.swift. Included by cell.h when CELL_KIND == CELL_KIND_RNN_TANH (tanh) or
// 3 (ReLU).
//
// CELL_GATES 1; CELL_PARAMS 3 decoupled parameters per cell: planes w, r, b.
// RNN_UPDATE(T, S, a, h): h' = tanh(a), or max(0, a) for ReLU (NaN stays NaN, as in Swift).
#define CELL_GATES 1
#define CELL_PARAMS 3
#define CELL_HAS_C 0

#if CELL_KIND == CELL_KIND_RNN_RELU
#define RNN_UPDATE(T, S, a, h) do { const T a_ = (a); (h) = select(a_, a_ - a_, a_ < 0.0f); } while (0)
#else
#define RNN_UPDATE(T, S, a, h) do { (h) = CAT(tanh_, S)(a); } while (0)
#endif

#ifdef CELL_DECOUPLED
typedef struct { realv w, r, b; } cells_v;

inline cells_v load_cells(__global const float* params, int i, int n_pad)
{
    cells_v p;
    p.w = LOADV(i, params + 0 * n_pad); p.r = LOADV(i, params + 1 * n_pad); p.b = LOADV(i, params + 2 * n_pad);
    return p;
}

#define CELL_STEP(p, u, h, c) RNN_UPDATE(realv, v, GATE((p).w, (p).r, (p).b, u, h), h)
#endif
