import CLAPACKE
import Foundation

/// LAPACK through LAPACKE (Debian's liblapacke-dev): the two routines the dynamics analysis needs.
enum LinearAlgebra {
    /// Eigenvalues of the row-major n×n matrix `a` (LAPACK `dgeev`, no eigenvectors), as
    /// (real, imaginary) pairs in LAPACK's order; conjugate pairs are adjacent.
    /// - Throws: `DynamicsError.numerical` when `dgeev` does not converge.
    static func eigenvalues(_ a: [Double], n: Int) throws -> [(re: Double, im: Double)] {
        var m = a, wr = [Double](repeating: 0, count: n), wi = [Double](repeating: 0, count: n)
        var left = [Double](repeating: 0, count: 1), right = [Double](repeating: 0, count: 1)
        let info = LAPACKE_dgeev(LAPACK_ROW_MAJOR, Int8(UInt8(ascii: "N")), Int8(UInt8(ascii: "N")), Int32(n), &m, Int32(n),
                                 &wr, &wi, &left, 1, &right, 1)
        guard info == 0 else { throw DynamicsError.numerical("LAPACK dgeev failed to converge (info \(info))") }
        return (0..<n).map { (wr[$0], wi[$0]) }
    }

    /// Solves the symmetric positive definite system A x = b in place of `b` (LAPACK `dposv`):
    /// `a` [n × n] (upper triangle, row-major; overwritten), `b` [n]; false when A is not positive
    /// definite.
    static func solvePositiveDefinite(_ a: UnsafeMutablePointer<Double>, _ b: UnsafeMutablePointer<Double>, n: Int) -> Bool {
        // A symmetric matrix whose upper triangle is stored row-major is its lower triangle stored
        // column-major: LAPACK reads it in place (the row-major interface would transpose it first).
        // The _work entry skips LAPACKE's NaN scan of the matrix: a NaN fails the factorisation or
        // shows in the solution, which the callers check.
        LAPACKE_dposv_work(LAPACK_COL_MAJOR, Int8(UInt8(ascii: "L")), Int32(n), 1, a, Int32(n), b, Int32(n)) == 0
    }
}

/// Errors of the dynamics analysis (`cellaudit attractors`).
public enum DynamicsError: Error, CustomStringConvertible, Equatable {
    case invalid(String)
    case numerical(String)
    public var description: String {
        switch self {
        case .invalid(let s): "cannot analyse the dynamics: \(s)"
        case .numerical(let s): "dynamics: \(s)"
        }
    }
}

extension LinearAlgebra {
    /// The two leading principal directions of `rows` [n × d] (LAPACK `dsyev` on the covariance),
    /// each [d], and the mean [d]; fewer than two rows or d = 1 give zero directions past rank.
    static func principalPlane(_ rows: [Double], count n: Int, dimension d: Int) throws -> (mean: [Double], axes: [[Double]]) {
        var mean = [Double](repeating: 0, count: d)
        for r in 0..<n { for k in 0..<d { mean[k] += rows[r * d + k] / Double(max(n, 1)) } }
        var cov = [Double](repeating: 0, count: d * d)
        for r in 0..<n {
            for i in 0..<d {
                let a = rows[r * d + i] - mean[i]
                guard a != 0 else { continue }
                for j in i..<d { cov[i * d + j] += a * (rows[r * d + j] - mean[j]) }
            }
        }
        var w = [Double](repeating: 0, count: d)
        let info = LAPACKE_dsyev(LAPACK_ROW_MAJOR, Int8(UInt8(ascii: "V")), Int8(UInt8(ascii: "U")), Int32(d), &cov, Int32(d), &w)
        guard info == 0 else { throw DynamicsError.numerical("LAPACK dsyev failed to converge (info \(info))") }
        // Eigenvalues ascending; eigenvectors are the columns of cov.
        let axes = [d - 1, d - 2].map { c in c >= 0 ? (0..<d).map { cov[$0 * d + c] } : [Double](repeating: 0, count: d) }
        return (mean, axes)
    }
}
