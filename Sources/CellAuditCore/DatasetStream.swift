import Foundation

/// What a dataset holds, known from its file's header before any sequence is read.
public struct DatasetShape: Sendable, Equatable {
    /// Sequences N and steps T.
    public var count: Int, steps: Int
    /// Input channels I of `inputs` [N, T, I]; 1 for token ids [N, T].
    public var width: Int
    /// Whether `inputs` holds integer token ids [N, T] (for a model with a token embedding).
    public var holdsTokens: Bool
    /// Whether the file gives each sequence's length (`lengths` [N]).
    public var hasLengths: Bool
    /// Whether the file holds `labels` [N] (classification).
    public var hasLabels: Bool
    /// The shape of `targets` ([N, K] or [N, T, K], regression), when the file holds them.
    public var targetShape: [Int]?

    public init(count: Int, steps: Int, width: Int, holdsTokens: Bool = false, hasLengths: Bool = false,
                hasLabels: Bool = false, targetShape: [Int]? = nil) {
        self.count = count; self.steps = steps; self.width = width; self.holdsTokens = holdsTokens
        self.hasLengths = hasLengths; self.hasLabels = hasLabels; self.targetShape = targetShape
    }
}

/// A dataset that can be read a range of sequences at a time, so that a command's memory does
/// not grow with the file: a dataset file (`DatasetFile` in CellAuditImport reads only the bytes
/// of the sequences asked for) or a `Dataset` in memory.
public protocol DatasetReader: Sendable {
    /// The file's name, for messages.
    var fileName: String { get }
    var shape: DatasetShape { get }
    /// Sequences `range` (0 ≤ lower < upper ≤ N) as stored: token ids not yet embedded; the
    /// chunk's `firstSequence` is `range.lowerBound`, so its messages name sequences by their
    /// index in the file.
    /// - Throws: `FormatError`/`DataError` naming the file and the value that is unreadable,
    ///   not finite, or out of range.
    func read(_ range: Range<Int>) throws -> Dataset
}

extension Dataset: DatasetReader {
    public var shape: DatasetShape {
        DatasetShape(count: inputs.count, steps: inputs.steps, width: tokens == nil ? inputs.width : 1, holdsTokens: tokens != nil,
                     hasLengths: inputs.lengths != nil, hasLabels: labels != nil, targetShape: targetShape)
    }

    /// Sequences `range` of this dataset (as prepared so far: embedded inputs stay embedded).
    public func read(_ range: Range<Int>) throws -> Dataset {
        if range == 0..<inputs.count && firstSequence == 0 { return self }
        var part = self
        part.inputs = try inputs.sequences(range)
        if let tokens { part.tokens = try TokenBatch(count: range.count, steps: tokens.steps, ids: Array(tokens.ids[(range.lowerBound * tokens.steps)..<(range.upperBound * tokens.steps)])) }
        part.labels = labels.map { Array($0[range]) }
        if let targets, let shape = targetShape {
            let row = shape.dropFirst().reduce(1, *)
            part.targets = Array(targets[(range.lowerBound * row)..<(range.upperBound * row)])
            part.targetShape = [range.count] + shape.dropFirst()
        }
        part.firstSequence = firstSequence + range.lowerBound
        return part
    }
}

/// A dataset read in chunks of sequences and prepared for one model (token ids embedded,
/// lengths capped, labels and targets checked), so that every command runs in memory bounded
/// by a chunk, whatever the dataset's size. Creating one reads the whole file once, a chunk at a
/// time, to check every value before any work starts (a bad value deep in a large file is
/// refused up front, not after an hour of work).
///
/// Consumers visit the chunks in order and accumulate in sequence order, so every sum over the
/// data sees the same terms in the same order as one pass over the whole dataset; only the
/// matrix products see batches of a chunk's shape, so a loss may differ from an unchunked run in
/// its last bits (about 1e-6 relative; `DatasetStreamTests` allows 1e-5). Memory: one chunk, plus what the
/// consumer keeps per sequence (a number or a few).
public struct DatasetStream: Sendable {
    public let reader: any DatasetReader
    /// The model the chunks are prepared for (nil: read as stored).
    public let model: LoadedModel?
    /// Sequences per chunk (the last may be shorter).
    public let sequencesPerChunk: Int
    /// The shortest sequence's length, for a dataset with lengths (after the model's cap), else nil.
    public private(set) var shortestLength: Int?

    public var fileName: String { reader.fileName }
    public var shape: DatasetShape { reader.shape }
    /// Sequences N and steps T.
    public var count: Int { reader.shape.count }
    public var steps: Int { reader.shape.steps }

    /// - Parameters:
    ///   - chunkBytes: the size of a chunk, in bytes, counted as the forward pass's widest
    ///     per-step footprint (the inputs after an embedding, or a layer's gates and states,
    ///     whichever is wider) × steps × sequences; at least one sequence per chunk.
    ///   - validate: read every chunk once now and prepare it, so that any bad value throws here.
    /// - Throws: what reading or preparing a chunk throws (`FormatError`, `DataError`,
    ///   `ModelError`), naming the file.
    public init(_ reader: any DatasetReader, preparedFor model: LoadedModel?, chunkBytes: Int = Defaults.datasetChunkBytes,
                validate: Bool = true) throws {
        self.reader = reader
        self.model = model
        let shape = reader.shape
        let inputWidth = model?.embedding?.width ?? shape.width
        let width = max(inputWidth, model?.network.layers.map { $0.gateRows + 2 * $0.hiddenSize }.max() ?? 1)
        sequencesPerChunk = max(1, min(shape.count, chunkBytes / max(1, MemoryBudget.product(shape.steps, width, MemoryLayout<Float>.stride))))
        guard validate || shape.hasLengths else { return }
        var shortest: Int?
        for range in chunks {
            let chunk = try read(range)
            if let lengths = chunk.inputs.lengths, let least = lengths.min() { shortest = min(shortest ?? least, least) }
        }
        shortestLength = shortest
    }

