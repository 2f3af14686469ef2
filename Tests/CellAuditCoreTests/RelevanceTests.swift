import CellAuditCore
import CellAuditImport
import CellAuditOpenCL
import Foundation
import Testing
import TestSupport

/// The backends relevance is checked on: the CPU reference, and OpenCL where a device is.
private func relevanceBackends() throws -> [any ComputeBackend] {
    var list: [any ComputeBackend] = [CPUBackend()]
    if OpenCLTestSupport.enabled { list.append(try OpenCLBackend(device: try OpenCLTestSupport.device(), canaryPadding: 17)) }
    return list
}

/// The largest |got − want| relative to the scale of `want` (its largest |value|), and whether
/// every element lies within `relative`·scale + `absolute`.
private func agreement(_ got: [Float], _ want: [Float], relative: Float, absolute: Float) -> (worst: Float, ok: Bool) {
    precondition(got.count == want.count)
    let scale = want.map(abs).max() ?? 0
    var worst: Float = 0, ok = true
    for (g, w) in zip(got, want) {
        let d = abs(g - w)
        if !(d <= relative * scale + absolute) { ok = false }
        worst = max(worst, scale > 0 ? d / scale : d)
    }
    return (worst, ok)
}

@Suite("Relevance (LRP, METHOD.md §7)")
struct RelevanceTests {
    /// Fixture models with references from Tools/relevance_reference.py (PyTorch autograd on the
    /// graph with detached gates and linearised signal activations).
    static let references = ["digits_lstm8", "digits_lstm32x2", "digits_gru16", "digits_gru16_onnx_lbr0", "digits_rnn16",
                             "relevance_rnn_relu_x2", "relevance_gru_x2", "flipflop_rnn32", "flipflop_gru32"]

    @Test("ε → 0, bias factor 0: LRP equals PyTorch's gradient × input with detached gates", arguments: references)
    func matchesAutodiff(_ name: String) throws {
        let reference = try SafeTensorsFile(path: Fixtures.path("relevance/\(name).safetensors"))
        let loaded = try ModelFile.load(Fixtures.path("\(name).safetensors"))
        let dataName = try #require(reference.metadata["data"])
        let data = try Dataset.load(Fixtures.path(dataName))
        let targets = try reference.integers("target"), n = targets.count
        let t = data.inputs.steps, w = data.inputs.width
        let inputs = try SequenceBatch(count: n, steps: t, width: w, values: Array(data.inputs.values[0..<(n * t * w)]))
        let job = try RelevanceJob(network: loaded.network, inputs: inputs, output: loaded.output, targets: targets,
                                   rule: .lrp(epsilon: 0, biasFactor: 0))
        for backend in try relevanceBackends() {
            let result = try backend.relevance(job)
            let score = agreement(result.score, try reference.floats("score"), relative: 1e-5, absolute: 1e-6)
            #expect(score.ok, "\(name) on \(backend.identity): score off by \(score.worst) of its scale")
            // Per sequence: every value within 1e-4 of the sequence's largest |relevance| (+1e-6).
            let refInput = try reference.floats("input"), refCells = try reference.floats("cells")
            let perInput = t * w, perCells = t * loaded.network.cellCount
            var worstInput: Float = 0, worstCells: Float = 0
            for s in 0..<n {
                let a = agreement(Array(result.input[(s * perInput)..<((s + 1) * perInput)]),
                                  Array(refInput[(s * perInput)..<((s + 1) * perInput)]), relative: Tolerance.relevance, absolute: Tolerance.relevanceAbsolute)
                let b = agreement(Array(result.cellRelevance[(s * perCells)..<((s + 1) * perCells)]),
                                  Array(refCells[(s * perCells)..<((s + 1) * perCells)]), relative: Tolerance.relevance, absolute: Tolerance.relevanceAbsolute)
                #expect(a.ok && b.ok, "\(name) on \(backend.identity), sequence \(s): input off by \(a.worst), cells by \(b.worst)")
                worstInput = max(worstInput, a.worst); worstCells = max(worstCells, b.worst)
            }
            print("relevance \(name) \(backend.identity.kind): worst input \(worstInput), cells \(worstCells)")
        }
    }

