import CellAuditCore
import COpenBLAS
import Foundation

/// One point where a layer's map rests or nearly rests: a fixed point (q below tolerance) or a
/// slow point (the minimisation stopped above it). Ceni, Ashwin & Livi 2019; Sussillo & Barak 2013.
public struct FixedPoint: Sendable {
    /// Layer index in the network.
    public var layer: Int
    /// The direction of the layer's cells (a bidirectional layer has a map per direction).
    public var direction: TimeDirection = .forward
    /// The state s* [D]: h, or (h, c) for an LSTM.
    public var state: [Double]
    /// q = ½‖F(s*, x̄) − s*‖².
    public var q: Double
    /// true when q < the tolerance (a fixed point), false for a slow point.
    public var isFixed: Bool
    /// Eigenvalues of ∂F/∂s at s* [D], as (real, imaginary), ordered by decreasing modulus.
    public var eigenvalues: [(re: Double, im: Double)]

    /// max |λ|.
    public var spectralRadius: Double { eigenvalues.map { hypot($0.re, $0.im) }.max() ?? 0 }
    /// Linearly stable: every |λ| < 1 (decided on the Float64 Jacobian, with no margin).
    public var isStable: Bool { spectralRadius < 1 }
    /// Eigenvalues with |λ| > 1.
    public var unstableModes: Int { eigenvalues.filter { hypot($0.re, $0.im) > 1 }.count }
    /// Time constant in steps of the slowest mode, the eigenvalue whose modulus is nearest 1:
    /// τ = 1/|ln|λ||, which a perturbation along it takes to shrink (|λ| < 1) or grow (|λ| > 1)
    /// by e; +∞ when |λ| = 1 exactly, 0 when every λ is 0.
    public var slowestTimeConstant: Double {
        guard let nearest = eigenvalues.map({ abs(log(hypot($0.re, $0.im))) }).min() else { return 0 }
        return nearest == 0 ? .infinity : 1 / nearest
    }
}

/// The finder's settings; the defaults are FixedPointFinder's where it has one (q tolerance
/// 1e-12, merge distance 1e-3, outlier scale 10) and METHOD.md §7's.
public struct FixedPointOptions: Sendable {
    /// Seeds per layer (N).
    public var seeds: Int = Defaults.fixedPointSeeds
    /// Standard deviation of the Gaussian noise added to states taken from the data.
    public var seedNoise: Double = 0.01
    /// A point is fixed when q < this.
    public var qTolerance: Double = 1e-12
    /// Points that stop with q at or above this are not kept as slow points: the seed did not
    /// converge (‖F(s) − s‖ ≈ 0.014 per step at 1e-4); they are counted, not listed.
    public var slowPointLimit: Double = 1e-4
    /// Levenberg–Marquardt iterations at most per seed.
    public var maxIterations: Int = 200
    /// Two points closer than this (Euclidean) are one; the lower q is kept.
    public var mergeDistance: Double = 1e-3
    /// With data, points farther than this × the seeds' spread from every seed are dropped.
    public var outlierScale: Double = 10
    public var randomSeed: UInt64 = 0
    /// LSTM layers: solve each Levenberg–Marquardt system with c eliminated (the Schur complement
    /// on h, exact because ∂F/∂c is diagonal), about a third of the dense solve's work. false
    /// solves the full 2H × 2H system, as every other kind does (kept as a check).
    public var eliminateCellState: Bool = true

    public init() {}

