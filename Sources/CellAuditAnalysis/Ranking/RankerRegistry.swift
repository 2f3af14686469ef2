import CellAuditCore
import Foundation

/// The rankers the CLI can name (`--ranking NAME`), looked up here rather than in a switch at
/// each call site: adding a ranker means adding its file and one entry below.
public enum RankerRegistry {
    /// Every built-in ranker's name, in the order commands run them by default.
    public static let names = ["response", "readout_weight", "random"]

    /// The ranker called `name`, or nil when no built-in ranker has that name. `seed` feeds the
    /// rankers that draw at random.
    public static func ranker(named name: String, seed: UInt64) -> (any CellRanker)? {
        switch name {
        case "response": ResponseRanker()
        case "readout_weight": ReadoutWeightRanker()
        case "random": RandomRanker(seed: seed)
        default: nil
        }
    }

    /// Every built-in ranker, in `names` order.
    public static func all(seed: UInt64) -> [any CellRanker] { names.compactMap { ranker(named: $0, seed: seed) } }
}
