import ArgumentParser
import CellAuditAnalysis
import CellAuditCore
import CellAuditImport
import Foundation
import Synchronization

struct Audit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Characterize, summarize, classify and rank every cell of a network.",
        discussion: """
        Without MODEL it audits the bundled default: the 64-cell LSTM trained on the digits task, \
        with its test split (both compiled into the binary). Writes DIR/cells.csv (one row per \
        cell), DIR/summary.json and DIR/responses.safetensors, and prints the top cells.
        """
    )

    @Argument(help: ArgumentHelp(modelArgumentHelp + " Default: the bundled digits model."))
    var model: String?

    @Option(help: "A dataset to score the model on (default with the bundled model: its test split).")
    var data: String?

    @Option(help: "Audit a built-in random network of this many cells instead (seeded by --seed).")
    var cells: Int?

    @Option(help: "Cell kind of the built-in random network (--cells): lstm, gru, rnn_tanh or rnn_relu.")
    var cell: String = "lstm"

    @Option(help: "Seed of the built-in random network and of the random ranker.")
    var seed: UInt64 = 7

    @Option(help: "Class thresholds as JSON (see docs/METHOD.md).")
    var classThresholds: String?

    @Flag(help: "With a dataset, skip the ablation check (score the model only).")
    var skipAblation = false

    @Option(help: "With a dataset: seeds per layer of the fixed-point analysis written to DIR/attractors/ (0 skips it; `cellaudit attractors` defaults to 1024).")
    var attractorSeeds: Int = Defaults.auditFixedPointSeeds

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var stimulusOptions: StimulusOptions
    @OptionGroup var backendOptions: BackendOptions

    @OptionGroup var outputOptions: OutputOptions
    @OptionGroup var shardOptions: ShardOptions
    @OptionGroup var ablationCells: AblationCellOptions

    func validate() throws {
        if let cells, cells < 1 { throw ValidationError("--cells must be at least 1, got \(cells)") }
        guard (0...4_194_304).contains(attractorSeeds) else { throw ValidationError("--attractor-seeds must lie in 0…4194304, got \(attractorSeeds)") }
    }

    func run() throws {
        try failing {
            let subject = try prepare()
            defer { subject.cleanup() }
            let backend = try backendOptions.makeBackend()
            if let shard = try shardOptions.resolve() {
                if ablationCells.ablateCells.map({ $0 != "all" }) == true {
                    throw RunFailure(description: "--ablate-cells does not combine with a sharded run (each shard would have to agree on the ranking that picks the cells): run the subset unsharded, or shard the full check")
                }
                let ablation: ((Range<Int>) throws -> SingleAblation, Int)? = subject.data.flatMap { data in
                    skipAblation ? nil : ({ range in
                        try AblationStudy.singleAblations(network: subject.loaded.network, data: data, task: subject.loaded.task,
                                                          output: subject.loaded.output, configurations: Array(range), on: backend,
                                                          progress: outputOptions.phaseProgress("audit"))
                    }, AblationStudy.singleConfigurationCount(cells: subject.loaded.network.cellCount))
                }
                let (path, manifest) = try runShard(shard, context: try shardContext(subject, backend: backend), plan: subject.plan,
                                                    backend: backend, out: outputOptions.out ?? "cellaudit-audit", force: outputOptions.force,
                                                    progress: ProgressReporter(quiet: outputOptions.quiet || outputOptions.json, label: "audit"),
                                                    ablation: ablation)
                try ShardSummary(manifest, path: path).print(json: outputOptions.json)
                return
            }
            let output = try OutputDirectory(outputOptions.out ?? "cellaudit-audit", force: outputOptions.force)
            let progress = ProgressReporter(quiet: outputOptions.quiet || outputOptions.json, label: "audit")
            let report = try output.build { dir -> AuditSummary in
                let result = try writeCharacterization(subject.plan, backend: backend, to: dir, model: subject.name, selection: nil,
                                                       progress: progress)
                return try finish(subject, backend: backend, dir: dir, result: result, single: nil)
            }
            try printOutcome(report, out: outputOptions.out ?? "cellaudit-audit", json: outputOptions.json)
        }
    }

    /// Everything an audit needs before it runs: the model, its data, the plan.
    struct Subject {
        var loaded: LoadedModel
        var name: String
        var dataPath: String?
        /// The dataset, read a chunk at a time (checked whole when opened).
        var data: DatasetStream?
        var thresholds: ClassThresholds
        var plan: CharacterizationPlan
        var cleanup: () -> Void
    }

    func prepare() throws -> Subject {
        let (loaded, name, dataPath, cleanup) = try loadSubject()
        do {
            let thresholds = try classThresholds.map(ClassThresholds.load(json:)) ?? ClassThresholds()
            // The dataset is checked against the model before any cell is characterized.
            let data = try dataPath.map { try DatasetStream(try DatasetFile($0), preparedFor: loaded) }
            let plan = try stimulusOptions.plan(loaded.network, layers: nil)
            // The dynamics run late in an audit: a search that cannot fit is refused now, not then.
            if data != nil && attractorSeeds > 0 {
                try AttractorAnalysis.checkMemory(network: loaded.network, seeds: attractorSeeds, option: "--attractor-seeds (0 skips the dynamics)")
            }
            return Subject(loaded: loaded, name: name, dataPath: dataPath, data: data, thresholds: thresholds, plan: plan, cleanup: cleanup)
        } catch {
            cleanup()
            throw error
        }
    }

    /// The identity every shard of this audit must share (docs/METHOD.md §9).
    func shardContext(_ subject: Subject, backend: any ComputeBackend) throws -> ShardContext {
        var options = ShardContext.planOptions(subject.plan, backend: backend)
        options["seed"] = "\(seed)"
        options["class_thresholds"] = try ShardContext.fileHash(classThresholds)
        options["skip_ablation"] = "\(skipAblation)"
        options["attractor_seeds"] = "\(attractorSeeds)"
        return ShardContext(command: "audit", options: options,
                            model: try ShardContext.subject(subject.loaded, name: subject.name, path: cells == nil ? model : nil),
                            data: try subject.dataPath.map(ShardContext.dataFile))
    }

    /// The audit after the characterization written into `dir`: summaries, classes, rankings,
    /// the ablation check (with `single`, from merged shards), the dynamics, the report.
    func finish(_ subject: Subject, backend: any ComputeBackend, dir: URL, result: CharacterizationResult,
                single: SingleAblation?) throws -> AuditSummary {
        let (loaded, name, dataPath, data, thresholds, plan) = (subject.loaded, subject.name, subject.dataPath, subject.data,
                                                                   subject.thresholds, subject.plan)
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
            let quiet = outputOptions.quiet || outputOptions.json
            let job = UncheckedSendable((network: loaded.network, inputSize: loaded.network.inputSize, data: data, options: options,
                                         backend: backend, name: name, sub: sub))
            DispatchQueue.global().async {
                let j = job.value
                let result = Result { () throws -> AttractorSummary in
                    try makeOutputSubdirectory(j.sub)
                    return try AttractorOutput.run(network: j.network, input: [Double](repeating: 0, count: j.inputSize),
                                                   data: j.data, options: j.options, pulses: PulseOptions(), backend: j.backend,
                                                   model: j.name, to: j.sub, progress: { if !quiet { Terminal.warn("audit: attractors: \($0)") } })
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
                summary.record(try evaluate(loaded, on: data!, backend: backend))
            } else {
                // Does the ranking hold? Single-cell damage and curves on the user's data.
                let rankings = zip(rankers, scores).map { ($0.name, $1) }
                let checked = try ablationCells.cells(network: loaded.network, ranking: rankings[0].1, seed: seed)
                if single == nil {
                    try ablationCells.announce("audit", network: loaded.network, data: data!, output: loaded.output, rankings: rankings.count,
                                               seeds: Defaults.ablationRandomSeeds, checked: checked, backend: backend,
                                               quiet: outputOptions.quiet || outputOptions.json)
                }
                let s = try AblationStudy.run(network: loaded.network, data: data!, task: loaded.task,
                                              output: loaded.output, rankings: rankings, metrics: summaryMetrics(summaries),
                                              single: single, checkedCells: checked, on: backend,
                                              progress: outputOptions.phaseProgress("audit"))
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

    func printOutcome(_ report: AuditSummary, out: String, json: Bool) throws {
        if json {
            try printJSON(report)
            return
        }
        report.print()
        print("wrote \(out)/report.html, \(out)/figures/, \(out)/cells.csv, \(out)/summary.json, \(out)/responses.safetensors, \(out)/stimuli.csv"
              + (report.ablation != nil ? ", \(out)/ablation.csv, \(out)/curves.csv" : "") + (report.attractors != nil ? ", \(out)/attractors/" : ""))
    }

    /// The model to audit, its display name, its dataset, and what to remove afterwards.
    func loadSubject() throws -> (LoadedModel, String, String?, () -> Void) {
        if let cells {
            guard model == nil else { throw RunFailure(description: "give either MODEL or --cells, not both") }
            guard (1...(1 << 20)).contains(cells) else { throw RunFailure(description: "--cells must be 1…1048576, got \(cells)") }
            guard let kind = CellKind(rawValue: cell) else {
                throw RunFailure(description: "--cell must be one of \(CellKind.allCases.map(\.rawValue).joined(separator: ", ")), got '\(cell)'")
            }
            let network = try RecurrentNetwork.random(kind: kind, seed: seed, inputSize: 8, hiddenSizes: [cells], outputs: 10, scale: 3)
            let loaded = LoadedModel(network: network, convention: .pytorch, output: .last, task: .classification,
                                     metadata: [:], path: "")
            return (loaded, "random \(kind.rawValue) (\(cells) cells, seed \(seed))", data, {})
        }
        if let model {
            // A state dict's task and output mode follow the dataset (read here, checked again later).
            return (try modelOptions.load(model, data: try data.map { try DatasetFile($0) }), (model as NSString).lastPathComponent, data, {})
        }
        // The bundled default, unpacked for the duration of the run.
        let bundled = try BundledFiles(["digits_lstm64.safetensors", "digits_test.safetensors"])
        do {
            let loaded = try ModelFile.load(bundled.path("digits_lstm64.safetensors"))
            return (loaded, "digits_lstm64.safetensors (bundled)", data ?? bundled.path("digits_test.safetensors"), bundled.remove)
        } catch {
            bundled.remove()
            throw error
        }
    }
}

func parseFloats(_ text: String, name: String) throws -> [Float] {
    let parts = text.split(separator: ",", omittingEmptySubsequences: false)
    let values = parts.map { Float($0.trimmingCharacters(in: .whitespaces)) }
    guard !parts.isEmpty, values.allSatisfy({ $0 != nil && $0!.isFinite }) else {
        throw RunFailure(description: "\(name) takes comma-separated finite numbers, got '\(text)'")
    }
    return values.map { $0! }
}
