import Foundation
import Synchronization

/// A batch of input sequences [N × T × I], row-major.
public struct SequenceBatch: Sendable, Equatable {
    public let count: Int, steps: Int, width: Int
    public var values: [Float]
    /// Each sequence's own length (1…steps), for a padded batch (METHOD.md §8, "Lengths"): steps
    /// at and after a sequence's length are padding, which never enters a state. Nil: every
    /// sequence runs all `steps`.
    public private(set) var lengths: [Int]?

    /// Sets each sequence's length.
    /// - Throws: `DataError.mismatch` for a count other than one per sequence or a length outside
    ///   1…steps, naming the sequence.
    /// `firstSequence`: the index of the batch's first sequence in its file, for the message.
    public mutating func setLengths(_ lengths: [Int]?, firstSequence: Int = 0) throws {
        if let lengths {
            guard lengths.count == count else { throw DataError.mismatch("\(lengths.count) lengths for \(count) sequences") }
            if let bad = lengths.firstIndex(where: { !(1...steps).contains($0) }) {
                throw DataError.mismatch("sequence \(firstSequence + bad) has length \(lengths[bad]), outside 1…\(steps) (the steps of 'inputs')")
            }
        }
        self.lengths = lengths
    }

    public init(count: Int, steps: Int, width: Int, values: [Float]) throws {
        guard count >= 1, steps >= 1, width >= 1 else {
            throw ModelError.shape("a batch needs at least one sequence, step and channel, got [\(count), \(steps), \(width)]")
        }
        guard values.count == count * steps * width else {
            throw ModelError.shape("\(values.count) input values do not fill [\(count), \(steps), \(width)]")
        }
        self.count = count; self.steps = steps; self.width = width; self.values = values
    }

    /// Sequences `range` as a batch of their own.
    public func sequences(_ range: Range<Int>) throws -> SequenceBatch {
        let stride = steps * width
        var part = try SequenceBatch(count: range.count, steps: steps, width: width,
                                     values: Array(values[(range.lowerBound * stride)..<(range.upperBound * stride)]))
        try part.setLengths(lengths.map { Array($0[range]) })
        return part
    }
}