    /// - Throws: `DynamicsError.invalid` naming the first setting out of range.
    public func validated() throws -> FixedPointOptions {
        guard seeds >= 1 else { throw DynamicsError.invalid("--seeds must be at least 1, got \(seeds)") }
        guard seedNoise >= 0, seedNoise.isFinite else { throw DynamicsError.invalid("the seed noise must be ≥ 0, got \(seedNoise)") }
        guard qTolerance > 0, qTolerance.isFinite else { throw DynamicsError.invalid("the q tolerance must be > 0, got \(qTolerance)") }
        guard slowPointLimit >= qTolerance else { throw DynamicsError.invalid("the slow-point limit must be ≥ the q tolerance, got \(slowPointLimit)") }
        guard maxIterations >= 1 else { throw DynamicsError.invalid("the iteration limit must be at least 1, got \(maxIterations)") }
        guard mergeDistance > 0, mergeDistance.isFinite else { throw DynamicsError.invalid("the merge distance must be > 0, got \(mergeDistance)") }
        guard outlierScale > 0 else { throw DynamicsError.invalid("the outlier scale must be > 0, got \(outlierScale)") }
        return self
    }
}

/// Seeds for one layer: states visited on the data (already perturbed) and random states.
public struct FixedPointSeeds: Sendable {
    /// [N × D].
    public var states: [Double]
    public var count: Int
    /// How many of the first rows came from the data (the outlier rule measures against them).
    public var fromData: Int

    /// `visited` [V × D] are states the layer took on the data (nil: none). 3/4 of the seeds are
    /// drawn from them with Gaussian noise, the rest uniformly: h in (−1, 1) ((0, 1) for a ReLU
    /// RNN, scaled to the largest |h| visited when larger), an LSTM's c in ± the largest |c| visited
    /// (± 1 without data). The zero state is always seed 0 without data.
    public init(map: LayerMap, visited: [Double]?, count: Int, noise: Double, rng: inout SeededGenerator) {
        let D = map.dimension, H = map.hiddenSize
        let V = (visited?.count ?? 0) / D
        let fromData = V > 0 ? max(1, count * 3 / 4) : 0
        var s = [Double](repeating: 0, count: count * D)
        var hScale = 1.0, cScale = 1.0
        if let visited, V > 0 {
            for v in 0..<V {
                for j in 0..<H { hScale = max(hScale, abs(visited[v * D + j])) }
                if D > H { for j in H..<D { cScale = max(cScale, abs(visited[v * D + j])) } }
            }
            if D > H { cScale = max(1, cScale) }
        }
        for n in 0..<count {
            if n < fromData, let visited {
                let v = Int(rng.next() % UInt64(V))
                for d in 0..<D { s[n * D + d] = visited[v * D + d] + noise * Double(rng.normal()) }
            } else if !(V == 0 && n == 0) {
                let relu = map.layer.kind == .rnnReLU
                for d in 0..<D {
                    let u = Double(rng.next() >> 11) * 0x1p-53
                    s[n * D + d] = d < H ? (relu ? u * hScale : (2 * u - 1) * hScale) : (2 * u - 1) * cScale
                }
            }
        }
        states = s
        self.count = count
        self.fromData = fromData
    }
}

