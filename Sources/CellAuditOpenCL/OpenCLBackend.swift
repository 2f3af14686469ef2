import Foundation
import CellAuditCore
import OpenCLKit
import Synchronization

/// The OpenCL backend: decoupled-cell simulations as kernels from `Kernels/`.
public final class OpenCLBackend: ComputeBackend, @unchecked Sendable {
    // Holds only thread-safe OpenCL objects (context, queue); kernels are made per call.
    public let device: Device
    let context: Context
    let queue: CommandQueue
    /// Use native (fast, less precise) math in the kernels.
    public let nativeMath: Bool
    private let kernelSeconds = Mutex<Double>(0)
    /// The most device memory this backend's buffers have held at once since `resetDevicePeak()`.
    public var peakDeviceBytes: Int { context.bufferMeter.peakBytes }
    public func resetDevicePeak() { context.bufferMeter.resetPeak() }

    /// Device time of the most recent launch, from its profiling event.
    public var lastKernelSeconds: Double { kernelSeconds.withLock { $0 } }

    /// Extra elements past every output buffer, filled with a canary and checked after each
    /// launch (a debugging aid against out-of-bounds writes; 0 turns it off).
    public let canaryPadding: Int
    public static let canary: Float = -7.0e30

    /// Cells per work-item in the response kernels (vector lanes). On CPU devices, the device's
    /// native float vector width (at least 4, at most 16): PoCL runs a work-item's floatN
    /// arithmetic as SIMD but cannot vectorise across work-items whose loops it cannot prove
    /// uniform. Elsewhere 1 (a GPU's lanes are its work-items). `CELLAUDIT_VW` overrides it.
    public let vectorWidth: Int

    /// Independent chains of `vectorWidth` cells per work-item in the response kernels (1, 2 or
    /// 4): 4 on CPU devices, so a core has several dependency chains to overlap (PoCL runs one
    /// work-item's loop to its end before the next; on PoCL with AVX-512, NV 1/2/4 measured
    /// 6.1e8/9.5e8/1.15e9 cell-steps/s, BENCHMARKS.md), 1 elsewhere. `CELLAUDIT_NV` overrides it.
    public let chains: Int

    /// Cells one work-item of the response kernels runs.
    var cellsPerItem: Int { vectorWidth * chains }

    public static func defaultVectorWidth(for device: Device) -> Int {
        guard device.info.type == .cpu else { return 1 }
        let native = device.info.nativeFloatVectorWidth
        return native >= 16 ? 16 : native >= 8 ? 8 : 4
    }

