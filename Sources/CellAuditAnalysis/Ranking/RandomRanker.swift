import CellAuditCore
import Foundation

/// Uniform scores from a seed and the cell's (layer, cell): the chance baseline.
public struct RandomRanker: CellRanker {
    public let name = "random"
    public let seed: UInt64
    public init(seed: UInt64 = 0) { self.seed = seed }

    public func scores(_ context: RankingContext) throws -> [Double] {
        context.rows.map { row in
            var g = SeededGenerator(seed: seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(row.layer) << 32 &+ UInt64(row.index))
            return Double(g.next() >> 11) / Double(1 << 53)
        }
    }
}