/// Finds the fixed points of one layer's map by Levenberg–Marquardt on q(s) = ½‖F(s) − s‖² from
/// every seed at once: each iteration evaluates F and ∂F/∂s for all live seeds in one backend
/// call, then solves (AᵀA + μI) δ = −Aᵀr per seed (A = ∂F/∂s − I, r = F(s) − s; LAPACK dposv),
/// accepting a step that lowers q (μ/3) and rejecting one that does not (μ×4). A seed stops when
/// q ≤ 1e-4 × the tolerance, when μ passes 1e12 × its start (a minimum of q above zero: a slow
/// point), when q above the tolerance has not halved in 10 iterations (creeping towards a slow
/// point), or at the iteration limit. Gauss–Newton converges quadratically near a regular fixed
/// point, which first-order methods do not (docs/METHOD.md §8 has the measurement).
public enum FixedPointFinder {
    /// - Returns: one point per seed (not deduplicated) with its q, and the number of iterations run.
    public static func minimise(map: LayerMap, seeds: FixedPointSeeds, options: FixedPointOptions,
                                backend: any ComputeBackend) throws -> (states: [Double], q: [Double], iterations: Int) {
        let D = map.dimension, N = seeds.count
        var s = seeds.states
        var q = [Double](repeating: .infinity, count: N)
        var mu = [Double](repeating: 0, count: N), muStart = [Double](repeating: 0, count: N)
        // At each seed's accepted point: AᵀA (upper triangle, row-major [D × D]) and Aᵀr [D]. A
        // rejected step changes only μ, so these are formed once per accepted point.
        var normal = [Double](repeating: 0, count: N * D * D), gradient = [Double](repeating: 0, count: N * D)
        // Per seed: whether its stored system is the LSTM's block form (see `LevenbergMarquardtSystem`).
        var blocked = [Bool](repeating: false, count: N)
        let blockH: Int? = options.eliminateCellState && map.layer.kind == .lstm ? map.hiddenSize : nil
        var trial = s
        // q at the last checkpoint (every 10 iterations): a seed that has not halved q since is
        // creeping along a valley of q > 0 and stops there as a slow point.
        var checkpoint = [Double](repeating: .infinity, count: N)
        var live = Array(0..<N)
        var iterations = 0
        let stopQ = options.qTolerance * 1e-4
        while !live.isEmpty && iterations <= options.maxIterations {
            // Evaluate F and ∂F/∂s at the trial point of every live seed.
            var gathered = [Double](repeating: 0, count: live.count * D)
            for (k, n) in live.enumerated() { for d in 0..<D { gathered[k * D + d] = trial[n * D + d] } }
            let batch = gathered
            let (next, J) = try backend.mapStep(map, states: batch, inputs: nil, rows: live.count, jacobian: true)
            // Per seed, on all cores: accept or reject the trial, decide whether to go on, and
            // solve (AᵀA + μI) δ = −Aᵀr for the next trial.
            var goOn = [Bool](repeating: false, count: live.count)
            let first = iterations == 0, iteration = iterations
            s.withUnsafeMutableBufferPointer { sb in q.withUnsafeMutableBufferPointer { qb in
            mu.withUnsafeMutableBufferPointer { mb in muStart.withUnsafeMutableBufferPointer { m0 in
            normal.withUnsafeMutableBufferPointer { nb in gradient.withUnsafeMutableBufferPointer { gb in
            trial.withUnsafeMutableBufferPointer { tb in checkpoint.withUnsafeMutableBufferPointer { cb in
            goOn.withUnsafeMutableBufferPointer { ob in blocked.withUnsafeMutableBufferPointer { bb in
                let S = SendablePointer(sb.baseAddress!), Q = SendablePointer(qb.baseAddress!), B = SendablePointer(bb.baseAddress!)
                let M = SendablePointer(mb.baseAddress!), M0 = SendablePointer(m0.baseAddress!)
                let AtA = SendablePointer(nb.baseAddress!), Atr = SendablePointer(gb.baseAddress!)
                let T = SendablePointer(tb.baseAddress!), C = SendablePointer(cb.baseAddress!), O = SendablePointer(ob.baseAddress!)
                let rows = live
                let workers = rows.count * D * D * D > 1 << 18 ? min(backend.hostThreads, rows.count) : 1
                let work: @Sendable (Int) -> Void = { w in
                    var system = LevenbergMarquardtSystem(dimension: D, hiddenSize: blockH)
                    var r = [Double](repeating: 0, count: D)
                    for k in stride(from: w, to: rows.count, by: workers) {
                        let n = rows[k]
                        var qt = 0.0
                        for d in 0..<D { r[d] = next[k * D + d] - batch[k * D + d]; qt += r[d] * r[d] }
                        qt *= 0.5
                        if first || qt < Q.pointer[n] {
                            // Accept: the trial becomes the point; its system is formed from A = ∂F/∂s − I there.
                            for d in 0..<D { S.pointer[n * D + d] = batch[k * D + d] }
                            Q.pointer[n] = qt.isFinite ? qt : .infinity
                            let largest = J.withUnsafeBufferPointer { j in
                                system.form(jacobian: j.baseAddress! + k * D * D, residual: r, into: AtA.pointer + n * D * D,
                                            gradient: Atr.pointer + n * D, blocked: &B.pointer[n], first: first)
                            }
                            if first {
                                M.pointer[n] = 1e-3 * max(largest * largest, 1e-12)
                                M0.pointer[n] = M.pointer[n]
                            } else {
                                M.pointer[n] /= 3
                            }
                        } else {
                            M.pointer[n] *= 4
                        }
                        let qn = Q.pointer[n]
                        guard qn.isFinite, qn > stopQ, M.pointer[n] < 1e12 * M0.pointer[n], iteration < options.maxIterations else { continue }
                        if iteration % 10 == 0 && iteration > 0 {
                            if qn >= options.qTolerance && qn > 0.5 * C.pointer[n] { continue }
                            C.pointer[n] = qn
                        }
                        // The next trial, s + δ; a seed whose system cannot be solved stops where it is.
                        guard let step = system.solve(AtA.pointer + n * D * D, gradient: Atr.pointer + n * D, mu: M.pointer[n],
                                                      blocked: B.pointer[n]) else { continue }
                        for d in 0..<D { T.pointer[n * D + d] = S.pointer[n * D + d] + step[d] }
                        O.pointer[k] = true
                    }
                }
                if workers > 1 { DispatchQueue.concurrentPerform(iterations: workers, execute: work) } else { work(0) }
            }}}}}}}}}}
            live = live.indices.filter { goOn[$0] }.map { live[$0] }
            iterations += 1
        }
        return (s, q, iterations)
    }
}

