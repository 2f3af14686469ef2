import Foundation

/// What a relevance pass explains and by which rule: one readout output per sequence, traced back
/// through the readout and every recurrent layer to the input values and to every cell's h at
/// every step (METHOD.md §7; docs/METHOD.md, "Relevance").
public struct RelevanceJob: Sendable {
    /// How relevance flows backwards.
    public enum Rule: Sendable, Equatable {
        /// Layer-wise relevance propagation as in Arras et al. 2019 (reference code
        /// ArrasL/LRP_for_LSTM, `code/LSTM/LRP_linear_layer.py`): the ε-rule on every linear map,
        /// signal-take-all at every gated product. `epsilon` ≥ 0 stabilises each denominator by
        /// ε·sign(z) (sign(0) = +1); `biasFactor` ∈ [0, 1] shares that fraction of each map's
        /// bias and stabiliser among its inputs (1 conserves relevance).
        case lrp(epsilon: Float, biasFactor: Float)
        /// Gradient × input of the unmodified network (Shrikumar et al. 2016; the baseline of
        /// Arras et al. 2019): every relevance value is a signal times ∂score/∂signal.
        case gradientTimesInput
    }

    public var network: RecurrentNetwork
    public var inputs: SequenceBatch
    /// Which readout outputs exist: the last step only, or every step.
    public var output: OutputMode
    /// [N]: the readout output (0 ..< K) explained for each sequence.
    public var targets: [Int]
    /// Sequence outputs only: the one step whose output is explained; nil sums the target output
    /// over every step. Must be nil for `last` outputs.
    public var step: Int?
    public var rule: Rule
    /// Told, after each chunk of sequences a backend finishes, how many of the job's sequences
    /// are done (`inChunks`); nil: silent. Progress only: it never changes a number.
    public var progress: (@Sendable (_ done: Int, _ total: Int) -> Void)? = nil
    /// The index in its dataset of the first sequence (a chunk of a larger file starts past 0),
    /// so that messages name sequences as the file numbers them.
    public var firstSequence = 0

    /// - Throws: `DataError.mismatch` when the inputs do not fit the network or a target is out of
    ///   range; `ModelError.shape` when the network has no readout; `RelevanceError.invalid` for
    ///   ε < 0, a bias factor outside [0, 1], a non-finite parameter, or a step on a model without
    ///   outputs at every step or outside the sequence.
    public init(network: RecurrentNetwork, inputs: SequenceBatch, output: OutputMode, targets: [Int], step: Int? = nil,
                rule: Rule = .lrp(epsilon: Defaults.relevanceEpsilon, biasFactor: Defaults.relevanceBiasFactor), firstSequence: Int = 0) throws {
        guard inputs.width == network.inputSize else {
            throw DataError.mismatch("the data has \(inputs.width) input channels but the model takes \(network.inputSize)")
        }
        guard let readout = network.readout else { throw ModelError.shape("the model has no readout whose output could be explained") }
        guard targets.count == inputs.count else {
            throw DataError.mismatch("\(targets.count) targets for \(inputs.count) sequences")
        }
        if let bad = targets.first(where: { !(0..<readout.outputs).contains($0) }) {
            throw DataError.mismatch("target output \(bad) does not exist: the readout has \(readout.outputs) outputs (0…\(readout.outputs - 1))")
        }
        if case .lrp(let epsilon, let biasFactor) = rule {
            guard epsilon.isFinite, epsilon >= 0 else { throw RelevanceError.invalid("epsilon must be finite and ≥ 0, got \(epsilon)") }
            guard biasFactor.isFinite, (0...1).contains(biasFactor) else {
                throw RelevanceError.invalid("the bias factor must lie in [0, 1], got \(biasFactor)")
            }
        }
        if let step {
            guard output == .sequence else { throw RelevanceError.invalid("a step can be chosen only for a model with an output at every step; this one has its output at the last step") }
            guard (0..<inputs.steps).contains(step) else {
                throw RelevanceError.invalid("step \(step) is outside the sequences' \(inputs.steps) steps (0…\(inputs.steps - 1))")
            }
            if let lengths = inputs.lengths, let short = lengths.firstIndex(where: { step >= $0 }) {
                throw RelevanceError.invalid("step \(step) is padding in sequence \(firstSequence + short), whose length is \(lengths[short]): choose a step below every sequence's length")
            }
        }
        self.network = network; self.inputs = inputs; self.output = output; self.targets = targets; self.step = step; self.rule = rule
        self.firstSequence = firstSequence
    }

