import Foundation

/// Ablation applied after every step of a layer: per configuration a factor per cell (1 free,
/// 0 clamped), and the values clamped cells are held at.
struct StepMask: @unchecked Sendable {
    /// [configurations × H]; row r of the batch uses configuration r / rowsPerConfiguration.
    var keep: UnsafePointer<Float>
    var rowsPerConfiguration: Int
    /// [H] each.
    var fillH: UnsafePointer<Float>, fillC: UnsafePointer<Float>
}

/// Runs `body(row)` for every row, spread over `workers` threads.
func forEachRow(_ rows: Int, workers: Int, _ body: @Sendable (Int) -> Void) {
    let chunks = min(rows, workers * 4)
    if chunks <= 1 { for r in 0..<rows { body(r) }; return }
    DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
        for r in stride(from: chunk, to: rows, by: chunks) { body(r) }
    }
}

extension RecurrentLayer {
    /// Advances `rows` independent rows of this layer by one step, in place: the only place the
    /// batched forward and the scalar reference (`step`) apply a cell's update.
    ///
    /// - `gates` [rows × G·H]: on entry x_t·Wᵀ + b per row; overwritten (a peephole LSTM's i, f
    ///   and o blocks end as the full pre-activations its gates saw, peephole terms included).
    /// - `h`, `c` [rows × H]: the state at t − 1 (c is read and written for LSTMs only); on exit
    ///   the state at t. `hIsZero` skips the recurrent products (the first step from h = 0).
    /// - `scratch` [rows × H]: GRU work space.
    /// - `mask`: ablation, applied to h and c after the update.
    /// - `output`: where row r's h_t is also stored (nil: not stored).
    func advance(rows: Int, gates: UnsafeMutablePointer<Float>, h: UnsafeMutablePointer<Float>, c: UnsafeMutablePointer<Float>,
                 scratch: UnsafeMutablePointer<Float>, hIsZero: Bool, workers: Int, mask: StepMask?,
                 output: (@Sendable (Int) -> UnsafeMutablePointer<Float>)?) {
        let hs = hiddenSize, width = gateRows, kind = self.kind, resetAfter = self.resetAfter
        let G = SendablePointer(gates), Hp = SendablePointer(h), Cp = SendablePointer(c), S = SendablePointer(scratch)
        let peepholes = hasPeephole
        R.withUnsafeBufferPointer { rBuffer in hiddenBiasN.withUnsafeBufferPointer { bhnBuffer in peephole.withUnsafeBufferPointer { pBuffer in
            let r = SendablePointer(UnsafeMutablePointer(mutating: rBuffer.baseAddress!))
            let bhn = SendablePointer(UnsafeMutablePointer(mutating: bhnBuffer.baseAddress ?? UnsafePointer(scratch)))
            let peep = SendablePointer(UnsafeMutablePointer(mutating: pBuffer.baseAddress ?? UnsafePointer(scratch)))
            // Every block but the GRU's n reads R·h_{t-1} directly.
            let direct = kind == .gru ? 2 * hs : width
            /// The products of rows r0..<r1 (one worker's block; rows depend only on themselves).
            @Sendable func products(_ r0: Int, _ r1: Int) {
                let m = r1 - r0
                guard m > 0 else { return }
                if !hIsZero {
                    multiplyTransposed(m: m, n: direct, k: hs, Hp.pointer + r0 * hs, lda: hs, r.pointer, ldb: hs,
                                       G.pointer + r0 * width, ldc: width, beta: 1, workers: 1)
                }
                if kind == .gru && resetAfter {
                    // scratch = h·R_nᵀ; the reset gate multiplies it (plus b_hn) in the update.
                    multiplyTransposed(m: m, n: hs, k: hs, Hp.pointer + r0 * hs, lda: hs, r.pointer + 2 * hs * hs, ldb: hs,
                                       S.pointer + r0 * hs, ldc: hs, beta: 0, workers: 1)
                }
            }
            /// The update of one row from its pre-activations, in place.
            @Sendable func update(_ row: Int) {
                let pre = G.pointer + row * width, hr = Hp.pointer + row * hs, cr = Cp.pointer + row * hs
                let sr = S.pointer + row * hs
                let y = output?(row)
                for j in stride(from: 0, to: hs, by: 16) {
                    let w = min(16, hs - j)
                    var cv = Float32x16()
                    var hv: Float32x16
                    switch kind {
                    case .lstm where peepholes:
                        // The gates' full pre-activations go back into `gates` (the relevance tape reads them).
                        cv = .load(cr + j, count: w)
                        var ai = Float32x16.load(pre + j, count: w), af = Float32x16.load(pre + hs + j, count: w)
                        var ao = Float32x16.load(pre + 3 * hs + j, count: w)
                        let p = peep.pointer
                        hv = LSTMCell.update(i: &ai, f: &af, g: .load(pre + 2 * hs + j, count: w), o: &ao, c: &cv,
                                             peephole: (.load(p + j, count: w), .load(p + hs + j, count: w), .load(p + 2 * hs + j, count: w)))
                        ai.store(pre + j, count: w); af.store(pre + hs + j, count: w); ao.store(pre + 3 * hs + j, count: w)
                    case .lstm:
                        cv = .load(cr + j, count: w)
                        hv = LSTMCell.update(i: .load(pre + j, count: w), f: .load(pre + hs + j, count: w),
                                             g: .load(pre + 2 * hs + j, count: w), o: .load(pre + 3 * hs + j, count: w), c: &cv)
                    case .gru:
                        var n = Float32x16.load(pre + 2 * hs + j, count: w)
                        if resetAfter {
                            let recurrent = Float32x16.load(sr + j, count: w) + .load(bhn.pointer + j, count: w)
                            n = fmadd(GRUCell.reset(.load(pre + j, count: w)), recurrent, n)
                        }
                        hv = GRUCell.update(z: .load(pre + hs + j, count: w), n: n, h: .load(hr + j, count: w))
                    case .rnnTanh, .rnnReLU:
                        hv = RNNCell.update(.load(pre + j, count: w), relu: kind == .rnnReLU)
                    }
                    if let mask {
                        let k = Float32x16.load(mask.keep + (row / mask.rowsPerConfiguration) * hs + j, count: w)
                        let off = 1 - k
                        hv = hv * k + off * Float32x16.load(mask.fillH + j, count: w)
                        cv = cv * k + off * Float32x16.load(mask.fillC + j, count: w)
                    }
                    hv.store(hr + j, count: w)
                    if kind.hasCellState { cv.store(cr + j, count: w) }
                    if let y { hv.store(y + j, count: w) }
                }
            }
            if kind == .gru && !resetAfter {
                // The reset-before GRU needs (r ⊙ h)·R_nᵀ between the products and the update.
                if !hIsZero {
                    multiplyTransposed(m: rows, n: direct, k: hs, h, lda: hs, r.pointer, ldb: hs, gates, ldc: width, beta: 1, workers: workers)
                    // scratch = r ⊙ h, then the n block gets (r ⊙ h)·R_nᵀ.
                    forEachRow(rows, workers: workers) { row in
                        let pre = G.pointer + row * width, hr = Hp.pointer + row * hs, sr = S.pointer + row * hs
                        for j in stride(from: 0, to: hs, by: 16) {
                            let w = min(16, hs - j)
                            (GRUCell.reset(.load(pre + j, count: w)) * .load(hr + j, count: w)).store(sr + j, count: w)
                        }
                    }
                    multiplyTransposed(m: rows, n: hs, k: hs, scratch, lda: hs, r.pointer + 2 * hs * hs, ldb: hs, gates + 2 * hs, ldc: width,
                                       beta: 1, workers: workers)
                }
                forEachRow(rows, workers: workers, update)
                return
            }
            // Each worker takes a block of rows through its products and straight on to their
            // update while the pre-activations are still in cache: one hand-off per step.
            let blocks = rows * direct * hs >= 1 << 18 ? min(max(1, workers), max(1, rows / 16)) : 1
            if blocks == 1 {
                products(0, rows)
                for row in 0..<rows { update(row) }
                return
            }
            DispatchQueue.concurrentPerform(iterations: blocks) { i in
                let r0 = rows * i / blocks, r1 = rows * (i + 1) / blocks
                products(r0, r1)
                for row in r0..<r1 { update(row) }
            }
        }}}
    }

