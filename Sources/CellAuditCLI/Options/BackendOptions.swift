import ArgumentParser
import CellAuditAnalysis
import CellAuditCore
import Foundation
import CellAuditImport
import CellAuditOpenCL
import OpenCLKit

/// `--device N`: shared by every command that runs on OpenCL (the compute jobs, `bench`,
/// `check-kernels`).
struct DeviceOption: ParsableArguments {
    @Option(help: "OpenCL device number, as `cellaudit devices` lists them.")
    var device: Int?

    func validate() throws {
        if let device, device < 0 { throw ValidationError("--device must be ≥ 0, got \(device)") }
    }
}

/// Options every compute job shares.
struct BackendOptions: ParsableArguments {
    @Option(help: "Compute backend: cpu, opencl or auto (default: $CELLAUDIT_BACKEND, else auto).")
    var backend: String?

    @OptionGroup var deviceOption: DeviceOption
    var device: Int? { deviceOption.device }

    func validate() throws {
        let choice = try BackendChoice.resolve(flag: backend, environment: ProcessInfo.processInfo.environment)
        if choice == .cpu, let device { throw ValidationError("--device \(device) applies to OpenCL; --backend cpu uses none") }
    }

    /// The backend the options ask for, wrapped to record where each part of the run ran.
    func makeBackend() throws -> any ComputeBackend {
        try installFaultsFromEnvironment()
        let environment = ProcessInfo.processInfo.environment
        return PlacementRecorder(try BackendSelection.make(try BackendChoice.resolve(flag: backend, environment: environment), deviceIndex: device,
                                                           settings: try KernelSettings.fromEnvironment(environment), threads: try hostThreads(environment),
                                                           poclCacheDirectory: environment["POCL_CACHE_DIR"]) {
            Terminal.warn($0)
        })
    }
}

/// The parts of a run that ran on another backend than the one it names (an OpenCL backend's
/// gradient × input runs on the CPU), as operation → backend; nil when everything ran there.

/// The host threads a run uses: `CELLAUDIT_THREADS` when set (a whole number ≥ 1), otherwise
/// the cores this process may use (`Parallelism.cores`: affinity mask and cgroup quota). The
/// CLI is the only place that reads it; the backends take the count as a parameter.
/// - Throws: `RunFailure` naming the variable when it is not a whole number ≥ 1.
func hostThreads(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Int {
    guard let text = environment["CELLAUDIT_THREADS"], !text.isEmpty else { return Parallelism.cores }
    guard let n = Int(text), n >= 1 else { throw RunFailure(description: "CELLAUDIT_THREADS must be a whole number ≥ 1, got '\(text)'") }
    return n
}

/// `CELLAUDIT_OPENCL_FAULT=call=CL_STATUS` makes an OpenCL call fail, to test fallbacks.
func installFaultsFromEnvironment() throws {
    if let spec = ProcessInfo.processInfo.environment["CELLAUDIT_OPENCL_FAULT"], !spec.isEmpty {
        try CLFaults.install(spec: spec)
    }
}
