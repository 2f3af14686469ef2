/// Sixteen-lane exp, sigmoid and tanh for the CPU backend's inner loops.
///
/// glibc's `expf`/`tanhf` are scalar calls, and in an LSTM step they cost more than the
/// arithmetic around them; these are branch-free, so the compiler keeps every lane in vector
/// registers (one zmm register with AVX-512, two ymm with AVX2, four xmm on the SSE2 baseline).
/// SIMD16 is the widest type the Swift compiler lowers to straight vector code: SIMD32 and
/// SIMD64 operations come out lane by lane, and so do generic `SIMD` functions, which is why
/// these take a concrete type.
///
/// They use only add, multiply, divide, compare/select and bit operations. The multiply-adds are
/// fused on arm64 and in builds with `-D CELLAUDIT_FMA` (Tools/cellaudit.sh adds it where an
/// x86-64 CPU has FMA); elsewhere they round twice, because the x86-64 baseline has no fused
/// instruction and would call `fmaf` lane by lane. The OpenCL kernels use the same formulas
/// (Kernels/cell_math.h).
///
/// These functions are `@_transparent`: with `@inline(__always)` the optimizer still left them
/// as calls inside the simulation loop, which halved its speed.
///
/// Accuracy (VectorMathTests, against Foundation in Double): exp within 2 ulp; sigmoid within
/// 4 ulp, relative, down to values near 1e-38; tanh within 8 ulp of the Float spacing at the
/// result, so relative near 0 (Tools/fit_tanh.py measures 5.8 ulp unfused and 4.6 fused, at most
/// 3.5e-7 absolute near ±1).
public typealias Float32x8 = SIMD8<Float>
public typealias Float32x16 = SIMD16<Float>

/// a·b + c, fused where the build allows it.
@_transparent @usableFromInline
func fmadd(_ a: Float32x16, _ b: Float32x16, _ c: Float) -> Float32x16 {
    #if CELLAUDIT_FMA || arch(arm64)
    Float32x16(repeating: c).addingProduct(a, b)
    #else
    a * b + c
    #endif
}

@_transparent @usableFromInline
func fmadd(_ a: Float32x16, _ b: Float32x16, _ c: Float32x16) -> Float32x16 {
    #if CELLAUDIT_FMA || arch(arm64)
    c.addingProduct(a, b)
    #else
    a * b + c
    #endif
}

/// `v` clamped to [lo, hi]; NaN stays NaN. (The standard library's clamped(lowerBound:upperBound:)
/// is not inlined for SIMD types; compare-and-select is.)
@_transparent @usableFromInline
func clamp(_ v: Float32x16, _ lo: Float, _ hi: Float) -> Float32x16 {
    let low = Float32x16(repeating: lo), high = Float32x16(repeating: hi)
    return v.replacing(with: low, where: v .< low).replacing(with: high, where: v .> high)
}

@_transparent
public func vexp(_ v: Float32x16) -> Float32x16 {
    // exp(x) = 2^n · exp(r), n = round(x / ln 2), r = x − n ln 2 split in two parts (Cody–Waite).
    let x = clamp(v, -87, 88)
    // Adding 1.5·2^23 rounds to the nearest integer and leaves it in the low mantissa bits.
    let shifter = Float32x16(repeating: 12_582_912)
    let shifted = fmadd(x, Float32x16(repeating: 1.442_695_04), shifter)
    let n = shifted - shifter
    let r = fmadd(n, Float32x16(repeating: 2.121_944_4e-4), fmadd(n, Float32x16(repeating: -0.693_359_375), x))
    // Minimax polynomial for exp on [−ln2/2, ln2/2] (the Cephes expf coefficients).
    var p = Float32x16(repeating: 1.987_569_15e-4)
    p = fmadd(p, r, 1.398_199_950_7e-3)
    p = fmadd(p, r, 8.333_451_907_3e-3)
    p = fmadd(p, r, 4.166_579_589_4e-2)
    p = fmadd(p, r, 1.666_666_545_9e-1)
    p = fmadd(p, r, 5.000_000_120_1e-1)
    let y = fmadd(p, r * r, r) + 1
    // 2^n built directly in the exponent field: n sits in the low bits of `shifted`.
    let nBits = unsafeBitCast(shifted, to: SIMD16<Int32>.self) &- 0x4B40_0000
    let scale = unsafeBitCast((nBits &+ 127) &<< 23, to: Float32x16.self)
    return y * scale
}

