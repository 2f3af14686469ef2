import CellAuditCore
import Foundation

/// Step-response characterization of every decoupled cell of one layer: simulate on a backend,
/// reduce each trajectory to the metrics of METHOD.md §4.
public struct StepCharacterization: Sendable {
    public let layer: Int
    public let amplitudes: [Float]
    public let timing: StepTiming
    /// metrics[cell][stimulus]
    public let metrics: [[StepMetrics]]
    public let backend: BackendIdentity
    public let seconds: Double

    public static func run(network: LSTMNetwork, layer: Int, amplitudes: [Float], timing: StepTiming,
                           probe: Probe = .h, on backend: any ComputeBackend) throws -> StepCharacterization {
        guard network.layers.indices.contains(layer) else {
            throw ModelError.shape("layer \(layer) does not exist; the network has \(network.layers.count)")
        }
        let job = try StepTrajectoryJob(cells: try DecoupledCells(layer: network.layers[layer]),
                                        amplitudes: amplitudes, timing: timing, probe: probe)
        let start = DispatchTime.now().uptimeNanoseconds
        let trajectories = try backend.stepTrajectories(job)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        let metrics = (0..<trajectories.cellCount).map { j in
            amplitudes.indices.map { s in
                StepMetrics(series: trajectories.series(cell: j, stimulus: s), onset: timing.onset, amplitude: amplitudes[s])
            }
        }
        return StepCharacterization(layer: layer, amplitudes: amplitudes, timing: timing, metrics: metrics,
                                    backend: backend.identity, seconds: seconds)
    }

    /// Simulated cell-stimulus-steps per second of wall time.
    public var throughput: Double {
        Double(metrics.count * amplitudes.count * timing.totalSteps) / max(seconds, 1e-12)
    }

    /// A fixed-width table: one row per cell, the metrics at amplitude index `reference` and the
    /// gain at every amplitude.
    public func table(reference: Int) -> String {
        var header = ["cell", "y0", "y_final", "gain", "peak_t", "overshoot%", "rise", "settling", "ringing"]
        header += amplitudes.map { "gain@\(Self.format($0))" }
        var rows = [header]
        for (j, perStimulus) in metrics.enumerated() {
            let m = perStimulus[reference]
            var row = [String(j), Self.format(m.y0), Self.format(m.yFinal), Self.format(m.gain),
                       Self.format(m.peakTime), Self.format(m.overshootPct), Self.format(m.riseTime),
                       Self.format(m.settlingTime), Self.format(m.ringing)]
            row += perStimulus.map { Self.format($0.gain) }
            rows.append(row)
        }
        let widths = header.indices.map { c in rows.map { $0[c].count }.max()! }
        return rows.map { row in
            zip(row, widths).map { String(repeating: " ", count: $1 - $0.count) + $0 }.joined(separator: "  ")
        }.joined(separator: "\n")
    }

    static func format(_ x: Float) -> String {
        if x.isNaN { return "NaN" }
        if x == x.rounded() && abs(x) < 1e6 { return String(Int(x)) }
        return String(format: abs(x) >= 100 ? "%.1f" : "%.4f", Double(x))
    }
}
