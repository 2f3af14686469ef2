import Foundation

/// A dataset file: `inputs` [N, T, I] float, and `labels` [N] integer (classification) or
/// `targets` [N, K] / [N, T, K] float (regression).
public struct Dataset: Sendable {
    /// The recurrent stack's inputs [N, T, I]. For a dataset of token ids, a placeholder [N, T, 1]
    /// holding the ids until `prepare(for:)` embeds them with the model's embedding.
    public var inputs: SequenceBatch
    /// Token ids [N, T], for a model whose front end is a token embedding (else nil).
    public var tokens: TokenBatch?
    /// The embedding `inputs` were made with (its source tensor), once `prepare(for:)` has run.
    public private(set) var embeddedWith: String?
    public var labels: [Int]?
    public var targets: [Float]?
    public var targetShape: [Int]?
    /// The file it was read from (for messages).
    public var fileName = ""

    /// A dataset in memory (labels for classification, targets [N, K] or [N, T, K] for regression).
    public init(inputs: SequenceBatch, labels: [Int]? = nil, targets: [Float]? = nil, targetShape: [Int]? = nil, fileName: String = "") {
        self.inputs = inputs; self.labels = labels; self.targets = targets; self.targetShape = targetShape; self.fileName = fileName
    }
}

extension Dataset {
    /// A dataset of token ids [N, T] (for a model with a token embedding); `inputs` holds the ids
    /// as a placeholder until `prepare(for:)` embeds them.
    public init(tokens: TokenBatch, labels: [Int]? = nil, targets: [Float]? = nil, targetShape: [Int]? = nil, fileName: String = "") throws {
        self.init(inputs: try SequenceBatch(count: tokens.count, steps: tokens.steps, width: 1, values: tokens.ids.map(Float.init)),
                  labels: labels, targets: targets, targetShape: targetShape, fileName: fileName)
        self.tokens = tokens
    }
}

extension Dataset {
    /// Checks, before any work, that the dataset fits `model`, and embeds token ids where the model
    /// has a token embedding: token ids for a model with an embedding (each id in its vocabulary)
    /// and float vectors of its input width for one without, labels in range (classification,
    /// last-step output) or targets of the output's shape (regression).
    /// - Throws: `DataError.mismatch` naming this dataset's file and the problem (an id out of
    ///   range by sequence and step).
    public mutating func prepare(for model: LoadedModel) throws {
        func fail(_ problem: String) -> DataError { .mismatch("\(fileName): \(problem)") }
        let network = model.network
        switch (model.embedding, tokens) {
        case (let embedding?, let tokens?):
            if embeddedWith != embedding.source {
                let lengths = inputs.lengths
                inputs = try embedding.embed(tokens, file: fileName)
                try inputs.setLengths(lengths)
                embeddedWith = embedding.source
            }
        case (let embedding?, nil):
            throw fail("'inputs' holds float vectors [\(inputs.count), \(inputs.steps), \(inputs.width)], but \(model.fileName) begins with a token embedding ('\(embedding.source)', \(embedding.vocabularySize) tokens): give integer token ids [N, T]")
        case (nil, _?):
            throw fail("'inputs' holds integer token ids [\(inputs.count), \(inputs.steps)], but \(model.fileName) has no token embedding: its first layer reads float vectors of \(network.inputSize) channels [N, T, \(network.inputSize)]")
        case (nil, nil): break
        }
        if let length = model.sequenceLength {
            // The model runs every sequence for at most `length` steps (ONNX sequence_lens).
            try inputs.setLengths((inputs.lengths ?? [Int](repeating: inputs.steps, count: inputs.count)).map { min($0, length) })
        }
        guard inputs.width == network.inputSize else {
            throw fail("the data has \(inputs.width) input channels but the model takes \(network.inputSize)"
                       + (model.ignored.isEmpty ? "" : " (with --core, the data is the recurrent stack's input, after the front end it leaves out)"))
        }
        // Inputs alone (loaded with requireAnswers: false): nothing more to check.
        guard labels != nil || targets != nil else { return }
        guard let readout = network.readout else {
            throw ModelError.shape("\(model.fileName) has no readout (\(model.readoutNote ?? "no linear map reads its last layer")), so there is nothing to score \(fileName) with; characterize, attractors and audit without --data need none")
        }
        let k = readout.outputs
        switch model.task {
        case .classification:
            guard let labels else { throw fail("a classification model needs 'labels' in the dataset") }
            guard model.output == .last else {
                throw ModelError.shape("\(model.fileName) reads its output at every step, and \(fileName) holds one label per sequence: a classification score needs output mode 'last' (give per-step 'targets' for a regression, or a model read at the last step)")
            }
            if let problem = Score.labelProblem(labels, outputs: k) { throw fail(problem) }
        case .regression:
            guard targets != nil, let shape = targetShape else { throw fail("a regression model needs 'targets' in the dataset") }
            let expected = model.output == .last ? [inputs.count, k] : [inputs.count, inputs.steps, k]
            guard shape == expected else { throw fail("'targets' has shape \(shape), but the model's outputs are \(expected)") }
        }
    }
}

