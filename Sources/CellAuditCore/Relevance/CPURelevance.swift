import Foundation
import Synchronization

/// A zeroed float buffer owned by a class, so the backward passes can hand raw pointers to
/// BLAS and to their row workers without nesting a closure per array.
final class FloatBuffer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int
    init(_ count: Int, value: Float = 0) {
        self.count = count
        pointer = .allocate(capacity: max(1, count))
        pointer.initialize(repeating: value, count: max(1, count))
    }
    deinit { pointer.deallocate() }
    var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
    subscript(i: Int) -> Float {
        get { pointer[i] }
        set { pointer[i] = newValue }
    }
}

/// One layer's forward pass over N rows and T steps, kept for a backward pass (the reference
/// code ArrasL/LRP_for_LSTM keeps every intermediate likewise). Step-major: step t's rows are
/// contiguous.
struct LayerTape: @unchecked Sendable {
    let layer: RecurrentLayer
    let rows: Int, steps: Int
    /// [T][N][G·H]: the gate pre-activations as `RecurrentLayer.advance` leaves them (for the
    /// reset-after GRU the n block holds W_n x + b_in, without r⊙(R_n h + b_hn)).
    let pre: FloatBuffer
    /// [T][N][H], GRU only: R_n h_{t−1} (reset-after) or r⊙h_{t−1} (reset-before).
    let aux: FloatBuffer
    /// [T][N][H]: h_t, and c_t for the LSTM.
    let h: FloatBuffer, c: FloatBuffer

    /// Runs `layer` over the input, whose element (row r, step t, i) is at
    /// `input[r·rowStride + t·stepStride + i]`, through the same `advance` as the forward pass.
    /// The input projection of every step is one product written straight into `pre`, and each
    /// step advances in place in its own slots of the record (no copies of the gates).
    init(_ layer: RecurrentLayer, input: UnsafePointer<Float>, rowStride: Int, stepStride: Int, rows: Int, steps: Int, workers: Int) {
        let hs = layer.hiddenSize, width = layer.gateRows, inputs = layer.inputSize
        self.layer = layer; self.rows = rows; self.steps = steps
        pre = FloatBuffer(steps * rows * width)
        aux = FloatBuffer(layer.kind == .gru ? steps * rows * hs : 0)
        h = FloatBuffer(steps * rows * hs)
        c = FloatBuffer(layer.kind.hasCellState ? steps * rows * hs : 0)
        // The input, step-major ([T][N][I]) as the record is.
        var stepMajor: FloatBuffer?
        if stepStride != rows * rowStride || rowStride != inputs {
            let copy = FloatBuffer(steps * rows * inputs)
            for t in 0..<steps {
                for r in 0..<rows { (copy.pointer + (t * rows + r) * inputs).update(from: input + r * rowStride + t * stepStride, count: inputs) }
            }
            stepMajor = copy
        }
        let x = stepMajor.map { UnsafePointer($0.pointer) } ?? input
        let unused = FloatBuffer(rows * hs)   // c for kinds without one, scratch for non-GRUs
        layer.W.withUnsafeBufferPointer { w in
            layer.b.withUnsafeBufferPointer { b in
                for row in 0..<(steps * rows) { (pre.pointer + row * width).update(from: b.baseAddress!, count: width) }
            }
            multiplyTransposed(m: steps * rows, n: width, k: inputs, x, lda: inputs, w.baseAddress!, ldb: inputs,
                               pre.pointer, ldc: width, beta: 1, workers: workers)
        }
        for t in 0..<steps {
            let state = h.pointer + t * rows * hs
            let memory = layer.kind.hasCellState ? c.pointer + t * rows * hs : unused.pointer
            if t > 0 {
                state.update(from: state - rows * hs, count: rows * hs)
                if layer.kind.hasCellState { memory.update(from: memory - rows * hs, count: rows * hs) }
            }
            layer.advance(rows: rows, gates: pre.pointer + t * rows * width, h: state, c: memory,
                          scratch: layer.kind == .gru ? aux.pointer + t * rows * hs : unused.pointer,
                          hIsZero: t == 0, workers: workers, mask: nil, output: nil)
        }
    }

