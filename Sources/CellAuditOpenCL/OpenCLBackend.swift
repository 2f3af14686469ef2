import Foundation
import CellAuditCore
import OpenCLKit
import Synchronization

/// How the kernels are built and launched: one typed value, read once (the CLI reads the
/// environment through `fromEnvironment`; library callers set it directly).
public struct KernelSettings: Sendable, Equatable {
    /// Cells per work-item in the response kernels (vector lanes: 1, 4, 8 or 16); nil picks the
    /// device's default (`OpenCLBackend.defaultVectorWidth`).
    public var vectorWidth: Int?
    /// Independent chains of `vectorWidth` cells per work-item (1, 2 or 4); nil: 4 on CPU
    /// devices, 1 elsewhere.
    public var chains: Int?
    /// Work-items per group along the cell axis of the response kernels.
    public var workGroupSize: Int
    /// native_exp / native_recip in the sigmoid (faster, less precise).
    public var nativeMath: Bool
    /// The full forward with `forward.cl`'s one-work-group-per-sequence kernel instead of the
    /// tiled `forward_tiled.cl` (what devices with work-groups under 256 items always run).
    public var perSequenceForward: Bool = false
    /// The most (configuration, sequence) pairs one chunk of the tiled forward holds; nil: as
    /// many as `OpenCLBackend.chunkBytes` allows. The parity harness sets it small so chunk
    /// edges are compared too.
    public var forwardChunkPairs: Int? = nil
    /// Work-items per side of the tiled forward's step work-group (4, 8 or 16); each computes
    /// (32 / n)² outputs of every gate block of its 32 × 32 tile. nil: 16 on GPUs, 4 on CPU
    /// devices (PoCL keeps each item's accumulators across barriers in memory, so fewer items
    /// with more outputs each ran 2× faster there, BENCHMARKS.md).
    public var forwardTileItems: Int? = nil
    /// The values `forwardTileItems` takes (the kernel's 32 × 32 tile split evenly).
    public static let forwardTileChoices = [4, 8, 16]

    public init(vectorWidth: Int? = nil, chains: Int? = nil, workGroupSize: Int = 64, nativeMath: Bool = false,
                perSequenceForward: Bool = false, forwardChunkPairs: Int? = nil, forwardTileItems: Int? = nil) {
        self.vectorWidth = vectorWidth; self.chains = chains; self.workGroupSize = workGroupSize; self.nativeMath = nativeMath
        self.perSequenceForward = perSequenceForward; self.forwardChunkPairs = forwardChunkPairs
        self.forwardTileItems = forwardTileItems
    }

    /// `CELLAUDIT_VW`, `CELLAUDIT_CHAINS` (or its old name `CELLAUDIT_NV`), `CELLAUDIT_WG`,
    /// `CELLAUDIT_FORWARD_TILE` (`forwardTileItems`) and `CELLAUDIT_FORWARD` (`tiled`, the
    /// default, or `per-sequence`).
    /// - Throws: `KernelSettingError` naming the variable when one is not a whole number or not
    ///   one of the values it takes.
    public static func fromEnvironment(_ environment: [String: String],
                                       nativeMath: Bool = false) throws -> KernelSettings {
        func number(_ key: String) throws -> Int? {
            guard let text = environment[key], !text.isEmpty else { return nil }
            guard let value = Int(text) else {
                throw KernelSettingError(description: "\(key) must be a whole number, got '\(text)'")
            }
            return value
        }
        let workGroup = try number("CELLAUDIT_WG") ?? 64
        // PoCL accepts a group of 4096 on paper and crashed running the response kernel in one.
        guard (1...KernelSettings.maxWorkGroupSize).contains(workGroup) else {
            throw KernelSettingError(description: "CELLAUDIT_WG must be 1…\(KernelSettings.maxWorkGroupSize), got \(workGroup)")
        }
        let forward = environment["CELLAUDIT_FORWARD"] ?? ""
        guard ["", "tiled", "per-sequence"].contains(forward) else {
            throw KernelSettingError(description: "CELLAUDIT_FORWARD must be tiled or per-sequence, got '\(forward)'")
        }
        let tile = try number("CELLAUDIT_FORWARD_TILE")
        if let tile, !Self.forwardTileChoices.contains(tile) {
            throw KernelSettingError(description: "CELLAUDIT_FORWARD_TILE must be 4, 8 or 16 (work-items per side of the forward's step tile), got \(tile)")
        }
        return try KernelSettings(vectorWidth: try number("CELLAUDIT_VW"),
                                  chains: try number("CELLAUDIT_CHAINS") ?? number("CELLAUDIT_NV"),
                                  workGroupSize: workGroup, nativeMath: nativeMath,
                                  perSequenceForward: forward == "per-sequence", forwardTileItems: tile).validated()
    }

