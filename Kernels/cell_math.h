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

// Works on float and on floatN alike.
#define SIGM(x) RECIP(1.0f + EXP(-(x)))

inline float sigm(float x) { return SIGM(x); }

#endif
