import Foundation

/// A dataset file: `inputs` [N, T, I] float, and `labels` [N] integer (classification) or
/// `targets` [N, K] / [N, T, K] float (regression).
public struct Dataset: Sendable {
    public var inputs: SequenceBatch
    public var labels: [Int]?
    public var targets: [Float]?
    public var targetShape: [Int]?
    /// The file it was read from (for messages).
    public var fileName = ""

    /// A dataset in memory (labels for classification, targets [N, K] or [N, T, K] for regression).
    public init(inputs: SequenceBatch, labels: [Int]? = nil, targets: [Float]? = nil, targetShape: [Int]? = nil, fileName: String = "") {
        self.inputs = inputs; self.labels = labels; self.targets = targets; self.targetShape = targetShape; self.fileName = fileName
    }

    /// Reads a dataset: a safetensors file, or a NumPy `.npz` archive (`numpy.savez`) holding
    /// arrays of the same names. `requireAnswers: false` accepts inputs alone (explaining a
    /// model's own predictions needs no labels).
    /// - Throws: `FormatError` naming the file and what is missing, misshapen or not finite.
    public static func load(_ path: String, requireAnswers: Bool = true) throws -> Dataset {
        let source = try ArraySource(path)
        let name = source.name
        guard let shape = source.shape("inputs") else {
            if source.looksLikeModel {
                throw FormatError(file: name, "holds a model's weights, not a dataset: a dataset is a .safetensors or .npz file with 'inputs' and 'labels' or 'targets'")
            }
            throw FormatError(file: name, "missing tensor 'inputs'")
        }
        guard shape.count == 3 else {
            throw FormatError(file: name, "'inputs' has shape \(shape), expected [N, T, I]")
        }
        guard shape.allSatisfy({ $0 >= 1 }) else { throw FormatError(file: name, "the dataset is empty (inputs \(shape))") }
        let values = try source.floats("inputs")
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw FormatError(file: name, "'inputs' contains \(values[bad]) at element \(bad)")
        }
        var data = Dataset(inputs: try SequenceBatch(count: shape[0], steps: shape[1], width: shape[2], values: values))
        data.fileName = name
        if let labelShape = source.shape("labels") {
            guard labelShape == [shape[0]] else {
                throw FormatError(file: name, "'labels' has shape \(labelShape), expected [\(shape[0])]")
            }
            data.labels = try source.integers("labels")
        }
        if let t = source.shape("targets") {
            guard (t.count == 2 || t.count == 3), t[0] == shape[0], t.count == 2 || t[1] == shape[1] else {
                throw FormatError(file: name, "'targets' has shape \(t), expected [\(shape[0]), K] or [\(shape[0]), \(shape[1]), K]")
            }
            let targets = try source.floats("targets")
            if let bad = targets.firstIndex(where: { !$0.isFinite }) {
                throw FormatError(file: name, "'targets' contains \(targets[bad]) at element \(bad)")
            }
            data.targets = targets
            data.targetShape = t
        }
        // Both answers: which one a model is scored on would be a guess, so neither is used.
        guard data.labels == nil || data.targets == nil else {
            throw FormatError(file: name, "holds both 'labels' (classification) and 'targets' (regression); CellAudit will not guess which the model is scored on: save the dataset with only the one that fits the model")
        }
        guard !requireAnswers || data.labels != nil || data.targets != nil else {
            throw FormatError(file: name, "the dataset has neither 'labels' nor 'targets'")
        }
        return data
    }
}

/// The named arrays of a dataset file, whichever format holds them.
private struct ArraySource {
    let name: String
    let shape: (String) -> [Int]?
    let floats: (String) throws -> [Float]
    let integers: (String) throws -> [Int]
    /// A safetensors file of weights (a CellAudit model file or a state dict), not a dataset.
    var looksLikeModel = false

    init(_ path: String) throws {
        let name = (path as NSString).lastPathComponent
        self.name = name
        let format = FileFormat.sniff(path)
        if format == .missing { throw FormatError(file: name, "no such file") }
        if let refusal = format.datasetRefusal { throw FormatError(file: name, refusal.hasPrefix("is ") ? String(refusal.dropFirst(3)) : refusal) }
        if format == .npz || (format == .zip && path.lowercased().hasSuffix(".npz")) {
            let arrays = try NumPyArchive.load(path)
            shape = { arrays[$0]?.shape }
            // Values past Float's range become ±Inf, which the finiteness checks then name.
            floats = { key in arrays[key]!.values.map { Float($0) } }
            integers = { key in
                let array = arrays[key]!
                guard array.isInteger else { throw FormatError(file: name, "'\(key)' has dtype \(array.descr); it must hold integers") }
                return try array.values.enumerated().map { i, value in
                    // Exactly representable only: a uint64 label of 2^63 or more is refused, not trapped on.
                    guard let exact = Int(exactly: value) else {
                        throw FormatError(file: name, "'\(key)' holds \(value) at index \(i), outside the integers CellAudit reads")
                    }
                    return exact
                }
            }
        } else {
            let file = try SafeTensorsFile(path: path)
            looksLikeModel = file.metadata["cell"] != nil || file.tensors.keys.contains { $0.contains("weight_ih") || $0.contains("weight_hh") || $0.hasSuffix("kernel") }
            shape = { file.tensors[$0]?.shape }
            floats = { try file.floats($0) }
            integers = { try file.integers($0) }
        }
    }
}

extension Dataset {
    /// Checks, before any work, that the dataset fits `model`: its input width, and labels in
    /// range (classification, last-step output) or targets of the output's shape (regression).
    /// - Throws: `DataError.mismatch` naming this dataset's file and the problem.
    public func check(against model: LoadedModel) throws {
        func fail(_ problem: String) -> DataError { .mismatch("\(fileName): \(problem)") }
        let network = model.network
        guard inputs.width == network.inputSize else {
            throw fail("the data has \(inputs.width) input channels but the model takes \(network.inputSize)")
        }
        // Inputs alone (loaded with requireAnswers: false): nothing more to check.
        guard labels != nil || targets != nil else { return }
        guard let readout = network.readout else {
            throw ModelError.shape("\(model.fileName) has no readout (no linear map reads its last layer), so there is nothing to score \(fileName) with; characterize, attractors and audit without --data need none")
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
