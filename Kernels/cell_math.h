// cell_math.h: activation helpers shared by the cell kernels (pulled in by #include).
// Variants (-D): NATIVE_MATH uses native_exp / native_recip (faster, less precise).
#ifndef CELL_MATH_H
#define CELL_MATH_H

#ifdef NATIVE_MATH
#define EXP(x) native_exp(x)
#define RECIP(x) native_recip(x)
#else
#define EXP(x) exp(x)
#define RECIP(x) (1.0f / (x))
#endif

inline float sigm(float x) { return RECIP(1.0f + EXP(-x)); }

// The twelve scalars of one decoupled LSTM cell (gates i, f, g, o).
typedef struct { float4 w, r, b; } decoupled_cell;

// params is gate-major: params[(q*4 + k)*n_cells + j], q = 0 w, 1 r, 2 b; k = gate.
inline decoupled_cell load_cell(__global const float* params, int j, int n_cells)
{
    decoupled_cell p;
    p.w = (float4)(params[0 * n_cells + j], params[1 * n_cells + j], params[2 * n_cells + j], params[3 * n_cells + j]);
    p.r = (float4)(params[4 * n_cells + j], params[5 * n_cells + j], params[6 * n_cells + j], params[7 * n_cells + j]);
    p.b = (float4)(params[8 * n_cells + j], params[9 * n_cells + j], params[10 * n_cells + j], params[11 * n_cells + j]);
    return p;
}

// One step of a decoupled cell under input u: c' = f c + i g, h' = o tanh(c').
inline void cell_step(const decoupled_cell* p, float u, float* h, float* c)
{
    const float4 a = p->w * u + p->r * (*h) + p->b;
    const float i = sigm(a.x), f = sigm(a.y), g = tanh(a.z), o = sigm(a.w);
    *c = f * (*c) + i * g;
    *h = o * tanh(*c);
}

#endif