    /// The steps whose target output is explained (and summed into the score).
    public var explainedSteps: [Int] {
        if output == .last { return [inputs.steps - 1] }
        return step.map { [$0] } ?? Array(0..<inputs.steps)
    }

    /// Runs `body` on consecutive blocks of sequences, each at most `bytes` of per-sequence
    /// memory `perSequenceBytes` large, and joins their results in order (the whole job when it
    /// fits).
    public func inChunks(bytes: Int, perSequenceBytes: Int, _ body: (RelevanceJob) throws -> RelevanceResult) throws -> RelevanceResult {
        let n = inputs.count, chunk = max(1, min(n, bytes / max(1, perSequenceBytes)))
        let result = chunk < n ? .concatenating(try stride(from: 0, to: n, by: chunk).map { start in
            let part = try body(try slice(start..<min(n, start + chunk)))
            progress?(min(n, start + chunk), n)
            return part
        }) : try body(self)
        if chunk >= n { progress?(n, n) }
        try result.checkFinite(firstSequence: firstSequence)
        return result
    }

    /// The same job on sequences `range` (for chunking), with their lengths.
    public func slice(_ range: Range<Int>) throws -> RelevanceJob {
        try RelevanceJob(network: network, inputs: try inputs.sequences(range), output: output, targets: Array(targets[range]), step: step,
                         rule: rule, firstSequence: firstSequence + range.lowerBound)
    }
}

/// The outcome of a relevance pass over N sequences of T steps, I inputs, C cells (all layers,
/// in order).
public struct RelevanceResult: Sendable, Equatable {
    public let count: Int, steps: Int, width: Int, cells: Int
    /// [N, T, I]: the relevance of every input value.
    public var input: [Float]
    /// [N, T, C]: the relevance of every cell's h at every step (all that reaches h_t: from the
    /// readout, the layer above and step t + 1).
    public var cellRelevance: [Float]
    /// [N]: the explained output value (summed over the explained steps).
    public var score: [Float]
    /// [N]: the relevance that reaches the initial state h₀ (and c₀) of every layer. With LRP and
    /// bias factor 1, Σ input + rest = score; gradient × input reports 0 (h₀ = c₀ = 0).
    public var rest: [Float]
    /// [N]: the smallest |z + ε·sign(z)| that any ε-rule of the sequence divided by (LRP; NaN for
    /// gradient × input). Relevance is only as exact as this is far from float32 noise.
    public var minimumDenominator: [Float]

    public init(count: Int, steps: Int, width: Int, cells: Int, input: [Float], cellRelevance: [Float], score: [Float],
                rest: [Float], minimumDenominator: [Float]) {
        precondition(input.count == count * steps * width && cellRelevance.count == count * steps * cells)
        precondition(score.count == count && rest.count == count && minimumDenominator.count == count)
        self.count = count; self.steps = steps; self.width = width; self.cells = cells
        self.input = input; self.cellRelevance = cellRelevance; self.score = score; self.rest = rest
        self.minimumDenominator = minimumDenominator
    }

    /// Sequences `range` of this result.
    public func sequences(_ range: Range<Int>) -> RelevanceResult {
        RelevanceResult(count: range.count, steps: steps, width: width, cells: cells,
                        input: Array(input[(range.lowerBound * steps * width)..<(range.upperBound * steps * width)]),
                        cellRelevance: Array(cellRelevance[(range.lowerBound * steps * cells)..<(range.upperBound * steps * cells)]),
                        score: Array(score[range]), rest: Array(rest[range]), minimumDenominator: Array(minimumDenominator[range]))
    }

