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

    public static func load(_ path: String) throws -> Dataset {
        let file = try SafeTensorsFile(path: path)
        let name = file.fileName
        let info = try file.info("inputs")
        guard info.shape.count == 3 else {
            throw FormatError(file: name, "'inputs' has shape \(info.shape), expected [N, T, I]")
        }
        guard info.shape.allSatisfy({ $0 >= 1 }) else { throw FormatError(file: name, "the dataset is empty (inputs \(info.shape))") }
        let values = try file.floats("inputs")
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw FormatError(file: name, "'inputs' contains \(values[bad]) at element \(bad)")
        }
        var data = Dataset(inputs: try SequenceBatch(count: info.shape[0], steps: info.shape[1], width: info.shape[2], values: values))
        data.fileName = name
        if file.tensors["labels"] != nil {
            let labels = try file.integers("labels")
            guard try file.info("labels").shape == [info.shape[0]] else {
                throw FormatError(file: name, "'labels' has shape \(try file.info("labels").shape), expected [\(info.shape[0])]")
            }
            data.labels = labels
        }
        if let t = file.tensors["targets"] {
            guard (t.shape.count == 2 || t.shape.count == 3), t.shape[0] == info.shape[0],
                  t.shape.count == 2 || t.shape[1] == info.shape[1] else {
                throw FormatError(file: name, "'targets' has shape \(t.shape), expected [\(info.shape[0]), K] or [\(info.shape[0]), \(info.shape[1]), K]")
            }
            let targets = try file.floats("targets")
            if let bad = targets.firstIndex(where: { !$0.isFinite }) {
                throw FormatError(file: name, "'targets' contains \(targets[bad]) at element \(bad)")
            }
            data.targets = targets
            data.targetShape = t.shape
        }
        guard data.labels != nil || data.targets != nil else {
            throw FormatError(file: name, "the dataset has neither 'labels' nor 'targets'")
        }
        return data
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
        guard let readout = network.readout else { throw ModelError.shape("the model has no readout to score the data with") }
        let k = readout.outputs
        switch model.task {
        case .classification:
            guard let labels else { throw fail("a classification model needs 'labels' in the dataset") }
            guard model.output == .last else { throw ModelError.shape("classification scores need output mode 'last'") }
            if let bad = labels.first(where: { $0 < 0 || $0 >= k }) { throw fail("label \(bad) is outside the model's \(k) classes") }
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
            if let bad = labels.first(where: { $0 < 0 || $0 >= k }) {
                throw DataError.mismatch("label \(bad) is outside the model's \(k) classes")
            }
            var correct = 0
            for i in 0..<n {
                let row = outs[(outs.startIndex + i * k)..<(outs.startIndex + (i + 1) * k)]
                let predicted = row.indices.max { row[$0] < row[$1] }! - row.startIndex
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
        for i in 0..<n {
            let row = outs[(outs.startIndex + i * k)..<(outs.startIndex + (i + 1) * k)].map(Double.init)
            let top = row.max()!
            let logSum = top + log(row.reduce(0.0) { $0 + exp($1 - top) })
            total += logSum - row[dataset.labels![i]]
        }
        return total / Double(n)
    }
}
