import Foundation

/// Integer token ids of a batch of sequences, [N, T] row-major: what a dataset holds for a model
/// whose front end is a token embedding (METHOD.md §8, "Embeddings").
public struct TokenBatch: Sendable, Equatable {
    public let count: Int, steps: Int
    /// The ids, sequence-major: `ids[n * steps + t]`.
    public var ids: [Int]

    /// - Throws: `ModelError.shape` for an empty batch or ids that do not fill [count, steps].
    public init(count: Int, steps: Int, ids: [Int]) throws {
        guard count >= 1, steps >= 1 else {
            throw ModelError.shape("a batch of tokens needs at least one sequence and step, got [\(count), \(steps)]")
        }
        guard ids.count == count * steps else {
            throw ModelError.shape("\(ids.count) token ids do not fill [\(count), \(steps)]")
        }
        self.count = count; self.steps = steps; self.ids = ids
    }
}

/// A token embedding before the first recurrent layer (`nn.Embedding`, Keras `Embedding`, ONNX
/// `Gather` on an initializer): token id v becomes row v of `table`, the recurrent stack's input at
/// that step. It is a lookup, not a learned map of the input, so the response characterization and
/// the dynamics work in the first layer's input space (embedding space) and relevance of a token is
/// the relevance of its embedding vector, summed over its dimensions (METHOD.md §8).
public struct TokenEmbedding: Sendable, Equatable {
    /// V: the number of token ids, 0 ..< V.
    public let vocabularySize: Int
    /// E: the embedding width, the first recurrent layer's input width.
    public let width: Int
    /// The embedding vectors, [V, E] row-major.
    public let table: [Float]
    /// The tensor it came from (for messages and reports), e.g. "embedding.weight".
    public var source: String

    /// - Throws: `ModelError.shape` for an empty table, a table that is not [V, E], or a value that
    ///   is not finite.
    public init(vocabularySize: Int, width: Int, table: [Float], source: String = "embedding") throws {
        guard vocabularySize >= 1, width >= 1 else {
            throw ModelError.shape("a token embedding needs at least one token and one dimension, got [\(vocabularySize), \(width)]")
        }
        let (elements, overflow) = vocabularySize.multipliedReportingOverflow(by: width)
        guard !overflow, table.count == elements else {
            throw ModelError.shape("\(table.count) values do not fill a token embedding of [\(vocabularySize), \(width)]")
        }
        if let bad = table.firstIndex(where: { !$0.isFinite }) {
            throw ModelError.shape("the token embedding '\(source)' holds \(table[bad]) at token \(bad / width), dimension \(bad % width)")
        }
        self.vocabularySize = vocabularySize; self.width = width; self.table = table; self.source = source
    }

    /// The embedding vector of token `id` (length E).
    /// - Precondition: `0 <= id < vocabularySize` (`embed` checks it for data).
    public func vector(_ id: Int) -> ArraySlice<Float> { table[(id * width)..<((id + 1) * width)] }

    /// The recurrent stack's inputs for `tokens`: [N, T, E].
    /// - Throws: `DataError.mismatch` naming the first id out of range by sequence and step
    ///   (prefixed with `file`).
    public func embed(_ tokens: TokenBatch, file: String, firstSequence: Int = 0) throws -> SequenceBatch {
        if let bad = tokens.ids.firstIndex(where: { $0 < 0 || $0 >= vocabularySize }) {
            throw DataError.mismatch("\(file): token id \(tokens.ids[bad]) at sequence \(firstSequence + bad / tokens.steps), step \(bad % tokens.steps) is outside the embedding's vocabulary 0..<\(vocabularySize) ('\(source)')")
        }
        var values = [Float](repeating: 0, count: tokens.ids.count * width)
        values.withUnsafeMutableBufferPointer { out in
            table.withUnsafeBufferPointer { rows in
                for (position, id) in tokens.ids.enumerated() {
                    for e in 0..<width { out[position * width + e] = rows[id * width + e] }
                }
            }
        }
        return try SequenceBatch(count: tokens.count, steps: tokens.steps, width: width, values: values)
    }

    /// Per-token relevance [N, T] from the relevance of the embedded inputs [N, T, E]: the sum over
    /// the embedding dimensions (Arras et al. 2017, §3: a word's relevance is the sum of its
    /// vector's).
    public static func tokenRelevance(_ input: [Float], count: Int, steps: Int, width: Int) -> [Float] {
        (0..<(count * steps)).map { position in
            var sum: Float = 0
            for e in 0..<width { sum += input[position * width + e] }
            return sum
        }
    }
}
