import ArgumentParser
import CellAuditAnalysis
import CellAuditCore
import Foundation

/// The stimulus bank and decoupling options shared by `characterize` and `audit`.
struct StimulusOptions: ParsableArguments {
    @Option(help: "Step amplitudes, comma-separated (default: 32 values ±1/16…4, log-spaced; 'none' for no steps).")
    var stepAmplitudes: String?

    @Option(help: "Sinusoid frequencies in cycles per step, comma-separated (default: 128 log-spaced from 2/window to 0.45; 'none' for no sinusoids).")
    var frequencies: String?

    @Option(help: "Sinusoid amplitudes, comma-separated (default: 0.25,0.5,1,2).")
    var sineAmplitudes: String?

    @Option(help: "Start from h = c = 0 and run exactly this many rest steps before the stimulus (default: start every cell at its resting state, found by iteration).")
    var preSteps: Int?

    @Option(help: "Largest change of a cell's unstimulated run, over the longest run, for the cell to count as at rest (METHOD.md §4).")
    var restTolerance: Float = Defaults.restTolerance

    @Option(help: "Further rest steps before onset.")
    var onset: Int = 0

    @Option(help: "Observation window after onset, in steps (T_obs).")
    var window: Int = Defaults.window

    @Option(help: "A JSON stimulus file (see README); replaces the grid options.")
    var stimuli: String?

    @Option(help: "Recurrence mode: self, clamped or network.")
    var mode: String = "self"

    @Option(help: "Stimulus direction: all, each, channel:K or a comma-separated vector.")
    var direction: String = "all"

    @Option(help: "Probed signal: h or c.")
    var probe: String = "h"

    @Option(help: "Settling band as a fraction of |Δ|.")
    var settlingBand: Float = Defaults.settlingBand

    /// What each option refuses on its own (exit 2): a mode, probe or list that is malformed
    /// whatever the model. Whether a value fits the model is checked later (exit 1).
    func validate() throws {
        if RecurrenceMode(rawValue: mode) == nil { throw ValidationError("--mode must be self, clamped or network, got '\(mode)'") }
        if Probe(rawValue: probe) == nil { throw ValidationError("--probe must be h or c, got '\(probe)'") }
        for (text, name) in [(stepAmplitudes, "--step-amplitudes"), (frequencies, "--frequencies"), (sineAmplitudes, "--sine-amplitudes")] {
            guard let text, text != "none" else { continue }
            do { _ = try parseFloats(text, name: name) } catch let error as RunFailure { throw ValidationError(error.description) }
        }
    }

    func bank() throws -> StimulusBank {
        if let stimuli {
            guard stepAmplitudes == nil, frequencies == nil, sineAmplitudes == nil else {
                throw RunFailure(description: "--stimuli replaces --step-amplitudes, --frequencies and --sine-amplitudes; give one or the other")
            }
            return try StimulusBank.load(json: stimuli, preSteps: preSteps, onsetDelay: onset, window: window)
        }
        guard window >= 2 else { throw StimulusError.invalid("the observation window must be ≥ 2 steps, got \(window)") }
        func list(_ text: String?, _ name: String, _ fallback: [Float]) throws -> [Float] {
            guard let text else { return fallback }
            return text == "none" ? [] : try parseFloats(text, name: name)
        }
        return try StimulusBank.grid(
            stepAmplitudes: try list(stepAmplitudes, "--step-amplitudes", StimulusBank.defaultStepAmplitudes),
            frequencies: try list(frequencies, "--frequencies", StimulusBank.defaultFrequencies(window: window)),
            sineAmplitudes: try list(sineAmplitudes, "--sine-amplitudes", StimulusBank.defaultSineAmplitudes),
            preSteps: preSteps, onsetDelay: onset, window: window)
    }

    func plan(_ network: RecurrentNetwork, layers: [Int]?) throws -> CharacterizationPlan {
        guard let mode = RecurrenceMode(rawValue: mode) else {
            throw RunFailure(description: "--mode must be self, clamped or network, got '\(mode)'")
        }
        guard let probe = Probe(rawValue: probe) else { throw RunFailure(description: "--probe must be h or c, got '\(probe)'") }
        return try CharacterizationPlan(network: network, layers: layers, mode: mode, direction: try DirectionSpec.parse(direction),
                                        probe: probe, bank: try bank(), settlingBand: settlingBand, restTolerance: restTolerance)
    }
}

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

