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
        pre.withUnsafeMutableBufferPointer { preB in rec.withUnsafeMutableBufferPointer { recB in hs.withUnsafeMutableBufferPointer { hsB in
        states.withUnsafeBufferPointer { sB in next.withUnsafeMutableBufferPointer { nB in J.withUnsafeMutableBufferPointer { jB in
            kind.withRules(MapStep(map: self, rows: rows, jacobian: jacobian, workers: workers, pre: preB.baseAddress!,
                                      rec: recB.baseAddress!, hs: hsB.baseAddress!, states: sB.baseAddress!, next: nB.baseAddress!,
                                      J: jB.baseAddress ?? nB.baseAddress!))
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

/// The element-wise part of `LayerMap.step` (every row on the workers), run with one kind's
/// rules (`CellKind.withRules`).
private struct MapStep: CellRulesVisitor {
    let map: LayerMap, rows: Int, jacobian: Bool, workers: Int
    /// pre [rows × G·H] (W x + b, the GRU's n block without R_n h), rec [rows × G·H] (h · Rᵀ),
    /// hs [rows × H]; states [rows × D]; next [rows × D] and J [rows × D × D] (written).
    let pre: UnsafeMutablePointer<Double>, rec: UnsafeMutablePointer<Double>, hs: UnsafeMutablePointer<Double>
    let states: UnsafePointer<Double>, next: UnsafeMutablePointer<Double>, J: UnsafeMutablePointer<Double>

    func visit<Rules: CellRules>(_: Rules.Type) {
        let layer = map.layer, H = layer.hiddenSize, GH = layer.gateRows, D = map.dimension
        map.R.withUnsafeBufferPointer { R in map.bhn.withUnsafeBufferPointer { bhn in map.peephole.withUnsafeBufferPointer { P in
            let context = MapRows(H: H, GH: GH, D: D, rows: rows, jacobian: jacobian, layer: layer, R: R.baseAddress!,
                                  bhn: bhn.baseAddress, peephole: P.isEmpty ? nil : P.baseAddress!,
                                  pre: SendablePointer(pre), rec: SendablePointer(rec), hs: SendablePointer(hs),
                                  states: SendablePointer(UnsafeMutablePointer(mutating: states)), next: SendablePointer(next),
                                  J: SendablePointer(J))
            Rules.prepareMap(context)
            forEachRow(rows, workers: rows * D * D > 1 << 16 ? max(1, workers) : 1) { r in Rules.mapRow(context, r) }
        } } }
    }
}

/// One kind's layer map in float64 (METHOD.md §1, §8): its step F(s, x) and the Jacobian ∂F/∂s,
/// row by row, beside the kind's other rules in `Cells/`. `CellKind.withRules` is the one
/// place a kind value becomes its rules.
protocol CellMapRules: SendableMetatype {
    /// Whatever the rows need first from all rows at once (the reset-before GRU's R_n (r⊙h)).
    static func prepareMap(_ m: MapRows)
    /// Row r: `m.next` [D] = F(s_r), and with `m.jacobian` its Jacobian rows [D × D].
    static func mapRow(_ m: MapRows, _ r: Int)
}

extension CellMapRules {
    static func prepareMap(_ m: MapRows) {}
}


/// What a kind's map rules read and write for the rows of one `LayerMap.step`.
struct MapRows: @unchecked Sendable {
    let H: Int, GH: Int, D: Int, rows: Int, jacobian: Bool
    let layer: RecurrentLayer
    /// R [G·H × H], b_hn [H] (the GRU's), the peepholes p_i, p_f, p_o [3·H] (nil without).
    let R: UnsafePointer<Double>, bhn: UnsafePointer<Double>?, peephole: UnsafePointer<Double>?
    let pre: SendablePointer<Double>, rec: SendablePointer<Double>, hs: SendablePointer<Double>
    let states: SendablePointer<Double>, next: SendablePointer<Double>, J: SendablePointer<Double>

    /// Gate g's pre-activation of cell j in row r: input part plus recurrent part.
    @inline(__always) func a(_ r: Int, _ g: Int, _ j: Int) -> Double { pre.pointer[r * GH + g * H + j] + rec.pointer[r * GH + g * H + j] }
}
