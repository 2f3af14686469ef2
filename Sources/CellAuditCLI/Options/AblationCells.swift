import ArgumentParser
import CellAuditAnalysis
import CellAuditCore
import Foundation

/// `--ablate-cells SPEC`: which cells the single-cell ablation check runs on, when every cell is
/// too costly (one masked forward pass of the dataset per cell).
struct AblationCellOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Check single-cell ablation on a subset only: comma-separated top:K, bottom:K (by the first ranking: the response ranking in audit, the first of --ranking in ablate), random:K (seeded; each random item draws its own sample) and layer:L (every cell of level L); their union, at least 3 cells, is checked, the rest reported as not measured. Default: all.", valueName: "SPEC"))
    var ablateCells: String?

    /// The items of the spec, checked for form before any work (exit 2 for a malformed one).
    func validate() throws {
        do { _ = try selection } catch let error as RunFailure { throw ValidationError(error.description) }
    }

    /// The parsed selection (every cell when the option is absent or "all").
    var selection: AblationCellSelection {
        get throws { try ablateCells.map(AblationCellSelection.init(parsing:)) ?? .all }
    }
}
