import CellAuditCore
import Foundation

/// What a ranker may look at: the network, the rows (cells) to score, their summaries, and
/// (for the data-driven rankers) the data.
public struct RankingContext: Sendable {
    public var network: RecurrentNetwork
    public var rows: [CellID]
    public var summaries: [CellSummary]
    /// The dataset and backend the relevance rankers need; nil without data.
    public var evidence: RankingEvidence?

    public init(network: RecurrentNetwork, rows: [CellID], summaries: [CellSummary], evidence: RankingEvidence? = nil) {
        precondition(summaries.isEmpty || summaries.count == rows.count)
        self.network = network; self.rows = rows; self.summaries = summaries; self.evidence = evidence
    }
}

/// A way of scoring cells by importance (METHOD.md §5). The contract, the same for every ranker:
/// - `scores` returns exactly one finite score per row of the context;
/// - a higher score means a more important cell;
/// - it is deterministic: the same context (and seed) gives the same scores;
/// - a row's score depends on that cell only through what identifies it (layer, cell, its own
///   summary, the network), so permuting the rows permutes the scores.
/// Later rankers (ablation damage, relevance) implement the same protocol.
public protocol CellRanker: Sendable {
    var name: String { get }
    func scores(_ context: RankingContext) throws -> [Double]
}

extension CellRanker {
    /// Rank of each row, 1 = most important; ties go to the cell first in flat order.
    public func ranks(_ context: RankingContext) throws -> [Int] {
        rankPositions(try scores(context), rows: context.rows)
    }
}

/// Rank of each row by score, 1 = highest; ties go to the cell first in flat order (`CellID`'s order).
public func rankPositions(_ s: [Double], rows: [CellID]) -> [Int] {
    // NaN (a cell not measured, such as one --ablate-cells left out) ranks last.
    let key = s.map { $0.isNaN ? -Double.infinity : $0 }
    let order = s.indices.sorted { a, b in
        key[a] != key[b] ? key[a] > key[b] : rows[a] < rows[b]
    }
    var ranks = [Int](repeating: 0, count: s.count)
    for (position, row) in order.enumerated() { ranks[row] = position + 1 }
    return ranks
}
