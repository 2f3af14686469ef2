import ArgumentParser
import CellAuditAnalysis
import CellAuditCore
import Foundation

struct Audit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Characterize the step response of every cell of a network and print a table.",
        discussion: """
        For now this runs on a small built-in network (seeded random LSTM weights); the full audit \
        of a trained model (ranking and report) is being built. `characterize` runs the whole \
        engine on a model file.
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
            let bank = try StimulusBank.grid(stepAmplitudes: amplitudes, frequencies: [], sineAmplitudes: [],
                                             preSteps: preSteps, window: window)
            let network = try LSTMNetwork.random(seed: seed, inputSize: 8, hiddenSizes: [cells], outputs: 10, scale: 3)
            let plan = try CharacterizationPlan(network: network, bank: bank)
            let backend = try backendOptions.makeBackend()
            var block = ResponseBlock(cellCount: cells, stimulusCount: bank.count,
                                      values: [Float](repeating: .nan, count: Metric.allCases.count * cells * bank.count))
            let seconds = try Characterizer.run(plan, on: backend, sink: { chunk in
                for m in Metric.allCases {
                    for r in 0..<chunk.block.cellCount {
                        for s in 0..<chunk.block.stimulusCount {
                            block.values[(m.rawValue * cells + chunk.rowStart + r) * bank.count + chunk.columnStart + s] = chunk.block[m, r, s]
                        }
                    }
                }
            })
            let reference = amplitudes.firstIndex(of: 1) ?? 0
            print("CellAudit \(CellAudit.version): step response of the built-in network (seed \(seed), 8 inputs, \(cells) LSTM cells)")
            print("backend: \(backend.identity)")
            print("stimuli: steps of amplitude \(amplitudes.map { "\($0)" }.joined(separator: ", ")), \(preSteps) rest steps, window \(window)")
            print("metrics at amplitude \(amplitudes[reference]); times in steps after onset; NaN = no response")
            print(stepTable(block, amplitudes: amplitudes, reference: reference))
            print(String(format: "simulated %d cell-stimulus-steps in %.4f s (%.3g per second)",
                         plan.simulatedSteps, seconds, Double(plan.simulatedSteps) / max(seconds, 1e-12)))
        }
    }
}

/// A fixed-width table: one row per cell, the step metrics at stimulus `reference` and the gain
/// at every amplitude.
func stepTable(_ block: ResponseBlock, amplitudes: [Float], reference: Int) -> String {
    let shown: [(String, Metric)] = [("y0", .y0), ("y_final", .yFinal), ("gain", .gain), ("peak_t", .peakTime),
                                     ("overshoot%", .overshootPct), ("rise", .riseTime), ("settling", .settlingTime),
                                     ("ringing", .ringing)]
    var header = ["cell"] + shown.map(\.0)
    header += amplitudes.map { "gain@\(formatMetric($0))" }
    var rows = [header]
    for j in 0..<block.cellCount {
        var row = [String(j)] + shown.map { formatMetric(block[$0.1, j, reference]) }
        row += amplitudes.indices.map { formatMetric(block[.gain, j, $0]) }
        rows.append(row)
    }
    let widths = header.indices.map { c in rows.map { $0[c].count }.max()! }
    return rows.map { row in
        zip(row, widths).map { String(repeating: " ", count: $1 - $0.count) + $0 }.joined(separator: "  ")
    }.joined(separator: "\n")
}

func formatMetric(_ x: Float) -> String {
    if x.isNaN { return "NaN" }
    if x == x.rounded() && abs(x) < 1e6 { return String(Int(x)) }
    return String(format: abs(x) >= 100 ? "%.1f" : "%.4f", Double(x))
}

func parseFloats(_ text: String, name: String) throws -> [Float] {
    let parts = text.split(separator: ",", omittingEmptySubsequences: false)
    let values = parts.map { Float($0.trimmingCharacters(in: .whitespaces)) }
    guard !parts.isEmpty, values.allSatisfy({ $0 != nil && $0!.isFinite }) else {
        throw CleanFailure(description: "\(name) takes comma-separated finite numbers, got '\(text)'")
    }
    return values.map { $0! }
}