/// |x| per lane, by clearing the sign bit (the standard library's abs needs a scalar).
@inline(__always)
public func vabs(_ x: Float32x8) -> Float32x8 {
    unsafeBitCast(unsafeBitCast(x, to: SIMD8<UInt32>.self) & 0x7FFF_FFFF, to: Float32x8.self)
}

@inline(__always)
public func vabs(_ x: Float32x16) -> Float32x16 {
    unsafeBitCast(unsafeBitCast(x, to: SIMD16<UInt32>.self) & 0x7FFF_FFFF, to: Float32x16.self)
}

/// 1 / (1 + e^−x): relative accuracy is kept for strongly negative x, where a nearly shut gate
/// still lets a slow integrator accumulate.
@_transparent
public func vsigmoid(_ x: Float32x16) -> Float32x16 {
    1 / (1 + vexp(-x))
}

/// tanh(x) = x · P(x²) / Q(x²), a rational minimax fit of relative error on [0, 9.5] (degrees 6
/// and 3 in x², fitted by Tools/fit_tanh.py; 1.2e-8 before rounding), so there is no exp and no
/// branch, and small arguments keep their relative accuracy. Beyond ±9.5 tanh is ±1 in Float.
@_transparent
public func vtanh(_ v: Float32x16) -> Float32x16 {
    let x = clamp(v, -9.5, 9.5)
    let z = x * x
    var p = Float32x16(repeating: -7.263_461_3e-14)
    p = fmadd(p, z, 4.792_302_7e-11)
    p = fmadd(p, z, -1.920_318_7e-8)
    p = fmadd(p, z, 1.090_026e-5)
    p = fmadd(p, z, 3.079_57e-3)
    p = fmadd(p, z, 1.306_215_4e-1)
    p = fmadd(p, z, 1)
    var q = Float32x16(repeating: 2.510_688_2e-4)
    q = fmadd(q, z, 2.439_798_4e-2)
    q = fmadd(q, z, 4.639_547_8e-1)
    q = fmadd(q, z, 1)
    // Rounding can carry the quotient a few ulp past 1; tanh never does.
    return clamp(x * p / q, -1, 1)
}

extension Float32x16 {
    /// Loads `count` (≤ 16) floats, padding with zeros.
    @inline(__always)
    static func load(_ p: UnsafePointer<Float>, count: Int) -> Float32x16 {
        if count == 16 { return UnsafeRawPointer(p).loadUnaligned(as: Float32x16.self) }
        // One copy into a zeroed vector: a lane-by-lane insert stalls on every lane (each
        // scalar store to the stack is reread as part of a vector), which made the tails of
        // layers whose size is not a multiple of 16 cost more than the rest of the row.
        var v = Float32x16()
        withUnsafeMutableBytes(of: &v) { $0.baseAddress!.copyMemory(from: p, byteCount: count * MemoryLayout<Float>.stride) }
        return v
    }

    /// Stores the first `count` (≤ 16) lanes.
    @inline(__always)
    func store(_ p: UnsafeMutablePointer<Float>, count: Int) {
        if count == 16 { UnsafeMutableRawPointer(p).storeBytes(of: self, as: Float32x16.self); return }
        withUnsafeBytes(of: self) { UnsafeMutableRawPointer(p).copyMemory(from: $0.baseAddress!, byteCount: count * MemoryLayout<Float>.stride) }
    }
}