    public init(device: Device, nativeMath: Bool = false, canaryPadding: Int = 0,
                vectorWidth: Int? = nil, chains: Int? = nil) throws {
        self.device = device
        let environment = ProcessInfo.processInfo.environment
        let width = vectorWidth ?? environment["CELLAUDIT_VW"].flatMap(Int.init) ?? Self.defaultVectorWidth(for: device)
        guard [1, 4, 8, 16].contains(width) else {
            throw CLError(status: .invalidValue, call: "OpenCLBackend", detail: "vector width must be 1, 4, 8 or 16, got \(width)")
        }
        let chains = chains ?? environment["CELLAUDIT_NV"].flatMap(Int.init) ?? (device.info.type == .cpu ? 4 : 1)
        guard [1, 2, 4].contains(chains) else {
            throw CLError(status: .invalidValue, call: "OpenCLBackend", detail: "chains per work-item must be 1, 2 or 4, got \(chains)")
        }
        self.vectorWidth = width
        self.chains = chains
        self.nativeMath = nativeMath
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

    /// Work-items per group along the cell axis for the response kernels.
    public static let responseGroupSize = ProcessInfo.processInfo.environment["CELLAUDIT_WG"].flatMap(Int.init).map { max(1, $0) } ?? 64

    public func responses(_ job: ResponseJob) throws -> ResponseBlock {
        let n = job.cells.cellCount, stimuli = job.bank.count
        let values = Metric.allCases.count * n * stimuli
        let launch = try prepareResponseLaunch(job, kernel: "lstm_response_metrics")
        let (_, quadrature) = launch.waveforms
        let quad = try context.buffer(Float.self, count: quadrature.count, access: .readOnly)
        let harmonics = try context.buffer(Int32.self, count: stimuli, access: .readOnly)
        let out = try context.buffer(Float.self, count: values + canaryPadding, access: .writeOnly)
        try queue.write(quad, from: quadrature)
        try queue.write(harmonics, from: job.bank.schedules.map { Int32($0.harmonics) })
        try poison(out, count: values)
        try launch.kernel.setArguments(launch.params, launch.amps, launch.sched, launch.wave, quad, harmonics, out,
                                       Int32(n), Int32(launch.paddedCells), Int32(stimuli), Int32(job.bank.steps), job.settlingBand)
        try run(launch.kernel, cells: n, stimuli: stimuli)
        let result = try queue.read(out, count: values)
        try checkCanary(out, from: values, kernel: "lstm_response_metrics")
        return ResponseBlock(cellCount: n, stimulusCount: stimuli, values: result)
    }

    public func trajectories(_ job: ResponseJob) throws -> Trajectories {
        let n = job.cells.cellCount, stimuli = job.bank.count, steps = job.bank.steps
        let values = n * stimuli * steps
        let launch = try prepareResponseLaunch(job, kernel: "lstm_response_trajectory")
        let traj = try context.buffer(Float.self, count: values + canaryPadding, access: .writeOnly)
        try poison(traj, count: values)
        try launch.kernel.setArguments(launch.params, launch.amps, launch.sched, launch.wave, traj,
                                       Int32(n), Int32(launch.paddedCells), Int32(stimuli), Int32(steps))
        try run(launch.kernel, cells: n, stimuli: stimuli)
        let result = try queue.read(traj, count: values)
        try checkCanary(traj, from: values, kernel: "lstm_response_trajectory")
        return Trajectories(cellCount: n, stimulusCount: stimuli, stepCount: steps, values: result)
    }

    private struct ResponseLaunch {
        var kernel: Kernel
        var params: Buffer<Float>, amps: Buffer<Float>, sched: Buffer<Int32>, wave: Buffer<Float>
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
        let program = try KernelLibrary.program("lstm_response.cl", in: context,
                                                defines: mathDefines + ["VW=\(vectorWidth)", "NV=\(chains)"] + (job.probe == .c ? ["PROBE_C"] : []))
        // Parameter planes padded with all-zero cells to a whole number of work-items.
        let n = job.cells.cellCount, padded = (n + cellsPerItem - 1) / cellsPerItem * cellsPerItem
        var params = [Float](repeating: 0, count: DecoupledCells.valuesPerCell * padded)
        for q in 0..<DecoupledCells.valuesPerCell {
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
            kernel: kernel,
            params: try context.buffer(Float.self, count: params.count, access: .readOnly),
            amps: try context.buffer(Float.self, count: stimuli, access: .readOnly),
            sched: try context.buffer(Int32.self, count: sched.count, access: .readOnly),
            wave: try context.buffer(Float.self, count: waveforms.wave.count, access: .readOnly),
            waveforms: waveforms, paddedCells: padded)
        try queue.write(launch.params, from: params)
        try queue.write(launch.amps, from: job.bank.stimuli.map(\.amplitude))
        try queue.write(launch.sched, from: sched)
        try queue.write(launch.wave, from: waveforms.wave)
        return launch
    }

    /// Fills an output with NaN (and the canary past its end) so unwritten values cannot pass.
    private func poison(_ buffer: Buffer<Float>, count: Int) throws {
        try queue.fill(buffer, with: .nan)
        if canaryPadding > 0 {
            try queue.write(buffer, from: [Float](repeating: Self.canary, count: canaryPadding), offset: count)
        }
    }

    private func run(_ kernel: Kernel, cells: Int, stimuli: Int) throws {
        let items = (cells + cellsPerItem - 1) / cellsPerItem
        let group = min(Self.responseGroupSize, device.info.maxWorkGroupSize)
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

    public func forward(_ job: ForwardJob) throws -> ForwardResult {
        let net = job.network, n = job.inputs.count, steps = job.inputs.steps, configs = job.masks.count
        let pairs = configs * n
        let widest = net.layers.map(\.hiddenSize).max()!
        let group = (widest + 31) / 32 * 32
        guard group <= device.info.maxWorkGroupSize else {
            throw CLError(status: .invalidWorkGroupSize, call: "lstm_layer_forward",
                          detail: "layers of \(widest) cells exceed the device's work-group limit of \(device.info.maxWorkGroupSize)")
        }
        let program = try KernelLibrary.program("lstm_forward.cl", in: context, defines: mathDefines)
        let kernel = try program.kernel(named: "lstm_layer_forward")
        var x = try context.buffer(Float.self, count: job.inputs.values.count, access: .readOnly)
        try queue.write(x, from: job.inputs.values)
        var offset = 0
        var kernelTime = 0.0
        for (l, layer) in net.layers.enumerated() {
            let h = layer.hiddenSize
            let W = try context.buffer(Float.self, count: layer.W.count, access: .readOnly)
            let R = try context.buffer(Float.self, count: layer.R.count, access: .readOnly)
            let b = try context.buffer(Float.self, count: layer.b.count, access: .readOnly)
            let keep = try context.buffer(Float.self, count: configs * h, access: .readOnly)
            let clampH = try context.buffer(Float.self, count: h, access: .readOnly)
            let clampC = try context.buffer(Float.self, count: h, access: .readOnly)
            let y = try context.buffer(Float.self, count: pairs * steps * h + canaryPadding)
            try queue.write(W, from: layer.W)
            try queue.write(R, from: layer.R)
            try queue.write(b, from: layer.b)
            try queue.write(keep, from: job.masks.flatMap { $0.keep[offset..<(offset + h)] })
            try queue.write(clampH, from: Array(job.clampH[offset..<(offset + h)]))
            try queue.write(clampC, from: Array(job.clampC[offset..<(offset + h)]))
            try queue.fill(y, with: .nan)
            if canaryPadding > 0 {
                try queue.write(y, from: [Float](repeating: Self.canary, count: canaryPadding), offset: pairs * steps * h)
            }
            try kernel.setArguments(x, Int32(l == 0 ? 0 : 1), W, R, b, keep, clampH, clampC, y, Int32(n), Int32(steps),
                                    Int32(l == 0 ? job.inputs.width : net.layers[l - 1].hiddenSize), Int32(h),
                                    LocalMemory<Float>(count: h))
            kernelTime += try queue.launch(kernel, global: [group, pairs], local: [group, 1]).durationSeconds()
            try checkCanary(y, from: pairs * steps * h, kernel: "lstm_layer_forward")
            x = y
            offset += h
        }
        kernelSeconds.withLock { $0 = kernelTime }
        let hidden = try queue.read(x, count: pairs * steps * net.layers.last!.hiddenSize)
        let outputs = net.readoutOutputs(hidden: hidden, sequences: pairs, steps: steps, output: job.output)
        let k = net.readout!.outputs
        return ForwardResult(outputs: outputs, hidden: hidden,
                             shape: job.output == .last ? [configs, n, k] : [configs, n, steps, k])
    }
}
