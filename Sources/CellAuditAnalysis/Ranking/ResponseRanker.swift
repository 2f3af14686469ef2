import CellAuditCore
import Foundation

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
            let w = try ReadoutWeightRanker.outgoingNorm(context.network, of: context.rows[i])
            return m.isFinite ? w * m : 0
        }
    }
}