    @Test("Gradient × input of the unmodified network equals PyTorch autograd", arguments: references)
    func gradientMatchesAutodiff(_ name: String) throws {
        let reference = try SafeTensorsFile(path: Fixtures.path("relevance/\(name).safetensors"))
        let loaded = try ModelFile.load(Fixtures.path("\(name).safetensors"))
        let data = try Dataset.load(Fixtures.path(try #require(reference.metadata["data"])))
        let targets = try reference.integers("target"), n = targets.count
        let t = data.inputs.steps, w = data.inputs.width
        let inputs = try SequenceBatch(count: n, steps: t, width: w, values: Array(data.inputs.values[0..<(n * t * w)]))
        let job = try RelevanceJob(network: loaded.network, inputs: inputs, output: loaded.output, targets: targets,
                                   rule: .gradientTimesInput)
        let result = try CPUBackend().relevance(job)
        let input = agreement(result.input, try reference.floats("gradient_input"), relative: Tolerance.relevance, absolute: Tolerance.relevanceAbsolute)
        let cells = agreement(result.cellRelevance, try reference.floats("gradient_cells"), relative: Tolerance.relevance, absolute: Tolerance.relevanceAbsolute)
        #expect(input.ok && cells.ok, "\(name): input off by \(input.worst), cells by \(cells.worst) of the scale")
        #expect(result.rest.allSatisfy { $0 == 0 })
    }

    /// The reference-style NumPy LRP (Tools/peer_numpy_lrp.py, one ε-rule call per map as in
    /// ArrasL/LRP_for_LSTM) at ε = 0.05 and bias factor 1, where every bias share, the identity
    /// maps' cross terms included, is in play.
    @Test("ε = 0.05, bias factor 1: LRP equals the reference-style NumPy LRP")
    func matchesReferenceStyleLRP() throws {
        let reference = try SafeTensorsFile(path: Fixtures.path("relevance/digits_lstm8.safetensors"))
        let loaded = try ModelFile.load(Fixtures.path("digits_lstm8.safetensors"))
        let data = try Dataset.load(Fixtures.path("digits_test.safetensors"))
        let targets = try reference.integers("target"), n = targets.count
        let inputs = try SequenceBatch(count: n, steps: 8, width: 8, values: Array(data.inputs.values[0..<(n * 64)]))
        let job = try RelevanceJob(network: loaded.network, inputs: inputs, output: .last, targets: targets,
                                   rule: .lrp(epsilon: 0.05, biasFactor: 1))
        for backend in try relevanceBackends() {
            let r = try backend.relevance(job)
            let input = agreement(r.input, try reference.floats("numpy_lrp_input"), relative: Tolerance.relevance, absolute: Tolerance.relevanceAbsolute)
            let cells = agreement(r.cellRelevance, try reference.floats("numpy_lrp_cells"), relative: Tolerance.relevance, absolute: Tolerance.relevanceAbsolute)
            #expect(input.ok && cells.ok, "\(backend.identity): input off by \(input.worst), cells by \(cells.worst)")
        }
    }

    /// Every kind, 1 and 2 layers, fixtures and random networks.
    static let conservationCases: [(String, RecurrentNetwork)] = {
        var cases: [(String, RecurrentNetwork)] = []
        for kind in CellKind.allCases {
            for sizes in [[11], [9, 13]] {
                for resetAfter in kind == .gru ? [true, false] : [true] {
                    let net = try! RecurrentNetwork.random(kind: kind, seed: UInt64(sizes.count * 10 + kind.kernelCode), inputSize: 8,
                                                           hiddenSizes: sizes, outputs: 10, scale: 2, resetAfter: resetAfter)
                    cases.append(("random \(kind.rawValue)\(resetAfter ? "" : " reset-before") \(sizes)", net))
                }
            }
        }
        return cases
    }()

    /// Conservation is exact in real arithmetic; in float32 each ε-rule divides the rounding error
    /// of its z_j (about 6e-8 of Σ|a_i w_ji|) by |z_j + ε·s_j|. The samples are kept clear of that
    /// noise by the stabiliser itself: at ε = 0.05 no denominator is below 0.05, a million times
    /// the rounding of unit-scale pre-activations, so every sample of every network is tested
    /// (`minimumDenominator` reports the margin). The target is each sample's predicted output,
    /// as `explain` defaults to (a score within 1e-3 of zero is measured against 1e-3).
    @Test("Bias factor 1: Σ input + rest = score for every sample, every kind, 1 and 2 layers")
    func conservation() throws {
        let data = try Dataset.load(Fixtures.path("digits_test.safetensors"))
        var subjects = Self.conservationCases
        for name in ["digits_lstm16", "digits_lstm32x2", "digits_gru16", "digits_gru16_keras_reset_before", "digits_rnn16",
                     "relevance_rnn_relu_x2", "relevance_gru_x2"] {
            subjects.append((name, try ModelFile.load(Fixtures.path("\(name).safetensors")).network))
        }
        let n = 64
        let inputs = try SequenceBatch(count: n, steps: data.inputs.steps, width: data.inputs.width,
                                       values: Array(data.inputs.values[0..<(n * data.inputs.steps * data.inputs.width)]))
        let epsilon: Float = 0.05
        for (name, network) in subjects {
            let targets = try RelevanceJob.predictedTargets(network: network, inputs: inputs, output: .last, on: CPUBackend())
            let job = try RelevanceJob(network: network, inputs: inputs, output: .last, targets: targets,
                                       rule: .lrp(epsilon: epsilon, biasFactor: 1))
            for backend in try relevanceBackends() {
                let r = try backend.relevance(job)
                var worst = 0.0
                for s in 0..<n {
                    #expect(r.minimumDenominator[s] >= epsilon)
                    let total = r.input[(s * inputs.steps * inputs.width)..<((s + 1) * inputs.steps * inputs.width)]
                        .reduce(0.0) { $0 + Double($1) } + Double(r.rest[s])
                    let error = abs(total - Double(r.score[s])) / max(1e-3, abs(Double(r.score[s])))
                    worst = max(worst, error)
                    #expect(error <= 1e-4, "\(name) on \(backend.identity), sample \(s): Σ input + rest = \(total), score \(r.score[s])")
                }
                print("conservation \(name) \(backend.identity.kind): worst relative error \(worst)")
            }
        }
    }

    /// A two-step, two-cell LSTM with one input, worked out by hand. Gates are driven by their
    /// biases only (W and R zero outside g), so i, f, o are constants; the candidate g reads x and,
    /// for cell 0, h of cell 1 (R_g[0][1] = 0.5). ε = 0, bias factor 0, readout z = h₀ + 2·h₁.
    @Test("Hand-built two-step, two-cell LSTM")
    func handBuilt() throws {
        let H = 2
        var W = [Float](repeating: 0, count: 4 * H), R = [Float](repeating: 0, count: 4 * H * H), b = [Float](repeating: 0, count: 4 * H)
        // Rows: i0 i1 f0 f1 g0 g1 o0 o1. Gate biases: i = σ(1), f = σ(0) = ½, o = σ(2).
        b[0] = 1; b[1] = 1; b[6] = 2; b[7] = 2
        W[4] = 1.0; W[5] = -0.5          // g0 = tanh(x + 0.5 h1 + 0.1), g1 = tanh(−0.5 x)
        b[4] = 0.1
        R[4 * H + 1] = 0.5
        let layer = try RecurrentLayer(kind: .lstm, inputSize: 1, hiddenSize: H, W: W, R: R, b: b)
        let net = try RecurrentNetwork(layers: [layer], readout: .init(V: [1, 2], a: [0]))
        let x: [Double] = [0.8, -0.6]
        let job = try RelevanceJob(network: net, inputs: try SequenceBatch(count: 1, steps: 2, width: 1, values: x.map(Float.init)),
                                   output: .last, targets: [0], rule: .lrp(epsilon: 0, biasFactor: 0))
        let r = try CPUBackend().relevance(job)

        // Forward by hand.
        func σ(_ v: Double) -> Double { 1 / (1 + exp(-v)) }
        let i = σ(1), f = 0.5, o = σ(2)
        let a0g0 = x[0] + 0.1, a0g1 = -0.5 * x[0]                    // step 0, h₋₁ = 0
        let c0 = [i * tanh(a0g0), i * tanh(a0g1)], h0 = c0.map { o * tanh($0) }
        let a1g0 = x[1] + 0.5 * h0[1] + 0.1, a1g1 = -0.5 * x[1]
        let c1 = [f * c0[0] + i * tanh(a1g0), f * c0[1] + i * tanh(a1g1)], h1 = c1.map { o * tanh($0) }
        let z = h1[0] + 2 * h1[1]
        // Readout: R(h1_j) = h1_j·V_j·z/z.
        let rh1 = [h1[0], 2 * h1[1]]
        // Step 1: all of h's relevance goes to c; c = f c₋ + i g splits in proportion.
        let rc0From1 = (0..<2).map { f * c0[$0] / c1[$0] * rh1[$0] }
        let rg1 = [i * tanh(a1g0) / c1[0] * rh1[0], i * tanh(a1g1) / c1[1] * rh1[1]]
        // g's map: x (weight 1 for cell 0, −0.5 for cell 1), h0[1] (0.5, cell 0 only), bias 0.1 absorbed.
        let rx1 = x[1] * 1 * rg1[0] / a1g0 + x[1] * -0.5 * rg1[1] / a1g1
        let rh0 = [0.0, h0[1] * 0.5 * rg1[0] / a1g0]
        // Step 0: h0's relevance joins c0's.
        let rc0 = [rc0From1[0] + rh0[0], rc0From1[1] + rh0[1]]
        let rg0 = rc0                                                  // c₋₁ = 0: all to i⊙g
        let rx0 = x[0] * rg0[0] / a0g0 + x[0] * -0.5 * rg0[1] / a0g1

        #expect(abs(Double(r.score[0]) - z) < 1e-6)
        #expect(abs(Double(r.input[0]) - rx0) < 1e-5, "R(x₀) = \(r.input[0]), by hand \(rx0)")
        #expect(abs(Double(r.input[1]) - rx1) < 1e-5, "R(x₁) = \(r.input[1]), by hand \(rx1)")
        for j in 0..<2 {
            #expect(abs(Double(r.cellRelevance[2 + j]) - rh1[j]) < 1e-5, "R(h₁[\(j)])")
            #expect(abs(Double(r.cellRelevance[j]) - rh0[j]) < 1e-5, "R(h₀[\(j)])")
        }
        #expect(abs(r.rest[0]) < 1e-7)
    }

    @Test("Bad jobs are refused: ε < 0, bias factor outside [0, 1], targets out of range, a step on a last-step model")
    func refusals() throws {
        let net = try RecurrentNetwork.random(seed: 1, inputSize: 3, hiddenSizes: [4], outputs: 2)
        let x = try SequenceBatch(count: 2, steps: 3, width: 3, values: RandomInputs.floats(18, seed: 2))
        #expect(throws: RelevanceError.self) { try RelevanceJob(network: net, inputs: x, output: .last, targets: [0, 1], rule: .lrp(epsilon: -1, biasFactor: 0)) }
        #expect(throws: RelevanceError.self) { try RelevanceJob(network: net, inputs: x, output: .last, targets: [0, 1], rule: .lrp(epsilon: 0, biasFactor: 2)) }
        #expect(throws: RelevanceError.self) { try RelevanceJob(network: net, inputs: x, output: .last, targets: [0, 1], rule: .lrp(epsilon: .nan, biasFactor: 0)) }
        #expect(throws: DataError.self) { try RelevanceJob(network: net, inputs: x, output: .last, targets: [0, 2]) }
        #expect(throws: DataError.self) { try RelevanceJob(network: net, inputs: x, output: .last, targets: [0]) }
        #expect(throws: RelevanceError.self) { try RelevanceJob(network: net, inputs: x, output: .last, targets: [0, 1], step: 1) }
        #expect(throws: RelevanceError.self) { try RelevanceJob(network: net, inputs: x, output: .sequence, targets: [0, 1], step: 3) }
    }

    @Test("A relevance that overflows float32 is refused, naming the sequence")
    func overflowIsRefused() throws {
        var net = try RecurrentNetwork.random(seed: 3, inputSize: 3, hiddenSizes: [64], outputs: 2, scale: 3)
        net.readout!.V = net.readout!.V.map { $0 >= 0 ? 3e38 : -3e38 }   // finite weights, outputs past Float.greatestFiniteMagnitude
        let x = try SequenceBatch(count: 3, steps: 4, width: 3, values: RandomInputs.floats(36, seed: 4))
        let job = try RelevanceJob(network: net, inputs: x, output: .last, targets: [0, 1, 0])
        for backend in try relevanceBackends() {
            #expect(throws: RelevanceError.self) { try backend.relevance(job) }
        }
    }

    @Test("Chunked sequences give the same relevance as one pass")
    func chunking() throws {
        let net = try RecurrentNetwork.random(kind: .gru, seed: 4, inputSize: 5, hiddenSizes: [7, 6], outputs: 3)
        let x = try SequenceBatch(count: 9, steps: 4, width: 5, values: RandomInputs.floats(180, seed: 5))
        let job = try RelevanceJob(network: net, inputs: x, output: .sequence, targets: (0..<9).map { $0 % 3 },
                                   rule: .lrp(epsilon: 0.01, biasFactor: 0.5))
        let whole = try CPUBackend().relevance(job)
        let chunked = try CPUBackend(forwardWorkingSetBytes: 1).relevance(job)
        #expect(whole == chunked)
    }
}
