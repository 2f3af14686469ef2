import Foundation

/// Every metric the engine computes per (cell, stimulus), in the order of the metric planes of a
/// `ResponseBlock` and of the kernels' output. `responded` is 1 or 0 (METHOD.md §4: a cell whose
/// response is below 1e-6 did not respond; its relative metrics are NaN, never 0).
public enum Metric: Int, CaseIterable, Sendable {
    case y0, yFinal, gain, peak, peakTime, overshootPct, undershootPct, riseTime, settlingTime, ringing
    case sineGain, phaseDeg, dcShift, thd
    case responded

    /// Name of the tensor in responses.safetensors.
    public var name: String {
        switch self {
        case .y0: "y0"
        case .yFinal: "y_final"
        case .gain: "gain"
        case .peak: "peak"
        case .peakTime: "peak_time"
        case .overshootPct: "overshoot_pct"
        case .undershootPct: "undershoot_pct"
        case .riseTime: "rise_time"
        case .settlingTime: "settling_time"
        case .ringing: "ringing"
        case .sineGain: "sine_gain"
        case .phaseDeg: "phase_deg"
        case .dcShift: "dc_shift"
        case .thd: "thd"
        case .responded: "responded"
        }
    }

    public static let stepMetrics: [Metric] = [.y0, .yFinal, .gain, .peak, .peakTime, .overshootPct, .undershootPct,
                                               .riseTime, .settlingTime, .ringing]
    public static let sineMetrics: [Metric] = [.y0, .sineGain, .phaseDeg, .dcShift, .thd]
}

/// Metrics of `cellCount` cells under `stimulusCount` stimuli: one plane per `Metric`, each
/// [cell × stimulus] row-major: `values[(metric * cellCount + cell) * stimulusCount + stimulus]`.
public struct ResponseBlock: Sendable, Equatable {
    public let cellCount: Int
    public let stimulusCount: Int
    public var values: [Float]

    public init(cellCount: Int, stimulusCount: Int, values: [Float]) {
        precondition(values.count == Metric.allCases.count * cellCount * stimulusCount)
        self.cellCount = cellCount; self.stimulusCount = stimulusCount; self.values = values
    }

    public var planeSize: Int { cellCount * stimulusCount }

    public subscript(metric: Metric, cell: Int, stimulus: Int) -> Float {
        values[(metric.rawValue * cellCount + cell) * stimulusCount + stimulus]
    }

    public func plane(_ metric: Metric) -> ArraySlice<Float> {
        values[(metric.rawValue * planeSize)..<((metric.rawValue + 1) * planeSize)]
    }
}

/// The plain reference for one (cell, stimulus): METHOD.md §4 computed from the stored
/// trajectory (the whole run, `schedule.end` samples or more) and the cell's unstimulated run
/// `baseline` on the same clock: every metric is taken on r(t) = y(t) − b(t), with y0 =
/// b(t_on − 1) (0 when the stimulus starts at t = 0). Step metrics by `StepMetrics`, sinusoid
/// metrics by a direct DFT in Double. Every fast path is tested against this.
public func referenceMetrics(series: ArraySlice<Float>, baseline: ArraySlice<Float>, stimulus: Stimulus,
                             schedule: StimulusSchedule, settlingBand: Float) -> [Float] {
    var out = [Float](repeating: .nan, count: Metric.allCases.count)
    let b = Array(baseline.prefix(schedule.end))
    let r = zip(series.prefix(schedule.end), b).map { $0 - $1 }
    let y0: Float = schedule.onset > 0 ? b[schedule.onset - 1] : 0
    out[Metric.y0.rawValue] = y0
    switch stimulus.kind {
    case .step:
        let m = StepMetrics(response: r[...], onset: schedule.onset, y0: y0, amplitude: stimulus.amplitude, settlingBand: settlingBand)
        let values: [Metric: Float] = [.yFinal: m.yFinal, .gain: m.gain, .peak: m.peak, .peakTime: m.peakTime,
                                       .overshootPct: m.overshootPct, .undershootPct: m.undershootPct,
                                       .riseTime: m.riseTime, .settlingTime: m.settlingTime, .ringing: m.ringing]
        for (k, v) in values { out[k.rawValue] = v }
        out[Metric.responded.rawValue] = m.responded ? 1 : 0
    case .sine:
        let s = SineMetrics(response: r, stimulus: stimulus, schedule: schedule)
        out[Metric.sineGain.rawValue] = s.gain
        out[Metric.phaseDeg.rawValue] = s.phaseDeg
        out[Metric.dcShift.rawValue] = s.dcShift
        out[Metric.thd.rawValue] = s.thd
        out[Metric.responded.rawValue] = s.responded ? 1 : 0
    }
    return out
}