    /// Row r's h at step t − 1 (nil at t = 0: the zero initial state).
    @inline(__always) func previousH(_ t: Int, _ r: Int) -> UnsafeMutablePointer<Float>? {
        t > 0 ? h.pointer + ((t - 1) * rows + r) * layer.hiddenSize : nil
    }
}

/// Where one layer's backward pass reads and writes.
struct BackwardIO: @unchecked Sendable {
    /// The layer's input, element (row r, step t, i) at `input[r·rowStride + t·stepStride + i]`.
    var input: UnsafePointer<Float>, rowStride: Int, stepStride: Int
    /// [T][N][H]: what reaches h_t from outside the layer (the readout or the layer above).
    var injected: UnsafePointer<Float>
    /// [T][N][I]: what the layer sends to its input (relevance, or ∂score/∂x for gradients).
    var toInput: UnsafeMutablePointer<Float>
    /// [N][T][C], this layer's cells at columns `cellOffset ..< cellOffset + H`.
    var cells: UnsafeMutablePointer<Float>, cellOffset: Int, totalCells: Int
    /// [N]: relevance reaching the initial state (added to), and the smallest denominator (LRP).
    var rest: UnsafeMutablePointer<Float>, minimumDenominator: UnsafeMutablePointer<Float>
}

extension LayerTape {
    /// LRP through this layer from step T − 1 down to 0 (the rules of `RelevanceJob.Rule.lrp`,
    /// docs/METHOD.md "Relevance"): per step, an element-wise pass per row (16 cells at a time,
    /// gates recomputed from the recorded pre-activations) forms the messages
    /// m_j = R_j / (z_j + ε·s_j) of the layer's maps, then one product with W sends them to the
    /// input and one with R to h_{t−1}. The bias-and-stabiliser share of a map is one constant per
    /// row, bias_factor·Σ_j (b_j + ε·s_j)·m_j / N, added to every input of that map.
    func lrpBackward(_ io: BackwardIO, epsilon eps: Float, biasFactor bf: Float, workers: Int) {
        struct Pass: CellRulesVisitor {
            let tape: LayerTape, io: BackwardIO, epsilon: Float, biasFactor: Float, workers: Int
            func visit<Rules: CellRules>(_ rules: Rules.Type) {
                tape.lrpBackward(rules, io, epsilon: epsilon, biasFactor: biasFactor, workers: workers)
            }
        }
        layer.kind.withRules(Pass(tape: self, io: io, epsilon: eps, biasFactor: bf, workers: workers))
    }

