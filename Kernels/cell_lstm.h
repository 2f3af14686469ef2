// cell_lstm.h: the LSTM step (METHOD.md section 1), the kernels' twin of
// Sources/CellAuditCore/Cells/LSTMCell.swift. Included by cell.h when CELL_KIND == CELL_KIND_LSTM.
//
// CELL_GATES 4 (i, f, g, o); CELL_PARAMS 12 decoupled parameters per cell: planes w_i..w_o,
// r_i..r_o, b_i..b_o (params[(q * 4 + k) * n_pad + j]); with PEEPHOLE=1, 15: then p_i, p_f, p_o.
// LSTM_UPDATE(T, S, ai, af, ag, ao, c, h): from gate pre-activations, c' = s(f) c + s(i) tanh(g),
//   h' = s(o) tanh(c'), with the activations of suffix S from cell_math.h.
// LSTM_PEEPHOLE_UPDATE(T, S, ai, af, ag, ao, pi, pf, po, c, h) (METHOD.md section 8): ai += pi c,
//   af += pf c on the old c, then c' as above, then ao += po c', h' = s(ao) tanh(c'). ai, af and ao
//   are lvalues and end as the pre-activations the gates saw (the relevance tape records them).
//   The full-layer kernels take a peephole layer's p [3H] (p_i, p_f, p_o planes) in the argument
//   that holds the GRU's b_hn: each kind's per-cell parameters beside W, R and b.
#define CELL_GATES 4
#if PEEPHOLE
#define CELL_PARAMS 15
#else
#define CELL_PARAMS 12
#endif
#define CELL_HAS_C 1

#define LSTM_UPDATE(T, S, ai, af, ag, ao, c, h) do {                               \
        const T i_ = CAT(sigm_, S)(ai), f_ = CAT(sigm_, S)(af);    \
        const T g_ = CAT(tanh_, S)(ag), o_ = CAT(sigm_, S)(ao);    \
        (c) = fma(f_, (c), i_ * g_);                                           \
        (h) = o_ * CAT(tanh_, S)(c);                                           \
    } while (0)

#define LSTM_PEEPHOLE_UPDATE(T, S, ai, af, ag, ao, pi, pf, po, c, h) do {            \
        (ai) = fma((pi), (c), (ai));                                           \
        (af) = fma((pf), (c), (af));                                           \
        const T i_ = CAT(sigm_, S)(ai), f_ = CAT(sigm_, S)(af);    \
        const T g_ = CAT(tanh_, S)(ag);                                        \
        (c) = fma(f_, (c), i_ * g_);                                           \
        (ao) = fma((po), (c), (ao));                                           \
        (h) = CAT(sigm_, S)(ao) * CAT(tanh_, S)(c);                            \
    } while (0)

#ifdef CELL_DECOUPLED
#if PEEPHOLE
typedef struct { realv wi, wf, wg, wo, ri, rf, rg, ro, bi, bf, bg, bo, pi, pf, po; } cells_v;
#else
typedef struct { realv wi, wf, wg, wo, ri, rf, rg, ro, bi, bf, bg, bo; } cells_v;
#endif

inline cells_v load_cells(__global const float* params, int i, int n_pad)
{
    cells_v p;
    p.wi = LOADV(i, params + 0 * n_pad); p.wf = LOADV(i, params + 1 * n_pad);
    p.wg = LOADV(i, params + 2 * n_pad); p.wo = LOADV(i, params + 3 * n_pad);
    p.ri = LOADV(i, params + 4 * n_pad); p.rf = LOADV(i, params + 5 * n_pad);
    p.rg = LOADV(i, params + 6 * n_pad); p.ro = LOADV(i, params + 7 * n_pad);
    p.bi = LOADV(i, params + 8 * n_pad); p.bf = LOADV(i, params + 9 * n_pad);
    p.bg = LOADV(i, params + 10 * n_pad); p.bo = LOADV(i, params + 11 * n_pad);
#if PEEPHOLE
    p.pi = LOADV(i, params + 12 * n_pad); p.pf = LOADV(i, params + 13 * n_pad);
    p.po = LOADV(i, params + 14 * n_pad);
#endif
    return p;
}

// One step of decoupled cells under input u; pre-activations w u + (r h + b), fused as in Swift.
#if PEEPHOLE
#define CELL_STEP(p, u, h, c) do {                                                         \
        realv ai_ = GATE((p).wi, (p).ri, (p).bi, u, h), af_ = GATE((p).wf, (p).rf, (p).bf, u, h); \
        realv ao_ = GATE((p).wo, (p).ro, (p).bo, u, h);                                    \
        LSTM_PEEPHOLE_UPDATE(realv, v, ai_, af_, GATE((p).wg, (p).rg, (p).bg, u, h), ao_,  \
                             (p).pi, (p).pf, (p).po, c, h);                                \
    } while (0)
#else
#define CELL_STEP(p, u, h, c) \
    LSTM_UPDATE(realv, v, GATE((p).wi, (p).ri, (p).bi, u, h), GATE((p).wf, (p).rf, (p).bf, u, h), \
                GATE((p).wg, (p).rg, (p).bg, u, h), GATE((p).wo, (p).ro, (p).bo, u, h), c, h)
#endif
#endif