/// Sinusoid metrics (METHOD.md §4) by a direct DFT over the analysed whole periods, in Double:
/// Y_k = Σ y(t)·e^{−i k ω (t − t_on)}.
public struct SineMetrics: Sendable {
    /// Amplitude of the fundamental over |A|.
    public var gain: Float
    /// Phase of the fundamental relative to the stimulus, in (−180, 180].
    public var phaseDeg: Float
    /// Mean of the response r over the analysed span.
    public var dcShift: Float
    /// √(Σ_{k=2..K}|Y_k|²)/|Y_1| over the harmonics below Nyquist; NaN when there are none.
    public var thd: Float
    public var responded: Bool

    /// Fundamental amplitudes below this count as no response.
    public static let noResponseThreshold: Double = 1e-6

    /// From the response r(t) = y(t) − b(t) on the run's clock.
    public init(response y: [Float], stimulus: Stimulus, schedule: StimulusSchedule) {
        let omega = 2 * Double.pi * Double(stimulus.frequency)
        let start = schedule.analysisStart, length = schedule.analysisLength
        var re = [Double](repeating: 0, count: schedule.harmonics + 1), im = re
        var sum = 0.0
        for t in start..<(start + length) {
            let v = Double(y[t]), n = Double(t - schedule.onset)
            sum += v
            for k in 1...schedule.harmonics {
                re[k] += v * cos(Double(k) * omega * n)
                im[k] -= v * sin(Double(k) * omega * n)
            }
        }
        let magnitude = (re[1] * re[1] + im[1] * im[1]).squareRoot()
        let amplitude = 2 * magnitude / Double(length)
        dcShift = Float(sum / Double(length))
        gain = stimulus.amplitude != 0 ? Float(amplitude / Double(abs(stimulus.amplitude))) : .nan
        responded = amplitude >= Self.noResponseThreshold && amplitude.isFinite
        guard responded else { phaseDeg = .nan; thd = .nan; return }
        phaseDeg = Float(Self.phase(re: re[1], im: im[1], negativeAmplitude: stimulus.amplitude < 0))
        if schedule.harmonics >= 2 {
            let power = (2...schedule.harmonics).reduce(0.0) { $0 + re[$1] * re[$1] + im[$1] * im[$1] }
            thd = Float(power.squareRoot() / magnitude)
        } else {
            thd = .nan
        }
    }

    /// Phase of y ≈ G·sin(ωn + φ) from Y_1 = (re, im): φ = atan2(re, −im), shifted by 180° when the
    /// stimulus itself is A·sin with A < 0, and wrapped into (−180, 180].
    public static func phase(re: Double, im: Double, negativeAmplitude: Bool) -> Double {
        var phi = atan2(re, -im) * 180 / Double.pi
        if negativeAmplitude { phi -= 180 }
        while phi <= -180 { phi += 360 }
        while phi > 180 { phi -= 360 }
        return phi
    }
}

/// Tolerances of every comparison between backends and against frameworks, in one table (the
/// metrics' own are `MetricTolerance`).
public enum Tolerance {
    /// Trajectories of the decoupled step simulation, cpu vs opencl: absolute below 1, relative
    /// above (an unbounded ReLU cell).
    public static let trajectory: Float = 1e-5
    /// Full-network hidden states and outputs, cpu vs opencl: absolute below 1, relative above.
    public static let forwardCrossBackend: Float = 1e-5
    /// Full-network outputs and hidden states against the framework's own (golden) values.
    public static let forward: Float = 1e-4
    /// Relevance, cpu vs opencl and against PyTorch autograd: relative to the largest |value| of
    /// the sequence (an ε-rule divides by z + ε·sign(z), so rounding scales with the relevance
    /// that flows, not with each value); plus `relevanceAbsolute`.
    public static let relevance: Float = 1e-4
    public static let relevanceAbsolute: Float = 1e-6
    /// A layer's map and its Jacobian in float64, cpu vs opencl (each backend's own exp and
    /// tanh, a few ulp apart), relative to max(1, |value|).
    public static let mapStep: Double = 1e-12
    /// States after settling runs, cpu vs opencl: the runs stop within 1e-6 of rest on each side.
    public static let settledState: Double = 1e-5
}

/// How closely two computations of the metrics must agree: |a − b| ≤ absolute + relative·max(|a|, |b|),
/// NaN exactly where the other is NaN (except where the two disagree on `responded`, which that
/// plane counts against its own allowance). Metrics read off a threshold crossing (times, counts,
/// percentages of a small |Δ|) jump when one sample sits within rounding of the threshold, so a
/// small share of pairs may differ there (`allowedShare`); for every other metric it is 0.
public struct MetricTolerance: Sendable {
    public var absolute: Float
    public var relative: Float
    public var allowedShare: Double
    /// Step pairs whose |y_final − y0| is below this are not compared: their relative and
    /// threshold metrics are ratios of rounding noise.
    public var minimumResponse: Float = 0

