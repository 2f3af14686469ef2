// cell_math.h: activation helpers shared by the cell kernels (pulled in by #include).
//
// The same formulas as the Swift CPU backend (Sources/CellAuditCore/VectorMath.swift), so the
// two backends round alike:
//   exp(x) = 2^n p(r), n = round(x / ln 2), r by a two-part (Cody-Waite) reduction, x clamped
//     to [-87, 88];
//   sigmoid(x) = 1 / (1 + e^-x), which keeps its relative accuracy for strongly negative x;
//   tanh(x) = x P(x^2) / Q(x^2), the rational minimax fit of Tools/fit_tanh.py on [-9.5, 9.5],
//     which needs no exp and keeps its relative accuracy near 0.
// They are written out rather than taken from the OpenCL library: on PoCL the library's tanh
// and exp held the response kernel to about two thirds of this speed.
//
// DEFINE_CELL_MATH(T, IT, S) defines exp_S, sigm_S and tanh_S for the float type T (float or
// floatN) and the int type IT of the same width.
// Variants (-D): NATIVE_MATH uses native_exp / native_recip for the sigmoid (faster, less precise).
#ifndef CELL_MATH_H
#define CELL_MATH_H

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)

// x clamped to [lo, hi] by compare-and-select, so NaN stays NaN (clamp() would drop it).
#define SELECT_CLAMP(T, x, lo, hi) select(select((x), (T)(lo), (x) < (lo)), (T)(hi), (x) > (hi))

#ifdef NATIVE_MATH
#define CELL_EXP_BODY(T, IT) return native_exp(v);
#define CELL_RECIP(x) native_recip(x)
#else
#define CELL_EXP_BODY(T, IT)                                                      \
    const T x = SELECT_CLAMP(T, v, -87.0f, 88.0f);                                \
    /* Adding 1.5 * 2^23 rounds to an integer and leaves it in the low mantissa bits. */ \
    const T shifted = fma(x, (T)(1.44269504f), (T)(12582912.0f));                 \
    const T n = shifted - (T)(12582912.0f);                                       \
    const T r = fma(n, (T)(2.1219444e-4f), fma(n, (T)(-0.693359375f), x));        \
    T p = fma((T)(1.98756915e-4f), r, (T)(1.3981999507e-3f));                     \
    p = fma(p, r, (T)(8.3334519073e-3f));                                         \
    p = fma(p, r, (T)(4.1665795894e-2f));                                         \
    p = fma(p, r, (T)(1.6666665459e-1f));                                         \
    p = fma(p, r, (T)(5.0000001201e-1f));                                         \
    const IT bits = CAT(as_, IT)(shifted) - 0x4B400000;                            \
    return (fma(p, r * r, r) + 1.0f) * CAT(as_, T)((bits + 127) << 23);
#define CELL_RECIP(x) (1.0f / (x))
#endif

#define DEFINE_CELL_MATH(T, IT, S)                                                \
    inline T CAT(exp_, S)(T v) { CELL_EXP_BODY(T, IT) }                           \
    inline T CAT(sigm_, S)(T x) { return CELL_RECIP(1.0f + CAT(exp_, S)(-x)); }   \
    inline T CAT(tanh_, S)(T v)                                                   \
    {                                                                             \
        const T x = SELECT_CLAMP(T, v, -9.5f, 9.5f);                              \
        const T z = x * x;                                                        \
        T p = fma(z, (T)(-7.2634613e-14f), (T)(4.7923027e-11f));                  \
        p = fma(p, z, (T)(-1.9203187e-8f));                                       \
        p = fma(p, z, (T)(1.090026e-5f));                                         \
        p = fma(p, z, (T)(3.07957e-3f));                                          \
        p = fma(p, z, (T)(1.3062154e-1f));                                        \
        p = fma(p, z, (T)(1.0f));                                                 \
        T q = fma(z, (T)(2.5106882e-4f), (T)(2.4397984e-2f));                     \
        q = fma(q, z, (T)(4.6395478e-1f));                                        \
        q = fma(q, z, (T)(1.0f));                                                 \
        /* Rounding can carry the quotient a few ulp past 1; tanh never does. */  \
        return SELECT_CLAMP(T, x * p / q, -1.0f, 1.0f);                           \
    }

#endif
