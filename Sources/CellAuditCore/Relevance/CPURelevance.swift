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

/// 16 lanes of ±ε by the sign of z (sign(0) = +1): the ε-rule's stabiliser.
@inline(__always) private func vstabiliser(_ z: Float32x16, _ eps: Float) -> Float32x16 {
    Float32x16(repeating: -eps).replacing(with: eps, where: z .>= 0)
}

private let laneIndex = Float32x16(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)

/// |d| in the first `count` lanes, +∞ past them (so padding never sets a minimum).
@inline(__always) private func vabsFirst(_ d: Float32x16, count: Int) -> Float32x16 {
    count == 16 ? vabs(d) : vabs(d).replacing(with: .infinity, where: laneIndex .>= Float(count))
}

/// Runs `body(j, w)` over 0 ..< count in groups of w = 16 lanes, the last group shorter. Inlined,
/// the full groups see w = 16 as a constant, so their loads and stores are plain vector moves.
@inline(__always) private func forEachLaneGroup(_ count: Int, _ body: (Int, Int) -> Void) {
    var j = 0
    while j + 16 <= count { body(j, 16); j += 16 }
    if j < count { body(j, count - j) }
}

/// v in the first `count` lanes, 0 past them: a padded lane's term never enters a sum (its
/// message carries the map's share, or is 0/0 at ε = 0).
@inline(__always) private func firstLanes(_ v: Float32x16, count: Int) -> Float32x16 {
    count == 16 ? v : v.replacing(with: 0, where: laneIndex .>= Float(count))
}

@inline(__always) private func load(_ p: UnsafePointer<Float>?, _ j: Int, _ w: Int) -> Float32x16 {
    p.map { .load($0 + j, count: w) } ?? Float32x16()
}