    fileprivate func lrpBackward<Rules: CellBackwardRules>(_: Rules.Type, _ io: BackwardIO, epsilon eps: Float, biasFactor bf: Float, workers: Int) {
        let L = layer, H = L.hiddenSize, I = L.inputSize, N = rows, T = steps, GH = L.gateRows
        let rec = FloatBuffer(N * H), memory = FloatBuffer(N * H), direct = FloatBuffer(N * H)
        let m = FloatBuffer(N * H), mu = FloatBuffer(N * H), kIn = FloatBuffer(N), kRecurrent = FloatBuffer(N)
        // The gate block whose map carries the signal: g (LSTM) and n (GRU) are block 2.
        let signalBlock = L.kind.gateNames.count > 1 ? 2 : 0
        let mapInputs = Float(I + H)
        let bhnStore = FloatBuffer(H)
        for j in 0..<L.hiddenBiasN.count { bhnStore[j] = L.hiddenBiasN[j] }
        let bStore = FloatBuffer(GH)
        for j in 0..<GH { bStore[j] = L.b[j] }
        let fromU = Rules.lrpRecurrentReadsU(resetAfter: L.resetAfter)
        L.W.withUnsafeBufferPointer { wBuf in
        L.R.withUnsafeBufferPointer { rBuf in
            for t in stride(from: T - 1, through: 0, by: -1) {
                forEachRow(N, workers: workers) { r in
                    let rr = rec.pointer + r * H
                    let cellRow = io.cells + (r * T + t) * io.totalCells + io.cellOffset
                    let inj = io.injected + (t * N + r) * H
                    // The signal's relevance at h_t.
                    forEachLaneGroup(H) { j, w in
                        let v = Float32x16.load(inj + j, count: w) + .load(rr + j, count: w)
                        v.store(cellRow + j, count: w); v.store(rr + j, count: w)
                    }
                    var row = LRPRow(H: H, epsilon: eps, biasFactor: bf, mapInputs: mapInputs, tape: self, t: t, r: r,
                                     pre: self.pre.pointer + (t * N + r) * GH, b: bStore.pointer, bhn: bhnStore.pointer, atH: rr,
                                     messages: m.pointer + r * H, memory: memory.pointer + r * H, direct: direct.pointer + r * H,
                                     uMessages: mu.pointer + r * H)
                    Rules.lrpMessages(&row)
                    kIn[r] = row.toInputShare
                    kRecurrent[r] = row.toRecurrentShare
                    io.minimumDenominator[r] = min(io.minimumDenominator[r], row.least.min())
                }
                // To the input: R_x = x ⊙ (m · W_block) + k.
                let toX = SendablePointer(io.toInput + t * N * I)
                multiply(m: N, n: I, k: H, m.pointer, lda: H, wBuf.baseAddress! + signalBlock * H * I, ldb: I, toX.pointer, ldc: I, beta: 0, workers: workers)
                // To h_{t−1}: through R_block (the GRU reset-after: from u through R_n).
                multiply(m: N, n: H, k: H, fromU ? mu.pointer : m.pointer, lda: H, rBuf.baseAddress! + signalBlock * H * H, ldb: H, rec.pointer, ldc: H,
                         beta: 0, workers: workers)
                forEachRow(N, workers: workers) { r in
                    let x = io.input + r * io.rowStride + t * io.stepStride, out = toX.pointer + r * I
                    for i in 0..<I { out[i] = x[i] * out[i] + kIn[r] }
                    let rr = rec.pointer + r * H, dr = direct.pointer + r * H
                    let source = Rules.lrpRecurrentInput(self, t: t, r: r), k = kRecurrent[r]
                    forEachLaneGroup(H) { j, w in
                        var v = fmadd(load(source, j, w), .load(rr + j, count: w), k)
                        if Rules.hasDirectPath { v += .load(dr + j, count: w) }
                        v.store(rr + j, count: w)
                    }
                }
            }
            for r in 0..<N {
                var total: Float = 0
                for j in 0..<H { total += rec[r * H + j] + (L.kind.hasCellState ? memory[r * H + j] : 0) }
                io.rest[r] += total
            }
        }
        }
    }

    /// Backpropagation through time of ∂score/∂(everything) through this layer, the unmodified
    /// network's gradient. `io.injected` holds ∂score/∂h_t from outside; `io.toInput` receives
    /// ∂score/∂x_t; cells receive h_t ⊙ ∂score/∂h_t.
    func gradientBackward(_ io: BackwardIO, workers: Int) {
        struct Pass: CellRulesVisitor {
            let tape: LayerTape, io: BackwardIO, workers: Int
            func visit<Rules: CellRules>(_ rules: Rules.Type) { tape.gradientBackward(rules, io, workers: workers) }
        }
        layer.kind.withRules(Pass(tape: self, io: io, workers: workers))
    }

