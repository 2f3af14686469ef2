import ArgumentParser
import CellAuditAnalysis
import CellAuditCore
import CellAuditImport
import Foundation

struct Ablate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the rankings by ablation: single-cell damage, cumulative curves, rank correlations.",
        discussion: """
        Characterizes the cells (for the response ranking and the metric correlations), then runs \
        every ablation as one batched forward per family. Writes DIR/ablation.csv, DIR/curves.csv, \
        DIR/rankers.svg (each ranking's Spearman ρ with the damage), DIR/summary.json and the responses.
        """
    )

    @Argument(help: ArgumentHelp(modelArgumentHelp))
    var model: String

    @Option(help: "The dataset to score on.")
    var data: String

    @Option(parsing: .upToNextOption, help: "Rankings to check: response, lrp, gradient_x_input, readout_weight, random, or a CSV with layer, cell and score columns (e.g. an audit's cells.csv). Default: every built-in one.")
    var ranking: [String] = []

    @Option(help: "Random orders averaged for the random-k curve.")
    var seeds: Int = Defaults.ablationRandomSeeds

    @Option(help: "Seed of the random ranker.")
    var seed: UInt64 = 7

    @Option(help: "What ablated cells are held at: zero, or mean (their mean h and c over the data).")
    var clamp: String = "zero"

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var stimulusOptions: StimulusOptions
    @OptionGroup var backendOptions: BackendOptions

    @OptionGroup var outputOptions: OutputOptions
    @OptionGroup var shardOptions: ShardOptions
    @OptionGroup var ablationCells: AblationCellOptions

    func run() throws {
        try failing {
            let subject = try prepare()
            let backend = try backendOptions.makeBackend()
            if let shard = try shardOptions.resolve() {
                if try !ablationCells.selection.isAll {
                    throw RunFailure(description: "--ablate-cells does not combine with a sharded run (each shard would have to agree on the ranking that picks the cells): run the subset unsharded, or shard the full check")
                }
                let network = subject.loaded.network
                let (path, manifest) = try runShard(shard, context: try shardContext(subject, backend: backend), plan: subject.plan,
                                                    backend: backend, out: outputOptions.out ?? "cellaudit-ablation", force: outputOptions.force,
                                                    progress: ProgressReporter(quiet: outputOptions.quiet || outputOptions.json, label: "ablate"),
                                                    ablation: ({ range in
                    try AblationStudy.singleAblations(network: network, data: subject.data, task: subject.loaded.task,
                                                      output: subject.loaded.output, clamp: subject.clamp, configurations: Array(range), on: backend,
                                                      progress: outputOptions.phaseProgress("ablate"))
                }, AblationStudy.singleConfigurationCount(cells: network.cellCount)))
                try ShardSummary(manifest, path: path).print(json: outputOptions.json)
                return
            }
            let output = try OutputDirectory(outputOptions.out ?? "cellaudit-ablation", force: outputOptions.force)
            let progress = ProgressReporter(quiet: outputOptions.quiet || outputOptions.json, label: "ablate")
            let summary = try output.build { dir -> AblationSummary in
                _ = try writeCharacterization(subject.plan, backend: backend, to: dir, model: model, selection: nil, progress: progress)
                return try finish(subject, backend: backend, dir: dir, single: nil)
            }
            try printOutcome(summary, out: outputOptions.out ?? "cellaudit-ablation", json: outputOptions.json)
        }
    }

    /// Everything the study needs before it runs.
    struct Subject {
        var loaded: LoadedModel
        /// The dataset, read a chunk at a time (checked whole when opened).
        var data: DatasetStream
        var plan: CharacterizationPlan
        var clamp: AblationStudy.Clamp
        var names: [String]
        var fromFiles: [String: (String, [Double])]
    }

    /// The most random orders `--seeds` takes: each adds a masked forward pass per point of the
    /// random curve, so memory and time grow with it.
    static let maxSeeds = 10_000

    func validate() throws {
        guard (1...Self.maxSeeds).contains(seeds) else {
            throw ValidationError("--seeds must lie in 1…\(Self.maxSeeds) (random orders averaged into the random curve; each adds a forward pass per curve point), got \(seeds)")
        }
    }

    func prepare() throws -> Subject {
        guard let clampMode = AblationStudy.Clamp(rawValue: clamp) else {
            throw RunFailure(description: "--clamp must be zero or mean, got '\(clamp)'")
        }
        let file = try DatasetFile(data)
        let loaded = try modelOptions.load(model, data: file)
        let stream = try DatasetStream(file, preparedFor: loaded)
        let plan = try stimulusOptions.plan(loaded.network, layers: nil)
        // Rankings from files are read (and checked) before any work starts.
        let names = ranking.isEmpty ? RankerRegistry.applicable(to: loaded.network, withData: true) : ranking
        let builtIn = Set(RankerRegistry.names)
        let bare = RankingContext(network: loaded.network, rows: plan.rows, summaries: [])
        var fromFiles: [String: (String, [Double])] = [:]
        for name in names where !builtIn.contains(name) { fromFiles[name] = try namedRanking(name, context: bare, seed: seed) }
        return Subject(loaded: loaded, data: stream, plan: plan, clamp: clampMode, names: names, fromFiles: fromFiles)
    }

    /// The identity every shard of this study must share (docs/METHOD.md §9).
    func shardContext(_ subject: Subject, backend: any ComputeBackend) throws -> ShardContext {
        var options = ShardContext.planOptions(subject.plan, backend: backend)
        options["rankings"] = subject.names.joined(separator: " ")
        for name in subject.names where subject.fromFiles[name] != nil { options["ranking " + name] = try ShardContext.fileHash(name) }
        options["seeds"] = "\(seeds)"
        options["seed"] = "\(seed)"
        options["clamp"] = subject.clamp.rawValue
        return ShardContext(command: "ablate", options: options,
                            model: try ShardContext.subject(subject.loaded, name: (model as NSString).lastPathComponent, path: model),
                            data: try ShardContext.dataFile(data))
    }

    /// The study after the characterization written into `dir` (`AblationRun.finish`), with
    /// this command's options, its progress on stderr unless quiet.
    func finish(_ subject: Subject, backend: any ComputeBackend, dir: URL, single: SingleAblation?) throws -> AblationSummary {
        let run = AblationRun(loaded: subject.loaded, data: subject.data, plan: subject.plan, clamp: subject.clamp, names: subject.names,
                              fromFiles: subject.fromFiles, seeds: seeds, seed: seed, ablationCells: try ablationCells.selection,
                              modelName: (model as NSString).lastPathComponent, dataName: (data as NSString).lastPathComponent)
        return try run.finish(backend: backend, dir: dir, single: single, progress: outputOptions.phaseProgress("ablate"),
                              announce: outputOptions.noteLines)
    }

    func printOutcome(_ summary: AblationSummary, out: String, json: Bool) throws {
        if json { try printJSON(summary); return }
        // Like every command that computes: the backend that ran it.
        if let backend = summary.backend { print("backend: \(backend)") }
        summary.print()
        print("wrote \(out)/ablation.csv, \(out)/curves.csv, \(out)/rankers.svg, \(out)/summary.json, \(out)/responses.safetensors, \(out)/stimuli.csv")
    }
}