    /// The largest response-kernel work-group CellAudit launches (the device's own limit also applies).
    public static let maxWorkGroupSize = 1024

    /// - Throws: `CLError` (`.invalidValue`) when the work-group size is outside 1…`maxWorkGroupSize`.
    public func validated() throws -> KernelSettings {
        guard (1...Self.maxWorkGroupSize).contains(workGroupSize) else {
            throw CLError(status: .invalidValue, call: "KernelSettings",
                          detail: "the work-group size must be 1…\(Self.maxWorkGroupSize), got \(workGroupSize)")
        }
        if let forwardTileItems, !Self.forwardTileChoices.contains(forwardTileItems) {
            throw CLError(status: .invalidValue, call: "KernelSettings",
                          detail: "the forward's tile must be 4, 8 or 16 work-items per side, got \(forwardTileItems)")
        }
        if let forwardChunkPairs, forwardChunkPairs < 1 {
            throw CLError(status: .invalidValue, call: "KernelSettings", detail: "a forward chunk needs at least one pair, got \(forwardChunkPairs)")
        }
        return self
    }
}

/// A kernel setting from the environment that the kernels do not have; the description names the
/// variable and the values it takes (one line, no OpenCL status: no OpenCL call failed).
public struct KernelSettingError: Error, CustomStringConvertible {
    public let description: String
    public init(description: String) { self.description = description }
}

/// The OpenCL backend: decoupled-cell simulations and the full forward as kernels from
/// `Kernels/`, for every cell kind (the kind's header is chosen with `-D CELL_KIND`).
public final class OpenCLBackend: ComputeBackend, @unchecked Sendable {
    // Holds only thread-safe OpenCL objects (context, queue); kernels are made per call.
    public let device: Device
    let context: Context
    let queue: CommandQueue
    /// The settings asked for, as given.
    public let settings: KernelSettings
    /// Use native (fast, less precise) math in the kernels.
    public var nativeMath: Bool { settings.nativeMath }
    let kernelSeconds = Mutex<Double>(0)
    /// The most device memory this backend's buffers have held at once since `resetDevicePeak()`.
    public var peakDeviceBytes: Int { context.bufferMeter.peakBytes }
    public func resetDevicePeak() { context.bufferMeter.resetPeak() }

    /// Device time of the most recent launch, from its profiling event.
    public var lastKernelSeconds: Double { kernelSeconds.withLock { $0 } }

    /// Extra elements past every output buffer, filled with a canary and checked after each
    /// launch (a debugging aid against out-of-bounds writes; 0 turns it off).
    public let canaryPadding: Int
    /// Host threads for the CPU work around the kernels (`ComputeBackend.hostThreads`).
    public let hostThreads: Int

    /// Every operation runs on the device (reverse and bidirectional layers included) but
    /// gradient × input, which runs on a CPU backend of `hostThreads` threads (`relevance(_:)`).
    public func placement(of operation: BackendOperation) -> BackendIdentity {
        operation == .gradientTimesInput ? CPUBackend(threads: hostThreads).identity : identity
    }

    public static let canary: Float = -7.0e30

    /// Cells per work-item in the response kernels (vector lanes). On CPU devices, the device's
    /// native float vector width (at least 4, at most 16): PoCL runs a work-item's floatN
    /// arithmetic as SIMD but cannot vectorise across work-items whose loops it cannot prove
    /// uniform. Elsewhere 1 (a GPU's lanes are its work-items).
    public let vectorWidth: Int

    /// Independent chains of `vectorWidth` cells per work-item in the response kernels (1, 2 or
    /// 4): 4 on CPU devices, so a core has several dependency chains to overlap (PoCL runs one
    /// work-item's loop to its end before the next; on PoCL with AVX-512, 1/2/4 chains measured
    /// 6.1e8/9.5e8/1.15e9 cell-steps/s, BENCHMARKS.md), 1 elsewhere.
    public let chains: Int

    /// Cells one work-item of the response kernels runs.
    var cellsPerItem: Int { vectorWidth * chains }

