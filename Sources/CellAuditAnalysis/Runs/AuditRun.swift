import CellAuditCore
import CellAuditOpenCL
import Foundation
import Synchronization

/// An audit (METHOD.md §§1–6): the cells characterized, summarized, classified and ranked; with
/// data, the ranking checked by ablation and the network's dynamics found (§§6, 8); a report.
/// The characterization is written first (`writeCharacterization`, or merged shards); `finish`
/// does the rest into the same directory.
public struct AuditRun {
    public var loaded: LoadedModel
    /// The model's display name (file name, "… (bundled)", "random lstm (…)").
    public var name: String
    public var dataPath: String?
    /// The dataset, read a chunk at a time (checked whole when opened).
    public var data: DatasetStream?
    public var thresholds: ClassThresholds
    public var plan: CharacterizationPlan
    /// Seed of the random ranker, the random ablation orders and the fixed-point seeds.
    public var seed: UInt64
    /// With data: score the model only.
    public var skipAblation: Bool
    /// With data: seeds per layer of the fixed-point search (0 skips the dynamics).
    public var attractorSeeds: Int
    public var ablationCells: AblationCellSelection

    public init(loaded: LoadedModel, name: String, dataPath: String?, data: DatasetStream?, thresholds: ClassThresholds,
                plan: CharacterizationPlan, seed: UInt64, skipAblation: Bool, attractorSeeds: Int, ablationCells: AblationCellSelection) {
        self.loaded = loaded; self.name = name; self.dataPath = dataPath; self.data = data; self.thresholds = thresholds
        self.plan = plan; self.seed = seed; self.skipAblation = skipAblation; self.attractorSeeds = attractorSeeds
        self.ablationCells = ablationCells
    }