/// One seed's Levenberg–Marquardt system (AᵀA + μI) δ = −Aᵀr, A = ∂F/∂s − I, r = F(s) − s, with
/// its work space. `form` runs once per accepted point, `solve` once per trial (μ changes).
///
/// Dense: AᵀA (upper triangle) and Aᵀr are stored; a solve is LAPACK dposv on AᵀA + μI.
///
/// LSTM block form (s = (h, c), `hiddenSize` H): c' = f⊙c + i⊙g and h' = o⊙tanh(c') with gates of
/// h alone, so ∂F/∂c is diagonal and A = [[P, diag(d₁)], [Q, diag(d₂)]] with P = ∂h'/∂h − I,
/// Q = ∂c'/∂h, d₁ = ∂h'/∂c, d₂ = ∂c'/∂c − 1. Then AᵀA = [[PᵀP + QᵀQ, Mᵀ], [M, diag(e)]] with
/// M = diag(d₁)P + diag(d₂)Q and e = d₁² + d₂², and with w = 1/(e + μ) the system reduces to the
/// Schur complement on h (exact, the same δ as the dense solve):
///   (PᵀP + QᵀQ + μI − Mᵀ diag(w) M) δh = −g₁ + Mᵀ(w ⊙ g₂),  δc = w ⊙ (−g₂ − M δh),
/// where (g₁, g₂) = Aᵀr. Stored: PᵀP + QᵀQ, M, e; a trial costs an H-sized dsyrk and dposv, where
/// the dense solve takes a 2H-sized dposv and each accepted point a 2H-sized dsyrk (about 3× the
/// arithmetic in all). A point whose ∂F/∂c is not diagonal (it always is for the LSTM map) is
/// formed densely.
struct LevenbergMarquardtSystem {
    let D: Int, H: Int?
    private var a: [Double], system: [Double], rhs: [Double], work: [Double]

    init(dimension: Int, hiddenSize: Int?) {
        D = dimension
        H = hiddenSize.flatMap { 2 * $0 == dimension ? $0 : nil }
        a = [Double](repeating: 0, count: D * D); system = a
        rhs = [Double](repeating: 0, count: D); work = rhs
    }

