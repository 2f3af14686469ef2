import Foundation

/// METHOD.md §4 for eight cells at once (one per lane) from a trajectory held in cache, with the
/// same Float operations in the same order as the reference (`StepMetrics`), so on the same
/// trajectory the results are identical. Sinusoids accumulate the DFT in Float against the
/// bank's cos/sin tables.
enum LaneMetrics {
    /// One stimulus's trajectory for eight cells inside the engine's scratch: y[t] is the
    /// Float32x8 at base[t * stride].
    struct Trajectory {
        let base: UnsafeMutablePointer<Float32x8>
        let stride: Int
        @inline(__always) subscript(t: Int) -> Float32x8 { base[t * stride] }
    }

    static let nan = Float32x8(repeating: .nan)

    // The standard library's pointwiseMin/Max are not inlined for SIMD8 and cost a call each.
    @inline(__always) static func min8(_ a: Float32x8, _ b: Float32x8) -> Float32x8 { a.replacing(with: b, where: b .< a) }
    @inline(__always) static func max8(_ a: Float32x8, _ b: Float32x8) -> Float32x8 { a.replacing(with: b, where: b .> a) }


    /// Step metrics of eight cells from their responses r(t) = y(t) − b(t) (`y`), reporting
    /// y0 = b(t_on − 1) and y_final, peak as y0 + r, as `StepMetrics(response:)` does.
    static func step(_ y: Trajectory, y0 reference: Float32x8, schedule: StimulusSchedule, amplitude: Float,
                     band bandFraction: Float) -> [Float32x8] {
        let onset = schedule.onset, end = schedule.end
        var out = [Float32x8](repeating: nan, count: Metric.allCases.count)
        let start = Float32x8()
        // The tail mean relative to its first sample (StepMetrics.tailMean): exact on a constant tail.
        let first = y[schedule.analysisStart]
        var sum = Float32x8()
        for t in schedule.analysisStart..<(schedule.analysisStart + schedule.analysisLength) { sum += y[t] - first }
        let final = first + sum / Float(schedule.analysisLength)
        let delta = final
        out[Metric.y0.rawValue] = reference
        out[Metric.yFinal.rawValue] = reference + final
        out[Metric.gain.rawValue] = amplitude != 0 ? delta / amplitude : nan
        let magnitude = vabs(delta)
        let responded = (magnitude .>= StepMetrics.noResponseThreshold) .& (magnitude .< .infinity)
        out[Metric.responded.rawValue] = Float32x8().replacing(with: 1, where: responded)
        guard any(responded) else { return out }

        let sign = Float32x8(repeating: -1).replacing(with: 1, where: delta .> 0)
        var maxAlong = Float32x8(repeating: -.infinity)
        var maxY = Float32x8(repeating: -.infinity), minY = Float32x8(repeating: .infinity)
        for t in onset..<end {
            let v = y[t]
            maxAlong = max8(maxAlong, (v - start) * sign)
            maxY = max8(maxY, v)
            minY = min8(minY, v)
        }
        let reached = maxAlong - StepMetrics.peakTimeTolerance * magnitude
        let peakValue = maxY.replacing(with: minY, where: sign .< 0)
        let level10 = 0.1 * magnitude, level90 = 0.9 * magnitude
        let band = bandFraction * magnitude

        var found = SIMDMask<SIMD8<Int32>>(repeating: false)
        var peakIndex = Float32x8(), against = Float32x8(repeating: .infinity)
        var found10 = found, found90 = found
        var cross10 = nan, cross90 = nan
        var previous = Float32x8()
        var lastOutside = Float32x8(repeating: -1), lastSign = Float32x8(), changes = Float32x8()
        for t in onset..<end {
            let k = Float(t - onset)
            let v = y[t]
            let a = (v - start) * sign
            against = against.replacing(with: min8(against, a), where: .!found)
            let hit = .!found .& (a .>= reached)
            peakIndex = peakIndex.replacing(with: k, where: hit)
            found = found .| hit

            let span = a - previous
            let hit10 = .!found10 .& (a .>= level10)
            if any(hit10) {
                let fraction = ((level10 - previous) / span).replacing(with: 1, where: .!(span .> 0))
                cross10 = cross10.replacing(with: (k - 1) + min8(max8(fraction, Float32x8()), Float32x8(repeating: 1)), where: hit10)
                found10 = found10 .| hit10
            }
            let hit90 = .!found90 .& (a .>= level90)
            if any(hit90) {
                let fraction = ((level90 - previous) / span).replacing(with: 1, where: .!(span .> 0))
                cross90 = cross90.replacing(with: (k - 1) + min8(max8(fraction, Float32x8()), Float32x8(repeating: 1)), where: hit90)
                found90 = found90 .| hit90
            }
            previous = a

            let e = v - final
            let outside = vabs(e) .> band
            lastOutside = lastOutside.replacing(with: k, where: outside)
            let s = Float32x8(repeating: -1).replacing(with: 1, where: e .> 0)
            let counted = found .& outside
            changes = changes.replacing(with: changes + 1, where: counted .& (lastSign .!= 0) .& (s .!= lastSign))
            lastSign = lastSign.replacing(with: s, where: counted)
        }
        let relative: [(Metric, Float32x8)] = [
            (.peak, reference + peakValue), (.peakTime, peakIndex),
            (.overshootPct, 100 * max8(Float32x8(), (peakValue - final) * sign) / magnitude),
            (.undershootPct, 100 * max8(Float32x8(), -against) / magnitude),
            (.riseTime, cross90 - cross10), (.settlingTime, lastOutside + 1), (.ringing, changes),
        ]
        for (metric, value) in relative {
            out[metric.rawValue] = nan.replacing(with: value, where: responded)
        }
        return out
    }