/// A dataset that does not fit the model it is used with.
public enum DataError: Error, CustomStringConvertible, Equatable {
    case mismatch(String)
    public var description: String {
        switch self { case .mismatch(let s): "bad data: \(s)" }
    }
}

/// How well outputs match a dataset: accuracy for classification, MSE for regression.
public struct Score: Sendable, Equatable {
    public var task: ModelTask
    public var value: Double
    public var name: String { task == .classification ? "accuracy" : "mse" }

    /// A classifier with one output is a single-logit binary classifier (trained with a sigmoid
    /// and binary cross-entropy, as `nn.BCEWithLogitsLoss`): it predicts class 1 where its logit
    /// is above 0, and its labels are 0 and 1. (A softmax over one output would always predict
    /// class 0, so no other reading of one output exists.)
    public static func isBinary(outputs: Int) -> Bool { outputs == 1 }

    /// The first label a classifier of `outputs` outputs cannot have (0…K−1, or 0 and 1 for a
    /// single logit), as a message; nil when every label fits.
    public static func labelProblem(_ labels: [Int], outputs k: Int) -> String? {
        let binary = isBinary(outputs: k)
        guard let bad = labels.first(where: { $0 < 0 || $0 >= (binary ? 2 : k) }) else { return nil }
        return binary ? "label \(bad) is not 0 or 1, as a single-logit binary classifier's labels are" : "label \(bad) is outside the model's \(k) classes"
    }

    /// Scores configuration `config` of a forward result.
    public static func of(_ result: ForwardResult, config: Int = 0, dataset: Dataset, task: ModelTask, output: OutputMode) throws -> Score {
        let n = dataset.inputs.count
        let k = result.shape.last!
        let per = result.outputs.count / result.shape[0]
        let outs = result.outputs[(config * per)..<((config + 1) * per)]
        switch task {
        case .classification:
            guard let labels = dataset.labels else { throw DataError.mismatch("a classification model needs 'labels' in the dataset") }
            guard output == .last else { throw ModelError.shape("classification scores need output mode 'last'") }
            if let problem = labelProblem(labels, outputs: k) { throw DataError.mismatch(problem) }
            let binary = isBinary(outputs: k)
            var correct = 0
            for i in 0..<n {
                let row = outs[(outs.startIndex + i * k)..<(outs.startIndex + (i + 1) * k)]
                let predicted = binary ? (row[row.startIndex] > 0 ? 1 : 0) : row.indices.max { row[$0] < row[$1] }! - row.startIndex
                if predicted == labels[i] { correct += 1 }
            }
            return Score(task: task, value: Double(correct) / Double(n))
        case .regression:
            guard let targets = dataset.targets else { throw DataError.mismatch("a regression model needs 'targets' in the dataset") }
            guard targets.count == outs.count else {
                throw DataError.mismatch("targets \(dataset.targetShape ?? []) do not match outputs \(Array(result.shape.dropFirst()))")
            }
            if output == .sequence, let lengths = dataset.inputs.lengths {
                // Padded steps are no outputs of the model: the error of each sequence's own steps.
                let T = dataset.inputs.steps, k = targets.count / max(1, n * T)
                var sum = 0.0, count = 0
                for s in 0..<n {
                    for index in (s * T * k)..<((s * T + lengths[s]) * k) {
                        let d = Double(outs[outs.startIndex + index] - targets[index]); sum += d * d
                    }
                    count += lengths[s] * k
                }
                return Score(task: task, value: sum / Double(count))
            }
            let sum = zip(outs, targets).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }
            return Score(task: task, value: sum / Double(targets.count))
        }
    }

    /// The continuous loss of configuration `config` (METHOD.md §6): for classification the mean
    /// cross-entropy of the true class, −log softmax(y)[label] averaged over samples (natural
    /// log, by log-sum-exp in Double); for regression the MSE.
    /// - Throws: `ModelError.shape` as `of` does.
    public static func loss(_ result: ForwardResult, config: Int = 0, dataset: Dataset, task: ModelTask, output: OutputMode) throws -> Double {
        guard task == .classification else { return try of(result, config: config, dataset: dataset, task: task, output: output).value }
        _ = try of(result, config: config, dataset: dataset, task: task, output: output)   // the same checks
        let n = dataset.inputs.count, k = result.shape.last!
        let per = result.outputs.count / result.shape[0]
        let outs = result.outputs[(config * per)..<((config + 1) * per)]
        var total = 0.0
        if isBinary(outputs: k) {
            // Binary cross-entropy with logits, stably: max(y, 0) − y·label + log(1 + e^−|y|).
            for i in 0..<n {
                let y = Double(outs[outs.startIndex + i]), label = Double(dataset.labels![i])
                total += max(y, 0) - y * label + log1p(exp(-abs(y)))
            }
            return total / Double(n)
        }
        for i in 0..<n {
            let row = outs[(outs.startIndex + i * k)..<(outs.startIndex + (i + 1) * k)].map(Double.init)
            let top = row.max()!
            let logSum = top + log(row.reduce(0.0) { $0 + exp($1 - top) })
            total += logSum - row[dataset.labels![i]]
        }
        return total / Double(n)
    }
}
