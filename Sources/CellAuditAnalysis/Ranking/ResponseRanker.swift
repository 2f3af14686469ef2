import CellAuditCore
import Foundation

/// s_j = ‖v_j‖ · m_j: outgoing weight norm times the cell's response magnitude over the bank
/// (METHOD.md §5, our default). A cell with no measurable response scores 0. A network without a
/// readout (a recurrent core read with `--core` that no linear map reads) gives its last layer no
/// outgoing weights: every cell is then scored by m_j alone, so that the layers stay comparable.
public struct ResponseRanker: CellRanker {
    public let name = "response"
    public init() {}

    /// The score's formula for `network`, as reports and summaries print it.
    public static func formula(for network: RecurrentNetwork) -> String {
        network.readout == nil ? "m_j (response magnitude alone: the model has no readout)" : "‖v_j‖·m_j"
    }

    public func scores(_ context: RankingContext) throws -> [Double] {
        guard context.summaries.count == context.rows.count else {
            throw ModelError.shape("the response ranker needs a summary of every cell")
        }
        return try context.rows.indices.map { i in
            let m = context.summaries[i].responseMagnitude
            let w = context.network.readout == nil ? 1 : try ReadoutWeightRanker.outgoingNorm(context.network, of: context.rows[i])
            return m.isFinite ? w * m : 0
        }
    }
}