    /// Forms the system of the point with Jacobian `jacobian` (row-major [D × D]) and residual `r`
    /// into `stored` ([D × D]) and `gradient` ([D] = Aᵀr). On a seed's `first` point it decides
    /// `blocked` (the LSTM block form applies) and returns max |A_ij| (μ's scale); later points
    /// keep that form (the map's structure does not change) and return 0.
    mutating func form(jacobian J: UnsafePointer<Double>, residual r: [Double], into stored: UnsafeMutablePointer<Double>,
                       gradient g: UnsafeMutablePointer<Double>, blocked: inout Bool, first: Bool) -> Double {
        var largest = 0.0
        if first { blocked = H.map { Self.cellStateIsDiagonal(J, H: $0) } ?? false }
        if blocked, let H {
            let D = self.D, HH = H * H
            a.withUnsafeMutableBufferPointer { ab in
                let P = ab.baseAddress!, Q = ab.baseAddress! + HH
                for i in 0..<H {
                    (P + i * H).update(from: J + i * D, count: H)
                    (Q + i * H).update(from: J + (H + i) * D, count: H)
                    P[i * H + i] -= 1
                }
                if first { for e in 0..<(2 * HH) { largest = max(largest, abs(P[e])) } }
                // N₁₁ = PᵀP + QᵀQ (upper), M = diag(d₁)P + diag(d₂)Q, e = d₁² + d₂².
                cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(H), Int32(H), 1, P, Int32(H), 0, stored, Int32(H))
                cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(H), Int32(H), 1, Q, Int32(H), 1, stored, Int32(H))
                let M = stored + HH, e = stored + 2 * HH
                for j in 0..<H {
                    let d1 = J[j * D + H + j], d2 = J[(H + j) * D + H + j] - 1
                    if first { largest = max(largest, abs(d1), abs(d2)) }
                    for i in 0..<H { M[j * H + i] = d1 * P[j * H + i] + d2 * Q[j * H + i] }
                    e[j] = d1 * d1 + d2 * d2
                    g[H + j] = d1 * r[j] + d2 * r[H + j]
                }
                // g₁ = Pᵀ r_h + Qᵀ r_c.
                r.withUnsafeBufferPointer { rb in
                    cblas_dgemv(CblasRowMajor, CblasTrans, Int32(H), Int32(H), 1, P, Int32(H), rb.baseAddress!, 1, 0, g, 1)
                    cblas_dgemv(CblasRowMajor, CblasTrans, Int32(H), Int32(H), 1, Q, Int32(H), rb.baseAddress! + H, 1, 1, g, 1)
                }
            }
            return largest
        }
        let D = self.D
        a.withUnsafeMutableBufferPointer { ab in
            let A = ab.baseAddress!
            A.update(from: J, count: D * D)
            for d in 0..<D { A[d * D + d] -= 1 }
            if first { for e in 0..<(D * D) { largest = max(largest, abs(A[e])) } }
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(D), Int32(D), 1, A, Int32(D), 0, stored, Int32(D))
            r.withUnsafeBufferPointer { cblas_dgemv(CblasRowMajor, CblasTrans, Int32(D), Int32(D), 1, A, Int32(D), $0.baseAddress!, 1, 0, g, 1) }
        }
        return largest
    }

    /// δ for damping `mu` from a formed system; nil when it cannot be solved (not positive
    /// definite, or a non-finite step).
    mutating func solve(_ stored: UnsafePointer<Double>, gradient g: UnsafePointer<Double>, mu: Double, blocked: Bool) -> [Double]? {
        let D = self.D
        if blocked, let H {
            let HH = H * H, M = stored + HH, e = stored + 2 * HH
            var ok = false
            system.withUnsafeMutableBufferPointer { sb in a.withUnsafeMutableBufferPointer { ab in
            rhs.withUnsafeMutableBufferPointer { xb in work.withUnsafeMutableBufferPointer { wb in
                let S = sb.baseAddress!, Mw = ab.baseAddress!, x = xb.baseAddress!, w = wb.baseAddress!
                // w = 1/(e + μ) in work[0..<H], w ⊙ g₂ in work[H..<2H]; Mw = diag(√w) M.
                for j in 0..<H {
                    w[j] = 1 / (e[j] + mu)
                    w[H + j] = w[j] * g[H + j]
                    let root = w[j].squareRoot()
                    for i in 0..<H { Mw[j * H + i] = root * M[j * H + i] }
                }
                // S = N₁₁ + μI − MwᵀMw (upper); x = −g₁ + Mᵀ(w ⊙ g₂).
                S.update(from: stored, count: HH)
                for i in 0..<H { S[i * H + i] += mu }
                cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(H), Int32(H), -1, Mw, Int32(H), 1, S, Int32(H))
                cblas_dgemv(CblasRowMajor, CblasTrans, Int32(H), Int32(H), 1, M, Int32(H), w + H, 1, 0, x, 1)
                for i in 0..<H { x[i] -= g[i] }
                guard LinearAlgebra.solvePositiveDefinite(S, x, n: H) else { return }
                // δc = w ⊙ (−g₂ − M δh).
                cblas_dgemv(CblasRowMajor, CblasNoTrans, Int32(H), Int32(H), 1, M, Int32(H), x, 1, 0, x + H, 1)
                for j in 0..<H { x[H + j] = w[j] * (-g[H + j] - x[H + j]) }
                ok = true
            }}}}
            return ok && rhs.allSatisfy(\.isFinite) ? rhs : nil
        }
        var ok = false
        system.withUnsafeMutableBufferPointer { sb in rhs.withUnsafeMutableBufferPointer { xb in
            let S = sb.baseAddress!, x = xb.baseAddress!
            S.update(from: stored, count: D * D)
            for d in 0..<D { S[d * D + d] += mu; x[d] = -g[d] }
            ok = LinearAlgebra.solvePositiveDefinite(S, x, n: D)
        }}
        return ok && rhs.allSatisfy(\.isFinite) ? rhs : nil
    }

    /// Whether the c columns of an LSTM map's Jacobian (row-major [2H × 2H]) are diagonal blocks.
    static func cellStateIsDiagonal(_ J: UnsafePointer<Double>, H: Int) -> Bool {
        let D = 2 * H
        for i in 0..<D {
            let own = i % H
            for j in 0..<H where j != own && J[i * D + H + j] != 0 { return false }
        }
        return true
    }
}

