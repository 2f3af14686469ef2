import CellAuditCore
import Foundation

/// ‖v_j‖: the norm of the weights that read cell j — the readout's column for the last layer,
/// the next layer's input-weight columns (of both directions of a bidirectional layer) for lower
/// layers (the baseline of METHOD.md §5).
public struct ReadoutWeightRanker: CellRanker {
    public let name = "readout_weight"
    public init() {}

    public func scores(_ context: RankingContext) throws -> [Double] {
        try context.rows.map { try Self.outgoingNorm(context.network, of: $0) }
    }

    /// ‖v_j‖: the norm of the weights that read cell `id` — the next level's input weights W of
    /// every direction (its column in the level's output), or the readout's V for the last level.
    /// - Throws: `ModelError.shape` when the cell is in the last level and there is no readout.
    static func outgoingNorm(_ network: RecurrentNetwork, of id: CellID) throws -> Double {
        // The cell's column in its level's output: the directions before its own, then its index.
        let own = network.layerIndex(level: id.layer, direction: id.direction)
        let column = network.levels[id.layer].filter { $0 < own }.reduce(id.index) { $0 + network.layers[$1].hiddenSize }
        let width = network.outputWidth(ofLevel: id.layer)
        func columnNorm(_ m: [Float], rows: Int) -> Double {
            (0..<rows).reduce(0.0) { $0 + Double(m[$1 * width + column]) * Double(m[$1 * width + column]) }
        }
        if id.layer + 1 < network.levels.count {
            // Every direction of the next level reads the cell: their squared column norms add.
            return network.levels[id.layer + 1].reduce(0.0) { $0 + columnNorm(network.layers[$1].W, rows: network.layers[$1].gateRows) }
                .squareRoot()
        }
        guard let readout = network.readout else {
            throw ModelError.shape("the model has no readout, so the last layer's cells have no outgoing weights to rank by")
        }
        return columnNorm(readout.V, rows: readout.outputs).squareRoot()
    }
}