    fileprivate func gradientBackward<Rules: CellBackwardRules>(_: Rules.Type, _ io: BackwardIO, workers: Int) {
        let L = layer, H = L.hiddenSize, I = L.inputSize, N = rows, T = steps, GH = L.gateRows
        let rec = FloatBuffer(N * H), memory = FloatBuffer(N * H), direct = FloatBuffer(N * H), q = FloatBuffer(N * H)
        let ma = FloatBuffer(N * GH), mb = FloatBuffer(N * GH)
        let bhnStore = FloatBuffer(H)
        for j in 0..<L.hiddenBiasN.count { bhnStore[j] = L.hiddenBiasN[j] }
        // Peepholes (p_i, p_f, p_o): o's reads c_t, i's and f's c_{t−1}, so each adds a path for ∂c.
        let peepholes = L.hasPeephole, peepStore = FloatBuffer(L.peephole.count)
        for j in 0..<L.peephole.count { peepStore[j] = L.peephole[j] }
        let relu = L.kind == .rnnReLU
        L.W.withUnsafeBufferPointer { wBuf in
        L.R.withUnsafeBufferPointer { rBuf in
            let w = wBuf.baseAddress!, rw = rBuf.baseAddress!
            for t in stride(from: T - 1, through: 0, by: -1) {
                forEachRow(N, workers: workers) { r in
                    let inj = io.injected + (t * N + r) * H, rr = rec.pointer + r * H
                    let ht = self.h.pointer + (t * N + r) * H
                    let cellRow = io.cells + (r * T + t) * io.totalCells + io.cellOffset
                    forEachLaneGroup(H) { j, n in
                        let dh = Float32x16.load(inj + j, count: n) + .load(rr + j, count: n)
                        (Float32x16.load(ht + j, count: n) * dh).store(cellRow + j, count: n)
                        dh.store(rr + j, count: n)
                    }
                    let row = GradientRow(H: H, tape: self, t: t, r: r, pre: self.pre.pointer + (t * N + r) * GH, bhn: bhnStore.pointer,
                                          dh: rr, dGates: ma.pointer + r * GH, dGatesRecurrent: mb.pointer + r * GH,
                                          memory: memory.pointer + r * H, direct: direct.pointer + r * H,
                                          peephole: peepholes ? peepStore.pointer : nil, relu: relu)
                    forEachLaneGroup(H) { j, n in Rules.gradientLanes(row, j: j, n: n) }
                }
                Rules.gradientRecurrent(GradientProducts(N: N, H: H, GH: GH, t: t, workers: workers, tape: self, R: rw, dGates: ma.pointer,
                                                         dGatesRecurrent: mb.pointer, scratch: q.pointer, direct: direct.pointer,
                                                         toPrevious: rec.pointer))
                multiply(m: N, n: I, k: GH, ma.pointer, lda: GH, w, ldb: I, io.toInput + t * N * I, ldc: I, beta: 0, workers: workers)
            }
        }
        }
    }
}

extension CPUBackend {
    /// Relevance of every input value and every cell for one readout output per sequence
    /// (`RelevanceJob`), batched over the sequences: a forward pass that keeps its intermediates
    /// (`LayerTape`), then one backward pass per layer from the top, each step two matrix
    /// products (to the input and to h_{t−1}) around element-wise rules. Sequences are taken in
    /// chunks whose tapes fit `forwardWorkingSetBytes`.
    public func relevance(_ job: RelevanceJob) throws -> RelevanceResult {
        if job.inputs.isPadded { return try job.byLength { try relevance($0) } }
        let steps = job.inputs.steps
        // Each directed layer's record, plus a level's output and its directions' shares (both directions).
        let perSequence = job.network.layers.reduce(0) { $0 + steps * ($1.gateRows + 3 * $1.hiddenSize + ($1.direction == .reverse ? 2 * $1.inputSize : 0)) }
            * MemoryLayout<Float>.stride
        return try job.inChunks(bytes: forwardWorkingSetBytes, perSequenceBytes: perSequence, relevanceInParallel)
    }

