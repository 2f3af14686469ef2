import COpenBLAS
import Foundation

/// One recurrent layer as an input-driven map on its state, in Float64: s' = F(s, x), with
/// s = h (GRU, RNN; dimension H) or s = (h, c) (LSTM; dimension 2H, h first). The weights are
/// the layer's Float32 values widened once; the dynamics analysis (fixed points, Jacobians, the
/// excitable network; Sussillo & Barak 2013, Ceni, Ashwin & Livi 2019) runs on this map, so a
/// residual ‖F(s) − s‖ of 1e-7 means the point, not float32 rounding.
///
/// `input` is the constant input x̄ [I] the autonomous system is taken under; a row may be given
/// its own input (a pulse) in `step`.
public struct LayerMap: Sendable {
    public let layer: RecurrentLayer
    /// x̄ [I].
    public let input: [Double]
    /// State dimension D: H, or 2H for an LSTM.
    public var dimension: Int { layer.kind.hasCellState ? 2 * layer.hiddenSize : layer.hiddenSize }
    public var hiddenSize: Int { layer.hiddenSize }
    public var inputSize: Int { layer.inputSize }

    let W: [Double], R: [Double], b: [Double], bhn: [Double]
    /// A peephole LSTM's p_i, p_f, p_o [3·H]; empty without peepholes.
    public let peephole: [Double]
    /// W x̄ + b [G·H].
    let drive: [Double]

    /// - Throws: `ModelError.shape` when `input` does not have the layer's input size,
    ///   `ModelError.nonFinite` when it holds NaN or Inf.
    public init(layer: RecurrentLayer, input: [Double]) throws {
        guard input.count == layer.inputSize else {
            throw ModelError.shape("the constant input has \(input.count) values, the layer takes \(layer.inputSize)")
        }
        guard input.allSatisfy(\.isFinite) else { throw ModelError.nonFinite("the constant input contains NaN or Inf") }
        // The map's products and the analysis's solves split work over cores themselves;
        // OpenBLAS's own threads would spin against them (sched_yield, measured 11 s of system time).
        _ = openBLASSingleThreaded
        self.layer = layer
        self.input = input
        W = layer.W.map(Double.init); R = layer.R.map(Double.init); b = layer.b.map(Double.init)
        bhn = layer.hiddenBiasN.map(Double.init)
        peephole = layer.peephole.map(Double.init)
        let rows = layer.gateRows, width = layer.inputSize
        var d = b
        for r in 0..<rows { for k in 0..<width { d[r] += W[r * width + k] * input[k] } }
        drive = d
    }

    /// Whether a state lies where the map's outputs lie: h in (−1, 1) for the tanh RNN, the GRU
    /// (from any start inside it) and the LSTM (h = o·tanh(c)); h ≥ 0 for the ReLU RNN; c free.
    public func canProduce(_ state: ArraySlice<Double>) -> Bool {
        let h = state.prefix(hiddenSize)
        return layer.kind == .rnnReLU ? h.allSatisfy { $0 >= 0 } : h.allSatisfy { abs($0) < 1 }
    }

    /// The weights the kernels read, in Float64 and the canonical layout: W [G·H × I],
    /// R [G·H × H], b [G·H], and the kind's per-cell parameters (`RecurrentLayer.cellExtra`): the
    /// GRU's b_hn [H], a peephole LSTM's p [3·H], zeros [H] for the others.
    public var parameters: (W: [Double], R: [Double], b: [Double], extra: [Double]) {
        let extra = layer.cellExtra
        return (W, R, b, extra.isEmpty ? [Double](repeating: 0, count: hiddenSize) : extra.map(Double.init))
    }

