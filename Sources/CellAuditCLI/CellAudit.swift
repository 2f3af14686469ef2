import ArgumentParser
import CellAuditCore
import CellAuditOpenCL
import Foundation
import OpenCLKit

struct CellAudit: ParsableCommand {
    static let version = "0.1.0"
    static let configuration = CommandConfiguration(
        commandName: "cellaudit",
        abstract: "Audit what the cells of a trained recurrent network do.",
        version: version,
        subcommands: [Audit.self, Characterize.self, Explain.self, Ablate.self, Capacity.self, Inspect.self, Eval.self, Bench.self, Devices.self, CheckKernels.self]
    )
}

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
        let choice = try BackendChoice.resolve(flag: backend)
        if choice == .cpu, let device { throw ValidationError("--device \(device) applies to OpenCL; --backend cpu uses none") }
    }

    func makeBackend() throws -> any ComputeBackend {
        try installFaultsFromEnvironment()
        return try BackendSelection.make(try BackendChoice.resolve(flag: backend), deviceIndex: device,
                                         settings: try KernelSettings.fromEnvironment()) {
            Terminal.warn($0)
        }
    }
}

/// `CELLAUDIT_OPENCL_FAULT=call=CL_STATUS` makes an OpenCL call fail, to test fallbacks.
func installFaultsFromEnvironment() throws {
    if let spec = ProcessInfo.processInfo.environment["CELLAUDIT_OPENCL_FAULT"], !spec.isEmpty {
        try CLFaults.install(spec: spec)
    }
}

enum Terminal {
    static func warn(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}

/// Turns any error into one line on stderr and a non-zero exit.
struct CleanFailure: Error, CustomStringConvertible {
    let description: String
}

extension ParsableCommand {
    func failing<R>(_ body: () throws -> R) throws -> R {
        do { return try body() } catch let error as ValidationError {
            // An impossible parameter: one line, like every other error, and the usage exit status.
            Terminal.warn("error: \(error.message)")
            throw ExitCode(2)
        } catch let error as CleanExit {
            throw error
        } catch {
            Terminal.warn("error: \(error)")
            throw ExitCode(1)
        }
    }
}