    /// Results of consecutive sequence chunks, in order, as one.
    public static func concatenating(_ parts: [RelevanceResult]) -> RelevanceResult {
        let first = parts[0]
        return RelevanceResult(count: parts.reduce(0) { $0 + $1.count }, steps: first.steps, width: first.width, cells: first.cells,
                               input: parts.flatMap(\.input), cellRelevance: parts.flatMap(\.cellRelevance),
                               score: parts.flatMap(\.score), rest: parts.flatMap(\.rest),
                               minimumDenominator: parts.flatMap(\.minimumDenominator))
    }

    /// - Throws: `RelevanceError.invalid` naming the first sequence whose score or relevance is
    ///   NaN or ±Inf (the model's values overflow float32 on that input).
    /// `firstSequence`: the index in its dataset of this result's first sequence, for the message.
    public func checkFinite(firstSequence: Int = 0) throws {
        let per = steps * width, perCells = steps * cells
        for s in 0..<count {
            let finite = score[s].isFinite && rest[s].isFinite && input[(s * per)..<((s + 1) * per)].allSatisfy(\.isFinite)
                && cellRelevance[(s * perCells)..<((s + 1) * perCells)].allSatisfy(\.isFinite)
            if !finite {
                // A zero denominator is 0/0 under ε = 0 (zero input and zero bias do it), not an overflow.
                if score[s].isFinite, minimumDenominator.indices.contains(s), minimumDenominator[s] == 0 {
                    throw RelevanceError.invalid("the relevance of sequence \(firstSequence + s) is not finite (score \(score[s])): a linear map's output is exactly 0 there, and with ε = 0 the ε-rule divides 0 by 0; give --epsilon > 0 (the default is \(Defaults.relevanceEpsilon))")
                }
                throw RelevanceError.invalid("the relevance of sequence \(firstSequence + s) is not finite (score \(score[s])): the model's values overflow float32 on this data")
            }
        }
    }

    /// Σ input of each sequence (in Double).
    private func inputTotal(_ s: Int) -> Double {
        input[(s * steps * width)..<((s + 1) * steps * width)].reduce(0.0) { $0 + Double($1) }
    }

    /// |Σ input + rest − score| / |score| per sequence: the conservation check (0 up to rounding
    /// with bias factor 1).
    public func conservationErrors() -> [Double] {
        (0..<count).map { s in abs(inputTotal(s) + Double(rest[s]) - Double(score[s])) / max(1e-12, abs(Double(score[s]))) }
    }

    /// Σ input / score per sequence: how much of the score reaches the inputs.
    public func inputShares() -> [Double] {
        (0..<count).map { inputTotal($0) / Double(score[$0]) }
    }

    /// Mean |relevance| of every cell over sequences and steps [C]: the LRP ranking's score.
    public func meanAbsoluteCellRelevance() -> [Double] {
        var sums = [Double](repeating: 0, count: cells)
        addAbsoluteCellRelevance(into: &sums)
        return sums.map { $0 / Double(max(1, count * steps)) }
    }

    /// Adds Σ |relevance| of every cell over this result's sequences and steps to `sums` [C],
    /// row after row: over chunks of a dataset in order, the sums of the whole at once.
    public func addAbsoluteCellRelevance(into sums: inout [Double]) {
        for row in 0..<(count * steps) {
            for c in 0..<cells { sums[c] += Double(abs(cellRelevance[row * cells + c])) }
        }
    }
}

/// The ε-rule's stabilised denominator z + ε·sign(z), sign(0) = +1 (ArrasL/LRP_for_LSTM).
@inline(__always) func stabilised(_ z: Float, _ epsilon: Float) -> Float { z >= 0 ? z + epsilon : z - epsilon }

/// ε·sign(z), the stabiliser a map's bias share carries.
@inline(__always) func stabiliser(_ z: Float, _ epsilon: Float) -> Float { z >= 0 ? epsilon : -epsilon }