extension ComputeBackend {
    /// The readout values of `job`'s network on every sequence, computed a block of sequences at a
    /// time so that the memory of the forward pass (every layer's states, the hidden states a
    /// backend keeps) is bounded by `blockBytes`, not by the dataset: `eval` on a dataset of any
    /// size holds the inputs and the outputs, nothing of size N × T × H. A job that fits in one
    /// block runs as one call (same numbers as `forward(job)`).
    /// - Returns: a result with the outputs ([1, N, K] or [1, N, T, K]) and no hidden states.
    public func outputsInBlocks(_ job: ForwardJob, blockBytes: Int = 64 << 20) throws -> ForwardResult {
        var job = job
        job.keepsHidden = false
        let inputs = job.inputs
        let widest = job.network.layers.map { $0.gateRows + 2 * $0.hiddenSize }.max() ?? 1
        let perSequence = MemoryBudget.product(inputs.steps, widest, MemoryLayout<Float>.stride)
        let block = max(1, blockBytes / max(1, perSequence))
        if block >= inputs.count { return try forward(job) }
        var outputs: [Float] = [], shape: [Int] = []
        for start in stride(from: 0, to: inputs.count, by: block) {
            job.inputs = try inputs.sequences(start..<min(inputs.count, start + block))
            let part = try forward(job)
            outputs += part.outputs
            shape = part.shape
        }
        return ForwardResult(outputs: outputs, hidden: [], shape: [shape[0], inputs.count] + shape.dropFirst(2))
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
    /// Whether masks were given: an ablation job, whose configurations are computed one by one
    /// (so each configuration's numbers never depend on the others in the job), rather than a
    /// plain forward pass.
    public var isAblation: Bool
    /// Whether the result carries the last layer's hidden states; false leaves
    /// `ForwardResult.hidden` empty on the CPU backend, so an ablation scored from the readout
    /// alone neither stores nor copies configurations × N × T × H values.
    public var keepsHidden: Bool = true

    public init(network: RecurrentNetwork, inputs: SequenceBatch, output: OutputMode, masks: [CellMask]? = nil,
                clamp: (h: [Float], c: [Float])? = nil) throws {
        guard inputs.width == network.inputSize else {
            throw DataError.mismatch("the data has \(inputs.width) input channels but the model takes \(network.inputSize)")
        }
        guard network.readout != nil else { throw ModelError.shape("the model has no readout to produce outputs") }
        isAblation = masks != nil
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

    /// The ablation values of one directed layer's cells (`cells`: its flat positions,
    /// `CellLayout.range(ofLayer:direction:)`) as a layer's pass takes them: the keep factors of
    /// the configurations `configurations` (every one by default) back to back
    /// [configurations × H], and the values clamped h and c are held at [H] each.
    public func ablation(of cells: Range<Int>, configurations: Range<Int>? = nil) -> (keep: [Float], clampH: [Float], clampC: [Float]) {
        (masks[configurations ?? masks.indices].flatMap { $0.keep[cells] }, Array(clampH[cells]), Array(clampC[cells]))
    }
}

/// Readout values [configurations × N × K] (`last`) or [configurations × N × T × K] (`sequence`),
/// and the last layer's hidden states [configurations × N × T × H] (empty when the job's
/// `keepsHidden` is false and the backend honours it).
public struct ForwardResult: Sendable {
    public var outputs: [Float]
    public var hidden: [Float]
    public var shape: [Int]
    public init(outputs: [Float], hidden: [Float], shape: [Int]) {
        self.outputs = outputs; self.hidden = hidden; self.shape = shape
    }
}

extension RecurrentNetwork {
    /// The network of the cells whose `keep` factor (one per cell over all layers) is 1: each
    /// layer's W, R, b, b_hn and peepholes restricted to its kept cells' gate rows, and to the kept cells of
    /// the layer below (layer 0 keeps every input); the readout restricted to the last layer's kept
    /// cells. With the dropped cells held at h = c = 0 the two networks compute the same outputs.
    /// Returns it with the last layer's kept cells, or nil when some layer keeps no cell.
    public func keeping(_ keep: [Float]) -> (network: RecurrentNetwork, lastKept: [Int])? {
        precondition(keep.count == cellCount)
        let layout = layout
        var layersOut: [RecurrentLayer] = []
        var inputs = Array(0..<inputSize)
        for (l, layer) in layers.enumerated() {
            let kept = layout.cells(ofLayer: l).filter { keep[layout.offset(of: $0)] == 1 }.map(\.index)
            guard !kept.isEmpty else { return nil }
            let hs = layer.hiddenSize, m = kept.count, gates = kind.gateCount, width = layer.inputSize
            var W = [Float](), R = [Float](), b = [Float]()
            W.reserveCapacity(gates * m * inputs.count); R.reserveCapacity(gates * m * m); b.reserveCapacity(gates * m)
            for g in 0..<gates {
                for j in kept {
                    let row = g * hs + j
                    for i in inputs { W.append(layer.W[row * width + i]) }
                    for i in kept { R.append(layer.R[row * hs + i]) }
                    b.append(layer.b[row])
                }
            }
            let bhn = layer.hiddenBiasN.isEmpty ? nil : kept.map { layer.hiddenBiasN[$0] }
            let peephole = layer.hasPeephole ? (0..<3).flatMap { g in kept.map { layer.peephole[g * hs + $0] } } : nil
            // Restricting valid weights cannot make them invalid.
            layersOut.append(try! RecurrentLayer(kind: kind, inputSize: inputs.count, hiddenSize: m, W: W, R: R, b: b,
                                                 hiddenBiasN: bhn, resetAfter: layer.resetAfter, peephole: peephole))
            inputs = kept
        }
        let readoutOut = readout.map { r in
            let h = layers.last!.hiddenSize
            return Readout(V: (0..<r.outputs).flatMap { o in inputs.map { r.V[o * h + $0] } }, a: r.a)
        }
        return (try! RecurrentNetwork(layers: layersOut, readout: readoutOut), inputs)
    }

    /// Applies the readout to last-layer hidden states [S × T × H] (S = configurations × N): one
    /// matrix product (OpenBLAS) over the last step of each sequence, or over every step.
    public func readoutOutputs(hidden: [Float], sequences: Int, steps: Int, output: OutputMode, workers: Int) -> [Float] {
        if output == .last && steps > 1 && readsFinalStates {
            return readoutOutputs(hidden: finalStates(hidden, sequences: sequences, steps: steps), sequences: sequences, steps: 1,
                                  output: output, workers: workers)
        }
        let readout = self.readout!
        let h = outputWidth, k = readout.outputs
        let rows = output == .last ? sequences : sequences * steps
        var out = [Float](repeating: 0, count: rows * k)
        out.withUnsafeMutableBufferPointer { o in
            for row in 0..<rows { (o.baseAddress! + row * k).update(from: readout.a, count: k) }
            hidden.withUnsafeBufferPointer { x in readout.V.withUnsafeBufferPointer { v in
                // `last`: row s is the hidden state at step T − 1 of sequence s, a stride of T·H apart.
                let first = output == .last ? x.baseAddress! + (steps - 1) * h : x.baseAddress!
                multiplyTransposed(m: rows, n: k, k: h, first, lda: output == .last ? steps * h : h, v.baseAddress!, ldb: h,
                                   o.baseAddress!, ldc: k, beta: 1, workers: workers)
            }}
        }
        return out
    }
}

extension RecurrentNetwork {
    /// Whether a last-step readout reads each direction's final state rather than every
    /// direction's h at the last time step: only for a last level with a reverse direction and
    /// the readout's `reading` `.finalStates` (for forward stacks the two are one).
    var readsFinalStates: Bool {
        readout?.reading == .finalStates && levels.last!.contains { layers[$0].direction == .reverse }
    }

    /// Each direction's final state of the last level from its output at every step
    /// ([S × T × W] → [S × W]): a forward direction's h at T − 1, a reverse direction's at 0.
    func finalStates(_ hidden: [Float], sequences: Int, steps: Int) -> [Float] {
        let w = outputWidth
        var out = [Float](repeating: 0, count: sequences * w)
        var offset = 0
        for index in levels.last! {
            let layer = layers[index], time = layer.direction == .forward ? steps - 1 : 0
            for s in 0..<sequences {
                for j in 0..<layer.hiddenSize { out[s * w + offset + j] = hidden[(s * steps + time) * w + offset + j] }
            }
            offset += layer.hiddenSize
        }
        return out
    }
}

/// Concatenates the directions of a level along the last axis: each part is [M × h_d] (any M
/// positions: time-major, sequence-major or one step), the result [M × Σ h_d], forward first.
func concatenateDirections(_ parts: [(width: Int, values: [Float])]) -> [Float] {
    if parts.count == 1 { return parts[0].values }
    let total = parts.reduce(0) { $0 + $1.width }, positions = parts[0].values.count / max(1, parts[0].width)
    return uninitializedFloats(positions * total) { out in
        var offset = 0
        for part in parts {
            part.values.withUnsafeBufferPointer { p in
                for m in 0..<positions { (out + m * total + offset).update(from: p.baseAddress! + m * part.width, count: part.width) }
            }
            offset += part.width
        }
    }
}

extension CPUBackend {
    /// The batched forward pass: every (configuration, sequence) row of a layer advances one step
    /// together, so each step is one matrix product [rows × H]·Rᵀ plus the input projection that
    /// was done for all steps at once (`RecurrentLayer.advance`). Masked cells' h (and c) are
    /// clamped after every step.
    public func forward(_ job: ForwardJob) throws -> ForwardResult {
        if job.inputs.isPadded { return try job.byLength { try forward($0) } }
        if job.isAblation, let result = try forwardDroppingAblated(job) { return result }
        return maskedForward(job, workers: threads)
    }

    /// Every configuration as rows of one batch, masked cells clamped after every step, its
    /// products and rows spread over `workers` threads.
    public func maskedForward(_ job: ForwardJob, workers: Int) -> ForwardResult {
        let net = job.network, n = job.inputs.count, steps = job.inputs.steps
        let configs = job.masks.count
        let widest = net.layers.map(\.hiddenSize).max()!
        let gateBlocks = net.kind.gateCount
        // Per sequence and configuration: projections (G·H) and outputs (H) of the widest layer.
        let bytesPerConfig = n * steps * (gateBlocks + 1) * widest * MemoryLayout<Float>.stride
        let slice = max(1, min(configs, forwardWorkingSetBytes / max(bytesPerConfig, 1)))
        // Without the hidden states, a `last` readout needs the last layer's h at T − 1 only.
        let lastStepOnly = !job.keepsHidden && job.output == .last
        var hidden: [Float] = [], outputs: [Float] = []
        // Layer 0's input, shared by every slice, time-major ([T × N] rows): each step's rows are
        // contiguous, for its product and its gates.
        let width0 = job.inputs.width
        let inputsByStep = uninitializedFloats(n * steps * width0) { out in
            job.inputs.values.withUnsafeBufferPointer { x in
                for r in 0..<n { for t in 0..<steps { (out + (t * n + r) * width0).update(from: x.baseAddress! + (r * steps + t) * width0, count: width0) } }
            }
        }
        let layout = net.layout
        for start in stride(from: 0, to: configs, by: slice) {
            let chosen = start..<min(configs, start + slice)
            let masks = Array(job.masks[chosen])
            var y: [Float] = []
            for (l, level) in net.levels.enumerated() {
                // Layers below the last keep their h time-major, as the next layer's projection wants it.
                let last = l == net.levels.count - 1
                // Layer 0's projection depends on the sequence alone: with several configurations
                // it is computed once per sequence and shared.
                let input = l == 0 ? inputsByStep : y
                // Every direction of a level reads the same input; the level's output holds their h side by side.
                y = concatenateDirections(level.map { index in
                    let layer = net.layers[index]
                    let ablation = job.ablation(of: layout.range(ofLayer: l, direction: layer.direction), configurations: chosen)
                    let keep = ablation.keep, fill = (h: ablation.clampH, c: ablation.clampC)
                    let stored: LayerOutput = !last ? .timeMajor : !lastStepOnly ? .sequenceMajor
                        : net.readsFinalStates ? .finalState : .lastStep
                    return (layer.hiddenSize, runLayer(layer, input: input, sharedAcross: l == 0 && masks.count > 1 ? n : nil, keep: keep,
                                                       configurations: masks.count, fill: fill, sequences: n, steps: steps, workers: workers,
                                                       output: stored))
                })
            }
            let part = net.readoutOutputs(hidden: y, sequences: masks.count * n, steps: lastStepOnly ? 1 : steps, output: job.output, workers: workers)
            if slice >= configs {
                // One slice: its arrays are the whole result.
                outputs = part
                if job.keepsHidden { hidden = y }
                break
            }
            outputs += part
            if job.keepsHidden { hidden += y }
        }
        let k = net.readout!.outputs
        let shape = job.output == .last ? [configs, n, k] : [configs, n, steps, k]
        return ForwardResult(outputs: outputs, hidden: hidden, shape: shape)
    }

    /// Ablation by zero (plain ablation, METHOD.md §6) without the ablated cells: a cell held at
    /// h = c = 0 adds nothing to any product, gate or readout, so each configuration runs as the
    /// network of its kept cells alone (`RecurrentNetwork.keeping`). Ablating k of n cells then
    /// costs ((n − k)/n)² of the recurrent products and (n − k)/n of the gate work instead of all
    /// of it; a top-k, bottom-k or random-k curve averages about a third. Each configuration runs
    /// by itself (a configuration that leaves a layer empty through the masked pass, alone), so its
    /// numbers never depend on the others in the job: the shards of `ablate` equal one run.
    /// nil when the clamp is not zero or a mask is not all 0 and 1 (the masked pass handles those).
    func forwardDroppingAblated(_ job: ForwardJob) throws -> ForwardResult? {
        guard job.network.isForwardOnly, job.clampH.allSatisfy({ $0 == 0 }), job.clampC.allSatisfy({ $0 == 0 }),
              job.masks.allSatisfy({ $0.keep.allSatisfy { $0 == 0 || $0 == 1 } }) else { return nil }
        let net = job.network, n = job.inputs.count, steps = job.inputs.steps
        let hLast = net.layers.last!.hiddenSize, k = net.readout!.outputs
        let perConfigOutputs = job.outputsPerSequence * n, perConfigHidden = n * steps * hLast
        var outputs = [Float](repeating: 0, count: job.masks.count * perConfigOutputs)
        var hidden = [Float](repeating: 0, count: job.keepsHidden ? job.masks.count * perConfigHidden : 0)
        // Configurations side by side, one thread each: a configuration's rows are too few to
        // split every step's product and gates between threads without waiting on each other.
        let lastLayer = net.layout.range(ofLayer: net.layers.count - 1)
        /// Configuration c's job: its compact network (built by the thread that runs it), or the
        /// masked pass of the whole network when a layer below the last keeps no cell; nil when
        /// every cell of the last layer is at 0 (the outputs are then the readout's bias, h is 0).
        @Sendable func configuration(_ c: Int) throws -> (ForwardJob, [Int])? {
            let mask = job.masks[c]
            if mask.keep[lastLayer].allSatisfy({ $0 == 0 }) { return nil }
            var compact: ForwardJob, lastKept: [Int]
            if let (network, kept) = net.keeping(mask.keep) {
                (compact, lastKept) = (try ForwardJob(network: network, inputs: job.inputs, output: job.output), kept)
            } else {
                (compact, lastKept) = (try ForwardJob(network: net, inputs: job.inputs, output: job.output, masks: [mask]), Array(0..<hLast))
            }
            compact.keepsHidden = job.keepsHidden
            return (compact, lastKept)
        }
        let count = job.masks.count
        let next = Mutex(0), failure = Mutex<(any Error)?>(nil)
        outputs.withUnsafeMutableBufferPointer { outputBuffer in hidden.withUnsafeMutableBufferPointer { hiddenBuffer in
        let O = SendablePointer(outputBuffer.baseAddress!), H = SendablePointer(hiddenBuffer.baseAddress!)
        DispatchQueue.concurrentPerform(iterations: min(threads, count)) { _ in
            while true {
                let c: Int = next.withLock { value in defer { value += 1 }; return value }
                guard c < count else { return }
                let prepared: (ForwardJob, [Int])?
                do { prepared = try configuration(c) } catch { failure.withLock { $0 = $0 ?? error }; return }
                guard let (compactJob, kept) = prepared else {
                    let bias = net.readout!.a
                    for row in 0..<(perConfigOutputs / k) { (O.pointer + c * perConfigOutputs + row * k).update(from: bias, count: k) }
                    continue
                }
                let result = maskedForward(compactJob, workers: 1)
                result.outputs.withUnsafeBufferPointer { (O.pointer + c * perConfigOutputs).update(from: $0.baseAddress!, count: perConfigOutputs) }
                guard compactJob.keepsHidden else { continue }
                // The last layer's h, ablated cells at 0, as the masked pass writes it.
                let width = kept.count
                result.hidden.withUnsafeBufferPointer { from in
                    for row in 0..<(n * steps) {
                        let target = H.pointer + c * perConfigHidden + row * hLast, source = from.baseAddress! + row * width
                        if width == hLast { target.update(from: source, count: hLast); continue }
                        for (i, j) in kept.enumerated() { target[j] = source[i] }
                    }
                }
            }
        }
        } }
        if let error = failure.withLock({ $0 }) { throw error }
        let shape = job.output == .last ? [job.masks.count, n, k] : [job.masks.count, n, steps, k]
        return ForwardResult(outputs: outputs, hidden: hidden, shape: shape)
    }

    /// Runs one layer over all steps for `configurations` × `sequences` rows. `input` is the
    /// layer's input, time-major ([T × rows × width], or [T × sequences × width] with
    /// `sharedAcross`). Its projection x·Wᵀ + b is computed a block of steps at a time (at most
    /// the backend's `projectionBlockBytes`, at least one step) into one reused buffer, so a long
    /// batch neither holds every step's projections nor faults in fresh pages for them. Rows that own their
    /// projection take each step's products in place; with `sharedAcross` the block holds the
    /// sequences' projections only, shared by every configuration and copied into the gates each
    /// step. `keep` is [configurations × H]. A reverse layer runs from the last step to the first:
    /// processing step t reads and writes time T − 1 − t. Returns h as `output` says.
    private func runLayer(_ layer: RecurrentLayer, input: [Float], sharedAcross: Int?, keep: [Float], configurations: Int,
                          fill: (h: [Float], c: [Float]), sequences n: Int, steps: Int, workers: Int, output stored: LayerOutput) -> [Float] {
        let hs = layer.hiddenSize, width = layer.gateRows, rows = configurations * n, reverse = layer.direction == .reverse
        let inputWidth = layer.inputSize, projectedRows = sharedAcross ?? rows
        let blockSteps = max(1, min(steps, projectionBlockBytes / max(1, projectedRows * width * MemoryLayout<Float>.stride)))
        var projected = uninitializedFloats(blockSteps * projectedRows * width) { _ in }
        // Every row's h is written at every stored step, so y starts uninitialised.
        var y = uninitializedFloats(rows * (stored == .lastStep || stored == .finalState ? 1 : steps) * hs) { _ in }
        var gates = [Float](repeating: 0, count: sharedAcross == nil ? 1 : rows * width)
        var h = [Float](repeating: 0, count: rows * hs), c = h, scratch = h
        input.withUnsafeBufferPointer { x in
        projected.withUnsafeMutableBufferPointer { proj in
            keep.withUnsafeBufferPointer { keepPointer in
                fill.h.withUnsafeBufferPointer { fillH in
                    fill.c.withUnsafeBufferPointer { fillC in
                        gates.withUnsafeMutableBufferPointer { g in
                            h.withUnsafeMutableBufferPointer { hp in
                                c.withUnsafeMutableBufferPointer { cp in
                                    scratch.withUnsafeMutableBufferPointer { sp in
                                        y.withUnsafeMutableBufferPointer { yp in
                                            let P = SendablePointer(proj.baseAddress!)
                                            let G = SendablePointer(g.baseAddress!), Y = SendablePointer(yp.baseAddress!)
                                            let mask = StepMask(keep: keepPointer.baseAddress!, rowsPerConfiguration: n,
                                                                fillH: fillH.baseAddress!, fillC: fillC.baseAddress!)
                                            // Rows that own their projection take each step's products in place;
                                            // shared projections are copied into the gates first.
                                            // A block of processing steps is projected at once, in time order:
                                                // times blockLow ..< blockLow + count (descending steps for a reverse layer).
                                            var blockLow = 0
                                            for t in 0..<steps {
                                                let time = reverse ? steps - 1 - t : t
                                                if t % blockSteps == 0 {
                                                    let count = min(blockSteps, steps - t)
                                                    blockLow = reverse ? steps - t - count : t
                                                    layer.project(x.baseAddress! + blockLow * projectedRows * inputWidth, rows: count * projectedRows,
                                                                  into: P.pointer, workers: workers)
                                                }
                                                let b = time - blockLow
                                                let gatesAtT: UnsafeMutablePointer<Float>
                                                if let shared = sharedAcross {
                                                    forEachRow(rows, workers: workers) { r in
                                                        (G.pointer + r * width).update(from: P.pointer + (b * shared + r % shared) * width, count: width)
                                                    }
                                                    gatesAtT = G.pointer
                                                } else {
                                                    gatesAtT = P.pointer + b * rows * width
                                                }
                                                let output: (@Sendable (Int) -> UnsafeMutablePointer<Float>)?
                                                switch stored {
                                                case .timeMajor: output = { r in Y.pointer + (time * rows + r) * hs }
                                                case .sequenceMajor: output = { r in Y.pointer + (r * steps + time) * hs }
                                                case .lastStep:
                                                    if time == steps - 1 { output = { r in Y.pointer + r * hs } } else { output = nil }
                                                case .finalState:
                                                    if t == steps - 1 { output = { r in Y.pointer + r * hs } } else { output = nil }
                                                }
                                                layer.advance(rows: rows, gates: gatesAtT, h: hp.baseAddress!, c: cp.baseAddress!,
                                                              scratch: sp.baseAddress!, hIsZero: t == 0, workers: workers, mask: mask,
                                                              output: output)
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
        }
        return y
    }
}

/// Which of a layer's hidden states `runLayer` returns.
enum LayerOutput {
    /// [T × rows × H]: every step, each step's rows contiguous (the next layer's projection input).
    case timeMajor
    /// [rows × T × H]: every step, each row's steps contiguous (`ForwardResult.hidden`).
    case sequenceMajor
    /// [rows × H]: the last time step only (a `last` readout when the hidden states are not kept).
    case lastStep
    /// [rows × H]: the state after the last processing step (time T − 1 forward, 0 reverse): a
    /// `final-states` readout of a bidirectional level when the hidden states are not kept.
    case finalState
}

/// A Float array of `count` elements that `fill` initialises completely (no zeroing first).
func uninitializedFloats(_ count: Int, _ fill: (UnsafeMutablePointer<Float>) -> Void) -> [Float] {
    [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
        if count > 0 { fill(buffer.baseAddress!) }
        initialized = count
    }
}