    public static func defaultVectorWidth(for device: Device) -> Int {
        guard device.info.type == .cpu else { return 1 }
        let native = device.info.nativeFloatVectorWidth
        return native >= 16 ? 16 : native >= 8 ? 8 : 4
    }

    /// - Throws: `CLError` (`.invalidValue`) for a vector width or chain count the kernels do not
    ///   have, or the error of creating the context and queue.
    /// - Parameter hostThreads: threads for the host-side work (readouts, gradient × input on the
    ///   CPU, the solves around the map steps); the caller's choice, default the usable cores.
    public init(device: Device, settings: KernelSettings = KernelSettings(), canaryPadding: Int = 0,
                hostThreads: Int = Parallelism.cores) throws {
        self.device = device
        self.hostThreads = max(1, hostThreads)
        let width = settings.vectorWidth ?? Self.defaultVectorWidth(for: device)
        guard [1, 4, 8, 16].contains(width) else {
            throw CLError(status: .invalidValue, call: "OpenCLBackend", detail: "vector width must be 1, 4, 8 or 16, got \(width)")
        }
        let chains = settings.chains ?? (device.info.type == .cpu ? 4 : 1)
        guard [1, 2, 4].contains(chains) else {
            throw CLError(status: .invalidValue, call: "OpenCLBackend", detail: "chains per work-item must be 1, 2 or 4, got \(chains)")
        }
        self.settings = try settings.validated()
        self.vectorWidth = width
        self.chains = chains
        self.canaryPadding = max(0, canaryPadding)
        context = try Context(device: device)
        queue = try context.makeQueue(profiling: true)
    }

    /// A chunk's outputs stay well inside the device's allocation limit and global memory.
    public var chunkBytes: Int {
        max(1 << 20, min(Int(device.info.maxAllocationBytes) / 4, Int(device.info.globalMemoryBytes) / 8, 256 << 20))
    }

    public var identity: BackendIdentity {
        BackendIdentity(kind: .opencl, device: "\(device.info.name), \(device.info.platformName)")
    }

    var mathDefines: [String] { nativeMath ? ["NATIVE_MATH"] : [] }

    /// The host↔kernel contract of `response.cl`, generated from the Swift definitions: the
    /// metric count, each metric's plane (`M_<NAME>`), the no-response threshold and the peak
    /// tolerance (METHOD.md §4).
    public static var contractDefines: [String] {
        ["N_METRICS=\(Metric.allCases.count)",
         "NO_RESPONSE=\(Float(StepMetrics.noResponseThreshold))f",
         "PEAK_TOLERANCE=\(StepMetrics.peakTimeTolerance)f"]
            + Metric.allCases.enumerated().map { "M_\($0.element.name.uppercased())=\($0.offset)" }
    }

    /// The defines that pick a cell kind's step (cell.h), the GRU variant and the peephole LSTM. Every kind's
    /// number is generated here from `CellKind` (`CELL_KIND_LSTM`, `CELL_KIND_GRU`,
    /// `CELL_KIND_RNN_TANH`, `CELL_KIND_RNN_RELU`), and the kernels compare `CELL_KIND` with
    /// those names: no kernel repeats the enum's order by hand.
    public static func cellDefines(_ kind: CellKind, resetAfter: Bool = true, peephole: Bool = false) -> [String] {
        kindNameDefines + ["CELL_KIND=\(kind.kernelCode)"] + (kind == .gru ? ["RESET_AFTER=\(resetAfter ? 1 : 0)"] : [])
            + (peephole ? ["PEEPHOLE=1"] : [])
    }

    /// `cellDefines` for the cell of `layer` (its kind, the GRU's reset placement, an LSTM's peepholes).
    public static func cellDefines(_ layer: RecurrentLayer) -> [String] {
        cellDefines(layer.kind, resetAfter: layer.resetAfter, peephole: layer.hasPeephole)
    }

    /// `CELL_KIND_<NAME>=<code>` for every kind.
    public static let kindNameDefines: [String] = CellKind.allCases.map { "\($0.kernelDefineName)=\($0.kernelCode)" }

