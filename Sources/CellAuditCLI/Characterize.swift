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
            do { _ = try parseFloats(text, name: name) } catch let error as CleanFailure { throw ValidationError(error.description) }
        }
    }

    func bank() throws -> StimulusBank {
        if let stimuli {
            guard stepAmplitudes == nil, frequencies == nil, sineAmplitudes == nil else {
                throw CleanFailure(description: "--stimuli replaces --step-amplitudes, --frequencies and --sine-amplitudes; give one or the other")
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
            throw CleanFailure(description: "--mode must be self, clamped or network, got '\(mode)'")
        }
        guard let probe = Probe(rawValue: probe) else { throw CleanFailure(description: "--probe must be h or c, got '\(probe)'") }
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
                    throw CleanFailure(description: "--trajectories is not sharded: run it without shards on the cells you want (see --layer)")
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

struct CharacterizationResult {
    var seconds: Double
    var respondedShare: Double
}

/// Runs the plan chunk by chunk into `dir`: responses.safetensors, stimuli.csv and, if asked,
/// trajectories.safetensors.
func writeCharacterization(_ plan: CharacterizationPlan, backend: any ComputeBackend, to dir: URL, model: String,
                           selection: TrajectorySelection?, progress: ProgressReporter) throws -> CharacterizationResult {
    let rows = plan.rows.count, columns = plan.columnCount
    let metadata = responsesMetadata(plan, backend: backend, model: model)
    let writer = try SafeTensorsStreamWriter(path: dir.appendingPathComponent("responses.safetensors").path,
                                             tensors: responsesDeclarations(pairShape: [rows, columns], rows: rows,
                                                                            directions: !plan.network.isForwardOnly), metadata: metadata)
    let atRest = try Characterizer.atRest(plan, on: backend)
    let (seconds, responded) = try streamResponses(plan, on: backend, pairs: nil, to: writer, columns: columns, firstPair: 0, progress: progress)
    // The per-row tensors lie after the metrics: written last, so the file grows in order.
    try writeRowIdentity(plan.rows[...], atRest: atRest[...], directions: !plan.network.isForwardOnly, to: writer)
    try writer.finish()
    try stimuliCSV(plan).write(to: dir.appendingPathComponent("stimuli.csv"), atomically: false, encoding: .utf8)
    if let selection {
        try writeTrajectories(plan, selection: selection, backend: backend, to: dir.appendingPathComponent("trajectories.safetensors"),
                              metadata: metadata)
    }
    return CharacterizationResult(seconds: seconds, respondedShare: Double(responded) / Double(max(rows * columns, 1)))
}

/// Runs the plan (the pairs in `pairs`, all when nil) and writes every chunk into `writer` on a
/// writer thread while the engine computes the next one: at most `inFlight` chunks wait, so memory
/// stays bounded by the chunk size. Returns the engine's seconds and how many pairs responded.
/// A write error stops the run at the next chunk; either side's error is thrown after the writer
/// has drained, so nothing writes into the output once this returns.
func streamResponses(_ plan: CharacterizationPlan, on backend: any ComputeBackend, pairs: Range<Int>?, to writer: SafeTensorsStreamWriter,
                     columns: Int, firstPair: Int, progress: ProgressReporter, inFlight: Int = 2) throws -> (seconds: Double, responded: Int) {
    let queue = DispatchQueue(label: "cellaudit.responses-writer")
    let slots = DispatchSemaphore(value: inFlight)
    let state = WriterState()
    let output = UncheckedSendable(writer)
    func drain() { queue.sync {} }
    let seconds: Double
    do {
        seconds = try Characterizer.run(plan, on: backend, pairs: pairs, sink: { chunk in
            if let error = state.error { throw error }
            slots.wait()
            queue.async {
                defer { slots.signal() }
                guard state.error == nil else { return }
                do {
                    state.add(try writeChunk(chunk, to: output.value, columns: columns, firstPair: firstPair))
                } catch {
                    state.fail(error)
                }
            }
        }, progress: progress.report)
    } catch {
        drain()
        progress.finish()
        throw error
    }
    drain()
    progress.finish()
    if let error = state.error { throw error }
    return (seconds, state.responded)
}

/// What the writer thread reports back: pairs that responded, and its first error.
private final class WriterState: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0, failure: (any Error)?
    var responded: Int { lock.withLock { count } }
    var error: (any Error)? { lock.withLock { failure } }
    func add(_ n: Int) { lock.withLock { count += n } }
    func fail(_ error: any Error) { lock.withLock { if failure == nil { failure = error } } }
}

/// A value handed to one other thread at a time (here: the stream writer, used by the writer
/// queue while the engine runs and by the caller only after it has drained).
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// Writes a chunk's metric planes into the metric tensors, each row's stimuli at flat pair index
/// row · columns + column − `firstPair` ('responded' as 0/1 bytes); returns how many pairs responded.
func writeChunk(_ chunk: ResponseChunk, to writer: SafeTensorsStreamWriter, columns: Int, firstPair: Int) throws -> Int {
    let b = chunk.block
    var responded = 0
    /// One contiguous run of a metric's values into its tensor at flat pair index `at`.
    func write(_ metric: Metric, _ values: ArraySlice<Float>, at: Int) throws {
        if metric == .responded {
            let flags = values.map { UInt8($0 == 1 ? 1 : 0) }
            responded += flags.reduce(0) { $0 + Int($1) }
            try flags.withUnsafeBufferPointer { try writer.write("responded", at: at, $0) }
        } else {
            try values.withUnsafeBufferPointer { try writer.write(metric.name, at: at, $0) }
        }
    }
    // A chunk of whole rows is one contiguous run of each metric tensor: one write per metric
    // (fewer system calls, and fewer partly written pages for the kernel to zero first).
    let wholeRows = chunk.columnStart == 0 && b.stimulusCount == columns
    for metric in Metric.allCases {
        let plane = b.plane(metric)
        if wholeRows {
            try write(metric, plane, at: chunk.rowStart * columns - firstPair)
            continue
        }
        for r in 0..<b.cellCount {
            let start = plane.startIndex + r * b.stimulusCount
            try write(metric, plane[start..<(start + b.stimulusCount)], at: (chunk.rowStart + r) * columns + chunk.columnStart - firstPair)
        }
    }
    return responded
}

/// The metadata of responses.safetensors: what was run, how, on what.
func responsesMetadata(_ plan: CharacterizationPlan, backend: any ComputeBackend, model: String) -> [String: String] {
    var metadata = [
        "model": (model as NSString).lastPathComponent, "mode": plan.mode.rawValue, "probe": plan.probe.rawValue,
        "directions": plan.directionLabels.joined(separator: " "), "backend": "\(backend.identity)",
        "pre_steps": "\(plan.bank.preSteps)", "onset": "\(plan.bank.onset)", "window": "\(plan.bank.window)",
        "settling_band": "\(plan.settlingBand)", "rest_tolerance": "\(plan.restTolerance)",
        "start": plan.bank.startsAtRest ? "resting state (found by iteration)" : "h = c = 0, \(plan.bank.preSteps) rest steps", "columns": "direction-major: column = direction * \(plan.bank.count) + stimulus",
        "cellaudit": CellAudit.version,
    ]
    metadata["layers"] = plan.layers.map(String.init).joined(separator: ",")
    return metadata
}

/// The tensors of responses.safetensors: one tensor of shape `pairShape` per metric ('responded'
/// as U8), then 'at_rest', 'layer' and 'cell' over `rows` rows, and 'direction' (0 forward,
/// 1 reverse) where the network has reverse layers (`directions`). A whole run's pairs are
/// [rows, columns]; a shard's are flat over its block of pairs, its rows those the block touches.
func responsesDeclarations(pairShape: [Int], rows: Int, directions: Bool) -> [SafeTensorsStreamWriter.Declaration] {
    var declarations = Metric.allCases.filter { $0 != .responded }.map { SafeTensorsStreamWriter.Declaration($0.name, .F32, pairShape) }
    declarations += [.init("responded", .U8, pairShape), .init("at_rest", .U8, [rows]),
                     .init("layer", .I32, [rows]), .init("cell", .I32, [rows])]
    if directions { declarations.append(.init("direction", .U8, [rows])) }
    return declarations
}

/// The per-row tensors 'at_rest', 'layer', 'cell' and (with `directions`) 'direction' of `rows`.
func writeRowIdentity(_ rows: ArraySlice<CellID>, atRest: ArraySlice<Bool>, directions: Bool, to writer: SafeTensorsStreamWriter) throws {
    try rows.map { Int32($0.layer) }.withUnsafeBufferPointer { try writer.write("layer", at: 0, $0) }
    try rows.map { Int32($0.index) }.withUnsafeBufferPointer { try writer.write("cell", at: 0, $0) }
    try atRest.map { UInt8($0 ? 1 : 0) }.withUnsafeBufferPointer { try writer.write("at_rest", at: 0, $0) }
    if directions { try rows.map { UInt8($0.direction == .reverse ? 1 : 0) }.withUnsafeBufferPointer { try writer.write("direction", at: 0, $0) } }
}

/// The cell summaries of the responses.safetensors that `writeCharacterization` wrote into `dir`.
func summarizeWritten(_ plan: CharacterizationPlan, in dir: URL) throws -> [CellSummary] {
    try Reduction.summarize(responses: try SafeTensorsFile(path: dir.appendingPathComponent("responses.safetensors").path), plan: plan)
}

func stimuliCSV(_ plan: CharacterizationPlan) -> String {
    var lines = ["index,direction,kind,amplitude,frequency,onset,window,analysis_start,analysis_length"]
    for (d, label) in plan.directionLabels.enumerated() {
        for (s, (stimulus, schedule)) in zip(plan.bank.stimuli, plan.bank.schedules).enumerated() {
            lines.append([String(d * plan.bank.count + s), label, stimulus.kind.rawValue, "\(stimulus.amplitude)",
                          "\(stimulus.frequency)", String(schedule.onset), String(schedule.end - schedule.onset),
                          String(schedule.analysisStart - schedule.onset), String(schedule.analysisLength)].joined(separator: ","))
        }
    }
    return lines.joined(separator: "\n") + "\n"
}
