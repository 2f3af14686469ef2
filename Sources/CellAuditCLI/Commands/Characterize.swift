import ArgumentParser
import CellAuditAnalysis
import CellAuditCore
import Foundation

struct Characterize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Simulate every decoupled cell under the stimulus bank and write its response metrics.",
        discussion: """
        Writes DIR/responses.safetensors (one [cells, stimuli] tensor per metric, NaN where a metric \
        does not apply, plus 'responded', 'layer' and 'cell'), DIR/stimuli.csv, and with \
        --trajectories DIR/trajectories.safetensors. The directory appears whole or not at all.
        """
    )

    @Argument(help: ArgumentHelp(modelArgumentHelp))
    var model: String

    @Option(help: "Characterize only this layer (default: every layer).")
    var layer: Int?

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var stimulusOptions: StimulusOptions
    @OptionGroup var backendOptions: BackendOptions

    @OptionGroup var outputOptions: OutputOptions
    @OptionGroup var shardOptions: ShardOptions

    @Option(help: "Also store whole trajectories for CELLS:STIMULI (lists and ranges of row and column numbers, e.g. 0-3,9:0,40-47).")
    var trajectories: String?

    func run() throws {
        try failing {
            let loaded = try modelOptions.load(model)
            let plan = try stimulusOptions.plan(loaded.network, layers: layer.map { [$0] })
            let selection = try trajectories.map { try TrajectorySelection.parse($0, rows: plan.rows.count, columns: plan.columnCount, steps: plan.bank.steps) }
            if let shard = try shardOptions.resolve() {
                guard selection == nil else {
                    throw RunFailure(description: "--trajectories is not sharded: run it without shards on the cells you want (see --layer)")
                }
                let backend = try backendOptions.makeBackend()
                var options = ShardContext.planOptions(plan, backend: backend)
                options["layer"] = layer.map(String.init) ?? "all"
                let context = ShardContext(command: "characterize", options: options,
                                           model: try ShardContext.subject(loaded, name: (model as NSString).lastPathComponent, path: model), data: nil)
                let (path, manifest) = try runShard(shard, context: context, plan: plan, backend: backend, out: outputOptions.out ?? "cellaudit-responses",
                                                    force: outputOptions.force,
                                                    progress: ProgressReporter(quiet: outputOptions.quiet || outputOptions.json, label: "characterize"),
                                                    ablation: nil)
                try ShardSummary(manifest, path: path).print(json: outputOptions.json)
                return
            }
            let output = try OutputDirectory(outputOptions.out ?? "cellaudit-responses", force: outputOptions.force)
            let backend = try backendOptions.makeBackend()
            let progress = ProgressReporter(quiet: outputOptions.quiet || outputOptions.json, label: "characterize")
            let result = try output.build { dir in
                try writeCharacterization(plan, backend: backend, to: dir, model: model, selection: selection, progress: progress)
            }
            let rate = Double(plan.simulatedSteps) / max(result.seconds, 1e-12)
            if outputOptions.json {
                try printJSON(CharacterizeSummary(out: outputOptions.out ?? "cellaudit-responses", cells: plan.rows.count, stimuli: plan.columnCount,
                                                  backend: "\(backend.identity)", seconds: result.seconds, cellStimulusSteps: plan.simulatedSteps,
                                                  cellStimulusStepsPerSecond: rate, respondedShare: result.respondedShare))
                return
            }
            print("characterized \(plan.rows.count) cells × \(plan.columnCount) stimuli (mode \(plan.mode.rawValue), direction \(stimulusOptions.direction), probe \(plan.probe.rawValue))")
            print("backend: \(backend.identity)")
            print(String(format: "%.3g cell-stimulus-steps in %.3f s: %.3g per second", Double(plan.simulatedSteps), result.seconds, rate))
            print(String(format: "responded: %.1f%% of pairs", 100 * result.respondedShare))
            let out = outputOptions.out ?? "cellaudit-responses"
            print("wrote \(out)/responses.safetensors, \(out)/stimuli.csv" + (selection != nil ? ", \(out)/trajectories.safetensors" : ""))
        }
    }
}

