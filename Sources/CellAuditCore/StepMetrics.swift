/// The step-response metrics of METHOD.md §4 for one trajectory, computed plainly from the
/// stored samples. This is the reference definition; faster paths are tested against it.
///
/// Times are in steps after onset: the first stimulated sample has time 0. Crossing times
/// (rise) are interpolated linearly between samples, with y0 standing at time −1.
public struct StepMetrics: Sendable, Equatable {
    public var y0: Float
    public var yFinal: Float
    public var gain: Float
    public var peak: Float
    public var peakTime: Float
    public var overshootPct: Float
    public var undershootPct: Float
    public var riseTime: Float
    public var settlingTime: Float
    public var ringing: Float
    /// False where |Δ| < `noResponseThreshold`: the relative metrics are then NaN.
    public var responded: Bool

    public static let noResponseThreshold: Float = 1e-6
    /// How close to the extremum (as a share of |Δ|) a sample counts as having reached the peak.
    public static let peakTimeTolerance: Float = 1e-3
    /// Share of the window averaged for y_final.
    public static let finalFraction = 0.05

    /// The metrics of a trajectory against a constant baseline: the value it had just before
    /// onset (0 when the stimulus starts at t = 0).
    /// - Parameters:
    ///   - series: the whole trajectory (pre-steps then window).
    ///   - onset: index of the first stimulated sample.
    ///   - settlingBand: the settling threshold as a fraction of |Δ| (2 % by default).
    public init(series: ArraySlice<Float>, onset: Int, amplitude: Float, settlingBand: Float = Defaults.settlingBand) {
        let y = Array(series)
        precondition(onset >= 0 && onset < y.count, "onset outside the trajectory")
        let start: Float = onset > 0 ? y[onset - 1] : 0
        self.init(response: y.map { $0 - start }[...], onset: onset, y0: start, amplitude: amplitude, settlingBand: settlingBand)
    }

    /// METHOD.md §4 on the response r(t) = y(t) − b(t), the trajectory minus the same cell's
    /// unstimulated run. `y0` = b(t_on − 1) is the resting value reported; y_final and peak are
    /// reported as y0 + r.
    public init(response series: ArraySlice<Float>, onset: Int, y0 start: Float, amplitude: Float, settlingBand: Float = Defaults.settlingBand) {
        let r = Array(series)
        precondition(onset >= 0 && onset < r.count, "onset outside the trajectory")
        let window = r[onset...]
        let n = window.count
        let tail = max(1, Int((Double(n) * Self.finalFraction).rounded(.up)))
        let delta = Self.tailMean(window.suffix(tail))
        let final = delta
        y0 = start
        yFinal = start + delta
        gain = amplitude != 0 ? delta / amplitude : .nan
        responded = abs(delta) >= Self.noResponseThreshold && delta.isFinite
        guard responded else {
            (peak, peakTime, overshootPct, undershootPct, riseTime, settlingTime, ringing) =
                (.nan, .nan, .nan, .nan, .nan, .nan, .nan)
            return
        }
        let sign: Float = delta > 0 ? 1 : -1
        let magnitude = abs(delta)
        // Excursion along Δ for every sample.
        let along = window.map { $0 * sign }

        var peakIndex = 0
        for k in 1..<n where along[k] > along[peakIndex] { peakIndex = k }
        // The peak time is the first sample within 0.1 % of |Δ| of the extremum: on a response
        // that creeps towards its final value, float noise would otherwise pick the time.
        let reached = along[peakIndex] - Self.peakTimeTolerance * magnitude
        peakIndex = along.firstIndex { $0 >= reached }!
        let peakValue = sign > 0 ? window.max()! : window.min()!
        peak = start + peakValue
        peakTime = Float(peakIndex)
        overshootPct = 100 * max(0, (peakValue - final) * sign) / magnitude
        let against = along[0...peakIndex].min()!
        undershootPct = 100 * max(0, -against) / magnitude

        func crossing(_ level: Float) -> Float {
            var previous: Float = 0   // y0 at time −1
            for k in 0..<n {
                if along[k] >= level {
                    let span = along[k] - previous
                    let fraction = span > 0 ? (level - previous) / span : 1
                    return Float(k - 1) + min(max(fraction, 0), 1)
                }
                previous = along[k]
            }
            return .nan
        }
        riseTime = crossing(0.9 * magnitude) - crossing(0.1 * magnitude)

        let band = settlingBand * magnitude
        let error = window.map { $0 - final }
        if let last = error.lastIndex(where: { abs($0) > band }) {
            settlingTime = Float(last + 1)
        } else {
            settlingTime = 0
        }
        // Sign changes of y − y_final after the peak, among samples outside the settling band
        // (inside it, float noise would count as ringing).
        var changes = 0
        var lastSign: Float = 0
        for e in error[peakIndex...] where abs(e) > band {
            let s: Float = e > 0 ? 1 : -1
            if lastSign != 0 && s != lastSign { changes += 1 }
            lastSign = s
        }
        ringing = Float(changes)
    }

    /// The mean of a tail, accumulated relative to its first sample: a constant tail gives that
    /// value exactly (a plain Float sum lands a few ulp off, METHOD.md §4). The engines use the
    /// same operations in the same order.
    public static func tailMean(_ tail: some Collection<Float>) -> Float {
        let first = tail.first!
        var sum: Float = 0
        for v in tail { sum += v - first }
        return first + sum / Float(tail.count)
    }
}
