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
    public var network: RecurrentNetwork
    public var inputs: SequenceBatch
    public var output: OutputMode
    public var masks: [CellMask]
    /// What an ablated cell's h and c are clamped to, one value per cell over all layers: zeros
    /// (plain ablation, METHOD.md §6) or the cells' mean over the data (mean ablation).
    public var clampH: [Float], clampC: [Float]

    public init(network: RecurrentNetwork, inputs: SequenceBatch, output: OutputMode, masks: [CellMask]? = nil,
                clamp: (h: [Float], c: [Float])? = nil) throws {
        guard inputs.width == network.inputSize else {
            throw DataError.mismatch("the data has \(inputs.width) input channels but the model takes \(network.inputSize)")
        }
        guard network.readout != nil else { throw ModelError.shape("the model has no readout to produce outputs") }
        let masks = masks ?? [.none(cells: network.cellCount)]
        guard !masks.isEmpty, masks.allSatisfy({ $0.keep.count == network.cellCount }) else {
            throw ModelError.shape("every ablation mask needs one factor per cell (\(network.cellCount))")
        }
        let clamp = clamp ?? (h: [Float](repeating: 0, count: network.cellCount), c: [Float](repeating: 0, count: network.cellCount))
        guard clamp.h.count == network.cellCount, clamp.c.count == network.cellCount,
              clamp.h.allSatisfy(\.isFinite), clamp.c.allSatisfy(\.isFinite) else {
            throw ModelError.shape("clamp values need one finite h and c per cell (\(network.cellCount))")
        }
        self.network = network; self.inputs = inputs; self.output = output; self.masks = masks
        self.clampH = clamp.h; self.clampC = clamp.c
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

extension RecurrentNetwork {
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
    /// The batched forward pass: every (configuration, sequence) row of a layer advances one step
    /// together, so each step is one matrix product [rows × H]·Rᵀ plus the input projection that
    /// was done for all steps at once (`RecurrentLayer.advance`). Masked cells' h (and c) are
    /// clamped after every step.
    public func forward(_ job: ForwardJob) throws -> ForwardResult {
        let net = job.network, n = job.inputs.count, steps = job.inputs.steps
        let configs = job.masks.count
        let hLast = net.layers.last!.hiddenSize
        let widest = net.layers.map(\.hiddenSize).max()!
        let gateBlocks = net.kind.gateCount
        // Per sequence and configuration: projections (G·H) and outputs (H) of the widest layer.
        let bytesPerConfig = n * steps * (gateBlocks + 1) * widest * MemoryLayout<Float>.stride
        let slice = max(1, min(configs, forwardWorkingSetBytes / max(bytesPerConfig, 1)))
        var hidden = [Float](repeating: 0, count: configs * n * steps * hLast)
        // Layer 0's input projection does not depend on the mask: computed once for all slices.
        let first = net.layers[0]
        var projected0 = [Float](repeating: 0, count: n * steps * first.gateRows)
        job.inputs.values.withUnsafeBufferPointer { x in
            projected0.withUnsafeMutableBufferPointer { first.project(x.baseAddress!, rows: n * steps, into: $0.baseAddress!) }
        }
        let offsets = net.cellOffsets
        for start in stride(from: 0, to: configs, by: slice) {
            let masks = Array(job.masks[start..<min(configs, start + slice)])
            var y: [Float] = []
            for (l, layer) in net.layers.enumerated() {
                let cells = offsets[l]..<offsets[l + 1]
                let keep = masks.flatMap { $0.keep[cells] }
                let fill = (h: Array(job.clampH[cells]), c: Array(job.clampC[cells]))
                if l == 0 {
                    y = runLayer(layer, projected: projected0, sharedAcross: n, keep: keep, configurations: masks.count,
                                 fill: fill, sequences: n, steps: steps)
                } else {
                    var projected = [Float](repeating: 0, count: masks.count * n * steps * layer.gateRows)
                    y.withUnsafeBufferPointer { x in
                        projected.withUnsafeMutableBufferPointer { layer.project(x.baseAddress!, rows: masks.count * n * steps, into: $0.baseAddress!) }
                    }
                    y = runLayer(layer, projected: projected, sharedAcross: nil, keep: keep, configurations: masks.count,
                                 fill: fill, sequences: n, steps: steps)
                }
            }
            let base = start * n * steps * hLast
            hidden.replaceSubrange(base..<(base + y.count), with: y)
        }
        let outputs = net.readoutOutputs(hidden: hidden, sequences: configs * n, steps: steps, output: job.output)
        let k = net.readout!.outputs
        let shape = job.output == .last ? [configs, n, k] : [configs, n, steps, k]
        return ForwardResult(outputs: outputs, hidden: hidden, shape: shape)
    }

    /// Runs one layer over all steps for `configurations` × `sequences` rows. `projected` holds
    /// x·Wᵀ + b per (row, step); with `sharedAcross` it holds it for the sequences only, shared by
    /// every configuration. `keep` is [configurations × H]. Returns h for every (row, step).
    private func runLayer(_ layer: RecurrentLayer, projected: [Float], sharedAcross: Int?, keep: [Float], configurations: Int,
                          fill: (h: [Float], c: [Float]), sequences n: Int, steps: Int) -> [Float] {
        let hs = layer.hiddenSize, width = layer.gateRows, rows = configurations * n
        var y = [Float](repeating: 0, count: rows * steps * hs)
        var gates = [Float](repeating: 0, count: rows * width)
        var h = [Float](repeating: 0, count: rows * hs), c = h, scratch = h
        let workers = threads
        projected.withUnsafeBufferPointer { proj in
            keep.withUnsafeBufferPointer { keepPointer in
                fill.h.withUnsafeBufferPointer { fillH in
                    fill.c.withUnsafeBufferPointer { fillC in
                        gates.withUnsafeMutableBufferPointer { g in
                            h.withUnsafeMutableBufferPointer { hp in
                                c.withUnsafeMutableBufferPointer { cp in
                                    scratch.withUnsafeMutableBufferPointer { sp in
                                        y.withUnsafeMutableBufferPointer { yp in
                                            let P = SendablePointer(UnsafeMutablePointer(mutating: proj.baseAddress!))
                                            let G = SendablePointer(g.baseAddress!), Y = SendablePointer(yp.baseAddress!)
                                            let mask = StepMask(keep: keepPointer.baseAddress!, rowsPerConfiguration: n,
                                                                fillH: fillH.baseAddress!, fillC: fillC.baseAddress!)
                                            for t in 0..<steps {
                                                forEachRow(rows, workers: workers) { r in
                                                    let source = sharedAcross.map { r % $0 } ?? r
                                                    (G.pointer + r * width).update(from: P.pointer + (source * steps + t) * width, count: width)
                                                }
                                                layer.advance(rows: rows, gates: G.pointer, h: hp.baseAddress!, c: cp.baseAddress!,
                                                              scratch: sp.baseAddress!, hIsZero: t == 0, workers: workers, mask: mask,
                                                              output: { r in Y.pointer + (r * steps + t) * hs })
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return y
    }
}
