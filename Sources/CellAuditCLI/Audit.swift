import ArgumentParser
import CellAuditAnalysis
import CellAuditCore
import Foundation

struct Audit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Characterize the step response of every cell of a network and print a table.",
        discussion: """
        For now this runs on a small built-in network (seeded random LSTM weights); importing \
        trained networks comes with the model formats.
        """
    )

    @OptionGroup var backendOptions: BackendOptions

    @Option(help: "Step amplitudes, comma-separated.")
    var stepAmplitudes: String = "0.25,1,4"

    @Option(help: "Rest steps before onset (T_pre).")
    var preSteps: Int = 20

    @Option(help: "Observation window after onset, in steps (T_obs).")
    var window: Int = 400

    @Option(help: "Cells of the built-in network.")
    var cells: Int = 16

    @Option(help: "Seed of the built-in network.")
    var seed: UInt64 = 7

    func run() throws {
        try failing {
            let amplitudes = try parseFloats(stepAmplitudes, name: "--step-amplitudes")
            guard cells >= 1 && cells <= 1 << 20 else { throw CleanFailure(description: "--cells must be 1…1048576, got \(cells)") }
            let timing = try StepTiming(preSteps: preSteps, window: window)
            let network = try LSTMNetwork.random(seed: seed, inputSize: 8, hiddenSizes: [cells], outputs: 10, scale: 3)
            let backend = try backendOptions.makeBackend()
            let result = try StepCharacterization.run(network: network, layer: 0, amplitudes: amplitudes,
                                                      timing: timing, on: backend)
            let reference = amplitudes.firstIndex(of: 1) ?? 0
            print("CellAudit \(CellAudit.version): step response of the built-in network (seed \(seed), 8 inputs, \(cells) LSTM cells)")
            print("backend: \(result.backend)")
            print("stimuli: steps of amplitude \(amplitudes.map { "\($0)" }.joined(separator: ", ")), \(preSteps) rest steps, window \(window)")
            print("metrics at amplitude \(amplitudes[reference]); times in steps after onset; NaN = no response")
            print(result.table(reference: reference))
            print(String(format: "simulated %d cell-stimulus-steps in %.4f s (%.3g per second)",
                         cells * amplitudes.count * timing.totalSteps, result.seconds, result.throughput))
        }
    }
}

func parseFloats(_ text: String, name: String) throws -> [Float] {
    let parts = text.split(separator: ",", omittingEmptySubsequences: false)
    let values = parts.map { Float($0.trimmingCharacters(in: .whitespaces)) }
    guard !parts.isEmpty, values.allSatisfy({ $0 != nil && $0!.isFinite }) else {
        throw CleanFailure(description: "\(name) takes comma-separated finite numbers, got '\(text)'")
    }
    return values.map { $0! }
}
