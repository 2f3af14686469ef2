import CellAuditAnalysis
import CellAuditCore
import CellAuditImport
import CellAuditOpenCL
import Foundation
import Testing
import TestSupport

/// GRU and RNN cells: import in every convention, the two GRU variants kept apart, the layer step
/// against a plain Double implementation of METHOD.md §1, and analytic responses.
@Suite struct CellKindTests {
    /// The same trained network read from PyTorch, Keras and ONNX files gives the same canonical weights.
    @Test(arguments: [("digits_gru16", CellKind.gru), ("digits_rnn16", .rnnTanh)])
    func threeConventionsLoadTheSameNetwork(base: String, kind: CellKind) throws {
        let torch = try ModelFile.load(Fixtures.path(base + ".safetensors"))
        #expect(torch.network.kind == kind && torch.network.layers[0].resetAfter)
        for suffix in ["_keras", "_onnx"] {
            let other = try ModelFile.load(Fixtures.path(base + suffix + ".safetensors"))
            #expect(other.network.kind == kind)
            let a = torch.network.layers[0], b = other.network.layers[0]
            #expect(b.resetAfter)
            #expect(maxDifference(a.W, b.W) == 0, "\(base)\(suffix) W")
            #expect(maxDifference(a.R, b.R) == 0, "\(base)\(suffix) R")
            #expect(maxDifference(a.b, b.b) <= 1e-6, "\(base)\(suffix) b")
            #expect(a.hiddenBiasN.count == b.hiddenBiasN.count && (a.hiddenBiasN.isEmpty || maxDifference(a.hiddenBiasN, b.hiddenBiasN) <= 1e-6))
        }
    }

    /// Keras `reset_after=False` and ONNX `linear_before_reset=0` are read as the reset-before
    /// cell, give their framework's outputs (FixtureForwardTests), and reading the same weights as
    /// the reset-after cell gives measurably different outputs: the two are not confused.
    @Test(arguments: ["digits_gru16_keras_reset_before", "digits_gru16_onnx_lbr0"])
    func resetBeforeIsNotReadAsResetAfter(model: String) throws {
        let loaded = try ModelFile.load(Fixtures.path(model + ".safetensors"))
        let layer = loaded.network.layers[0]
        #expect(!layer.resetAfter && layer.hiddenBiasN.allSatisfy { $0 == 0 })
        let golden = try SafeTensorsFile(path: Fixtures.path(model + ".safetensors")).floats("golden.outputs")
        let data = try Dataset.load(Fixtures.path("digits_test.safetensors"))
        let confused = try RecurrentNetwork(layers: [try RecurrentLayer(kind: .gru, inputSize: layer.inputSize, hiddenSize: layer.hiddenSize,
                                                                       W: layer.W, R: layer.R, b: layer.b, resetAfter: true)],
                                            readout: loaded.network.readout)
        for backend in try backendsUnderTest() {
            let right = try backend.forward(try ForwardJob(network: loaded.network, inputs: data.inputs, output: .last)).outputs
            let wrong = try backend.forward(try ForwardJob(network: confused, inputs: data.inputs, output: .last)).outputs
            #expect(maxDifference(right, golden) <= Tolerance.forward, "\(backend.identity)")
            #expect(maxDifference(wrong, golden) > 100 * Tolerance.forward, "\(backend.identity): the reset-after reading is too close")
        }
    }

    /// What a file claims must match what it holds: a Keras GRU bias of the wrong shape, a
    /// reset_after flag that contradicts it, and GRU flags on another kind are refused by name.
    @Test func contradictoryGRUMetadataIsRefused() throws {
        let dir = try Fixtures.scratch("gru-meta")
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = try SafeTensorsFile(path: Fixtures.path("digits_gru16_keras_reset_before.safetensors"))
        func rewrite(_ name: String, _ change: (inout [String: String]) -> Void) throws -> String {
            var meta = source.metadata
            change(&meta)
            let path = dir.appendingPathComponent(name).path
            var writer = SafeTensorsWriter(metadata: meta)
            for (tensor, info) in source.tensors { try writer.add(tensor, floats: try source.floats(tensor), shape: info.shape) }
            try writer.write(to: path)
            return path
        }
        let flipped = try rewrite("flipped.safetensors") { $0["reset_after"] = "1" }
        let error = try #require(throws: FormatError.self) { try ModelFile.load(flipped) }
        #expect("\(error)".contains("reset_after") && "\(error)".contains("flipped.safetensors"))
        let rnn = try rewrite("rnn.safetensors") { $0["cell"] = "rnn_tanh"; $0["prefix"] = "gru_" }
        #expect("\(try #require(throws: FormatError.self) { try ModelFile.load(rnn) })".contains("reset_after"))
        let unknown = try rewrite("unknown.safetensors") { $0["cell"] = "mgu" }
        #expect("\(try #require(throws: FormatError.self) { try ModelFile.load(unknown) })".contains("mgu"))
    }

