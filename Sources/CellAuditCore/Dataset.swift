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
    /// The index in its file of this dataset's first sequence (a chunk of a larger file starts
    /// past 0), so that messages name sequences as the file numbers them.
    public var firstSequence = 0

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
                inputs = try embedding.embed(tokens, file: fileName, firstSequence: firstSequence)
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
            if let problem = Score.labelProblem(labels, outputs: k, firstSequence: firstSequence) { throw fail(problem) }
        case .regression:
            guard targets != nil, let shape = targetShape else { throw fail("a regression model needs 'targets' in the dataset") }
            let expected = model.outputShape(sequences: inputs.count, steps: inputs.steps)
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
    /// `firstSequence`: the index in its file of the first label's sequence, which the message names.
    public static func labelProblem(_ labels: [Int], outputs k: Int, firstSequence: Int = 0) -> String? {
        let binary = isBinary(outputs: k)
        guard let at = labels.firstIndex(where: { $0 < 0 || $0 >= (binary ? 2 : k) }) else { return nil }
        let bad = labels[at], which = "label \(bad) of sequence \(firstSequence + at)"
        return binary ? "\(which) is not 0 or 1, as a single-logit binary classifier's labels are" : "\(which) is outside the model's \(k) classes"
    }

    /// Scores configuration `config` of a forward result (`ScoreAccumulator` over one chunk).
    public static func of(_ result: ForwardResult, config: Int = 0, dataset: Dataset, task: ModelTask, output: OutputMode) throws -> Score {
        var accumulator = ScoreAccumulator(task: task, output: output)
        try accumulator.add(result, config: config, chunk: dataset, loss: false)
        return accumulator.score
    }

    /// The continuous loss of configuration `config` (METHOD.md §6): for classification the mean
    /// cross-entropy of the true class, −log softmax(y)[label] averaged over samples (natural
    /// log, by log-sum-exp in Double); for regression the MSE.
    /// - Throws: `ModelError.shape` as `of` does.
    public static func loss(_ result: ForwardResult, config: Int = 0, dataset: Dataset, task: ModelTask, output: OutputMode) throws -> Double {
        var accumulator = ScoreAccumulator(task: task, output: output)
        try accumulator.add(result, config: config, chunk: dataset)
        return accumulator.loss
    }
}
