import CellAuditCore
import Foundation
import Testing

@Test func layerValidationNamesTheProblem() throws {
    var rng = SeededGenerator(seed: 1)
    let good = try RecurrentLayer.random(inputSize: 3, hiddenSize: 4, using: &rng)
    #expect(throws: ModelError.self) { try RecurrentLayer(inputSize: 3, hiddenSize: 4, W: Array(good.W.dropLast()), R: good.R, b: good.b) }
    var nanW = good.W
    nanW[7] = .nan
    let error = try #require(throws: ModelError.self) { try RecurrentLayer(inputSize: 3, hiddenSize: 4, W: nanW, R: good.R, b: good.b) }
    #expect("\(error)".contains("W"))
    #expect(throws: ModelError.self) { try RecurrentNetwork(layers: [good, good]) }   // 4 cells feed a 3-input layer
}

@Test func decouplingFollowsMethodSection2() throws {
    var rng = SeededGenerator(seed: 2)
    let layer = try RecurrentLayer.random(inputSize: 3, hiddenSize: 5, using: &rng)
    let all = try DecoupledCells(layer: layer)
    let channel = try DecoupledCells(layer: layer, direction: .channel(2))
    for gate in CellKind.lstm.gates {
        for j in 0..<5 {
            let row = layer.row(gate, j)
            let sum = (0..<3).map { layer.W[row * 3 + $0] }.reduce(0, +)
            #expect(abs(all.w(gate, j) - sum / Float(3).squareRoot()) < 1e-6)
            #expect(channel.w(gate, j) == layer.W[row * 3 + 2])
            #expect(all.r(gate, j) == layer.R[row * 5 + j])
            #expect(all.b(gate, j) == layer.b[row])
        }
    }
    #expect(throws: ModelError.self) { try DecoupledCells(layer: layer, direction: .channel(3)) }
    #expect(throws: ModelError.self) { try DecoupledCells(layer: layer, direction: .vector([1, 2])) }
}

/// A first-order discrete low-pass y_t = a·y_{t−1} + (1−a)·A from y = 0 has
/// τ = −1/ln a, rise time (10→90 %) = τ·ln 9 ≈ 2.2 τ and 2 % settling ≈ τ·ln 50 ≈ 3.9 τ.
@Test(arguments: [0.8, 0.95, 0.99])
func stepMetricsOfAFirstOrderLowPass(a: Double) throws {
    let tau = -1 / log(a)
    let pre = 5, window = Int(12 * tau) + 40
    var y = [Float](repeating: 0, count: pre)
    var state = 0.0
    for _ in 0..<window { state = a * state + (1 - a) * 2; y.append(Float(state)) }
    let m = StepMetrics(series: y[...], onset: pre, amplitude: 2)
    #expect(m.responded)
    #expect(abs(m.gain - 1) < 1e-3)
    #expect(abs(Double(m.riseTime) - tau * log(9)) < 1.0)
    #expect(abs(Double(m.settlingTime) - tau * log(50)) < 1.5)
    // Monotone: the only "overshoot" is the residue the window leaves unsettled (≈ e^-12).
    #expect(m.overshootPct < 0.01)
    #expect(m.undershootPct == 0)
    #expect(m.ringing == 0)
}

@Test func stepMetricsOfAnUnderdampedResponse() throws {
    // y = 1 − e^{−t/8} cos(t/3) rings around 1; its first maximum is at t* = 3(π − atan(3/8)),
    // with overshoot e^{−t*/8}·|cos(t*/3)|. Sample k holds time k + 1.
    var y: [Float] = [0, 0]
    for t in 0..<300 {
        let time = Double(t + 1)
        y.append(Float(1 - exp(-time / 8) * cos(time / 3)))
    }
    let m = StepMetrics(series: y[...], onset: 2, amplitude: 1)
    #expect(abs(m.yFinal - 1) < 1e-3)
    let tStar = 3 * (Double.pi - atan(3.0 / 8))
    #expect(abs(Double(m.overshootPct) - 100 * exp(-tStar / 8) * abs(cos(tStar / 3))) < 0.5)
    #expect(m.ringing >= 2)
    #expect(abs(Double(m.peakTime) - (tStar - 1)) <= 1)
}

@Test func nonRespondingCellYieldsNaNAndAFlag() throws {
    let y = [Float](repeating: 0.3, count: 50)
    let m = StepMetrics(series: y[...], onset: 10, amplitude: 1)
    #expect(!m.responded)
    #expect(m.gain == 0)
    for value in [m.peak, m.peakTime, m.overshootPct, m.undershootPct, m.riseTime, m.settlingTime, m.ringing] {
        #expect(value.isNaN)
    }
}

@Test func inverseResponseShowsUndershoot() throws {
    // Dips to −0.5 first, then settles at +1.
    var y: [Float] = [0, 0, 0]
    y += [-0.25, -0.5, -0.25, 0.25, 0.75] + [Float](repeating: 1, count: 40)
    let m = StepMetrics(series: y[...], onset: 3, amplitude: 1)
    #expect(abs(m.undershootPct - 50) < 1e-4)
    #expect(m.settlingTime == 5)
}

@Test func peakTimeOfAMonotoneResponseIgnoresNoiseInTheTail() throws {
    // Rises to 1 by sample 10, then jitters by 1e-7: the peak is reached at 10, not in the jitter.
    var y: [Float] = [0, 0]
    for k in 0..<100 { y.append(k < 10 ? Float(k + 1) / 10 : 1 + (k % 7 == 3 ? 1e-7 : 0)) }
    let m = StepMetrics(series: y[...], onset: 2, amplitude: 1)
    #expect(m.peakTime == 9)
    #expect(m.overshootPct < 1e-3)
}