    /// One step of `rows` states: `next` [rows × D] = F(s_r, x_r) and, when `jacobian` is true,
    /// ∂F/∂s [rows × D × D] (row-major, output index first) at each s_r. `inputs` [rows × I] gives
    /// each row its own input; nil means x̄ for every row.
    ///
    /// Jacobians are the analytic derivatives of METHOD.md §1's updates (derived in
    /// docs/METHOD.md §8): RNN diag(act′(a)) R; GRU and LSTM by the chain rule through every gate,
    /// the reset-before GRU including R_n·diag(h⊙r(1−r))·R_r, a peephole LSTM including the paths
    /// through p_i, p_f (from c) and p_o (from c'). ReLU′(0) = 0, as PyTorch takes it.
    public func step(states: [Double], inputs: [Double]? = nil, rows: Int, jacobian: Bool, workers: Int) -> (next: [Double], jacobian: [Double]) {
        let D = dimension, H = hiddenSize, GH = layer.gateRows, I = inputSize, kind = layer.kind
        let P = peephole, peepholes = !P.isEmpty
        precondition(states.count == rows * D && (inputs?.count ?? rows * I) == rows * I)
        // pre [rows × GH] = drive (or W x_r + b) + h · Rᵀ, the GRU's n block without R_n h.
        var pre = [Double](repeating: 0, count: rows * GH)
        var hs = [Double](repeating: 0, count: rows * H)
        for r in 0..<rows {
            for j in 0..<H { hs[r * H + j] = states[r * D + j] }
            if let inputs {
                for g in 0..<GH { pre[r * GH + g] = b[g] }
                cblas_dgemv(CblasRowMajor, CblasNoTrans, Int32(GH), Int32(I), 1, W, Int32(I),
                            Array(inputs[(r * I)..<((r + 1) * I)]), 1, 1, &pre[r * GH], 1)
            } else {
                for g in 0..<GH { pre[r * GH + g] = drive[g] }
            }
        }
        // Recurrent products: all blocks at once into rec [rows × GH].
        var rec = [Double](repeating: 0, count: rows * GH)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(GH), Int32(H), 1, hs, Int32(H), R, Int32(H), 0, &rec, Int32(GH))
        var next = [Double](repeating: 0, count: rows * D)
        // Every entry of J is written below, row by row on the workers (the LSTM's c columns get
        // their zeros there), so it is not zeroed first: a serial pass over rows × D² doubles.
        var J = [Double](unsafeUninitializedCapacity: jacobian ? rows * D * D : 0) { _, initialized in initialized = jacobian ? rows * D * D : 0 }
        let resetBefore = kind == .gru && !layer.resetAfter
        // The reset-before GRU needs r first: rec's n block becomes R_n (r⊙h).
        if resetBefore {
            var rh = [Double](repeating: 0, count: rows * H)
            for r in 0..<rows { for j in 0..<H { rh[r * H + j] = sigmoid(pre[r * GH + j] + rec[r * GH + j]) * hs[r * H + j] } }
            rec.withUnsafeMutableBufferPointer { out in
                R.withUnsafeBufferPointer { rp in
                    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(H), Int32(H), 1, rh, Int32(H),
                                rp.baseAddress! + 2 * H * H, Int32(H), 0, out.baseAddress! + 2 * H, Int32(GH))
                }
            }
        }
        pre.withUnsafeMutableBufferPointer { preB in rec.withUnsafeMutableBufferPointer { recB in hs.withUnsafeMutableBufferPointer { hsB in
        states.withUnsafeBufferPointer { sB in next.withUnsafeMutableBufferPointer { nB in J.withUnsafeMutableBufferPointer { jB in
        let preP = SendablePointer(preB.baseAddress!), recP = SendablePointer(recB.baseAddress!), hsP = SendablePointer(hsB.baseAddress!)
        let sP = SendablePointer(UnsafeMutablePointer(mutating: sB.baseAddress!)), nextP = SendablePointer(nB.baseAddress!)
        let jP = SendablePointer(jB.baseAddress ?? nB.baseAddress!)
        forEachRow(rows, workers: rows * D * D > 1 << 16 ? max(1, workers) : 1) { r in
            let pre = preP.pointer, rec = recP.pointer, hs = hsP.pointer, states = sP.pointer, next = nextP.pointer, J = jP.pointer
                let a = { (g: Int, j: Int) in pre[r * GH + g * H + j] + rec[r * GH + g * H + j] }
                let h = { (j: Int) in hs[r * H + j] }
                let jo = r * D * D
                switch kind {
                case .rnnTanh, .rnnReLU:
                    for i in 0..<H {
                        let ai = a(0, i)
                        let (y, dy) = kind == .rnnTanh ? (tanh(ai), 1 - tanh(ai) * tanh(ai)) : (max(0, ai), ai > 0 ? 1.0 : 0.0)
                        next[r * D + i] = y
                        if jacobian { for k in 0..<H { J[jo + i * D + k] = dy * R[i * H + k] } }
                    }
                case .lstm:
                    for i in 0..<H {
                        let c = states[r * D + H + i]
                        let ig = sigmoid(peepholes ? a(0, i) + P[i] * c : a(0, i)), fg = sigmoid(peepholes ? a(1, i) + P[H + i] * c : a(1, i))
                        let g = tanh(a(2, i))
                        let c2 = fg * c + ig * g, tc = tanh(c2)
                        let og = sigmoid(peepholes ? a(3, i) + P[2 * H + i] * c2 : a(3, i))
                        next[r * D + i] = og * tc
                        next[r * D + H + i] = c2
                        guard jacobian else { continue }
                        let di = g * ig * (1 - ig), df = c * fg * (1 - fg), dg = ig * (1 - g * g)
                        let dho = tc * og * (1 - og), dhc = og * (1 - tc * tc)
                        // With peepholes c' also moves o (dh/dc' gains dho·p_o), and c moves i and f.
                        let dhdc = peepholes ? dhc + dho * P[2 * H + i] : dhc
                        let dcdc = peepholes ? fg + di * P[i] + df * P[H + i] : fg
                        for k in 0..<H {
                            let dc = di * R[i * H + k] + df * R[(H + i) * H + k] + dg * R[(2 * H + i) * H + k]
                            J[jo + (H + i) * D + k] = dc
                            J[jo + i * D + k] = dho * R[(3 * H + i) * H + k] + dhdc * dc
                        }
                        // ∂/∂c is diagonal: zeros but for cell i's own c.
                        (J + jo + (H + i) * D + H).update(repeating: 0, count: H)
                        (J + jo + i * D + H).update(repeating: 0, count: H)
                        J[jo + (H + i) * D + H + i] = dcdc
                        J[jo + i * D + H + i] = dhdc * dcdc
                    }
                case .gru:
                    var outer: [Double] = []
                    if resetBefore && jacobian {
                        // M = R_n · diag(h ⊙ r(1 − r)) · R_r, the reset gate's path inside R_n (r⊙h).
                        var scaled = [Double](repeating: 0, count: H * H)
                        for m in 0..<H {
                            let rm = sigmoid(a(0, m)), w = h(m) * rm * (1 - rm)
                            for k in 0..<H { scaled[m * H + k] = w * R[m * H + k] }
                        }
                        outer = [Double](repeating: 0, count: H * H)
                        R.withUnsafeBufferPointer { rp in
                            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(H), Int32(H), Int32(H), 1,
                                        rp.baseAddress! + 2 * H * H, Int32(H), scaled, Int32(H), 0, &outer, Int32(H))
                        }
                    }
                    for i in 0..<H {
                        let rg = sigmoid(a(0, i)), z = sigmoid(a(1, i))
                        let m = rec[r * GH + 2 * H + i] + (resetBefore ? 0 : bhn[i])
                        let n = tanh(pre[r * GH + 2 * H + i] + (resetBefore ? m : rg * m))
                        next[r * D + i] = (1 - z) * n + z * h(i)
                        guard jacobian else { continue }
                        let dn = (1 - z) * (1 - n * n), dz = (h(i) - n) * z * (1 - z)
                        for k in 0..<H {
                            let rn = R[(2 * H + i) * H + k]
                            let throughN = resetBefore
                                ? rn * sigmoid(a(0, k)) + outer[i * H + k]
                                : m * rg * (1 - rg) * R[i * H + k] + rg * rn
                            J[jo + i * D + k] = dn * throughN + dz * R[(H + i) * H + k]
                        }
                        J[jo + i * D + i] += z
                    }
                }
        }
        } } } } } }
        return (next, J)
    }

    /// Runs every row from its state: `pulseSteps` steps under its own input `pulses[r]` [I]
    /// (nil: x̄), then under x̄ until it settles (‖s_{t+1} − s_t‖∞ < `tolerance`, the whole state)
    /// or `maxSteps` steps have run in all. Returns the final states and whether each settled.
    public func settle(states: [Double], pulses: [Double]?, rows: Int, pulseSteps: Int, maxSteps: Int,
                       tolerance: Double, workers: Int) -> (states: [Double], settled: [Bool]) {
        let D = dimension, I = inputSize
        var s = states
        var settled = [Bool](repeating: false, count: rows)
        var active = Array(0..<rows)
        var t = 0
        while t < maxSteps && !active.isEmpty {
            let batch = active.flatMap { s[($0 * D)..<(($0 + 1) * D)] }
            let inputs: [Double]? = t < pulseSteps ? pulses.map { p in active.flatMap { p[($0 * I)..<(($0 + 1) * I)] } } : nil
            let next = step(states: batch, inputs: inputs, rows: active.count, jacobian: false, workers: workers).next
            var still: [Int] = []
            for (k, r) in active.enumerated() {
                var change = 0.0
                for d in 0..<D {
                    change = max(change, abs(next[k * D + d] - s[r * D + d]))
                    s[r * D + d] = next[k * D + d]
                }
                if t >= pulseSteps && change < tolerance { settled[r] = true } else { still.append(r) }
            }
            active = still
            t += 1
        }
        return (s, settled)
    }
}

@inline(__always) func sigmoid(_ x: Double) -> Double { 1 / (1 + exp(-x)) }

extension CPUBackend {
    /// `LayerMap.step`, the reference.
    public func mapStep(_ map: LayerMap, states: [Double], inputs: [Double]?, rows: Int, jacobian: Bool) throws -> (next: [Double], jacobian: [Double]) {
        map.step(states: states, inputs: inputs, rows: rows, jacobian: jacobian, workers: threads)
    }

    /// `LayerMap.settle`, the reference.
    public func mapSettle(_ map: LayerMap, states: [Double], pulses: [Double]?, rows: Int, pulseSteps: Int, maxSteps: Int,
                          tolerance: Double) throws -> (states: [Double], settled: [Bool]) {
        map.settle(states: states, pulses: pulses, rows: rows, pulseSteps: pulseSteps, maxSteps: maxSteps, tolerance: tolerance, workers: threads)
    }
}