    /// The layer step (shared by the forward, rest states and data means) against METHOD.md §1
    /// written out in Double, for every kind and both GRU variants.
    @Test(arguments: [(CellKind.lstm, true), (.gru, true), (.gru, false), (.rnnTanh, true), (.rnnReLU, true)])
    func layerStepMatchesTheEquations(kind: CellKind, resetAfter: Bool) throws {
        var rng = SeededGenerator(seed: 99)
        let I = 3, H = 19
        let layer = try RecurrentLayer.random(kind: kind, inputSize: I, hiddenSize: H, using: &rng, scale: 2, resetAfter: resetAfter)
        var h = (0..<H).map { _ in rng.uniform(-0.8, 0.8) }, c = (0..<H).map { _ in rng.uniform(-1, 1) }
        let x = (0..<I).map { _ in rng.uniform(-1, 1) }
        let (h0, c0) = (h.map(Double.init), c.map(Double.init))
        layer.step(x[...], h: &h, c: &c)
        func dot(_ m: [Float], _ row: Int, _ v: [Double]) -> Double { (0..<v.count).reduce(0.0) { $0 + Double(m[row * v.count + $1]) * v[$1] } }
        let sg = { (v: Double) in 1 / (1 + exp(-v)) }
        let xd = x.map(Double.init)
        for j in 0..<H {
            let wx = (0..<kind.gateCount).map { g in dot(layer.W, g * H + j, xd) + Double(layer.b[g * H + j]) }
            var expectH: Double, expectC = c0[j]
            switch kind {
            case .lstm:
                let pre = (0..<4).map { wx[$0] + dot(layer.R, $0 * H + j, h0) }
                expectC = sg(pre[1]) * c0[j] + sg(pre[0]) * tanh(pre[2])
                expectH = sg(pre[3]) * tanh(expectC)
            case .gru:
                let r = sg(wx[0] + dot(layer.R, j, h0)), z = sg(wx[1] + dot(layer.R, H + j, h0))
                let n: Double
                if resetAfter {
                    n = tanh(wx[2] + r * (dot(layer.R, 2 * H + j, h0) + Double(layer.hiddenBiasN[j])))
                } else {
                    let rh = (0..<H).map { m in sg(wx0(layer, m, xd) + dot(layer.R, m, h0)) * h0[m] }
                    n = tanh(wx[2] + dot(layer.R, 2 * H + j, rh))
                }
                expectH = (1 - z) * n + z * h0[j]
            case .rnnTanh: expectH = tanh(wx[0] + dot(layer.R, j, h0))
            case .rnnReLU: expectH = max(0, wx[0] + dot(layer.R, j, h0))
            }
            #expect(abs(Double(h[j]) - expectH) <= 2e-6 * max(1, abs(expectH)), "\(kind) cell \(j): h \(h[j]) vs \(expectH)")
            if kind == .lstm { #expect(abs(Double(c[j]) - expectC) <= 2e-6 * max(1, abs(expectC))) } else { #expect(c[j] == Float(c0[j])) }
        }
    }

    /// GRU and RNN cells set up as first-order low-passes y_t = a·y_{t−1} + K·u_t have the rise
    /// time (ln 9·τ), settling time (ln 50·τ), DC gain K/(1 − a) and Bode curve
    /// K/|1 − a e^{−iω}|, phase −atan2(a sin ω, 1 − a cos ω), of that transfer function, on every
    /// backend.
    /// - GRU: z fixed at a (b_z = logit a, no weights), n = tanh(w_n u) ≈ w_n u: K = (1 − a)·w_n.
    /// - RNN tanh: h = tanh(w u + a h) with a tiny input (linear range): K = w.
    /// - RNN ReLU: h = max(0, w u + a h + b) around a positive rest b/(1 − a): exactly linear, K = w.
    @Test(arguments: [(CellKind.gru, 0.9), (.gru, 0.95), (.rnnTanh, 0.9), (.rnnReLU, 0.8)])
    func firstOrderLowPassMatchesItsTransferFunction(kind: CellKind, a: Double) throws {
        let w: Float = 0.5
        var params = [Float](repeating: 0, count: DecoupledCells.valuesPerCell(kind))
        var amplitude: Float = 0.01, preSteps = 5, K = Double(w)
        switch kind {
        case .gru:
            params[2] = w                                   // w_n
            params[7] = Float(log(a / (1 - a)))             // b_z
            K = (1 - a) * Double(w)
        case .rnnTanh:
            params = [w, Float(a), 0]
            amplitude = 1e-4
        default:
            params = [w, Float(a), Float(0.1 * (1 - a))]    // rest at 0.1
            preSteps = 400
        }
        let cells = DecoupledCells(kind: kind, cellCount: 1, parameters: params)
        let frequencies: [Float] = [0.005, 0.02, 0.1, 0.3]
        let bank = try StimulusBank(stimuli: [.step(amplitude)] + frequencies.map { .sine(amplitude, frequency: $0) },
                                    preSteps: preSteps, window: 600)
        let job = try ResponseJob(cells: cells, bank: bank)
        let tau = -1 / log(a)
        // The linear range of tanh leaves a relative error of about y²/3 (1e-6 here); GRU's n = tanh(w u).
        let relative = 2e-3
        for backend in try backendsUnderTest() {
            let m = try backend.responses(job)
            #expect(abs(Double(m[.riseTime, 0, 0]) - log(9) * tau) <= 0.6, "\(kind) \(backend.identity): rise \(m[.riseTime, 0, 0]) vs \(log(9) * tau)")
            #expect(abs(Double(m[.settlingTime, 0, 0]) - log(50) * tau) <= 1.5, "\(kind) \(backend.identity): settling \(m[.settlingTime, 0, 0])")
            #expect(abs(Double(m[.gain, 0, 0]) - K / (1 - a)) <= relative * K / (1 - a), "\(kind) \(backend.identity): gain \(m[.gain, 0, 0]) vs \(K / (1 - a))")
            #expect(m[.overshootPct, 0, 0] < 1e-2 && m[.ringing, 0, 0] == 0)
            for (k, f) in frequencies.enumerated() {
                let omega = 2 * Double.pi * Double(f)
                let gain = K / ((1 - a * cos(omega)) * (1 - a * cos(omega)) + a * a * sin(omega) * sin(omega)).squareRoot()
                let phase = -atan2(a * sin(omega), 1 - a * cos(omega)) * 180 / .pi
                #expect(abs(Double(m[.sineGain, 0, k + 1]) - gain) <= relative * gain, "\(kind) \(backend.identity) f=\(f): gain \(m[.sineGain, 0, k + 1]) vs \(gain)")
                #expect(abs(Double(m[.phaseDeg, 0, k + 1]) - phase) <= 0.5, "\(kind) \(backend.identity) f=\(f): phase \(m[.phaseDeg, 0, k + 1]) vs \(phase)")
            }
        }
    }

    /// Mode clamped: the other cells' constant enters each gate where the kind has it.
    @Test(arguments: [true, false])
    func clampedGRUPutsTheOtherCellsWhereTheVariantHasThem(resetAfter: Bool) throws {
        let layer = try RecurrentNetwork.random(kind: .gru, seed: 5, inputSize: 2, hiddenSizes: [6], scale: 2, resetAfter: resetAfter).layers[0]
        let rest = layer.restState()
        #expect(rest.converged)
        let own = try DecoupledCells(layer: layer, direction: .all, mode: .self)
        let clamped = try DecoupledCells(layer: layer, direction: .all, mode: .clamped, restState: rest.h)
        // The clamped cell at the layer's rest, under rest input, stays there: its own step
        // reproduces h*_j (the fixed point of the whole layer).
        for j in 0..<6 {
            var h = Double(rest.h[j])
            let p = { (g: Gate) in (Double(clamped.w(g, j)), Double(clamped.r(g, j)), Double(clamped.b(g, j))) }
            let sg = { (v: Double) in 1 / (1 + exp(-v)) }
            let r = sg(p(.reset).1 * h + p(.reset).2), z = sg(p(.update).1 * h + p(.update).2)
            let n = tanh(p(.newState).2 + r * (p(.newState).1 * h + Double(clamped.hiddenBiasN(j))))
            h = (1 - z) * n + z * h
            #expect(abs(h - Double(rest.h[j])) <= 1e-5, "cell \(j): one clamped step moves h* \(rest.h[j]) to \(h)")
        }
        #expect(own.parameters != clamped.parameters)
    }
}

/// Input side of the reset gate of cell m: W_r[m]·x + b_r[m].
private func wx0(_ layer: RecurrentLayer, _ m: Int, _ x: [Double]) -> Double {
    (0..<x.count).reduce(Double(layer.b[m])) { $0 + Double(layer.W[m * x.count + $1]) * x[$1] }
}
