import ArgumentParser
import CellAuditAnalysis
import CellAuditCore
import CellAuditOpenCL
import Foundation
import OpenCLKit

/// Runs the parity harness's tiny table (every cell kind and kernel, tiny awkward sizes) on an
/// OpenCL device against the CPU backend. Made to run under `oclgrind --data-races`, which the
/// test suite does. Prints one line per case; fails if any case fails.
struct CheckKernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-kernels",
        abstract: "Run every kernel at tiny sizes on OpenCL and compare with the CPU backend.",
        shouldDisplay: false
    )

    @OptionGroup var deviceOption: DeviceOption
    var device: Int { deviceOption.device ?? 0 }

    @Flag(help: "Run the full parity table (every kind and operation at awkward sizes, as the test suite does) instead of the tiny one.")
    var full = false

    func run() throws {
        try failing {
            let devices = try OpenCL.devices()
            guard devices.indices.contains(device) else {
                throw BackendError.unavailable("no OpenCL device \(device) (found \(devices.count))")
            }
            let results = full ? ParityHarness.run(ParityHarness.fullTable(), device: devices[device])
                : ParityHarness.run(ParityHarness.tinyTable(device: devices[device]), device: devices[device], small: true)
            for r in results { print(r) }
            let failed = results.filter { if case .failed = $0.outcome { true } else { false } }.count
            let unsupported = results.filter { if case .unsupported = $0.outcome { true } else { false } }.count
            print("check-kernels on \(devices[device].info.name): \(results.count - failed - unsupported) passed, \(failed) failed, \(unsupported) unsupported")
            guard failed == 0 else { throw RunFailure(description: "\(failed) kernel parity case(s) failed") }
        }
    }
}
