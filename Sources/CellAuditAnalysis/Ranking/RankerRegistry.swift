import CellAuditCore
import Foundation

/// The rankers the CLI can name (`--ranking NAME`), looked up here rather than in a switch at
/// each call site: adding a ranker means adding its file and one entry below.
public enum RankerRegistry {
    /// Every built-in ranker's name, in the order commands run them by default.
    public static let names = ["response", "lrp", "gradient_x_input", "readout_weight", "random"]

    /// The rankers that read the data (`RankingContext.evidence`): without data they are left out.
    public static let needingData: Set<String> = ["lrp", "gradient_x_input"]

    /// The ranker called `name`, or nil when no built-in ranker has that name. `seed` feeds the
    /// rankers that draw at random.
    public static func ranker(named name: String, seed: UInt64) -> (any CellRanker)? {
        switch name {
        case "response": ResponseRanker()
        case "lrp": RelevanceRanker()
        case "gradient_x_input": GradientInputRanker()
        case "readout_weight": ReadoutWeightRanker()
        case "random": RandomRanker(seed: seed)
        default: nil
        }
    }

    /// The rankers that read the readout's weights: without a readout they are left out.
    public static let needingReadout: Set<String> = ["readout_weight", "lrp", "gradient_x_input"]

    /// The built-in rankers that apply to `network`, in `names` order: those that read data only
    /// `withData`; those that read the readout only when it has one.
    public static func applicable(to network: RecurrentNetwork, withData: Bool) -> [String] {
        names.filter { name in (withData || !needingData.contains(name)) && (network.readout != nil || !needingReadout.contains(name)) }
    }

    /// Every built-in ranker, in `names` order; those that read data only `withData`.
    public static func all(seed: UInt64, withData: Bool) -> [any CellRanker] {
        names.filter { withData || !needingData.contains($0) }.compactMap { ranker(named: $0, seed: seed) }
    }

    /// Every built-in ranker that applies to `network` (`applicable(to:withData:)`).
    public static func all(seed: UInt64, for network: RecurrentNetwork, withData: Bool) -> [any CellRanker] {
        applicable(to: network, withData: withData).compactMap { ranker(named: $0, seed: seed) }
    }
}
