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

    public init(device: Device, nativeMath: Bool = false) throws {
        self.device = device
        self.nativeMath = nativeMath
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
        let traj = try context.buffer(Float.self, count: job.valueCount, access: .writeOnly)
        try queue.write(params, from: job.cells.parameters)
        try queue.write(amps, from: job.amplitudes)
        try queue.fill(traj, with: .nan)
        try kernel.setArguments(params, amps, traj, Int32(n), Int32(stimuli),
                                Int32(job.timing.preSteps), Int32(job.timing.window))
        let event = try queue.launch(kernel, global: [n, stimuli])
        let seconds = try event.durationSeconds()
        kernelSeconds.withLock { $0 = seconds }
        let values = try queue.read(traj)
        return Trajectories(cellCount: n, stimulusCount: stimuli, stepCount: steps, values: values)
    }
}
