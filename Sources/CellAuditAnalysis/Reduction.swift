import CellAuditCore
import Foundation

/// What one cell did across the whole bank (METHOD.md §4, "per cell, across the bank"): its step
/// metrics at a reference amplitude, how its gain moves with amplitude, and its frequency response.
public struct CellSummary: Sendable, Equatable {
    /// Which cell this is.
    public var id: CellID
    /// Step metrics at the reference amplitude (NaN when the bank has no step).
    public var y0: Double, yFinal: Double, gain: Double, peakTime: Double, overshootPct: Double
    public var undershootPct: Double, riseTime: Double, settlingTime: Double, ringing: Double
    /// Whether the cell responded to the reference step.
    public var responded: Bool
    /// Standard deviation of the step gain across amplitudes.
    public var gainSpread: Double
    /// R² of Δ = g·A (a line through the origin) across step amplitudes: 1 for a linear cell.
    public var linearity: Double
    /// Gain at the largest |A| over gain at the smallest |A| (steps of the reference's sign): < 1 saturates.
    public var saturation: Double
    /// Frequency response at the reference sine amplitude, by increasing frequency.
    public var frequencies: [Double], sineGains: [Double], phases: [Double]
    /// Gain at the lowest frequency.
    public var lowFrequencyGain: Double
    /// First frequency where the gain falls below lowFrequencyGain/√2, interpolated in log f;
    /// +∞ when it never does within the bank.
    public var bandwidth: Double
    /// Peak gain over the low-frequency gain, and where it is (1 and NaN when the peak is at the lowest frequency).
    public var resonance: Double, resonanceFrequency: Double
    /// RMS over the bank of the steady-state change (steps) and of the sinusoid amplitude: m_j of METHOD.md §5.
    public var responseMagnitude: Double
    /// Whether the cell's unstimulated run stayed within the rest tolerance (METHOD.md §4); a
    /// cell that is not at rest is classed `drifting`.
    public var atRest: Bool = true
}

public enum Reduction {
    /// Summaries of every cell from a written responses.safetensors, read `batchBytes` at a time,
    /// so memory stays bounded however large the file.
    public static func summarize(responses file: SafeTensorsFile, plan: CharacterizationPlan, referenceAmplitude: Float = 1,
                                 batchBytes: Int = 64 << 20) throws -> [CellSummary] {
        let columns = plan.columnCount, rows = plan.rows.count
        let batch = max(1, min(rows, batchBytes / max(1, columns * Metric.allCases.count * 4)))
        var out: [CellSummary] = []
        out.reserveCapacity(rows)
        for r0 in stride(from: 0, to: rows, by: batch) {
            let r1 = min(rows, r0 + batch)
            var values: [Float] = []
            values.reserveCapacity((r1 - r0) * columns * Metric.allCases.count)
            for metric in Metric.allCases {
                values += try file.floats(metric.name, elements: (r0 * columns)..<(r1 * columns))
            }
            let block = ResponseBlock(cellCount: r1 - r0, stimulusCount: columns, values: values)
            out += summarize(block, plan: plan, referenceAmplitude: referenceAmplitude, rowOffset: r0)
        }
        // Files written before the baseline existed have no at_rest: their cells count as at rest.
        if file.tensors["at_rest"] != nil {
            let flags = try file.integers("at_rest")
            guard flags.count == rows else {
                throw FormatError(file: file.fileName, "at_rest has \(flags.count) values, expected one per row (\(rows))")
            }
            for j in out.indices { out[j].atRest = flags[j] != 0 }
        }
        return out
    }