    /// Between backends (the same activation formulas, but fused or unfused multiply-adds and each
    /// backend's own exp: trajectories ~1e-7 apart).
    public static func crossBackend(_ m: Metric) -> MetricTolerance {
        switch m {
        case .y0, .yFinal, .peak, .dcShift: MetricTolerance(absolute: 2e-5, relative: 1e-4, allowedShare: 0)
        case .gain, .sineGain: MetricTolerance(absolute: 2e-4, relative: 1e-3, allowedShare: 0)
        case .responded: MetricTolerance(absolute: 0, relative: 0, allowedShare: 0.002)
        case .phaseDeg: MetricTolerance(absolute: 0.05, relative: 0, allowedShare: 0.01)
        case .thd: MetricTolerance(absolute: 1e-3, relative: 1e-2, allowedShare: 0.01)
        case .peakTime, .riseTime, .settlingTime, .ringing, .overshootPct, .undershootPct:
            MetricTolerance(absolute: 0.01, relative: 1e-3, allowedShare: 0.02, minimumResponse: 1e-4)
        }
    }

    /// In-kernel metrics against the reference on the same backend's stored trajectory: the step
    /// metrics use the same Float operations and must be identical; the sinusoid DFT runs in
    /// Float against the reference's Double.
    public static func sameTrajectory(_ m: Metric) -> MetricTolerance {
        switch m {
        case .sineGain, .dcShift: MetricTolerance(absolute: 1e-5, relative: 1e-4, allowedShare: 0)
        case .phaseDeg: MetricTolerance(absolute: 0.02, relative: 0, allowedShare: 0)
        case .thd: MetricTolerance(absolute: 1e-4, relative: 1e-2, allowedShare: 0)
        case .responded: MetricTolerance(absolute: 0, relative: 0, allowedShare: 0.002)
        default: MetricTolerance(absolute: 0, relative: 0, allowedShare: 0)
        }
    }
}

extension ResponseBlock {
    /// Problems, one line each, where `self` and `other` disagree beyond `tolerance`; empty when they agree.
    public func disagreements(with other: ResponseBlock, tolerance: (Metric) -> MetricTolerance) -> [String] {
        guard cellCount == other.cellCount, stimulusCount == other.stimulusCount else {
            return ["shapes differ: \(cellCount)×\(stimulusCount) vs \(other.cellCount)×\(other.stimulusCount)"]
        }
        var problems: [String] = []
        for metric in Metric.allCases {
            let tol = tolerance(metric)
            var misses = 0, nanMismatch = 0
            var worst: (Float, Int) = (0, -1)
            let y0 = plane(.y0), yFinal = plane(.yFinal), otherY0 = other.plane(.y0), otherFinal = other.plane(.yFinal)
            let flag = plane(.responded), otherFlag = other.plane(.responded)
            for (i, (a, b)) in zip(plane(metric), other.plane(metric)).enumerated() {
                if tol.minimumResponse > 0 {
                    let d1 = abs(yFinal[yFinal.startIndex + i] - y0[y0.startIndex + i])
                    let d2 = abs(otherFinal[otherFinal.startIndex + i] - otherY0[otherY0.startIndex + i])
                    if !(min(d1, d2) >= tol.minimumResponse) { continue }
                }
                if a.isNaN || b.isNaN {
                    // A pair whose size sits at the no-response threshold may be flagged on one
                    // side only; that is counted once, in `responded`, under its own allowance.
                    let flagsDiffer = flag[flag.startIndex + i] != otherFlag[otherFlag.startIndex + i]
                    if a.isNaN != b.isNaN && !(flagsDiffer && metric != .responded) { nanMismatch += 1; misses += 1 }
                    continue
                }
                let d = abs(a - b)
                if d > tol.absolute + tol.relative * max(abs(a), abs(b)) {
                    misses += 1
                    if d > worst.0 { worst = (d, i) }
                }
            }
            let allowed = Int(tol.allowedShare * Double(planeSize))
            if misses > allowed {
                let where_ = worst.1 >= 0 ? " (worst |Δ| \(worst.0) at cell \(worst.1 / stimulusCount), stimulus \(worst.1 % stimulusCount))" : ""
                problems.append("\(metric.name): \(misses) of \(planeSize) pairs differ, \(nanMismatch) of them NaN on one side only, \(allowed) allowed\(where_)")
            }
        }
        return problems
    }
}
