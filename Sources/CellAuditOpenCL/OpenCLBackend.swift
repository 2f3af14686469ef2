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
    /// Device time of the most recent launch, from its profiling event.
    public var lastKernelSeconds: Double { kernelSeconds.withLock { $0 } }

    /// Extra elements past every output buffer, filled with a canary and checked after each
    /// launch (a debugging aid against out-of-bounds writes; 0 turns it off).
    public let canaryPadding: Int
    public static let canary: Float = -7.0e30

    public init(device: Device, nativeMath: Bool = false, canaryPadding: Int = 0) throws {
        self.device = device
        self.nativeMath = nativeMath
        self.canaryPadding = max(0, canaryPadding)
        context = try Context(device: device)
        queue = try context.makeQueue(profiling: true)
    }

    public var identity: BackendIdentity {
        BackendIdentity(kind: .opencl, device: "\(device.info.name), \(device.info.platformName)")
    }

    var mathDefines: [String] { nativeMath ? ["NATIVE_MATH"] : [] }

    public func stepTrajectories(_ job: StepTrajectoryJob) throws -> Trajectories {
        let n = job.cells.cellCount, stimuli = job.amplitudes.count, steps = job.timing.totalSteps
        guard n <= Int(Int32.max), stimuli <= Int(Int32.max) else {
            throw CLError(status: .invalidValue, call: "lstm_step_trajectory", detail: "too many cells or stimuli for one launch")
        }
        let program = try KernelLibrary.program("lstm_step.cl", in: context,
                                                defines: mathDefines + (job.probe == .c ? ["PROBE_C"] : []))
        let kernel = try program.kernel(named: "lstm_step_trajectory")
        let params = try context.buffer(Float.self, count: job.cells.parameters.count, access: .readOnly)
        let amps = try context.buffer(Float.self, count: stimuli, access: .readOnly)
        let traj = try context.buffer(Float.self, count: job.valueCount + canaryPadding, access: .readWrite)
        try queue.write(params, from: job.cells.parameters)
        try queue.write(amps, from: job.amplitudes)
        try queue.fill(traj, with: .nan)
        if canaryPadding > 0 {
            try queue.write(traj, from: [Float](repeating: Self.canary, count: canaryPadding), offset: job.valueCount)
        }
        try kernel.setArguments(params, amps, traj, Int32(n), Int32(stimuli),
                                Int32(job.timing.preSteps), Int32(job.timing.window))
        let event = try queue.launch(kernel, global: [n, stimuli])
        let seconds = try event.durationSeconds()
        kernelSeconds.withLock { $0 = seconds }
        let values = try queue.read(traj, count: job.valueCount)
        try checkCanary(traj, from: job.valueCount, kernel: "lstm_step_trajectory")
        return Trajectories(cellCount: n, stimulusCount: stimuli, stepCount: steps, values: values)
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
            let y = try context.buffer(Float.self, count: pairs * steps * h + canaryPadding)
            try queue.write(W, from: layer.W)
            try queue.write(R, from: layer.R)
            try queue.write(b, from: layer.b)
            try queue.write(keep, from: job.masks.flatMap { $0.keep[offset..<(offset + h)] })
            try queue.fill(y, with: .nan)
            if canaryPadding > 0 {
                try queue.write(y, from: [Float](repeating: Self.canary, count: canaryPadding), offset: pairs * steps * h)
            }
            try kernel.setArguments(x, Int32(l == 0 ? 0 : 1), W, R, b, keep, y, Int32(n), Int32(steps),
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
