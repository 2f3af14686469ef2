import ArgumentParser
import CellAuditAnalysis
import CellAuditCore
import Foundation

/// `--ablate-cells SPEC`: which cells the single-cell ablation check runs on, when every cell is
/// too costly (one masked forward pass of the dataset per cell), and the work-ahead line printed
/// before the ablation starts.
struct AblationCellOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Check single-cell ablation on a subset only: comma-separated top:K, bottom:K (by the first ranking: the response ranking in audit, the first of --ranking in ablate), random:K (seeded; each random item draws its own sample) and layer:L (every cell of level L); their union, at least 3 cells, is checked, the rest reported as not measured. Default: all.", valueName: "SPEC"))
    var ablateCells: String?

    /// The items of the spec, checked for form before any work (exit 2 for a malformed one).
    func validate() throws {
        guard let spec = ablateCells, spec != "all" else { return }
        _ = try items(spec)
    }

    enum Item: Equatable { case top(Int), bottom(Int), random(Int), layer(Int) }

    func items(_ spec: String) throws -> [Item] {
        try spec.split(separator: ",", omittingEmptySubsequences: false).map { part in
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pieces.count == 2, let k = Int(pieces[1]), k >= 0 else {
                throw ValidationError("--ablate-cells '\(part)': expected top:K, bottom:K, random:K or layer:L with a whole number")
            }
            switch pieces[0] {
            case "top": guard k >= 1 else { break }; return .top(k)
            case "bottom": guard k >= 1 else { break }; return .bottom(k)
            case "random": guard k >= 1 else { break }; return .random(k)
            case "layer": return .layer(k)
            default: break
            }
            throw ValidationError("--ablate-cells '\(part)': expected top:K, bottom:K, random:K (K ≥ 1) or layer:L")
        }
    }

    /// The checked cells (flat cell order, sorted), or nil for all. `ranking` orders top and
    /// bottom (its scores per cell, flat order); random draws with `seed`.
    func cells(network: RecurrentNetwork, ranking: [Double], seed: UInt64) throws -> [Int]? {
        guard let spec = ablateCells, spec != "all" else { return nil }
        let n = network.cellCount
        var chosen = Set<Int>()
        let order = ranking.indices.sorted { ranking[$0] != ranking[$1] ? ranking[$0] > ranking[$1] : $0 < $1 }
        var rng = SeededGenerator(seed: seed)
        for item in try items(spec) {
            switch item {
            case .top(let k): chosen.formUnion(order.prefix(k))
            case .bottom(let k): chosen.formUnion(order.suffix(k))
            case .random(let k): chosen.formUnion(Array(0..<n).shuffled(using: &rng).prefix(k))
            case .layer(let l):
                guard network.levels.indices.contains(l) else {
                    throw RunFailure(description: "--ablate-cells layer:\(l): the network has \(network.levels.count) layer\(network.levels.count == 1 ? "" : "s") (0…\(network.levels.count - 1))")
                }
                for direction in network.levels[l].map({ network.layers[$0].direction }) {
                    chosen.formUnion(network.layout.range(ofLayer: l, direction: direction))
                }
            }
        }
        // A rank correlation over fewer than 3 cells is undefined.
        guard chosen.count >= min(3, n) else {
            throw RunFailure(description: "--ablate-cells \(spec) checks \(chosen.count) cell\(chosen.count == 1 ? "" : "s"); Spearman's ρ with the damage needs at least 3: choose more")
        }
        return chosen.count == n ? nil : chosen.sorted()
    }

    /// A line on stderr before the ablation: how many masked passes, and about how long from a
    /// short calibration on the backend (silent when `quiet`).
    func announce(_ label: String, network: RecurrentNetwork, data: DatasetStream, output: OutputMode, rankings: Int, seeds: Int,
                  checked: [Int]?, backend: any ComputeBackend, quiet: Bool) throws {
        guard !quiet else { return }
        let work = AblationStudy.workAhead(network: network, sequences: data.count, steps: data.steps, rankings: rankings, seeds: seeds, checkedCells: checked)
        let perPass = try AblationStudy.calibrate(network: network, inputs: try data.first(512).inputs, total: data.count, output: output, on: backend)
        let total = perPass * work.passEquivalents
        let time = total < 90 ? String(format: "%.0f s", total) : total < 5400 ? String(format: "%.0f min", total / 60) : String(format: "%.1f h", total / 3600)
        let subset = checked.map { " (--ablate-cells: \($0.count) of \(network.cellCount) cells)" } ?? ""
        Terminal.warn("\(label): ablation ahead: \(work.passes) masked forward passes of \(data.count) sequences × \(data.steps) steps — \(work.singleConfigurations) single-cell (the intact network, every cell ablated, and each \(checked == nil ? "" : "checked ")cell alone\(subset)\(network.levels.count > 1 ? String(format: "; %.0f passes' work, a deeper cell's run starting at its own level", work.singlePassEquivalents) : "")), \(work.curveConfigurations) for the ranked and random curves; about \(time) (one pass ≈ \(String(format: "%.3g", perPass)) s here)"
                      + (checked == nil && total > 600 ? "; --ablate-cells top:K,bottom:K,random:K checks a subset" : ""))
    }
}