    public func responses(_ job: ResponseJob) throws -> ResponseBlock {
        let n = job.cells.cellCount, stimuli = job.bank.count
        let values = Metric.allCases.count * n * stimuli
        let launch = try prepareResponseLaunch(job, kernel: "response_metrics")
        let (_, quadrature) = launch.waveforms
        let quad = try context.buffer(Float.self, count: quadrature.count, access: .readOnly)
        let harmonics = try context.buffer(Int32.self, count: stimuli, access: .readOnly)
        let out = try context.buffer(Float.self, count: values + canaryPadding, access: .writeOnly)
        try queue.write(quad, from: quadrature)
        try queue.write(harmonics, from: job.bank.schedules.map { Int32($0.harmonics) })
        try poison(out, count: values)
        // b(t) of every cell from the device's own unstimulated run (one more stimulus, of
        // amplitude 0, through the trajectory kernel), so a stimulus that changes nothing gives
        // r = 0 exactly; laid out [steps × n_pad], a work-item's VW cells one vector load per step.
        let steps = job.bank.steps, padded = launch.paddedCells
        let unstimulated = try deviceBaseline(job, launch: launch)
        var baseline = [Float](repeating: 0, count: steps * padded)
        for j in 0..<n { for t in 0..<steps { baseline[t * padded + j] = unstimulated[j * steps + t] } }
        let base = try context.buffer(Float.self, count: baseline.count, access: .readOnly)
        try queue.write(base, from: baseline)
        try launch.kernel.setArguments(launch.params, launch.initial, base, launch.amps, launch.sched, launch.wave, quad, harmonics, out,
                                       Int32(n), Int32(launch.paddedCells), Int32(stimuli), Int32(job.bank.steps), job.settlingBand)
        try run(launch.kernel, cells: n, stimuli: stimuli)
        let result = try queue.read(out, count: values)
        try checkCanary(out, from: values, kernel: "response_metrics")
        return ResponseBlock(cellCount: n, stimulusCount: stimuli, values: result)
    }

    public func trajectories(_ job: ResponseJob) throws -> Trajectories {
        let n = job.cells.cellCount, stimuli = job.bank.count, steps = job.bank.steps
        let values = n * stimuli * steps
        let launch = try prepareResponseLaunch(job, kernel: "response_trajectory")
        let traj = try context.buffer(Float.self, count: values + canaryPadding, access: .writeOnly)
        try poison(traj, count: values)
        try launch.kernel.setArguments(launch.params, launch.initial, launch.amps, launch.sched, launch.wave, traj,
                                       Int32(n), Int32(launch.paddedCells), Int32(stimuli), Int32(steps))
        try run(launch.kernel, cells: n, stimuli: stimuli)
        let result = try queue.read(traj, count: values)
        try checkCanary(traj, from: values, kernel: "response_trajectory")
        return Trajectories(cellCount: n, stimulusCount: stimuli, stepCount: steps, values: result)
    }

    /// The device's own unstimulated run of every cell of the job, [cells × bank.steps]: the
    /// baseline its response kernel measures against (the host's `job.baseline` runs the same
    /// step in Swift, which may round differently).
    public func unstimulatedRun(_ job: ResponseJob) throws -> [Float] {
        try deviceBaseline(job, launch: try prepareResponseLaunch(job, kernel: "response_trajectory"))
    }

    /// The probed signal of every cell of the job with no stimulus, [cells × bank.steps], run by
    /// the trajectory kernel of the job's program.
    private func deviceBaseline(_ job: ResponseJob, launch: ResponseLaunch) throws -> [Float] {
        let n = job.cells.cellCount, steps = job.bank.steps
        let kernel = try launch.program.kernel(named: "response_trajectory")
        let amps = try context.buffer(Float.self, count: 1, access: .readOnly)
        let sched = try context.buffer(Int32.self, count: 5, access: .readOnly)
        let wave = try context.buffer(Float.self, count: steps, access: .readOnly)
        let traj = try context.buffer(Float.self, count: n * steps + canaryPadding, access: .writeOnly)
        try queue.write(amps, from: [0])
        try queue.write(sched, from: [0, Int32(job.bank.onset), Int32(steps), 0, 0])
        try queue.write(wave, from: [Float](repeating: 0, count: steps))
        try poison(traj, count: n * steps)
        try kernel.setArguments(launch.params, launch.initial, amps, sched, wave, traj, Int32(n), Int32(launch.paddedCells), Int32(1), Int32(steps))
        try run(kernel, cells: n, stimuli: 1)
        let values = try queue.read(traj, count: n * steps)
        try checkCanary(traj, from: n * steps, kernel: "response_trajectory")
        return values
    }