    /// Summaries of the rows of `block`, which covers all columns of `plan` and its rows from
    /// `rowOffset` on; on all cores.
    public static func summarize(_ block: ResponseBlock, plan: CharacterizationPlan, referenceAmplitude: Float = 1,
                                 rowOffset: Int = 0) -> [CellSummary] {
        precondition(rowOffset + block.cellCount <= plan.rows.count && block.stimulusCount == plan.columnCount)
        let bank = plan.bank
        let columns = Array(0..<plan.columnCount)
        let steps = columns.filter { bank.stimuli[$0 % bank.count].kind == .step }
        let sines = columns.filter { bank.stimuli[$0 % bank.count].kind == .sine }
        @Sendable func amplitude(_ c: Int) -> Float { bank.stimuli[c % bank.count].amplitude }
        let referenceStep = Self.referenceStep(bank, amplitude: referenceAmplitude)
        // Reference sinusoids: the first direction's, at the sine amplitude closest to the reference.
        let sineAmplitudes = Set(sines.filter { $0 < bank.count }.map(amplitude))
        let sineReference = sineAmplitudes.min { abs($0 - referenceAmplitude) < abs($1 - referenceAmplitude) }
        let curve = sines.filter { $0 < bank.count && amplitude($0) == sineReference }
            .sorted { bank.stimuli[$0].frequency < bank.stimuli[$1].frequency }
        var out = [CellSummary?](repeating: nil, count: block.cellCount)
        out.withUnsafeMutableBufferPointer { buffer in
            let results = SendablePointer(buffer.baseAddress!)
            DispatchQueue.concurrentPerform(iterations: block.cellCount) { j in
                func m(_ metric: Metric, _ c: Int) -> Double { Double(block[metric, j, c]) }
                let ref = referenceStep
                let value = { (metric: Metric) in ref.map { m(metric, $0) } ?? .nan }
                // Gain against amplitude over the first direction's steps.
                let own = steps.filter { $0 < bank.count && amplitude($0) != 0 }
                let gains = own.map { m(.gain, $0) }.filter(\.isFinite)
                let mean = gains.isEmpty ? Double.nan : gains.reduce(0, +) / Double(gains.count)
                let spread = gains.isEmpty ? Double.nan : (gains.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(gains.count)).squareRoot()
                let pairs = own.compactMap { c -> (Double, Double)? in
                    let d = m(.gain, c) * Double(amplitude(c))
                    return d.isFinite ? (Double(amplitude(c)), d) : nil
                }
                let linearity = Self.originFitR2(pairs)
                let sameSign = own.filter { ref == nil || (amplitude($0) > 0) == (amplitude(ref!) > 0) }
                    .sorted { abs(amplitude($0)) < abs(amplitude($1)) }
                let saturation = sameSign.count >= 2 ? m(.gain, sameSign.last!) / m(.gain, sameSign.first!) : .nan
                let freqs = curve.map { Double(bank.stimuli[$0].frequency) }
                let sineGains = curve.map { m(.sineGain, $0) }
                let phases = curve.map { m(.phaseDeg, $0) }
                let low = sineGains.first ?? .nan
                let bandwidth = Self.bandwidth(frequencies: freqs, gains: sineGains)
                var resonance = 1.0, resonanceFrequency = Double.nan
                if let peak = sineGains.indices.max(by: { sineGains[$0] < sineGains[$1] }), peak > 0, low > 0 {
                    resonance = sineGains[peak] / low
                    resonanceFrequency = freqs[peak]
                }
                var squares = 0.0, count = 0
                for c in columns {
                    let v = bank.stimuli[c % bank.count].kind == .step
                        ? m(.yFinal, c) - m(.y0, c) : m(.sineGain, c) * Double(abs(amplitude(c)))
                    if v.isFinite { squares += v * v; count += 1 }
                }
                results.pointer[j] = CellSummary(
                    id: plan.rows[rowOffset + j],
                    y0: value(.y0), yFinal: value(.yFinal), gain: value(.gain), peakTime: value(.peakTime),
                    overshootPct: value(.overshootPct), undershootPct: value(.undershootPct), riseTime: value(.riseTime),
                    settlingTime: value(.settlingTime), ringing: value(.ringing),
                    responded: ref.map { block[.responded, j, $0] == 1 } ?? false,
                    gainSpread: spread, linearity: linearity, saturation: saturation,
                    frequencies: freqs, sineGains: sineGains, phases: phases, lowFrequencyGain: low,
                    bandwidth: bandwidth, resonance: resonance, resonanceFrequency: resonanceFrequency,
                    responseMagnitude: count > 0 ? (squares / Double(count)).squareRoot() : .nan)
            }
        }
        return out.map { $0! }
    }

    /// The reference step: the step stimulus closest to `amplitude` (a bank index, so the
    /// first direction's column); nil when the bank has no step.
    public static func referenceStep(_ bank: StimulusBank, amplitude: Float = 1) -> Int? {
        bank.stimuli.indices.filter { bank.stimuli[$0].kind == .step }
            .min { abs(bank.stimuli[$0].amplitude - amplitude) < abs(bank.stimuli[$1].amplitude - amplitude) }
    }

    /// R² of y = g·x fitted through the origin (1 − SS_res/SS_tot about the mean of y).
    static func originFitR2(_ pairs: [(Double, Double)]) -> Double {
        guard pairs.count >= 2 else { return .nan }
        let sxx = pairs.reduce(0) { $0 + $1.0 * $1.0 }, sxy = pairs.reduce(0) { $0 + $1.0 * $1.1 }
        guard sxx > 0 else { return .nan }
        let g = sxy / sxx
        let mean = pairs.reduce(0) { $0 + $1.1 } / Double(pairs.count)
        let residual = pairs.reduce(0) { $0 + ($1.1 - g * $1.0) * ($1.1 - g * $1.0) }
        let total = pairs.reduce(0) { $0 + ($1.1 - mean) * ($1.1 - mean) }
        return total > 0 ? 1 - residual / total : (residual == 0 ? 1 : .nan)
    }

    /// The −3 dB frequency: first crossing below gains[0]/√2, interpolated linearly in log f;
    /// +∞ if the gain never falls that far, NaN without a usable low-frequency gain.
    static func bandwidth(frequencies f: [Double], gains g: [Double]) -> Double {
        guard let low = g.first, low.isFinite, low > 0, f.count == g.count else { return .nan }
        let level = low / 2.0.squareRoot()
        for k in 1..<max(1, g.count) where g[k] < level {
            let (g0, g1) = (g[k - 1], g[k])
            let t = g0 == g1 ? 0 : (g0 - level) / (g0 - g1)
            return exp(log(f[k - 1]) + t * (log(f[k]) - log(f[k - 1])))
        }
        return .infinity
    }
}

extension Reduction {
    /// The bandwidth rule, exposed for tests.
    public static func bandwidthForTest(frequencies: [Double], gains: [Double]) -> Double {
        bandwidth(frequencies: frequencies, gains: gains)
    }
}