    /// Sinusoid metrics of eight cells from their responses r(t) = y(t) − b(t) (`y`).
    static func sine(_ y: Trajectory, y0 reference: Float32x8, schedule: StimulusSchedule, amplitude: Float,
                     wave: [Float], quadrature: [Float], row: Int) -> [Float32x8] {
        var out = [Float32x8](repeating: nan, count: Metric.allCases.count)
        out[Metric.y0.rawValue] = reference
        let harmonics = schedule.harmonics
        let window = schedule.analysisStart..<(schedule.analysisStart + schedule.analysisLength)
        var sum = Float32x8()
        for t in window { sum += y[t] }
        // One sweep of the window per harmonic, so its two accumulators stay in registers; the
        // table carries each step's cos/sin of k·ωt to the next harmonic's rotation.
        var re = [Float32x8](repeating: Float32x8(), count: 6), im = re
        wave.withUnsafeBufferPointer { sinT in
            quadrature.withUnsafeBufferPointer { cosT in
                withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * window.count) { table in
                    let cosK = table.baseAddress!, sinK = cosK + window.count
                    for k in 1...max(1, harmonics) {
                        var reK = Float32x8(), imK = Float32x8()
                        for (n, t) in window.enumerated() {
                            let c1 = cosT[row + t], s1 = sinT[row + t]
                            let (c, s) = k == 1 ? (c1, s1) : (cosK[n] * c1 - sinK[n] * s1, sinK[n] * c1 + cosK[n] * s1)
                            cosK[n] = c
                            sinK[n] = s
                            let v = y[t]
                            reK += v * c
                            imK -= v * s
                        }
                        re[k] = reK
                        im[k] = imK
                    }
                }
            }
        }
        let length = Float(schedule.analysisLength)
        let magnitude = (re[1] * re[1] + im[1] * im[1]).squareRoot()
        let fundamental = 2 * magnitude / length
        out[Metric.dcShift.rawValue] = sum / length
        out[Metric.sineGain.rawValue] = amplitude != 0 ? fundamental / abs(amplitude) : nan
        let responded = (fundamental .>= Float(SineMetrics.noResponseThreshold)) .& (fundamental .< .infinity)
        out[Metric.responded.rawValue] = Float32x8().replacing(with: 1, where: responded)
        var phase = nan, thd = nan
        var power = Float32x8()
        if harmonics >= 2 { for k in 2...harmonics { power += re[k] * re[k] + im[k] * im[k] } }
        for lane in 0..<8 where responded[lane] {
            phase[lane] = Float(SineMetrics.phase(re: Double(re[1][lane]), im: Double(im[1][lane]),
                                                  negativeAmplitude: amplitude < 0))
            if harmonics >= 2 { thd[lane] = power[lane].squareRoot() / magnitude[lane] }
        }
        out[Metric.phaseDeg.rawValue] = phase
        out[Metric.thd.rawValue] = thd
        return out
    }
}