extension RelevanceJob {
    /// The readout's part, shared by every backend: for sequence n, the relevance (or gradient)
    /// that each explained step's target output sends to the last layer's h.
    ///
    /// - `hidden`: the last layer's output, [T][N][W] (step-major), or [N][T][W] with
    ///   `sequenceMajor`; `injected` is laid out the same way. W is the layer's output width (both
    ///   directions of a bidirectional layer side by side, time-ordered). A final-states reading
    ///   reads, and injects into, the reverse direction's columns at step 0, the rest at the
    ///   explained step (`RecurrentNetwork.Readout.reading`).
    /// - Returns `injected` [T][N][H] and `score` [N]. LRP: the readout z = V h + a is a map
    ///   over H inputs whose relevance at the output is z itself, so h_j gets h_j·V_kj·z/(z + εs)
    ///   + bias_factor·(a_k + εs)·(z/(z + εs))/H. Gradient: V_kj.
    public func readoutInjection(hidden: UnsafePointer<Float>, sequenceMajor: Bool = false) -> (injected: [Float], score: [Float], minimumDenominator: [Float]) {
        let readout = network.readout!, n = inputs.count, steps = inputs.steps, hs = network.outputWidth
        var injected = [Float](repeating: 0, count: steps * n * hs)
        // Columns read at step 0 rather than the explained step: a final-states reading's reverse ones.
        var reverseColumns = 0..<0
        if output == .last && network.readsFinalStates {
            var offset = 0
            for index in network.levels.last! {
                let layer = network.layers[index]
                if layer.direction == .reverse { reverseColumns = offset..<(offset + layer.hiddenSize) }
                offset += layer.hiddenSize
            }
        }
        if !reverseColumns.isEmpty {
            return finalStatesInjection(hidden: hidden, sequenceMajor: sequenceMajor, reverseColumns: reverseColumns)
        }
        var score = [Float](repeating: 0, count: n)
        var minimum = [Float](repeating: .infinity, count: n)
        for t in explainedSteps {
            for s in 0..<n {
                let at = sequenceMajor ? s * steps + t : t * n + s
                let k = targets[s], h = hidden + at * hs, v = readout.V[(k * hs)..<((k + 1) * hs)], v0 = k * hs
                var z = readout.a[k]
                for j in 0..<hs { z += v[v0 + j] * h[j] }
                score[s] += z
                let out = at * hs
                switch rule {
                case .gradientTimesInput:
                    for j in 0..<hs { injected[out + j] = v[v0 + j] }
                case .lrp(let epsilon, let biasFactor):
                    let den = stabilised(z, epsilon)
                    minimum[s] = min(minimum[s], abs(den))
                    let m = z / den
                    let share = biasFactor * (readout.a[k] + stabiliser(z, epsilon)) * m / Float(hs)
                    for j in 0..<hs { injected[out + j] = h[j] * v[v0 + j] * m + share }
                }
            }
        }
        return (injected, score, minimum)
    }

    /// `readoutInjection` for a final-states reading of a bidirectional last layer: each
    /// sequence's readout input is its forward columns at step T − 1 and its reverse columns at
    /// step 0, and each column's share is injected where it was read.
    private func finalStatesInjection(hidden: UnsafePointer<Float>, sequenceMajor: Bool,
                                      reverseColumns: Range<Int>) -> (injected: [Float], score: [Float], minimumDenominator: [Float]) {
        let readout = network.readout!, n = inputs.count, steps = inputs.steps, hs = network.outputWidth
        var injected = [Float](repeating: 0, count: steps * n * hs)
        var score = [Float](repeating: 0, count: n), minimum = [Float](repeating: .infinity, count: n)
        for s in 0..<n {
            let k = targets[s]
            // Where column j was read: its flat position in `hidden` and `injected`.
            func position(_ j: Int) -> Int {
                let t = reverseColumns.contains(j) ? 0 : steps - 1
                return (sequenceMajor ? s * steps + t : t * n + s) * hs + j
            }
            var z = readout.a[k]
            for j in 0..<hs { z += readout.V[k * hs + j] * hidden[position(j)] }
            score[s] = z
            switch rule {
            case .gradientTimesInput:
                for j in 0..<hs { injected[position(j)] = readout.V[k * hs + j] }
            case .lrp(let epsilon, let biasFactor):
                let den = stabilised(z, epsilon)
                minimum[s] = abs(den)
                let m = z / den
                let share = biasFactor * (readout.a[k] + stabiliser(z, epsilon)) * m / Float(hs)
                for j in 0..<hs { injected[position(j)] = hidden[position(j)] * readout.V[k * hs + j] * m + share }
            }
        }
        return (injected, score, minimum)
    }
}