    /// The audit after the characterization written into `dir`: summaries, classes, rankings,
    /// the ablation check (with `single`, from merged shards), the dynamics, the report.
    /// - Parameters:
    ///   - result: the characterization's time and responded share (`writeCharacterization`, or
    ///     the merged shards').
    ///   - progress: the ablation's phases as they run.
    ///   - announce: receives the work-ahead line before the ablation (nil: no calibration run).
    ///   - dynamicsNote: the fixed-point search's notes, from its own thread.
    /// - Throws: `RunFailure` for a subset the network cannot give; the backend's and the file
    ///   system's errors.
    public func finish(backend: any ComputeBackend, dir: URL, result: CharacterizationResult, single: SingleAblation?,
                       progress: WorkProgress? = nil, announce: ((String) -> Void)? = nil,
                       dynamicsNote: (@Sendable (String) -> Void)? = nil) throws -> AuditSummary {
        let start = DispatchTime.now().uptimeNanoseconds
        let summaries = try summarizeWritten(plan, in: dir)
        let classes = summaries.map { thresholds.classify($0, window: plan.bank.window) }
        let evidence = data.map { RankingEvidence(data: $0, task: loaded.task, output: loaded.output, backend: backend) }
        let context = RankingContext(network: loaded.network, rows: plan.rows, summaries: summaries, evidence: evidence)
        let rankers = RankerRegistry.all(seed: seed, for: loaded.network, withData: evidence != nil)
        let scores = try rankers.map { try $0.scores(context) }
        let ranks = try rankers.map { try $0.ranks(context) }
        let reduceSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        try cellsCSV(plan: plan, summaries: summaries, classes: classes, rankers: rankers, scores: scores, ranks: ranks)
            .write(to: dir.appendingPathComponent("cells.csv"), atomically: false, encoding: .utf8)
        var summary = AuditSummary(plan: plan, name: name, backend: backend, result: result, reduceSeconds: reduceSeconds,
                                   summaries: summaries, classes: classes, scores: scores[0], ranks: ranks[0])
        summary.describe(loaded)
        // The network's dynamics on the same data (DIR/attractors/, linked from the report) run on
        // a thread of their own beside the ablation: each has serial stretches (the dynamics'
        // classification and excitable network, the ablation's scoring) that leave a core idle,
        // and the other fills it. Neither reads what the other writes, and each is computed the
        // same way as alone.
        let dynamicsDone = DispatchSemaphore(value: 0)
        let dynamics = Mutex<Result<AttractorSummary, any Error>?>(nil)
        let dynamicsStarted: Bool
        if let data, attractorSeeds > 0 {
            let sub = dir.appendingPathComponent("attractors")
            var options = FixedPointOptions()
            options.seeds = attractorSeeds
            options.randomSeed = seed
            let job = UncheckedSendable((network: loaded.network, inputSize: loaded.network.inputSize, data: data, options: options,
                                         backend: backend, name: name, sub: sub))
            DispatchQueue.global().async {
                let j = job.value
                let result = Result { () throws -> AttractorSummary in
                    try makeOutputSubdirectory(j.sub)
                    return try AttractorOutput.run(network: j.network, input: [Double](repeating: 0, count: j.inputSize),
                                                   data: j.data, options: j.options, pulses: PulseOptions(), backend: j.backend,
                                                   model: j.name, to: j.sub, progress: { dynamicsNote?("audit: attractors: \($0)") })
                }
                dynamics.withLock { $0 = result }
                dynamicsDone.signal()
            }
            dynamicsStarted = true
        } else {
            dynamicsStarted = false
        }
        // Whatever the ablation does, the dynamics have finished writing before this returns.
        var waited = false
        func waitForDynamics() { if dynamicsStarted && !waited { dynamicsDone.wait(); waited = true } }
        defer { waitForDynamics() }

        var study: AblationStudy?
        if let dataPath {
            summary.data = (dataPath as NSString).lastPathComponent
            if skipAblation {
                // The stream the audit checked when it opened the data: no second pass to check it.
                summary.record(try loaded.score(on: data!, backend: backend))
            } else {
                // Does the ranking hold? Single-cell damage and curves on the user's data.
                let rankings = zip(rankers, scores).map { ($0.name, $1) }
                let checked = try ablationCells.cells(network: loaded.network, ranking: rankings[0].1, seed: seed)
                if single == nil, let announce {
                    announce(try AblationStudy.announcement("audit", network: loaded.network, data: data!, output: loaded.output,
                                                            rankings: rankings.count, seeds: Defaults.ablationRandomSeeds, checked: checked,
                                                            backend: backend))
                }
                let s = try AblationStudy.run(network: loaded.network, data: data!, task: loaded.task,
                                              output: loaded.output, rankings: rankings, metrics: summaryMetrics(summaries),
                                              single: single, checkedCells: checked, on: backend,
                                              progress: progress)
                try writeAblation(s, rows: plan.rows, rankings: rankings, to: dir)
                if s.task == .classification { summary.accuracy = s.baseline } else { summary.mse = s.baseline }
                summary.ablation = AblationSummary(s)
                summary.ablation?.otherBackends = otherBackends(backend)
                study = s
            }
        }
        var links: [(title: String, href: String, gist: String)] = []
        waitForDynamics()
        if let result = dynamics.withLock({ $0 }) {
            let attractors = try result.get()
            summary.attractors = attractors.layers
            links.append(("Dynamics", "attractors/report.html", attractors.layers.map {
                "layer \($0.layer)\($0.direction == nil ? "" : " rev"): \($0.fixedPoints) fixed points (\($0.stableFixedPoints) stable), \($0.edges) input-driven transitions"
            }.joined(separator: "; ") + " under zero input, from \(attractorSeeds) seeds per layer"))
        }
        try encodeSummary(summary).write(to: dir.appendingPathComponent("summary.json"))
        try writeReport(plan: plan, name: name, summary: summary, summaries: summaries, classes: classes,
                        scores: scores[0], ranks: ranks[0], ablation: study, links: links, backend: backend, to: dir)
        return summary
    }
}
