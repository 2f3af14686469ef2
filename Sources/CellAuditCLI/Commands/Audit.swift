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
                if try !ablationCells.selection.isAll {
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

    /// The audit after the characterization written into `dir` (`AuditRun.finish`), with this
    /// command's options, its progress on stderr unless quiet.
    func finish(_ subject: Subject, backend: any ComputeBackend, dir: URL, result: CharacterizationResult,
                single: SingleAblation?) throws -> AuditSummary {
        let run = AuditRun(loaded: subject.loaded, name: subject.name, dataPath: subject.dataPath, data: subject.data,
                           thresholds: subject.thresholds, plan: subject.plan, seed: seed, skipAblation: skipAblation,
                           attractorSeeds: attractorSeeds, ablationCells: try ablationCells.selection)
        return try run.finish(backend: backend, dir: dir, result: result, single: single, progress: outputOptions.phaseProgress("audit"),
                              announce: outputOptions.noteLines, dynamicsNote: outputOptions.noteLines)
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
