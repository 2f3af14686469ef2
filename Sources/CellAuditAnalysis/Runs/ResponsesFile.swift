import CellAuditCore
import CellAuditOpenCL
import Foundation

/// What a characterization reports besides its files: the engine's seconds and the share of
/// (cell, stimulus) pairs that responded (METHOD.md §4).
public struct CharacterizationResult {
    public var seconds: Double
    public var respondedShare: Double
}

/// Runs the plan chunk by chunk into `dir`: responses.safetensors, stimuli.csv and, if asked,
/// trajectories.safetensors.
public func writeCharacterization(_ plan: CharacterizationPlan, backend: any ComputeBackend, to dir: URL, model: String,
                           selection: TrajectorySelection?, progress: any ChunkProgressSink) throws -> CharacterizationResult {
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
public func streamResponses(_ plan: CharacterizationPlan, on backend: any ComputeBackend, pairs: Range<Int>?, to writer: SafeTensorsStreamWriter,
                     columns: Int, firstPair: Int, progress: any ChunkProgressSink, inFlight: Int = 2) throws -> (seconds: Double, responded: Int) {
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
    public var responded: Int { lock.withLock { count } }
    public var error: (any Error)? { lock.withLock { failure } }
    public func add(_ n: Int) { lock.withLock { count += n } }
    public func fail(_ error: any Error) { lock.withLock { if failure == nil { failure = error } } }
}

/// Writes a chunk's metric planes into the metric tensors, each row's stimuli at flat pair index
/// row · columns + column − `firstPair` ('responded' as 0/1 bytes); returns how many pairs responded.
public func writeChunk(_ chunk: ResponseChunk, to writer: SafeTensorsStreamWriter, columns: Int, firstPair: Int) throws -> Int {
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
public func responsesMetadata(_ plan: CharacterizationPlan, backend: any ComputeBackend, model: String) -> [String: String] {
    var metadata = [
        "model": (model as NSString).lastPathComponent, "mode": plan.mode.rawValue, "probe": plan.probe.rawValue,
        "directions": plan.directionLabels.joined(separator: " "), "backend": "\(backend.identity)",
        "pre_steps": "\(plan.bank.preSteps)", "onset": "\(plan.bank.onset)", "window": "\(plan.bank.window)",
        "settling_band": "\(plan.settlingBand)", "rest_tolerance": "\(plan.restTolerance)",
        "start": plan.bank.startsAtRest ? "resting state (found by iteration)" : "h = c = 0, \(plan.bank.preSteps) rest steps", "columns": "direction-major: column = direction * \(plan.bank.count) + stimulus",
        "cellaudit": CellAuditVersion.current,
    ]
    metadata["layers"] = plan.layers.map(String.init).joined(separator: ",")
    return metadata
}

/// The tensors of responses.safetensors: one tensor of shape `pairShape` per metric ('responded'
/// as U8), then 'at_rest', 'layer' and 'cell' over `rows` rows, and 'direction' (0 forward,
/// 1 reverse) where the network has reverse layers (`directions`). A whole run's pairs are
/// [rows, columns]; a shard's are flat over its block of pairs, its rows those the block touches.
public func responsesDeclarations(pairShape: [Int], rows: Int, directions: Bool) -> [SafeTensorsStreamWriter.Declaration] {
    var declarations = Metric.allCases.filter { $0 != .responded }.map { SafeTensorsStreamWriter.Declaration($0.name, .F32, pairShape) }
    declarations += [.init("responded", .U8, pairShape), .init("at_rest", .U8, [rows]),
                     .init("layer", .I32, [rows]), .init("cell", .I32, [rows])]
    if directions { declarations.append(.init("direction", .U8, [rows])) }
    return declarations
}

/// The per-row tensors 'at_rest', 'layer', 'cell' and (with `directions`) 'direction' of `rows`.
public func writeRowIdentity(_ rows: ArraySlice<CellID>, atRest: ArraySlice<Bool>, directions: Bool, to writer: SafeTensorsStreamWriter) throws {
    try rows.map { Int32($0.layer) }.withUnsafeBufferPointer { try writer.write("layer", at: 0, $0) }
    try rows.map { Int32($0.index) }.withUnsafeBufferPointer { try writer.write("cell", at: 0, $0) }
    try atRest.map { UInt8($0 ? 1 : 0) }.withUnsafeBufferPointer { try writer.write("at_rest", at: 0, $0) }
    if directions { try rows.map { UInt8($0.direction == .reverse ? 1 : 0) }.withUnsafeBufferPointer { try writer.write("direction", at: 0, $0) } }
}

/// The cell summaries of the responses.safetensors that `writeCharacterization` wrote into `dir`.
public func summarizeWritten(_ plan: CharacterizationPlan, in dir: URL) throws -> [CellSummary] {
    try Reduction.summarize(responses: try SafeTensorsFile(path: dir.appendingPathComponent("responses.safetensors").path), plan: plan)
}

/// DIR/stimuli.csv's text: one row per column of the responses (direction-major), with the
/// stimulus's kind, amplitude, frequency (cycles per step) and its schedule in steps.
public func stimuliCSV(_ plan: CharacterizationPlan) -> String {
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

/// `--trajectories CELLS:STIMULI`: row and column numbers as lists and ranges ("0-3,9").
public struct TrajectorySelection {
    public var rows: [Int]
    public var columns: [Int]
    /// The largest trajectories file written.
    public static let maxBytes = 512 << 20

    public static func parse(_ text: String, rows: Int, columns: Int, steps: Int) throws -> TrajectorySelection {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw RunFailure(description: "--trajectories takes CELLS:STIMULI, got '\(text)'") }
        let selection = TrajectorySelection(rows: try indices(String(parts[0]), bound: rows, what: "cell"),
                                            columns: try indices(String(parts[1]), bound: columns, what: "stimulus"))
        let bytes = selection.rows.count * selection.columns.count * steps * 4
        guard bytes <= maxBytes else {
            throw RunFailure(description: "--trajectories would write \(bytes >> 20) MiB, more than the \(maxBytes >> 20) MiB limit; choose fewer cells or stimuli")
        }
        return selection
    }

    public static func indices(_ text: String, bound: Int, what: String) throws -> [Int] {
        var out: [Int] = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let ends = item.split(separator: "-", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard (1...2).contains(ends.count), ends.allSatisfy({ $0 != nil }) else {
                throw RunFailure(description: "--trajectories: '\(item)' is not a \(what) number or range A-B")
            }
            let lo = ends[0]!, hi = ends.last!!
            guard lo <= hi else {
                throw RunFailure(description: "--trajectories: \(what) range \(item) is reversed; write it low-high (\(hi)-\(lo))")
            }
            guard lo >= 0, hi < bound else {
                throw RunFailure(description: "--trajectories: \(what) range \(item) is outside 0…\(bound - 1)")
            }
            out += Array(lo...hi)
        }
        return out
    }
}

/// trajectories.safetensors: the probed signal of the selected cells under the selected stimuli,
/// F32 [rows, columns, steps], with their row and column numbers and the cells' identity.
/// - Throws: the backend's errors; file-system errors.
public func writeTrajectories(_ plan: CharacterizationPlan, selection: TrajectorySelection, backend: any ComputeBackend,
                       to url: URL, metadata: [String: String]) throws {
    let values = try Characterizer.trajectories(plan, rows: selection.rows, columns: selection.columns, on: backend)
    var writer = SafeTensorsWriter(metadata: metadata)
    try writer.add("trajectories", floats: values, shape: [selection.rows.count, selection.columns.count, plan.bank.steps])
    try writer.add("rows", int64s: selection.rows, shape: [selection.rows.count])
    try writer.add("columns", int64s: selection.columns, shape: [selection.columns.count])
    try writer.add("layer", int64s: selection.rows.map { plan.rows[$0].layer }, shape: [selection.rows.count])
    try writer.add("cell", int64s: selection.rows.map { plan.rows[$0].index }, shape: [selection.rows.count])
    if !plan.network.isForwardOnly {
        try writer.add("direction", int64s: selection.rows.map { plan.rows[$0].direction == .reverse ? 1 : 0 }, shape: [selection.rows.count])
    }
    try writer.write(to: url.path)
}
