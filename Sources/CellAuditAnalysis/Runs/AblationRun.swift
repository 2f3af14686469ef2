import CellAuditCore
import CellAuditOpenCL
import Foundation

/// Which cells the single-cell ablation check runs on (`--ablate-cells SPEC`), when every cell is
/// too costly: one masked forward pass of the dataset per cell (docs/METHOD.md §6).
public struct AblationCellSelection: Sendable, Equatable {
    public enum Item: Sendable, Equatable {
        /// The K cells the ranking scores highest, lowest; K drawn at random; every cell of a level.
        case top(Int), bottom(Int), random(Int), layer(Int)
    }
    /// The union of these is checked; empty checks every cell.
    public var items: [Item]

    public static let all = AblationCellSelection(items: [])
    public init(items: [Item]) { self.items = items }

    /// Parses "top:K,bottom:K,random:K,layer:L" (any of them, in any order), or "all".
    /// - Throws: `RunFailure` naming the malformed item.
    public init(parsing spec: String) throws {
        guard spec != "all" else { self = .all; return }
        items = try spec.split(separator: ",", omittingEmptySubsequences: false).map { part in
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pieces.count == 2, let k = Int(pieces[1]), k >= 0 else {
                throw RunFailure(description: "--ablate-cells '\(part)': expected top:K, bottom:K, random:K or layer:L with a whole number")
            }
            switch pieces[0] {
            case "top": guard k >= 1 else { break }; return .top(k)
            case "bottom": guard k >= 1 else { break }; return .bottom(k)
            case "random": guard k >= 1 else { break }; return .random(k)
            case "layer": return .layer(k)
            default: break
            }
            throw RunFailure(description: "--ablate-cells '\(part)': expected top:K, bottom:K, random:K (K ≥ 1) or layer:L")
        }
    }

    public var isAll: Bool { items.isEmpty }

    /// The checked cells (flat cell order, sorted), or nil for all. `ranking` orders top and
    /// bottom (its scores per cell, flat order; ties by cell order); random draws with `seed`.
    /// - Throws: `RunFailure` for a level the network lacks, or fewer than 3 cells chosen
    ///   (Spearman's ρ with the damage needs 3).
    public func cells(network: RecurrentNetwork, ranking: [Double], seed: UInt64) throws -> [Int]? {
        guard !isAll else { return nil }
        let n = network.cellCount
        var chosen = Set<Int>()
        let order = ranking.indices.sorted { ranking[$0] != ranking[$1] ? ranking[$0] > ranking[$1] : $0 < $1 }
        var rng = SeededGenerator(seed: seed)
        for item in items {
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
            throw RunFailure(description: "--ablate-cells \(description) checks \(chosen.count) cell\(chosen.count == 1 ? "" : "s"); Spearman's ρ with the damage needs at least 3: choose more")
        }
        return chosen.count == n ? nil : chosen.sorted()
    }

    /// The spec as written on the command line.
    public var description: String {
        isAll ? "all" : items.map {
            switch $0 {
            case .top(let k): "top:\(k)"
            case .bottom(let k): "bottom:\(k)"
            case .random(let k): "random:\(k)"
            case .layer(let l): "layer:\(l)"
            }
        }.joined(separator: ",")
    }
}

extension AblationStudy {
    /// The line a run shows before its ablation: how many masked passes, and about how long from
    /// a short calibration on `backend` (`calibrate`: an estimate for the user, never a result).
    /// `label` names the command.
    public static func announcement(_ label: String, network: RecurrentNetwork, data: DatasetStream, output: OutputMode, rankings: Int, seeds: Int,
                                    checked: [Int]?, backend: any ComputeBackend) throws -> String {
        let work = workAhead(network: network, sequences: data.count, steps: data.steps, rankings: rankings, seeds: seeds, checkedCells: checked)
        let perPass = try calibrate(network: network, inputs: try data.first(512).inputs, total: data.count, output: output, on: backend)
        let total = perPass * work.passEquivalents
        let time = total < 90 ? String(format: "%.0f s", total) : total < 5400 ? String(format: "%.0f min", total / 60) : String(format: "%.1f h", total / 3600)
        let subset = checked.map { " (--ablate-cells: \($0.count) of \(network.cellCount) cells)" } ?? ""
        return "\(label): ablation ahead: \(work.passes) masked forward passes of \(data.count) sequences × \(data.steps) steps — \(work.singleConfigurations) single-cell (the intact network, every cell ablated, and each \(checked == nil ? "" : "checked ")cell alone\(subset)\(network.levels.count > 1 ? String(format: "; %.0f passes' work, a deeper cell's run starting at its own level", work.singlePassEquivalents) : "")), \(work.curveConfigurations) for the ranked and random curves; about \(time) (one pass ≈ \(String(format: "%.3g", perPass)) s here)"
            + (checked == nil && total > 600 ? "; --ablate-cells top:K,bottom:K,random:K checks a subset" : "")
    }
}