extension RelevanceJob {
    /// The predicted output of every sequence, the default target of an explanation: the arg max
    /// of the readout at the last step (`last` outputs), at `step`, or summed over all steps
    /// (`sequence` outputs without a step). Ties go to the lower output.
    /// - Throws: what `ForwardJob` and the backend's forward throw.
    public static func predictedTargets(network: RecurrentNetwork, inputs: SequenceBatch, output: OutputMode, step: Int? = nil,
                                        on backend: any ComputeBackend) throws -> [Int] {
        let result = try backend.forward(try ForwardJob(network: network, inputs: inputs, output: output))
        let k = network.readout!.outputs, t = inputs.steps
        return (0..<inputs.count).map { s in
            var totals = [Float](repeating: 0, count: k)
            if output == .last {
                for o in 0..<k { totals[o] = result.outputs[s * k + o] }
            } else {
                for step in step.map({ [$0] }) ?? Array(0..<t) {
                    for o in 0..<k { totals[o] += result.outputs[(s * t + step) * k + o] }
                }
            }
            return totals.indices.max { totals[$0] < totals[$1] || (totals[$0] == totals[$1] && $0 > $1) }!
        }
    }
}

/// Which output each sequence's explanation is of (`cellaudit explain --target`).
public enum ExplanationTarget: Sendable, Equatable, CustomStringConvertible {
    /// The arg max of the readout (`RelevanceJob.predictedTargets`); classification only.
    case predicted
    /// The dataset's label of each sequence; classification only.
    case label
    /// One output index for every sequence.
    case output(Int)

    /// "predicted", "label", or an output index.
    /// - Throws: `RelevanceError.invalid` for anything else.
    public init(parsing text: String) throws {
        switch text {
        case "predicted": self = .predicted
        case "label": self = .label
        default:
            guard let k = Int(text), k >= 0 else {
                throw RelevanceError.invalid("--target must be predicted, label or an output index ≥ 0, got '\(text)'")
            }
            self = .output(k)
        }
    }

    public var description: String {
        switch self {
        case .predicted: "predicted"
        case .label: "label"
        case .output(let k): "output \(k)"
        }
    }

    /// The output explained for every sequence of `dataset`.
    /// - Throws: `DataError.mismatch` when the mode needs labels the dataset lacks;
    ///   `RelevanceError.invalid` for an output index the readout lacks, or a prediction of a
    ///   regression model with more than one output; what the forward pass throws.
    public func resolve(network: RecurrentNetwork, task: ModelTask, output: OutputMode, dataset: Dataset, step: Int?,
                        on backend: any ComputeBackend) throws -> [Int] {
        let n = dataset.inputs.count, k = network.readout?.outputs ?? 0
        switch self {
        case .output(let index):
            guard index < k else { throw RelevanceError.invalid("--target \(index): the readout has \(k) outputs (0…\(k - 1))") }
            return [Int](repeating: index, count: n)
        case .label:
            guard task == .classification, let labels = dataset.labels else {
                throw DataError.mismatch("\(dataset.fileName): --target label needs a classification dataset with 'labels'")
            }
            return labels
        case .predicted:
            guard task == .classification else {
                guard k == 1 else {
                    throw RelevanceError.invalid("a regression model has no predicted class: give --target with an output index (0…\(k - 1))")
                }
                return [Int](repeating: 0, count: n)
            }
            return try RelevanceJob.predictedTargets(network: network, inputs: dataset.inputs, output: output, step: step, on: backend)
        }
    }
}

/// A relevance request that cannot be carried out as asked.
public enum RelevanceError: Error, CustomStringConvertible, Equatable {
    case invalid(String)
    public var description: String {
        switch self { case .invalid(let s): "cannot explain: \(s)" }
    }
}
