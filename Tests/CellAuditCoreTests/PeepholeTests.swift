import CellAuditCore
import CellAuditImport
import CellAuditOpenCL
import Foundation
import Testing
import TestSupport

/// Peephole LSTMs (ONNX `P`; METHOD.md §8; issue 29 item 4, issue 30 item 3): i and f see
/// c_{t−1}, o sees c_t. Graphs of Tools/make_onnx_peephole_fixtures.py give onnxruntime's
/// outputs and torch autograd's gradient × input on both backends; the decoupled cells, the
/// float64 map (DynamicsTests) and every kernel (ParityHarness) carry the peepholes too.
@Suite struct PeepholeTests {
    static func path(_ name: String) -> String { Fixtures.path("onnx_peephole/\(name)") }

    static func data(_ name: String) throws -> (SafeTensorsFile, SequenceBatch) {
        let file = try SafeTensorsFile(path: path("\(name).data.safetensors"))
        let shape = try file.info("inputs").shape
        return (file, try SequenceBatch(count: shape[0], steps: shape[1], width: shape[2], values: try file.floats("inputs")))
    }

    @Test(arguments: ["helper_lstm_peephole_x2_final", "helper_bilstm_peephole_final", "helper_lstm_zero_peephole"])
    func peepholeGraphsEqualOnnxruntime(name: String) throws {
        let model = try ModelImport.load(Self.path("\(name).onnx"))
        // An all-zero P is the plain cell.
        #expect(model.network.hasPeephole == !name.contains("zero"))
        #expect(model.network.layers.allSatisfy { $0.peephole.count == ($0.hasPeephole ? 3 * $0.hiddenSize : 0) })
        let (file, inputs) = try Self.data(name)
        let expected = try file.floats("outputs")
        for backend in try OpenCLTestSupport.backends() {
            let got = try backend.forward(try ForwardJob(network: model.network, inputs: inputs, output: model.output)).outputs
            let worst = zip(got, expected).map { abs($0 - $1) }.max() ?? .infinity
            #expect(got.count == expected.count && worst <= 1e-5, "\(name) on \(backend.identity): max |Δ| \(worst)")
        }
    }

    /// sequence_lens from a graph input with peepholes: the data's lengths, as onnxruntime runs them.
    @Test func peepholesWithLengthsEqualOnnxruntime() throws {
        let name = "helper_lstm_peephole_lens_input"
        let model = try ModelImport.load(Self.path("\(name).onnx"))
        var data = try Dataset.load(Self.path("\(name).data.safetensors"), requireAnswers: false)
        #expect(data.inputs.lengths == [6, 3, 5, 1] && model.network.hasPeephole)
        try data.prepare(for: model)
        let expected = try SafeTensorsFile(path: Self.path("\(name).data.safetensors")).floats("outputs")
        for backend in try OpenCLTestSupport.backends() {
            let got = try backend.forward(try ForwardJob(network: model.network, inputs: data.inputs, output: model.output)).outputs
            let worst = zip(got, expected).map { abs($0 - $1) }.max() ?? .infinity
            #expect(got.count == expected.count && worst <= 1e-5, "on \(backend.identity): max |Δ| \(worst)")
        }
    }

    /// Gradient × input through the peepholes equals torch autograd (float64, the same weights);
    /// LRP, in which the peephole terms are part of the gates, conserves with bias factor 1.
    @Test func gradientTimesInputEqualsAutogradAndLRPConserves() throws {
        let name = "helper_lstm_peephole_x2_final"
        let model = try ModelImport.load(Self.path("\(name).onnx"))
        let (file, inputs) = try Self.data(name)
        let expected = try file.floats("grad_x")
        let targets = (0..<inputs.count).map { $0 % 2 }
        for backend in try OpenCLTestSupport.backends() {
            let g = try backend.relevance(try RelevanceJob(network: model.network, inputs: inputs, output: .last, targets: targets,
                                                           rule: .gradientTimesInput))
            let worst = zip(g.input, expected).map { abs($0 - $1) }.max() ?? .infinity
            #expect(g.input.count == expected.count && worst <= 1e-5, "on \(backend.identity): max |Δ| \(worst)")
            let lrp = try backend.relevance(try RelevanceJob(network: model.network, inputs: inputs, output: .last, targets: targets,
                                                             rule: .lrp(epsilon: 0.001, biasFactor: 1)))
            #expect(lrp.conservationErrors().allSatisfy { $0 <= 1e-4 }, "\(lrp.conservationErrors())")
        }
    }

