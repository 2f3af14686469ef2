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
            guard worst <= 1e-5 else { throw CleanFailure(description: "lstm_step_trajectory disagrees with the CPU backend by \(worst)") }

            // Two layers of awkward widths, three ablation configurations, two sequences.
            let network = try LSTMNetwork.random(seed: 4, inputSize: 3, hiddenSizes: [5, 3], outputs: 2, scale: 2)
            var rng = SeededGenerator(seed: 5)
            let inputs = try SequenceBatch(count: 2, steps: 4, width: 3, values: (0..<24).map { _ in rng.uniform(-1, 1) })
            let masks: [CellMask] = [.none(cells: 8), .ablating([1, 6], of: 8), .ablating([0, 2, 3], of: 8)]
            let job = try ForwardJob(network: network, inputs: inputs, output: .sequence, masks: masks)
            let a = try opencl.forward(job), b = try cpu.forward(job)
            let forwardWorst = a.hidden.allSatisfy(\.isFinite) ? zip(a.hidden, b.hidden).map { abs($0 - $1) }.max()! : .infinity
            print("checked lstm_layer_forward on \(devices[device].info.name): max |opencl - cpu| = \(forwardWorst)")
            guard forwardWorst <= 1e-5 else { throw CleanFailure(description: "lstm_layer_forward disagrees with the CPU backend by \(forwardWorst)") }
        }
    }
}