    /// The first `count` sequences, cut to the whole dataset's shortest length when it has
    /// lengths (so no padding enters, and the cut does not depend on how many are taken): the
    /// visited states that seed the fixed-point search.
    public func leadingSequences(_ count: Int) throws -> Dataset {
        var part = try first(count)
        if let shortestLength, part.inputs.lengths != nil {
            part.inputs = try part.inputs.gathering(Array(0..<part.inputs.count), steps: shortestLength)
        }
        return part
    }

    /// The chunks' sequence ranges, in order.
    public var chunks: [Range<Int>] {
        stride(from: 0, to: count, by: sequencesPerChunk).map { $0..<min(count, $0 + sequencesPerChunk) }
    }

    /// Sequences `range`, prepared for the model.
    public func read(_ range: Range<Int>) throws -> Dataset {
        var part = try reader.read(range)
        if let model { try part.prepare(for: model) }
        return part
    }

    /// Calls `body` with each chunk in order (its range in the dataset and its sequences).
    public func forEachChunk(_ body: (Range<Int>, Dataset) throws -> Void) throws {
        for range in chunks { try body(range, try read(range)) }
    }

    /// The first `count` sequences (or all, when fewer), prepared: for work that samples the
    /// start of a dataset (the fixed-point search's seeds).
    public func first(_ count: Int) throws -> Dataset { try read(0..<min(self.count, max(1, count))) }
}

/// A score accumulated over chunks of sequences in dataset order: the same sums, in the same
/// order, as `Score.of` and `Score.loss` over the whole dataset at once (METHOD.md §6), which
/// are this over one chunk.
public struct ScoreAccumulator: Sendable {
    public let task: ModelTask
    public let output: OutputMode
    private var correct = 0, sequences = 0
    private var lossSum = 0.0
    private var squaredSum = 0.0, squaredCount = 0

    public init(task: ModelTask, output: OutputMode) { self.task = task; self.output = output }

    /// Adds configuration `config` of `result`, a forward pass over `chunk`.
    /// - Throws: `DataError.mismatch` for a chunk without the labels or targets the task needs,
    ///   a label the readout cannot have, targets of another shape; `ModelError.shape` for a
    ///   classification read at every step.
    public mutating func add(_ result: ForwardResult, config: Int = 0, chunk: Dataset, loss: Bool = true) throws {
        let n = chunk.inputs.count
        let k = result.shape.last!
        let per = result.outputs.count / result.shape[0]
        let outs = result.outputs[(config * per)..<((config + 1) * per)]
        sequences += n
        switch task {
        case .classification:
            guard let labels = chunk.labels else { throw DataError.mismatch("a classification model needs 'labels' in the dataset") }
            guard output == .last else { throw ModelError.shape("classification scores need output mode 'last'") }
            if let problem = Score.labelProblem(labels, outputs: k, firstSequence: chunk.firstSequence) { throw DataError.mismatch(problem) }
            let binary = Score.isBinary(outputs: k)
            for i in 0..<n {
                let row = outs[(outs.startIndex + i * k)..<(outs.startIndex + (i + 1) * k)]
                let predicted = binary ? (row[row.startIndex] > 0 ? 1 : 0) : row.indices.max { row[$0] < row[$1] }! - row.startIndex
                if predicted == labels[i] { correct += 1 }
            }
            guard loss else { return }
            if binary {
                // Binary cross-entropy with logits, stably: max(y, 0) − y·label + log(1 + e^−|y|).
                for i in 0..<n {
                    let y = Double(outs[outs.startIndex + i]), label = Double(labels[i])
                    lossSum += max(y, 0) - y * label + log1p(exp(-abs(y)))
                }
                return
            }
            for i in 0..<n {
                let row = outs[(outs.startIndex + i * k)..<(outs.startIndex + (i + 1) * k)].map(Double.init)
                let top = row.max()!
                let logSum = top + log(row.reduce(0.0) { $0 + exp($1 - top) })
                lossSum += logSum - row[labels[i]]
            }
        case .regression:
            guard let targets = chunk.targets else { throw DataError.mismatch("a regression model needs 'targets' in the dataset") }
            guard targets.count == outs.count else {
                throw DataError.mismatch("targets \(chunk.targetShape ?? []) do not match outputs \(Array(result.shape.dropFirst()))")
            }
            if output == .sequence, let lengths = chunk.inputs.lengths {
                // Padded steps are no outputs of the model: the error of each sequence's own steps.
                let T = chunk.inputs.steps, k = targets.count / max(1, n * T)
                for s in 0..<n {
                    for index in (s * T * k)..<((s * T + lengths[s]) * k) {
                        let d = Double(outs[outs.startIndex + index] - targets[index]); squaredSum += d * d
                    }
                    squaredCount += lengths[s] * k
                }
                return
            }
            squaredSum = zip(outs, targets).reduce(squaredSum) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }
            squaredCount += targets.count
        }
    }

    /// Accuracy or MSE over every chunk added.
    public var score: Score {
        Score(task: task, value: task == .classification ? Double(correct) / Double(sequences) : squaredSum / Double(squaredCount))
    }

    /// The continuous loss over every chunk added: mean cross-entropy (or binary cross-entropy
    /// for a single logit) of the true class, or the MSE.
    public var loss: Double { task == .classification ? lossSum / Double(sequences) : score.value }
}