    /// Sequences are independent: each thread explains its own block of them from start to end,
    /// with single-threaded products, so no step waits for another thread (per-step hand-offs cost
    /// more than the small products they split). Blocks of fewer than 16 sequences are not split.
    private func relevanceInParallel(_ job: RelevanceJob) throws -> RelevanceResult {
        let n = job.inputs.count, pieces = min(threads, n / 16)
        guard pieces > 1 else { return relevanceChunk(job, workers: threads) }
        let slices = try (0..<pieces).map { try job.slice((n * $0 / pieces)..<(n * ($0 + 1) / pieces)) }
        let results = Mutex([RelevanceResult?](repeating: nil, count: pieces))
        DispatchQueue.concurrentPerform(iterations: pieces) { i in
            let r = self.relevanceChunk(slices[i], workers: 1)
            results.withLock { $0[i] = r }
        }
        return .concatenating(results.withLock { $0.map { $0! } })
    }

    private func relevanceChunk(_ job: RelevanceJob, workers threads: Int) -> RelevanceResult {
        let net = job.network, n = job.inputs.count, steps = job.inputs.steps, width = job.inputs.width
        let cellsTotal = net.cellCount
        let x = FloatBuffer(job.inputs.values.count)
        job.inputs.values.withUnsafeBufferPointer { x.pointer.update(from: $0.baseAddress!, count: $0.count) }
        /// Level l's input, element (row r, time t, i) at `pointer[r·rowStride + t·stepStride + i]`:
        /// the data for level 0, the level below's time-ordered output [T][N][W] above it.
        var outputs: [FloatBuffer] = []
        func levelInput(_ l: Int) -> (pointer: UnsafePointer<Float>, rowStride: Int, stepStride: Int, width: Int) {
            if l == 0 { return (UnsafePointer(x.pointer), steps * width, width, width) }
            let w = net.outputWidth(ofLevel: l - 1)
            return (UnsafePointer(outputs[l - 1].pointer), w, n * w, w)
        }
        /// A directed layer's view of its level's input, in its own processing time: a reverse
        /// layer reads from the last step back (a negative step stride from step T − 1).
        func ownTime(_ l: Int, _ layer: RecurrentLayer) -> (pointer: UnsafePointer<Float>, rowStride: Int, stepStride: Int) {
            let v = levelInput(l)
            return layer.direction == .reverse ? (v.pointer + (steps - 1) * v.stepStride, v.rowStride, -v.stepStride)
                : (v.pointer, v.rowStride, v.stepStride)
        }
        var tapes: [[LayerTape]] = []
        for (l, level) in net.levels.enumerated() {
            let levelTapes = level.map { index in
                let layer = net.layers[index], view = ownTime(l, layer)
                return LayerTape(layer, input: view.pointer, rowStride: view.rowStride, stepStride: view.stepStride, rows: n, steps: steps,
                                 workers: threads)
            }
            tapes.append(levelTapes)
            // The level's output in time order, directions side by side: a lone forward layer's own record.
            if levelTapes.count == 1 && levelTapes[0].layer.direction == .forward {
                outputs.append(levelTapes[0].h)
            } else {
                let w = net.outputWidth(ofLevel: l), out = FloatBuffer(steps * n * w)
                var offset = 0
                for tape in levelTapes {
                    let h = tape.layer.hiddenSize, reverse = tape.layer.direction == .reverse
                    for t in 0..<steps {
                        let time = reverse ? steps - 1 - t : t
                        for r in 0..<n { (out.pointer + (time * n + r) * w + offset).update(from: tape.h.pointer + (t * n + r) * h, count: h) }
                    }
                    offset += h
                }
                outputs.append(out)
            }
        }
        let (injectedTop, score, readoutMinimum) = job.readoutInjection(hidden: outputs.last!.pointer)
        var injected = FloatBuffer(injectedTop.count)
        injectedTop.withUnsafeBufferPointer { injected.pointer.update(from: $0.baseAddress!, count: $0.count) }
        let cells = FloatBuffer(n * steps * cellsTotal), rest = FloatBuffer(n)
        let minimum = FloatBuffer(n)
        for s in 0..<n { minimum[s] = readoutMinimum[s] }
        let layout = net.layout
        func backward(_ tape: LayerTape, _ io: BackwardIO) {
            switch job.rule {
            case .lrp(let epsilon, let biasFactor): tape.lrpBackward(io, epsilon: epsilon, biasFactor: biasFactor, workers: threads)
            case .gradientTimesInput: tape.gradientBackward(io, workers: threads)
            }
        }
        for l in stride(from: net.levels.count - 1, through: 0, by: -1) {
            let inputs = levelInput(l).width
            if tapes[l].count == 1 && tapes[l][0].layer.direction == .forward {
                let tape = tapes[l][0], view = ownTime(l, tape.layer)
                let toInput = FloatBuffer(steps * n * inputs)
                backward(tape, BackwardIO(input: view.pointer, rowStride: view.rowStride, stepStride: view.stepStride,
                                          injected: injected.pointer, toInput: toInput.pointer, cells: cells.pointer,
                                          cellOffset: layout.range(ofLayer: l).lowerBound, totalCells: cellsTotal, rest: rest.pointer,
                                          minimumDenominator: minimum.pointer))
                injected = toInput
                continue
            }
            // Each direction takes its columns of what reaches the level's output, runs back in its
            // own time, and sends its share to the level's input, which sums them in time order.
            let w = net.outputWidth(ofLevel: l), toLevelInput = FloatBuffer(steps * n * inputs)
            var offset = 0
            for tape in tapes[l] {
                let h = tape.layer.hiddenSize, reverse = tape.layer.direction == .reverse, view = ownTime(l, tape.layer)
                let own = FloatBuffer(steps * n * h), toInput = FloatBuffer(steps * n * inputs)
                for t in 0..<steps {
                    let time = reverse ? steps - 1 - t : t
                    for r in 0..<n { (own.pointer + (t * n + r) * h).update(from: injected.pointer + (time * n + r) * w + offset, count: h) }
                }
                let cellRange = layout.range(ofLayer: l, direction: tape.layer.direction)
                backward(tape, BackwardIO(input: view.pointer, rowStride: view.rowStride, stepStride: view.stepStride,
                                          injected: own.pointer, toInput: toInput.pointer, cells: cells.pointer,
                                          cellOffset: cellRange.lowerBound, totalCells: cellsTotal, rest: rest.pointer,
                                          minimumDenominator: minimum.pointer))
                for t in 0..<steps {
                    let time = reverse ? steps - 1 - t : t
                    for r in 0..<n {
                        let to = toLevelInput.pointer + (time * n + r) * inputs, from = toInput.pointer + (t * n + r) * inputs
                        for i in 0..<inputs { to[i] += from[i] }
                    }
                }
                // The backward pass wrote this direction's cells at its processing steps: put them at their time steps.
                if reverse {
                    for r in 0..<n {
                        for t in 0..<(steps / 2) {
                            let a = cells.pointer + (r * steps + t) * cellsTotal, b = cells.pointer + (r * steps + steps - 1 - t) * cellsTotal
                            for c in cellRange { swap(&a[c], &b[c]) }
                        }
                    }
                }
                offset += h
            }
            injected = toLevelInput
        }
        // [T][N][I] → [N][T][I]; gradients become gradient × input.
        var input = [Float](repeating: 0, count: n * steps * width)
        let isGradient = job.rule == .gradientTimesInput
        for t in 0..<steps {
            for s in 0..<n {
                for i in 0..<width {
                    let v = injected[(t * n + s) * width + i], at = (s * steps + t) * width + i
                    input[at] = isGradient ? v * x[at] : v
                }
            }
        }
        return RelevanceResult(count: n, steps: steps, width: width, cells: cellsTotal, input: input, cellRelevance: cells.array,
                               score: score, rest: rest.array,
                               minimumDenominator: isGradient ? [Float](repeating: .nan, count: n) : minimum.array)
    }
}