/// The fixed points of one layer, deduplicated, with outliers dropped and every point's
/// linearisation decomposed (the value type FixedPointFinder calls a fixed-point object).
public struct FixedPointSet: Sendable {
    public var points: [FixedPoint]
    /// Levenberg–Marquardt iterations the longest-running chunk of seeds took.
    public var iterations: Int = 0
    /// Seeds that stopped with q ≥ `FixedPointOptions.slowPointLimit`: at a local minimum of q
    /// that high, or at the iteration limit (neither fixed nor slow points).
    public var unconverged: Int = 0
    /// Distinct points dropped: outside the states the map can produce, or outliers.
    public var unreachable: Int = 0, outliers: Int = 0

    /// Keeps one point per cluster of points within `distance` of each other (the lowest q is
    /// kept; points are taken in increasing q and dropped when within `distance` of a kept one).
    public static func deduplicate(states: [Double], q: [Double], dimension D: Int, distance: Double) -> [Int] {
        let order = q.indices.filter { n in q[n].isFinite && (0..<D).allSatisfy { d in states[n * D + d].isFinite } }
            .sorted { (q[$0], $0) < (q[$1], $1) }
        var kept: [Int] = []
        for n in order {
            let near = kept.contains { k in squaredDistance(states, n, states, k, dimension: D).squareRoot() <= distance }
            if !near { kept.append(n) }
        }
        return kept
    }

    /// Indices of `candidates` within `scale` × the seeds' spread (mean distance of the data seeds
    /// from their centroid) of the nearest data seed: FixedPointFinder's outlier rule.
    public static func dropOutliers(_ candidates: [Int], states: [Double], seeds: FixedPointSeeds, dimension D: Int, scale: Double) -> [Int] {
        let V = seeds.fromData
        guard V > 0 else { return candidates }
        var centroid = [Double](repeating: 0, count: D)
        for v in 0..<V { for d in 0..<D { centroid[d] += seeds.states[v * D + d] / Double(V) } }
        var spread = 0.0
        for v in 0..<V { spread += squaredDistance(seeds.states, v, centroid, 0, dimension: D).squareRoot() / Double(V) }
        // A spread below the merge distance (a handful of seeds from one state) would drop every
        // point: the limit never falls below scale × 1e-3.
        let limit = scale * max(spread, 1e-3)
        return candidates.filter { n in
            var nearest = Double.infinity
            for v in 0..<V { nearest = min(nearest, squaredDistance(states, n, seeds.states, v, dimension: D)) }
            return nearest.squareRoot() <= limit
        }
    }