    /// out[rows × G·H] = x[rows × width] · Wᵀ + b.
    func project(_ x: UnsafePointer<Float>, rows: Int, into out: UnsafeMutablePointer<Float>, workers: Int) {
        let width = gateRows
        for r in 0..<rows { (out + r * width).update(from: b, count: width) }
        W.withUnsafeBufferPointer { w in
            multiplyTransposed(m: rows, n: width, k: inputSize, x, lda: inputSize, w.baseAddress!, ldb: inputSize,
                               out, ldc: width, beta: 1, workers: workers)
        }
    }

    /// One step of the whole layer for one sequence (the reference that rest states and data
    /// means use), through the same update as the batched forward. `c` is the LSTM's memory and
    /// is left alone for other kinds.
    public func step(_ x: ArraySlice<Float>, h: inout [Float], c: inout [Float]) {
        precondition(x.count == inputSize && h.count == hiddenSize && c.count == hiddenSize)
        var gates = [Float](repeating: 0, count: gateRows), scratch = [Float](repeating: 0, count: hiddenSize)
        let input = Array(x)
        input.withUnsafeBufferPointer { xp in
            gates.withUnsafeMutableBufferPointer { g in
                project(xp.baseAddress!, rows: 1, into: g.baseAddress!, workers: 1)
                h.withUnsafeMutableBufferPointer { hp in
                    c.withUnsafeMutableBufferPointer { cp in
                        scratch.withUnsafeMutableBufferPointer { sp in
                            advance(rows: 1, gates: g.baseAddress!, h: hp.baseAddress!, c: cp.baseAddress!,
                                    scratch: sp.baseAddress!, hIsZero: false, workers: 1, mask: nil, output: nil)
                        }
                    }
                }
            }
        }
    }
}
