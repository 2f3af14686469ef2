import Foundation

/// A batch of input sequences [N × T × I], row-major.
public struct SequenceBatch: Sendable, Equatable {
    public let count: Int, steps: Int, width: Int
    public var values: [Float]
    public init(count: Int, steps: Int, width: Int, values: [Float]) throws {
        guard count >= 1, steps >= 1, width >= 1 else {
            throw ModelError.shape("a batch needs at least one sequence, step and channel, got [\(count), \(steps), \(width)]")
        }
        guard values.count == count * steps * width else {
            throw ModelError.shape("\(values.count) input values do not fill [\(count), \(steps), \(width)]")
        }
        self.count = count; self.steps = steps; self.width = width; self.values = values
    }
}

/// Which cells run free (1) and which are clamped to 0 (0) in one ablation configuration,
/// one factor per cell of the network, layer after layer.
public struct CellMask: Sendable, Equatable {
    public var keep: [Float]
    public init(keep: [Float]) { self.keep = keep }
    /// Every cell free.
    public static func none(cells: Int) -> CellMask { CellMask(keep: .init(repeating: 1, count: cells)) }
    /// The given cells (flat indices over all layers) clamped to 0.
    public static func ablating(_ cells: some Sequence<Int>, of total: Int) -> CellMask {
        var keep = [Float](repeating: 1, count: total)
        for c in cells { keep[c] = 0 }
        return CellMask(keep: keep)
    }
}

/// A full-network forward pass over a batch, for one or more ablation configurations at once.
public struct ForwardJob: Sendable {
    public var network: LSTMNetwork
    public var inputs: SequenceBatch
    public var output: OutputMode
    public var masks: [CellMask]

    public init(network: LSTMNetwork, inputs: SequenceBatch, output: OutputMode, masks: [CellMask]? = nil) throws {
        guard inputs.width == network.inputSize else {
            throw ModelError.shape("the data has \(inputs.width) input channels but the model takes \(network.inputSize)")
        }
        guard network.readout != nil else { throw ModelError.shape("the model has no readout to produce outputs") }
        let masks = masks ?? [.none(cells: network.cellCount)]
        guard !masks.isEmpty, masks.allSatisfy({ $0.keep.count == network.cellCount }) else {
            throw ModelError.shape("every ablation mask needs one factor per cell (\(network.cellCount))")
        }
        self.network = network; self.inputs = inputs; self.output = output; self.masks = masks
    }

    public var outputsPerSequence: Int {
        (output == .last ? 1 : inputs.steps) * network.readout!.outputs
    }
}

/// Readout values [configurations × N × K] (`last`) or [configurations × N × T × K] (`sequence`),
/// and the last layer's hidden states [configurations × N × T × H].
public struct ForwardResult: Sendable {
    public var outputs: [Float]
    public var hidden: [Float]
    public var shape: [Int]
    public init(outputs: [Float], hidden: [Float], shape: [Int]) {
        self.outputs = outputs; self.hidden = hidden; self.shape = shape
    }
}

extension LSTMNetwork {
    /// Applies the readout to last-layer hidden states [S × T × H] (S = configurations × N).
    public func readoutOutputs(hidden: [Float], sequences: Int, steps: Int, output: OutputMode) -> [Float] {
        let readout = self.readout!
        let h = layers.last!.hiddenSize, k = readout.outputs
        let rows = output == .last ? sequences : sequences * steps
        var out = [Float](repeating: 0, count: rows * k)
        for row in 0..<rows {
            let (s, t) = output == .last ? (row, steps - 1) : (row / steps, row % steps)
            let base = (s * steps + t) * h
            for o in 0..<k {
                var acc = readout.a[o]
                for j in 0..<h { acc += readout.V[o * h + j] * hidden[base + j] }
                out[row * k + o] = acc
            }
        }
        return out
    }
}

extension CPUBackend {
    /// The reference forward pass: every (configuration, sequence) in parallel, each layer over
    /// the whole sequence, clamping masked cells' h and c to 0 after every step.
    public func forward(_ job: ForwardJob) throws -> ForwardResult {
        let net = job.network, n = job.inputs.count, steps = job.inputs.steps
        let configs = job.masks.count, sequences = configs * n
        // Transposed weights make the inner loops contiguous axpys over 4H.
        let transposed = net.layers.map { (transpose($0.W, rows: 4 * $0.hiddenSize, cols: $0.inputSize),
                                           transpose($0.R, rows: 4 * $0.hiddenSize, cols: $0.hiddenSize)) }
        let hLast = net.layers.last!.hiddenSize
        var hidden = [Float](repeating: 0, count: sequences * steps * hLast)
        let offsets = net.layers.reduce(into: [0]) { $0.append($0.last! + $1.hiddenSize) }
        hidden.withUnsafeMutableBufferPointer { buffer in
            let out = SendablePointer(buffer.baseAddress!)
            DispatchQueue.concurrentPerform(iterations: sequences) { s in
                let config = s / n, seq = s % n
                var x = Array(job.inputs.values[(seq * steps * job.inputs.width)..<((seq + 1) * steps * job.inputs.width)])
                var width = job.inputs.width
                for (l, layer) in net.layers.enumerated() {
                    let hsize = layer.hiddenSize, h4 = 4 * hsize
                    let keep = job.masks[config].keep[offsets[l]..<offsets[l + 1]]
                    let (WT, RT) = transposed[l]
                    var h = [Float](repeating: 0, count: hsize), c = h
                    var y = [Float](repeating: 0, count: steps * hsize)
                    var pre = [Float](repeating: 0, count: h4)
                    for t in 0..<steps {
                        for q in 0..<h4 { pre[q] = layer.b[q] }
                        for i in 0..<width {
                            let xi = x[t * width + i]
                            for q in 0..<h4 { pre[q] += xi * WT[i * h4 + q] }
                        }
                        for m in 0..<hsize {
                            let hm = h[m]
                            for q in 0..<h4 { pre[q] += hm * RT[m * h4 + q] }
                        }
                        for j in 0..<hsize {
                            let ig = sigmoid(pre[j]), fg = sigmoid(pre[hsize + j])
                            let gg = tanh(pre[2 * hsize + j]), og = sigmoid(pre[3 * hsize + j])
                            let k = keep[keep.startIndex + j]
                            c[j] = (fg * c[j] + ig * gg) * k
                            h[j] = og * tanh(c[j]) * k
                            y[t * hsize + j] = h[j]
                        }
                    }
                    x = y
                    width = hsize
                }
                for v in 0..<(steps * hLast) { out.pointer[s * steps * hLast + v] = x[v] }
            }
        }
        let outputs = net.readoutOutputs(hidden: hidden, sequences: sequences, steps: steps, output: job.output)
        let k = net.readout!.outputs
        let shape = job.output == .last ? [configs, n, k] : [configs, n, steps, k]
        return ForwardResult(outputs: outputs, hidden: hidden, shape: shape)
    }
}