    private struct ResponseLaunch {
        var kernel: Kernel
        var program: Program
        var params: Buffer<Float>, initial: Buffer<Float>, amps: Buffer<Float>, sched: Buffer<Int32>, wave: Buffer<Float>
        var waveforms: (wave: [Float], quadrature: [Float])
        var paddedCells: Int
    }

    /// Builds the program and uploads what both response kernels read.
    private func prepareResponseLaunch(_ job: ResponseJob, kernel name: String) throws -> ResponseLaunch {
        let stimuli = job.bank.count
        guard job.cells.cellCount <= Int(Int32.max), stimuli <= Int(Int32.max),
              job.bank.steps <= Int(Int32.max) else {
            throw CLError(status: .invalidValue, call: name, detail: "too many cells, stimuli or steps for one launch")
        }
        let program = try KernelLibrary.program("response.cl", in: context,
                                                defines: mathDefines + Self.contractDefines + Self.cellDefines(job.cells.kind, peephole: job.cells.peephole)
                                                    + ["VW=\(vectorWidth)", "CHAINS=\(chains)"] + (job.probe == .c ? ["PROBE_C"] : []))
        // Parameter planes padded with all-zero cells to a whole number of work-items.
        let n = job.cells.cellCount, padded = (n + cellsPerItem - 1) / cellsPerItem * cellsPerItem
        var params = [Float](repeating: 0, count: job.cells.valuesPerCell * padded)
        for q in 0..<job.cells.valuesPerCell {
            params.replaceSubrange((q * padded)..<(q * padded + n), with: job.cells.parameters[(q * n)..<((q + 1) * n)])
        }
        let kernel = try program.kernel(named: name)
        let waveforms = job.bank.waveforms()
        let sched = job.bank.stimuli.indices.flatMap { i -> [Int32] in
            let s = job.bank.schedules[i]
            return [job.bank.stimuli[i].kind == .sine ? 1 : 0, Int32(s.onset), Int32(s.end),
                    Int32(s.analysisStart), Int32(s.analysisLength)]
        }
        let launch = ResponseLaunch(
            kernel: kernel, program: program,
            params: try context.buffer(Float.self, count: params.count, access: .readOnly),
            initial: try context.buffer(Float.self, count: 2 * padded, access: .readOnly),
            amps: try context.buffer(Float.self, count: stimuli, access: .readOnly),
            sched: try context.buffer(Int32.self, count: sched.count, access: .readOnly),
            wave: try context.buffer(Float.self, count: waveforms.wave.count, access: .readOnly),
            waveforms: waveforms, paddedCells: padded)
        try queue.write(launch.params, from: params)
        // Start states h0 then c0 (padding cells start at 0).
        var initial = [Float](repeating: 0, count: 2 * padded)
        initial.replaceSubrange(0..<n, with: job.baseline.initialH)
        initial.replaceSubrange(padded..<(padded + n), with: job.baseline.initialC)
        try queue.write(launch.initial, from: initial)
        try queue.write(launch.amps, from: job.bank.stimuli.map(\.amplitude))
        try queue.write(launch.sched, from: sched)
        try queue.write(launch.wave, from: waveforms.wave)
        return launch
    }

    /// Fills an output with NaN (and the canary past its end) so unwritten values cannot pass.
    func poison(_ buffer: Buffer<Float>, count: Int) throws {
        try queue.fill(buffer, with: .nan)
        if canaryPadding > 0 {
            try queue.write(buffer, from: [Float](repeating: Self.canary, count: canaryPadding), offset: count)
        }
    }

    private func run(_ kernel: Kernel, cells: Int, stimuli: Int) throws {
        let items = (cells + cellsPerItem - 1) / cellsPerItem
        let group = min(settings.workGroupSize, device.info.maxWorkGroupSize)
        let global = [(items + group - 1) / group * group, stimuli]
        let seconds = try queue.launch(kernel, global: global, local: [group, 1]).durationSeconds()
        kernelSeconds.withLock { $0 = seconds }
    }

    func checkCanary(_ buffer: Buffer<Float>, from start: Int, kernel: String) throws {
        guard canaryPadding > 0 else { return }
        let tail = try queue.read(buffer, offset: start, count: canaryPadding)
        if let bad = tail.firstIndex(where: { $0.bitPattern != Self.canary.bitPattern }) {
            throw CLError(status: .invalidOperation, call: kernel,
                          detail: "wrote past the end of its output (element \(start + bad) of \(start))")
        }
    }
}
