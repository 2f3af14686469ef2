import COpenBLAS
import Foundation

/// C[m×n] = A[m×k] · Bᵀ + beta·C, where B is stored row-major as [n×k] (the layout of the
/// canonical W and R matrices), all row-major with the given leading dimensions.
///
/// The CPU forward pass does all of its arithmetic-heavy work through this one call, on
/// OpenBLAS (its `sgemm` is threaded and tuned per CPU). The choice was measured against a
/// hand-written Swift product; see docs/METHOD-CHOICES.md, "Full forward".
@inline(__always)
func multiplyTransposed(
    m: Int, n: Int, k: Int,
    _ a: UnsafePointer<Float>, lda: Int,
    _ b: UnsafePointer<Float>, ldb: Int,
    _ c: UnsafeMutablePointer<Float>, ldc: Int,
    beta: Float
) {
    guard m > 0, n > 0 else { return }
    guard k > 0 else {
        if beta == 0 { for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) } }
        return
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans,
                Int32(m), Int32(n), Int32(k), 1, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