    /// Finds, deduplicates, filters and decomposes the fixed and slow points of `map`.
    /// - Throws: `DynamicsError` when LAPACK fails, or the backend's error.
    public static func find(layer: Int, map: LayerMap, seeds: FixedPointSeeds, options: FixedPointOptions,
                            backend: any ComputeBackend, progress: (String) -> Void = { _ in }) throws -> FixedPointSet {
        let D = map.dimension
        // Seeds in chunks whose Jacobians take at most 16 MB (at least 16 seeds): small enough to
        // stay out of the page-fault path of large allocations, large enough to batch.
        let chunk = max(16, (16 << 20) / (D * D * 8))
        var states: [Double] = [], q: [Double] = [], iterations = 0
        for start in stride(from: 0, to: seeds.count, by: chunk) {
            var part = seeds
            part.count = min(chunk, seeds.count - start)
            part.states = Array(seeds.states[(start * D)..<((start + part.count) * D)])
            let result = try FixedPointFinder.minimise(map: map, seeds: part, options: options, backend: backend)
            states += result.states; q += result.q; iterations = max(iterations, result.iterations)
            if seeds.count > chunk { progress("layer \(layer): \(start + part.count) of \(seeds.count) seeds searched") }
        }
        let unconverged = q.filter { !($0 < options.slowPointLimit) }.count
        let converged = q.map { $0 < options.slowPointLimit ? $0 : .infinity }
        var kept = deduplicate(states: states, q: converged, dimension: D, distance: options.mergeDistance)
        // Only states the map can produce: h = tanh(·) or o·tanh(c) lies in (−1, 1), a ReLU RNN's
        // h is ≥ 0. A GRU "fixed point" outside (−1, 1) needs its update gate to round to exactly 1.
        let reachable = kept.filter { map.canProduce(states[($0 * D)..<(($0 + 1) * D)]) }
        let unreachable = kept.count - reachable.count
        kept = dropOutliers(reachable, states: states, seeds: seeds, dimension: D, scale: options.outlierScale)
        let outliers = reachable.count - kept.count
        // Fixed points first, each group by increasing q (dedup's order).
        kept = kept.filter { q[$0] < options.qTolerance } + kept.filter { q[$0] >= options.qTolerance }
        let chosen = kept.flatMap { states[($0 * D)..<(($0 + 1) * D)] }
        let J = try backend.mapStep(map, states: chosen, inputs: nil, rows: kept.count, jacobian: true).jacobian
        var points: [FixedPoint] = []
        for (k, n) in kept.enumerated() {
            let eig = try LinearAlgebra.eigenvalues(Array(J[(k * D * D)..<((k + 1) * D * D)]), n: D)
                .sorted { hypot($0.re, $0.im) > hypot($1.re, $1.im) }
            points.append(FixedPoint(layer: layer, state: Array(states[(n * D)..<((n + 1) * D)]), q: q[n],
                                     isFixed: q[n] < options.qTolerance, eigenvalues: eig))
        }
        return FixedPointSet(points: points, iterations: iterations, unconverged: unconverged, unreachable: unreachable, outliers: outliers)
    }
}

/// ‖a[i] − b[j]‖² between row i of `a` and row j of `b`, both flat [rows × D].
func squaredDistance(_ a: [Double], _ i: Int, _ b: [Double], _ j: Int, dimension D: Int) -> Double {
    var sum = 0.0
    for d in 0..<D { let e = a[i * D + d] - b[j * D + d]; sum += e * e }
    return sum
}