    /// Zero peepholes run the peephole code and must compute exactly what the plain cell does:
    /// forward, relevance and responses, bit for bit.
    @Test func zeroPeepholesComputeThePlainCellExactly() throws {
        let plain = try RecurrentNetwork.random(kind: .lstm, seed: 12, inputSize: 3, hiddenSizes: [6, 5], outputs: 2)
        var layers = plain.layers
        layers[0] = try layers[0].withPeephole([Float](repeating: 0, count: 18))
        // One layer with peepholes gives every layer zero ones.
        let zero = try RecurrentNetwork(layers: layers, readout: plain.readout)
        #expect(zero.hasPeephole && zero.layers[1].peephole == [Float](repeating: 0, count: 15))
        // Zero peepholes are no parameters: the count is the plain network's.
        #expect(zero.layers.map(\.parameterCount) == plain.layers.map(\.parameterCount))
        layers[0] = try layers[0].withPeephole([Float](repeating: 0.5, count: 18))
        let half = try RecurrentNetwork(layers: layers, readout: plain.readout)
        #expect(half.layers.map(\.parameterCount) == [plain.layers[0].parameterCount + 18, plain.layers[1].parameterCount])
        #expect(try zero.contentHash() != plain.contentHash())
        var rng = SeededGenerator(seed: 3)
        let inputs = try SequenceBatch(count: 4, steps: 7, width: 3, values: (0..<84).map { _ in rng.uniform(-1, 1) })
        let cpu = CPUBackend(threads: 2)
        #expect(try cpu.forward(ForwardJob(network: zero, inputs: inputs, output: .sequence)).outputs
                == cpu.forward(ForwardJob(network: plain, inputs: inputs, output: .sequence)).outputs)
        for rule in [RelevanceJob.Rule.lrp(epsilon: 0.01, biasFactor: 1), .gradientTimesInput] {
            let a = try cpu.relevance(RelevanceJob(network: zero, inputs: inputs, output: .last, targets: [0, 1, 0, 1], rule: rule))
            let b = try cpu.relevance(RelevanceJob(network: plain, inputs: inputs, output: .last, targets: [0, 1, 0, 1], rule: rule))
            #expect(a.input == b.input && a.cellRelevance == b.cellRelevance)
        }
        let bank = try StimulusBank(stimuli: [.step(-1), .step(0.5), .sine(0.7, frequency: 0.1)], preSteps: 3, window: 17)
        let a = try cpu.trajectories(ResponseJob(cells: DecoupledCells(layer: zero.layers[0]), bank: bank, probe: .c))
        let b = try cpu.trajectories(ResponseJob(cells: DecoupledCells(layer: plain.layers[0]), bank: bank, probe: .c))
        #expect(a.values.elementsEqual(b.values) { $0 == $1 || ($0.isNaN && $1.isNaN) })
    }

    /// Decoupled peephole cells under stimuli equal METHOD.md §8's update written out by hand in
    /// Double, cell by cell (each cell's peepholes read its own c).
    @Test func decoupledPeepholeCellsMatchAScalarLoop() throws {
        let layer = try RecurrentNetwork.random(kind: .lstm, seed: 21, inputSize: 4, hiddenSizes: [11], scale: 2, peephole: true).layers[0]
        let bank = try StimulusBank(stimuli: [.step(-1), .step(0.8), .sine(0.7, frequency: 0.1)], preSteps: 3, window: 17)
        let job = try ResponseJob(cells: try DecoupledCells(layer: layer), bank: bank)
        let p = job.cells
        #expect(p.peephole && p.valuesPerCell == 15)
        let out = try CPUBackend(threads: 2).trajectories(job)
        let sg = { (x: Double) in 1 / (1 + exp(-x)) }
        var worst = 0.0
        for j in [0, 7, 10] {
            for s in 0..<bank.count {
                var h = 0.0, c = 0.0
                let stim = bank.stimuli[s]
                for t in 0..<bank.schedules[s].end {
                    let u = t < 3 ? 0 : stim.kind == .step ? Double(stim.amplitude)
                        : Double(stim.amplitude) * sin(2 * .pi * Double(stim.frequency) * Double(t - 3))
                    func pre(_ g: Gate) -> Double { Double(p.w(g, j)) * u + Double(p.r(g, j)) * h + Double(p.b(g, j)) }
                    let i = sg(pre(.input) + Double(p.peephole(.input, j)) * c), f = sg(pre(.forget) + Double(p.peephole(.forget, j)) * c)
                    c = f * c + i * tanh(pre(.cell))
                    h = sg(pre(.output) + Double(p.peephole(.output, j)) * c) * tanh(c)
                    let series = out.series(cell: j, stimulus: s)
                    worst = max(worst, abs(Double(series[series.startIndex + t]) - h))
                }
            }
        }
        #expect(worst <= 2e-6, "max |Δ| \(worst)")
    }

    /// The trained-shape LSTM node of Tools/make_onnx_fixtures.py with P = 0.1 everywhere (which
    /// CellAudit once refused) is read with its peepholes.
    @Test func aConstantPIsRead() throws {
        let model = try ModelImport.load(Fixtures.path("onnx/lstm_peepholes.onnx"))
        let layer = try #require(model.network.layers.first)
        #expect(layer.hasPeephole && layer.peephole.count == 3 * layer.hiddenSize && layer.peephole.allSatisfy { $0 == 0.1 })
    }

    /// P computed by the graph is refused by name; peephole weights on a GRU or of the wrong size
    /// cannot be built.
    @Test func whatCannotBeReadIsRefused() throws {
        for (name, words) in [("refuse_peephole_computed", "'P' (peephole weights) that is not a constant"),
                              ("refuse_peephole_input", "graph input 'p' feeds node 'Y' (LSTM)'s input 'P'"),
                              ("refuse_peephole_nan_reverse", "layer 0 (reverse) peephole weights (P) contain nan (NaN or Inf), gate o of cell 3"),
                              ("refuse_gru_extra_input", "has 7 inputs; ONNX's GRU takes at most 6")] {
            for core in [false, true] {
                var hints = ModelHints()
                hints.core = core
                do { _ = try ModelImport.load(Self.path("\(name).onnx"), hints: hints); Issue.record("\(name) loaded") } catch {
                    // One refusal whether or not --core is given, and no hint to give it.
                    #expect("\(error)".contains(words) && "\(error)".contains("\(name).onnx") && !"\(error)".contains("--core"), "\(error)")
                }
            }
        }
        let gru = try RecurrentNetwork.random(kind: .gru, seed: 1, inputSize: 2, hiddenSizes: [3]).layers[0]
        #expect(throws: ModelError.self) { try gru.withPeephole([Float](repeating: 0, count: 9)) }
        let lstm = try RecurrentNetwork.random(kind: .lstm, seed: 1, inputSize: 2, hiddenSizes: [3]).layers[0]
        #expect(throws: ModelError.self) { try lstm.withPeephole([Float](repeating: 0, count: 8)) }
        #expect(throws: ModelError.self) { try lstm.withPeephole([0, 0, 0, 0, .nan, 0, 0, 0, 0]) }
    }
}
