import ArgumentParser
import CellAuditCore
import CellAuditOpenCL
import Foundation
import OpenCLKit

/// Runs every kernel once at tiny, awkward sizes on an OpenCL device and compares it with the
/// CPU backend. Made to run under `oclgrind --data-races`, which the test suite does.
struct CheckKernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-kernels",
        abstract: "Run every kernel at tiny sizes on OpenCL and compare with the CPU backend.",
        shouldDisplay: false
    )

    @Option(help: "OpenCL device number.")
    var device: Int = 0

    func run() throws {
        try failing {
            let devices = try OpenCL.devices()
            guard devices.indices.contains(device) else {
                throw BackendError.unavailable("no OpenCL device \(device) (found \(devices.count))")
            }
            let opencl = try OpenCLBackend(device: devices[device])
            let cpu = CPUBackend()
            var worst: Float = 0
            for (cells, stimuli, seed) in [(3, 2, UInt64(1)), (5, 3, 2)] {
                for probe in Probe.allCases {
                    let network = try LSTMNetwork.random(seed: seed, inputSize: 3, hiddenSizes: [cells], scale: 2)
                    let job = try StepTrajectoryJob(cells: try DecoupledCells(layer: network.layers[0]),
                                                    amplitudes: (0..<stimuli).map { Float($0) - 0.5 },
                                                    timing: try StepTiming(preSteps: 2, window: 5), probe: probe)
                    let a = try opencl.stepTrajectories(job).values
                    let b = try cpu.stepTrajectories(job).values
                    worst = max(worst, zip(a, b).map { abs($0 - $1) }.max() ?? .infinity)
                    if a.contains(where: { !$0.isFinite }) { worst = .infinity }
                }
            }
            print("checked lstm_step_trajectory on \(devices[device].info.name): max |opencl - cpu| = \(worst)")
            guard worst <= 1e-5 else { throw CleanFailure(description: "kernel disagrees with the CPU backend by \(worst)") }
        }
    }
}
