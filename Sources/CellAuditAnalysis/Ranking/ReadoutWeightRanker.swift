import CellAuditCore
import Foundation

/// ‖v_j‖: the norm of the weights that read cell j — the readout's column for the last layer,
/// the next layer's input-weight column for lower layers (the baseline of METHOD.md §5).
public struct ReadoutWeightRanker: CellRanker {
    public let name = "readout_weight"
    public init() {}

    public func scores(_ context: RankingContext) throws -> [Double] {
        try context.rows.map { try Self.outgoingNorm(context.network, of: $0) }
    }

    static func outgoingNorm(_ network: RecurrentNetwork, of id: CellID) throws -> Double {
        try network.requireForwardOnly("the outgoing-weight norm (the response and readout_weight rankers)")
        let layer = id.layer, cell = id.index
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