extension LayerTape {
    /// LRP through this layer from step T − 1 down to 0 (the rules of `RelevanceJob.Rule.lrp`,
    /// docs/METHOD.md "Relevance"): per step, an element-wise pass per row (16 cells at a time,
    /// gates recomputed from the recorded pre-activations) forms the messages
    /// m_j = R_j / (z_j + ε·s_j) of the layer's maps, then one product with W sends them to the
    /// input and one with R to h_{t−1}. The bias-and-stabiliser share of a map is one constant per
    /// row, bias_factor·Σ_j (b_j + ε·s_j)·m_j / N, added to every input of that map.
    func lrpBackward(_ io: BackwardIO, epsilon eps: Float, biasFactor bf: Float, workers: Int) {
        let L = layer, H = L.hiddenSize, I = L.inputSize, N = rows, T = steps, GH = L.gateRows
        let kind = L.kind, resetAfter = L.resetAfter
        let rec = FloatBuffer(N * H), memory = FloatBuffer(N * H), direct = FloatBuffer(N * H)
        let m = FloatBuffer(N * H), mu = FloatBuffer(N * H), kIn = FloatBuffer(N), kU = FloatBuffer(N)
        let signalBlock = kind == .lstm || kind == .gru ? 2 : 0   // the gate block whose map carries the signal
        let mapInputs = Float(I + H)
        let bhnStore = FloatBuffer(H)
        for j in 0..<L.hiddenBiasN.count { bhnStore[j] = L.hiddenBiasN[j] }
        let bStore = FloatBuffer(GH)
        for j in 0..<GH { bStore[j] = L.b[j] }
        L.W.withUnsafeBufferPointer { wBuf in
        L.R.withUnsafeBufferPointer { rBuf in
            for t in stride(from: T - 1, through: 0, by: -1) {
                forEachRow(N, workers: workers) { r in
                    let b = bStore.pointer, bhn = bhnStore.pointer
                    let pre = self.pre.pointer + (t * N + r) * GH, inj = io.injected + (t * N + r) * H
                    let rr = rec.pointer + r * H, mr = m.pointer + r * H
                    let cellRow = io.cells + (r * T + t) * io.totalCells + io.cellOffset
                    let hp = UnsafePointer(self.previousH(t, r))
                    var least = Float32x16(repeating: .infinity)
                    var sum = Float32x16()
                    // The signal's relevance at h_t.
                    forEachLaneGroup(H) { j, w in
                        let v = Float32x16.load(inj + j, count: w) + .load(rr + j, count: w)
                        v.store(cellRow + j, count: w); v.store(rr + j, count: w)
                    }
                    switch kind {
                    case .lstm:
                        // h = o⊙tanh(c) sends everything to c; c = f⊙c₋ + i⊙g is a sum of two signals (N = 2H).
                        let ct = self.c.pointer + (t * N + r) * H, cm = memory.pointer + r * H
                        let cp: UnsafePointer<Float>? = t > 0 ? UnsafePointer(self.c.pointer + ((t - 1) * N + r) * H) : nil
                        forEachLaneGroup(H) { j, w in
                            let c = Float32x16.load(ct + j, count: w), s = vstabiliser(c, eps), d = c + s
                            least = pointwiseMin(least, vabsFirst(d, count: w))
                            let msg = (Float32x16.load(cm + j, count: w) + .load(rr + j, count: w)) / d
                            msg.store(mr + j, count: w)
                            sum += firstLanes(s * msg, count: w)
                        }
                        let share = bf * sum.sum() / Float(2 * H)
                        var sumG = Float32x16()
                        forEachLaneGroup(H) { j, w in
                            let i = vsigmoid(.load(pre + j, count: w)), f = vsigmoid(.load(pre + H + j, count: w))
                            let ag = Float32x16.load(pre + 2 * H + j, count: w), g = vtanh(ag)
                            let msg = Float32x16.load(mr + j, count: w)
                            fmadd(f * load(cp, j, w), msg, share).store(cm + j, count: w)
                            let s = vstabiliser(ag, eps), d = ag + s
                            least = pointwiseMin(least, vabsFirst(d, count: w))
                            let mg = fmadd(i * g, msg, share) / d
                            mg.store(mr + j, count: w)
                            sumG += firstLanes((Float32x16.load(b + 2 * H + j, count: w) + s) * mg, count: w)
                        }
                        kIn[r] = bf * sumG.sum() / mapInputs
                    case .gru:
                        // h' = (1 − z)⊙n + z⊙h is a sum of two signals (N = 2H); n = tanh(a) passes.
                        let ht = self.h.pointer + (t * N + r) * H
                        let ax = self.aux.pointer + (t * N + r) * H, dr = direct.pointer + r * H
                        forEachLaneGroup(H) { j, w in
                            let h = Float32x16.load(ht + j, count: w), s = vstabiliser(h, eps), d = h + s
                            least = pointwiseMin(least, vabsFirst(d, count: w))
                            let msg = Float32x16.load(rr + j, count: w) / d
                            msg.store(mr + j, count: w)
                            sum += firstLanes(s * msg, count: w)
                        }
                        let share = bf * sum.sum() / Float(2 * H)
                        var sumA = Float32x16()
                        forEachLaneGroup(H) { j, w in
                            let z = vsigmoid(.load(pre + H + j, count: w)), reset = vsigmoid(.load(pre + j, count: w))
                            var a = Float32x16.load(pre + 2 * H + j, count: w)
                            if resetAfter { a = fmadd(reset, .load(ax + j, count: w) + .load(bhn + j, count: w), a) }
                            let n = vtanh(a), msg = Float32x16.load(mr + j, count: w)
                            fmadd(z * load(hp, j, w), msg, share).store(dr + j, count: w)
                            let s = vstabiliser(a, eps), d = a + s
                            least = pointwiseMin(least, vabsFirst(d, count: w))
                            let ma = fmadd((1 - z) * n, msg, share) / d
                            ma.store(mr + j, count: w)
                            sumA += firstLanes((Float32x16.load(b + 2 * H + j, count: w) + s) * ma, count: w)
                        }
                        kIn[r] = bf * sumA.sum() / mapInputs
                        if resetAfter {
                            // a = W_n x + b_in + m over x and m (identity); m = r⊙u sends all to
                            // u = R_n h + b_hn, a map over h (N = H).
                            let ur = mu.pointer + r * H
                            var sumU = Float32x16()
                            forEachLaneGroup(H) { j, w in
                                let reset = vsigmoid(.load(pre + j, count: w))
                                let bias = Float32x16.load(bhn + j, count: w), u = Float32x16.load(ax + j, count: w) + bias
                                let s = vstabiliser(u, eps), d = u + s
                                least = pointwiseMin(least, vabsFirst(d, count: w))
                                let msg = fmadd(reset * u, .load(mr + j, count: w), kIn[r]) / d
                                msg.store(ur + j, count: w)
                                sumU += firstLanes((bias + s) * msg, count: w)
                            }
                            kU[r] = bf * sumU.sum() / Float(H)
                        }
                    case .rnnTanh, .rnnReLU:
                        // h' = act(W x + R h + b): the activation passes, one map over x and h.
                        var sumA = Float32x16()
                        forEachLaneGroup(H) { j, w in
                            let a = Float32x16.load(pre + j, count: w), s = vstabiliser(a, eps), d = a + s
                            least = pointwiseMin(least, vabsFirst(d, count: w))
                            let ma = Float32x16.load(rr + j, count: w) / d
                            ma.store(mr + j, count: w)
                            sumA += firstLanes((Float32x16.load(b + j, count: w) + s) * ma, count: w)
                        }
                        kIn[r] = bf * sumA.sum() / mapInputs
                    }
                    io.minimumDenominator[r] = min(io.minimumDenominator[r], least.min())
                }
                // To the input: R_x = x ⊙ (m · W_block) + k.
                let toX = SendablePointer(io.toInput + t * N * I)
                multiply(m: N, n: I, k: H, m.pointer, lda: H, wBuf.baseAddress! + signalBlock * H * I, ldb: I, toX.pointer, ldc: I, beta: 0, workers: workers)
                // To h_{t−1}: through R_block (the GRU reset-after: from u through R_n).
                let fromRecurrent = kind == .gru && resetAfter ? mu.pointer : m.pointer
                multiply(m: N, n: H, k: H, fromRecurrent, lda: H, rBuf.baseAddress! + signalBlock * H * H, ldb: H, rec.pointer, ldc: H, beta: 0, workers: workers)
                forEachRow(N, workers: workers) { r in
                    let x = io.input + r * io.rowStride + t * io.stepStride, out = toX.pointer + r * I
                    for i in 0..<I { out[i] = x[i] * out[i] + kIn[r] }
                    let rr = rec.pointer + r * H, dr = direct.pointer + r * H
                    // The map's input: h_{t−1}, or for the reset-before GRU r⊙h_{t−1}, whose
                    // product sends everything on to h.
                    let source: UnsafePointer<Float>? = kind == .gru && !resetAfter
                        ? UnsafePointer(self.aux.pointer + (t * N + r) * H) : UnsafePointer(self.previousH(t, r))
                    let k = kind == .gru && resetAfter ? kU[r] : kIn[r]
                    forEachLaneGroup(H) { j, w in
                        var v = fmadd(load(source, j, w), .load(rr + j, count: w), k)
                        if kind == .gru { v += .load(dr + j, count: w) }
                        v.store(rr + j, count: w)
                    }
                }
            }
            for r in 0..<N {
                var total: Float = 0
                for j in 0..<H { total += rec[r * H + j] + (kind.hasCellState ? memory[r * H + j] : 0) }
                io.rest[r] += total
            }
        }
        }
    }

