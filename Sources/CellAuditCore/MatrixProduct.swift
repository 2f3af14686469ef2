import COpenBLAS
import Foundation

/// OpenBLAS runs single-threaded: the CPU backend splits the rows of each product over its own
/// workers instead. (OpenBLAS's threads and the backend's dispatch workers spun against each
/// other on 2 cores: a fifth of the time went to the scheduler.) The pthread build also starts
/// its worker threads when it is loaded, and they spin on sched_yield for about 0.1 s before
/// they sleep; `blas_thread_shutdown_` (found at run time, absent from other builds) stops them.
let openBLASSingleThreaded: Void = {
    openblas_set_num_threads(1)
    if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "blas_thread_shutdown_") {
        _ = unsafeBitCast(symbol, to: (@convention(c) () -> Int32).self)()
    }
}()

/// Makes OpenBLAS single-threaded now and stops the threads it started at load, rather than at
/// the first product. The command-line tool calls it first thing: otherwise those threads spin
/// on one of the cores for the first 0.1 s of every run (`cellaudit audit` on 2 cores:
/// 5–10 % of its time).
public func useSingleThreadedBLAS() { _ = openBLASSingleThreaded }

/// The CPU core whose kernels OpenBLAS runs ("Cooperlake", "Haswell", …): its own detection, or
/// what `OPENBLAS_CORETYPE` in the environment forces. Benchmarks print it, because an AVX2 core
/// type on an AVX-512 machine halves the products' peak.
public var blasCoreName: String { String(cString: openblas_get_corename()) }

/// C[m×n] = A[m×k] · Bᵀ + beta·C, where B is stored row-major as [n×k] (the layout of the
/// canonical W and R matrices), all row-major with the given leading dimensions. Large products
/// are split into blocks of rows over at most `workers` threads.
///
/// The CPU forward pass does all of its arithmetic-heavy work through this one call: OpenBLAS
/// `sgemm` (tuned per CPU) on blocks of rows, one block per worker. The choice was measured
/// against a hand-written Swift product; see docs/METHOD.md, "Full forward".
func multiplyTransposed(
    m: Int, n: Int, k: Int,
    _ a: UnsafePointer<Float>, lda: Int,
    _ b: UnsafePointer<Float>, ldb: Int,
    _ c: UnsafeMutablePointer<Float>, ldc: Int,
    beta: Float, workers: Int
) {
    gemm(transposeB: true, m: m, n: n, k: k, a, lda: lda, b, ldb: ldb, c, ldc: ldc, beta: beta, workers: workers)
}

/// C[m×n] = A[m×k] · B + beta·C with B stored row-major as [k×n]: the product the backward
/// passes (relevance, gradients) take with W and R, which carry a signal from gate rows back to
/// the inputs. Same blocking as `multiplyTransposed`.
func multiply(
    m: Int, n: Int, k: Int,
    _ a: UnsafePointer<Float>, lda: Int,
    _ b: UnsafePointer<Float>, ldb: Int,
    _ c: UnsafeMutablePointer<Float>, ldc: Int,
    beta: Float, workers: Int
) {
    gemm(transposeB: false, m: m, n: n, k: k, a, lda: lda, b, ldb: ldb, c, ldc: ldc, beta: beta, workers: workers)
}

private func gemm(
    transposeB: Bool, m: Int, n: Int, k: Int,
    _ a: UnsafePointer<Float>, lda: Int,
    _ b: UnsafePointer<Float>, ldb: Int,
    _ c: UnsafeMutablePointer<Float>, ldc: Int,
    beta: Float, workers: Int
) {
    guard m > 0, n > 0 else { return }
    guard k > 0 else {
        for i in 0..<m {
            if beta == 0 { (c + i * ldc).update(repeating: 0, count: n) } else { for j in 0..<n { c[i * ldc + j] *= beta } }
        }
        return
    }
    _ = openBLASSingleThreaded
    let tb = transposeB ? CblasTrans : CblasNoTrans
    let blocks = m * n * k >= 1 << 18 ? min(max(1, workers), max(1, m / 16)) : 1
    if blocks == 1 {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, tb,
                    Int32(m), Int32(n), Int32(k), 1, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
        return
    }
    let (ap, bp, cp) = (SendablePointer(UnsafeMutablePointer(mutating: a)), SendablePointer(UnsafeMutablePointer(mutating: b)), SendablePointer(c))
    DispatchQueue.concurrentPerform(iterations: blocks) { i in
        let r0 = m * i / blocks, r1 = m * (i + 1) / blocks
        guard r1 > r0 else { return }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, tb, Int32(r1 - r0), Int32(n), Int32(k), 1,
                    ap.pointer + r0 * lda, Int32(lda), bp.pointer, Int32(ldb), beta, cp.pointer + r0 * ldc, Int32(ldc))
    }
}
