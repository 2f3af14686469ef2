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
            let cpu = CPUBackend()
            let name = devices[device].info.name
            // Steps of both signs and a sinusoid with harmonics, on a short clock.
            let bank = try StimulusBank(stimuli: [.step(-0.5), .step(1.5), .sine(1, frequency: 0.15)], preSteps: 2, window: 12)
            let widths = Set([1, OpenCLBackend.defaultVectorWidth(for: devices[device])]).sorted()
            for (width, chains) in widths.flatMap({ w in [1, 2, 4].map { (w, $0) } }) {
                let opencl = try OpenCLBackend(device: devices[device], vectorWidth: width, chains: chains)
                for (cells, seed) in [(3, UInt64(1)), (5, 2)] {
                    for probe in Probe.allCases {
                    let network = try LSTMNetwork.random(seed: seed, inputSize: 3, hiddenSizes: [cells], scale: 2)
                    let job = try ResponseJob(cells: try DecoupledCells(layer: network.layers[0]), bank: bank, probe: probe)
                    let a = try opencl.trajectories(job), b = try cpu.trajectories(job)
                    let worst = zip(a.values, b.values).map { $0.isNaN && $1.isNaN ? 0 : abs($0 - $1) }.max() ?? .infinity
                    guard worst <= 1e-5 else {
                        throw CleanFailure(description: "lstm_response_trajectory disagrees with the CPU backend by \(worst)")
                    }
                    let problems = try opencl.responses(job).disagreements(with: try cpu.responses(job), tolerance: MetricTolerance.crossBackend)
                    guard problems.isEmpty else {
                        throw CleanFailure(description: "lstm_response_metrics disagrees with the CPU backend: \(problems.joined(separator: "; "))")
                    }
                    }
                }
            }
            print("checked lstm_response_trajectory and lstm_response_metrics (VW \(widths.map(String.init).joined(separator: ", ")), NV 1, 2 and 4) on \(name): agree with cpu")

            // Two layers of awkward widths, three ablation configurations, two sequences.
            let network = try LSTMNetwork.random(seed: 4, inputSize: 3, hiddenSizes: [5, 3], outputs: 2, scale: 2)
            var rng = SeededGenerator(seed: 5)
            let inputs = try SequenceBatch(count: 2, steps: 4, width: 3, values: (0..<24).map { _ in rng.uniform(-1, 1) })
            let masks: [CellMask] = [.none(cells: 8), .ablating([1, 6], of: 8), .ablating([0, 2, 3], of: 8)]
            let job = try ForwardJob(network: network, inputs: inputs, output: .sequence, masks: masks,
                                     clamp: (h: (0..<8).map { Float($0) * 0.1 - 0.3 }, c: (0..<8).map { Float($0) * -0.05 }))
            let a = try OpenCLBackend(device: devices[device]).forward(job), b = try cpu.forward(job)
            let forwardWorst = a.hidden.allSatisfy(\.isFinite) ? zip(a.hidden, b.hidden).map { abs($0 - $1) }.max()! : .infinity
            print("checked lstm_layer_forward on \(name): max |opencl - cpu| = \(forwardWorst)")
            guard forwardWorst <= 1e-5 else { throw CleanFailure(description: "lstm_layer_forward disagrees with the CPU backend by \(forwardWorst)") }
        }
    }
}
