import CellAuditCore
import Foundation

/// What a ranker may look at: the network, the rows (cells) to score, and their summaries.
public struct RankingContext: Sendable {
    public var network: RecurrentNetwork
    public var rows: [(layer: Int, cell: Int)]
    public var summaries: [CellSummary]

    public init(network: RecurrentNetwork, rows: [(layer: Int, cell: Int)], summaries: [CellSummary]) {
        precondition(summaries.isEmpty || summaries.count == rows.count)
        self.network = network; self.rows = rows; self.summaries = summaries
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
    /// Rank of each row, 1 = most important; ties go to the lower (layer, cell).
    public func ranks(_ context: RankingContext) throws -> [Int] {
        rankPositions(try scores(context), rows: context.rows)
    }
}

/// Rank of each row by score, 1 = highest; ties go to the lower (layer, cell).
public func rankPositions(_ s: [Double], rows: [(layer: Int, cell: Int)]) -> [Int] {
    let order = s.indices.sorted { a, b in
        s[a] != s[b] ? s[a] > s[b] : (rows[a].layer, rows[a].cell) < (rows[b].layer, rows[b].cell)
    }
    var ranks = [Int](repeating: 0, count: s.count)
    for (position, row) in order.enumerated() { ranks[row] = position + 1 }
    return ranks
}

/// ‖v_j‖: the norm of the weights that read cell j — the readout's column for the last layer,
/// the next layer's input-weight column for lower layers (the baseline of METHOD.md §5).
public struct ReadoutWeightRanker: CellRanker {
    public let name = "readout_weight"
    public init() {}

    public func scores(_ context: RankingContext) throws -> [Double] {
        try context.rows.map { try Self.outgoingNorm(context.network, layer: $0.layer, cell: $0.cell) }
    }

    static func outgoingNorm(_ network: RecurrentNetwork, layer: Int, cell: Int) throws -> Double {
        let h = network.layers[layer].hiddenSize
        if layer + 1 < network.layers.count {
            let next = network.layers[layer + 1]
            return (0..<next.gateRows).reduce(0.0) { $0 + Double(next.W[$1 * h + cell]) * Double(next.W[$1 * h + cell]) }.squareRoot()
        }
        guard let readout = network.readout else {
            throw ModelError.shape("the model has no readout, so the last layer's cells have no outgoing weights to rank by")
        }
        return (0..<readout.outputs).reduce(0.0) { $0 + Double(readout.V[$1 * h + cell]) * Double(readout.V[$1 * h + cell]) }.squareRoot()
    }
}

/// s_j = ‖v_j‖ · m_j: outgoing weight norm times the cell's response magnitude over the bank
/// (METHOD.md §5, our default). A cell with no measurable response scores 0.
public struct ResponseRanker: CellRanker {
    public let name = "response"
    public init() {}

    public func scores(_ context: RankingContext) throws -> [Double] {
        guard context.summaries.count == context.rows.count else {
            throw ModelError.shape("the response ranker needs a summary of every cell")
        }
        return try context.rows.indices.map { i in
            let m = context.summaries[i].responseMagnitude
            let w = try ReadoutWeightRanker.outgoingNorm(context.network, layer: context.rows[i].layer, cell: context.rows[i].cell)
            return m.isFinite ? w * m : 0
        }
    }
}

/// Uniform scores from a seed and the cell's (layer, cell): the chance baseline.
public struct RandomRanker: CellRanker {
    public let name = "random"
    public let seed: UInt64
    public init(seed: UInt64 = 0) { self.seed = seed }

    public func scores(_ context: RankingContext) throws -> [Double] {
        context.rows.map { row in
            var g = SeededGenerator(seed: seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(row.layer) << 32 &+ UInt64(row.cell))
            return Double(g.next() >> 11) / Double(1 << 53)
        }
    }
}