extension LoadedModel {
    /// The model's score on `stream`: one forward pass a chunk at a time, accumulated in sequence
    /// order (accuracy for classification, MSE for regression; METHOD.md §6). `eachChunk` sees
    /// each chunk's readout values as they come (`eval --out` writes them).
    /// - Throws: the backend's errors; the stream's read errors.
    public func score(on stream: DatasetStream, backend: any ComputeBackend,
                      eachChunk: (ForwardResult) throws -> Void = { _ in }) throws -> Score {
        var accumulator = ScoreAccumulator(task: task, output: output)
        try stream.forEachChunk { _, chunk in
            let result = try backend.outputsInBlocks(try ForwardJob(network: network, inputs: chunk.inputs, output: output))
            try accumulator.add(result, chunk: chunk, loss: false)
            try eachChunk(result)
        }
        return accumulator.score
    }
}

import CellAuditCore
import CellAuditOpenCL
import Foundation

/// An ablation check of rankings (METHOD.md §6): the cells characterized for the response ranking
/// and the metric correlations, then single-cell damage, cumulative curves and rank correlations.
/// The characterization is written first; `finish` does the rest into the same directory.
public struct AblationRun {
    public var loaded: LoadedModel
    /// The dataset, read a chunk at a time (checked whole when opened).
    public var data: DatasetStream
    public var plan: CharacterizationPlan
    public var clamp: AblationStudy.Clamp
    /// The rankings to check: built-in names (`RankerRegistry`) or CSV files, read ahead into `fromFiles`.
    public var names: [String]
    public var fromFiles: [String: (String, [Double])]
    /// Random orders averaged for the random-k curve, and the seed of the random ranker.
    public var seeds: Int
    public var seed: UInt64
    public var ablationCells: AblationCellSelection
    /// The model's and the dataset's file names, as the summary records them.
    public var modelName: String
    public var dataName: String

    public init(loaded: LoadedModel, data: DatasetStream, plan: CharacterizationPlan, clamp: AblationStudy.Clamp, names: [String],
                fromFiles: [String: (String, [Double])], seeds: Int, seed: UInt64, ablationCells: AblationCellSelection,
                modelName: String, dataName: String) {
        self.loaded = loaded; self.data = data; self.plan = plan; self.clamp = clamp; self.names = names; self.fromFiles = fromFiles
        self.seeds = seeds; self.seed = seed; self.ablationCells = ablationCells; self.modelName = modelName; self.dataName = dataName
    }

    /// The study after the characterization written into `dir` (with `single`, the merged shards'
    /// single-cell ablations): rankings, curves, correlations, files.
    /// - Parameters:
    ///   - single: the merged shards' single-cell ablations (nil: computed here).
    ///   - progress: the ablation's phases as they run.
    ///   - announce: receives the work-ahead line before the ablation (nil: no calibration run).
    /// - Throws: `RunFailure` for a ranking or subset that cannot be had; the backend's and the
    ///   file system's errors.
    public func finish(backend: any ComputeBackend, dir: URL, single: SingleAblation?, progress: WorkProgress? = nil,
                       announce: ((String) -> Void)? = nil) throws -> AblationSummary {
        let stream = data
        let summaries = try summarizeWritten(plan, in: dir)
        let context = RankingContext(network: loaded.network, rows: plan.rows, summaries: summaries,
                                     evidence: RankingEvidence(data: stream, task: loaded.task, output: loaded.output,
                                                               backend: backend))
        let rankings = try names.map { try fromFiles[$0] ?? namedRanking($0, context: context, seed: seed) }
        let checked = try ablationCells.cells(network: loaded.network, ranking: rankings[0].1, seed: seed)
        if single == nil, let announce {
            announce(try AblationStudy.announcement("ablate", network: loaded.network, data: stream, output: loaded.output,
                                                    rankings: rankings.count, seeds: seeds, checked: checked, backend: backend))
        }
        let study = try AblationStudy.run(network: loaded.network, data: stream, task: loaded.task, output: loaded.output,
                                          rankings: rankings, metrics: summaryMetrics(summaries), seeds: seeds,
                                          clamp: clamp, single: single, checkedCells: checked, on: backend,
                                          progress: progress)
        try writeAblation(study, rows: plan.rows, rankings: rankings, to: dir)
        // Which ranking to trust: the same figure as the audit report's.
        try AuditReport.rankerComparison(study).render()
            .write(to: dir.appendingPathComponent("rankers.svg"), atomically: false, encoding: .utf8)
        var s = AblationSummary(study)
        s.model = modelName
        s.data = dataName
        s.backend = "\(backend.identity)"
        s.otherBackends = otherBackends(backend)
        s.clamp = clamp.rawValue
        // Only an LSTM has a memory c to clamp beside h.
        s.clampedState = loaded.network.kind.hasCellState ? "h and c" : "h"
        try encodeSummary(s).write(to: dir.appendingPathComponent("summary.json"))
        return s
    }
}