    /// Backpropagation through time of ∂score/∂(everything) through this layer, the unmodified
    /// network's gradient. `io.injected` holds ∂score/∂h_t from outside; `io.toInput` receives
    /// ∂score/∂x_t; cells receive h_t ⊙ ∂score/∂h_t.
    func gradientBackward(_ io: BackwardIO, workers: Int) {
        let L = layer, H = L.hiddenSize, I = L.inputSize, N = rows, T = steps, GH = L.gateRows
        let kind = L.kind, resetAfter = L.resetAfter
        let rec = FloatBuffer(N * H), memory = FloatBuffer(N * H), direct = FloatBuffer(N * H), q = FloatBuffer(N * H)
        let ma = FloatBuffer(N * GH), mb = FloatBuffer(N * GH)
        let bhnStore = FloatBuffer(H)
        for j in 0..<L.hiddenBiasN.count { bhnStore[j] = L.hiddenBiasN[j] }
        // Peepholes (p_i, p_f, p_o): o's reads c_t, i's and f's c_{t−1}, so each adds a path for ∂c.
        let peepholes = L.hasPeephole, peepStore = FloatBuffer(L.peephole.count)
        for j in 0..<L.peephole.count { peepStore[j] = L.peephole[j] }
        L.W.withUnsafeBufferPointer { wBuf in
        L.R.withUnsafeBufferPointer { rBuf in
            let w = wBuf.baseAddress!, rw = rBuf.baseAddress!
            for t in stride(from: T - 1, through: 0, by: -1) {
                forEachRow(N, workers: workers) { r in
                    let bhn = bhnStore.pointer
                    let pre = self.pre.pointer + (t * N + r) * GH, inj = io.injected + (t * N + r) * H
                    let rr = rec.pointer + r * H, ar = ma.pointer + r * GH, br = mb.pointer + r * GH
                    let ht = self.h.pointer + (t * N + r) * H, hp = UnsafePointer(self.previousH(t, r))
                    let cellRow = io.cells + (r * T + t) * io.totalCells + io.cellOffset
                    forEachLaneGroup(H) { j, n in
                        let dh = Float32x16.load(inj + j, count: n) + .load(rr + j, count: n)
                        (Float32x16.load(ht + j, count: n) * dh).store(cellRow + j, count: n)
                        dh.store(rr + j, count: n)
                    }
                    forEachLaneGroup(H) { j, n in
                        let dh = Float32x16.load(rr + j, count: n)
                        switch kind {
                        case .lstm:
                            let ct = self.c.pointer + (t * N + r) * H, cm = memory.pointer + r * H
                            let cp: UnsafePointer<Float>? = t > 0 ? UnsafePointer(self.c.pointer + ((t - 1) * N + r) * H) : nil
                            let i = vsigmoid(.load(pre + j, count: n)), f = vsigmoid(.load(pre + H + j, count: n))
                            let g = vtanh(.load(pre + 2 * H + j, count: n)), o = vsigmoid(.load(pre + 3 * H + j, count: n))
                            let tc = vtanh(.load(ct + j, count: n))
                            var dc = Float32x16.load(cm + j, count: n) + dh * o * (1 - tc * tc)
                            let dao = dh * tc * o * (1 - o)
                            let p = peepStore.pointer
                            if peepholes { dc = fmadd(dao, .load(p + 2 * H + j, count: n), dc) }
                            let dai = dc * g * i * (1 - i), daf = dc * load(cp, j, n) * f * (1 - f)
                            dai.store(ar + j, count: n)
                            daf.store(ar + H + j, count: n)
                            (dc * i * (1 - g * g)).store(ar + 2 * H + j, count: n)
                            dao.store(ar + 3 * H + j, count: n)
                            if peepholes {
                                fmadd(dai, .load(p + j, count: n), fmadd(daf, .load(p + H + j, count: n), dc * f)).store(cm + j, count: n)
                            } else {
                                (dc * f).store(cm + j, count: n)
                            }
                        case .gru:
                            let ax = self.aux.pointer + (t * N + r) * H, dr = direct.pointer + r * H
                            let z = vsigmoid(.load(pre + H + j, count: n)), reset = vsigmoid(.load(pre + j, count: n))
                            let u = Float32x16.load(ax + j, count: n) + .load(bhn + j, count: n)
                            var a = Float32x16.load(pre + 2 * H + j, count: n)
                            if resetAfter { a = fmadd(reset, u, a) }
                            let nv = vtanh(a)
                            (dh * z).store(dr + j, count: n)
                            let dan = dh * (1 - z) * (1 - nv * nv)
                            (dh * (load(hp, j, n) - nv) * z * (1 - z)).store(ar + H + j, count: n)
                            dan.store(ar + 2 * H + j, count: n)
                            if resetAfter {
                                let dar = dan * u * reset * (1 - reset)
                                dar.store(ar + j, count: n); dar.store(br + j, count: n)
                                Float32x16.load(ar + H + j, count: n).store(br + H + j, count: n)
                                (dan * reset).store(br + 2 * H + j, count: n)
                            }
                        case .rnnTanh, .rnnReLU:
                            let slope = kind == .rnnReLU
                                ? Float32x16().replacing(with: 1, where: Float32x16.load(pre + j, count: n) .> 0)
                                : 1 - Float32x16.load(ht + j, count: n) * .load(ht + j, count: n)
                            (dh * slope).store(ar + j, count: n)
                        }
                    }
                }
                if kind == .gru && !resetAfter {
                    // n reads R_n (r⊙h): q = ∂/∂(r⊙h), which reaches both h and the reset gate.
                    multiply(m: N, n: H, k: H, ma.pointer + 2 * H, lda: GH, rw + 2 * H * H, ldb: H, q.pointer, ldc: H, beta: 0, workers: workers)
                    forEachRow(N, workers: workers) { r in
                        let pre = self.pre.pointer + (t * N + r) * GH, ar = ma.pointer + r * GH, qr = q.pointer + r * H
                        let dr = direct.pointer + r * H, hp = UnsafePointer(self.previousH(t, r))
                        forEachLaneGroup(H) { j, n in
                            let reset = vsigmoid(.load(pre + j, count: n)), qv = Float32x16.load(qr + j, count: n)
                            (qv * load(hp, j, n) * reset * (1 - reset)).store(ar + j, count: n)
                            fmadd(qv, reset, .load(dr + j, count: n)).store(dr + j, count: n)
                        }
                    }
                }
                multiply(m: N, n: I, k: GH, ma.pointer, lda: GH, w, ldb: I, io.toInput + t * N * I, ldc: I, beta: 0, workers: workers)
                switch (kind, resetAfter) {
                case (.gru, true):
                    multiply(m: N, n: H, k: GH, mb.pointer, lda: GH, rw, ldb: H, rec.pointer, ldc: H, beta: 0, workers: workers)
                case (.gru, false):
                    multiply(m: N, n: H, k: 2 * H, ma.pointer, lda: GH, rw, ldb: H, rec.pointer, ldc: H, beta: 0, workers: workers)
                default:
                    multiply(m: N, n: H, k: GH, ma.pointer, lda: GH, rw, ldb: H, rec.pointer, ldc: H, beta: 0, workers: workers)
                }
                if kind == .gru {
                    for i in 0..<(N * H) { rec[i] += direct[i] }
                }
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
