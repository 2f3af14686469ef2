import CellAuditCore
import CellAuditImport
import CellAuditOpenCL
import CellAuditAnalysis
import Foundation
import Testing
import TestSupport

/// Bidirectional layers (issue 29, item 1): PyTorch `bidirectional=True` networks of every kind,
/// one and two layers, read from their state dicts (safetensors and torch.save) and run as
/// PyTorch runs them, for both last-step readings and at every step (Tools/make_bidirectional_fixtures.py).
@Suite struct BidirectionalTests {
    static let names = ["lstm1", "lstm2", "gru1", "gru2", "rnn_tanh2", "rnn_relu1"]

    static func load(_ name: String, reading: FinalStateReading?, output: OutputMode = .last, torch: Bool = false) throws -> LoadedModel {
        var hints = ModelHints(output: output, nonlinearity: name.hasPrefix("rnn_relu") ? "relu" : name.hasPrefix("rnn") ? "tanh" : nil)
        hints.bidirectionalReadout = reading
        return try ModelImport.load(Fixtures.path("bidirectional/\(name).\(torch ? "pt" : "safetensors")"), hints: hints)
    }

    static func backends() throws -> [any ComputeBackend] {
        try OpenCLTestSupport.backends(cpuThreads: [2, 1])
    }

    @Test(arguments: names)
    func outputsEqualPyTorch(name: String) throws {
        let data = try SafeTensorsFile(path: Fixtures.path("bidirectional/\(name).data.safetensors"))
        let shape = try data.info("inputs").shape
        let inputs = try SequenceBatch(count: shape[0], steps: shape[1], width: shape[2], values: try data.floats("inputs"))
        for (reading, output, key) in [(FinalStateReading.finalStates, OutputMode.last, "final_states"), (.lastStep, .last, "last_step"),
                                       (nil, .sequence, "sequence")] {
            let model = try Self.load(name, reading: reading, output: output)
            #expect(!model.network.isForwardOnly && model.network.levels.allSatisfy { $0.count == 2 })
            #expect(try Self.load(name, reading: reading, output: output, torch: true).network == model.network)
            let expected = try data.floats(key)
            for backend in try Self.backends() {
                let result = try backend.forward(try ForwardJob(network: model.network, inputs: inputs, output: output))
                let worst = zip(result.outputs, expected).map { abs($0 - $1) }.max() ?? .infinity
                #expect(result.outputs.count == expected.count && worst <= 1e-5, "\(name) \(key) on \(backend.identity): max |Δ| \(worst)")
                if output == .sequence || reading == .lastStep {
                    // The last level's output at every step: both directions side by side, forward first.
                    let hidden = try data.floats("hidden")
                    let got = Array(result.hidden.prefix(hidden.count))
                    let worstHidden = zip(got, hidden).map { abs($0 - $1) }.max() ?? .infinity
                    #expect(got.count == hidden.count && worstHidden <= 1e-5, "\(name) hidden: \(worstHidden)")
                }
                // Blocks of one sequence give the numbers of one pass (to the rounding of a
                // matrix product over fewer rows).
                let blocks = try backend.outputsInBlocks(try ForwardJob(network: model.network, inputs: inputs, output: output), blockBytes: 1)
                #expect(zip(blocks.outputs, result.outputs).allSatisfy { abs($0 - $1) <= 1e-6 } && blocks.outputs.count == result.outputs.count)
            }
        }
    }

    /// A state dict does not say what a bidirectional last-step readout reads: refused, naming both choices.
    @Test func theReadingIsAskedNeverGuessed() throws {
        do { _ = try Self.load("lstm1", reading: nil); Issue.record("loaded without --bidirectional-readout") } catch {
            let text = "\(error)"
            #expect(text.contains("--bidirectional-readout") && text.contains("final-states") && text.contains("last-step"), "\(text)")
        }
        // At every step there is nothing to choose.
        #expect(throws: Never.self) { try Self.load("lstm1", reading: nil, output: .sequence) }
    }

    /// Ablating every cell of one direction leaves the other: the masked pass clamps each
    /// direction's cells by the layout, and the outputs differ from the intact network's.
    @Test func ablationMasksFollowTheLayout() throws {
        let model = try Self.load("gru1", reading: .finalStates)
        let net = model.network, layout = net.layout
        let data = try SafeTensorsFile(path: Fixtures.path("bidirectional/gru1.data.safetensors"))
        let inputs = try SequenceBatch(count: 5, steps: 7, width: 3, values: try data.floats("inputs"))
        let reverse = layout.range(ofLayer: 0, direction: .reverse)
        let masks = [CellMask.none(cells: net.cellCount), CellMask.ablating(reverse, of: net.cellCount)]
        let result = try CPUBackend(threads: 1).forward(try ForwardJob(network: net, inputs: inputs, output: .last, masks: masks))
        // With the reverse direction at 0, the readout sees the forward half only.
        var forwardOnly = net.readout!
        let h = net.layers[0].hiddenSize
        for o in 0..<forwardOnly.outputs { for j in 0..<h { forwardOnly.V[o * 2 * h + h + j] = 0 } }
        let plain = try RecurrentNetwork(levels: [[net.layers[0], net.layers[1]]], readout: forwardOnly)
        let expected = try CPUBackend(threads: 1).forward(try ForwardJob(network: plain, inputs: inputs, output: .last))
        let k = net.readout!.outputs
        #expect(Array(result.outputs[0..<(5 * k)]) == (try CPUBackend(threads: 1).forward(try ForwardJob(network: net, inputs: inputs, output: .last))).outputs)
        let worst = zip(result.outputs[(5 * k)...], expected.outputs).map { abs($0 - $1) }.max()!
        #expect(worst <= 1e-6, "\(worst)")
    }

    /// Each direction of a bidirectional layer, probed in its own processing time, responds as the
    /// same cells run forward alone (METHOD.md §2); its fixed points are those of the same map
    /// (METHOD.md §8). Checked on the reverse direction of a bidirectional GRU and LSTM.
    @Test(arguments: ["gru1", "lstm1"])
    func eachDirectionIsItsOwnCellsAndMap(name: String) throws {
        let model = try Self.load(name, reading: .finalStates)
        let net = model.network
        var alone = net.layers[1]
        #expect(alone.direction == .reverse)
        alone.direction = .forward
        let single = try RecurrentNetwork(layers: [alone])
        let bank = try StimulusBank.grid(stepAmplitudes: [-0.5, 0.25, 1], frequencies: [0.02, 0.1], sineAmplitudes: [0.5],
                                         preSteps: 10, window: 60)
        func blocks(_ network: RecurrentNetwork) throws -> [ResponseBlock] {
            var out: [ResponseBlock] = []
            _ = try Characterizer.run(try CharacterizationPlan(network: network, bank: bank), on: CPUBackend(threads: 1)) { out.append($0.block) }
            return out
        }
        let both = try blocks(net), reverseAlone = try blocks(single)
        #expect(both.count == 2 && reverseAlone.count == 1)
        // Bit for bit (NaN marks metrics a stimulus has none of).
        #expect(both[1].values.map(\.bitPattern) == reverseAlone[0].values.map(\.bitPattern))
        #expect(both[0].values.map(\.bitPattern) != both[1].values.map(\.bitPattern))
        // Rows: forward cells then reverse cells, named by direction.
        let plan = try CharacterizationPlan(network: net, bank: bank)
        #expect(plan.rows == net.layout.all && plan.rows[4] == CellID(layer: 0, direction: .reverse, index: 0))

        var options = FixedPointOptions()
        options.seeds = 48
        let input = [Double](repeating: 0, count: net.inputSize)
        let bidirectional = try AttractorAnalysis.run(network: net, input: input, data: nil, options: options, pulses: PulseOptions(),
                                                      backend: CPUBackend(threads: 1))
        let forward = try AttractorAnalysis.run(network: single, input: input, data: nil, options: options, pulses: PulseOptions(),
                                                backend: CPUBackend(threads: 1))
        let reverseLayer = try #require(bidirectional.layers.first { $0.direction == .reverse })
        #expect(bidirectional.layers.count == 2 && reverseLayer.index == 0)
        let mine = bidirectional.points[reverseLayer.points], theirs = forward.points
        #expect(mine.count == theirs.count && !theirs.isEmpty)
        for (a, b) in zip(mine, theirs) {
            #expect(a.direction == .reverse && a.isFixed == b.isFixed && a.isStable == b.isStable)
            #expect(zip(a.state, b.state).allSatisfy { abs($0 - $1) <= 1e-9 })
        }
    }

    /// Relevance through both directions (METHOD.md §7): at ε → 0 and bias factor 0, LRP equals
    /// PyTorch's gradient × input of the graph with detached gates and linearised activations,
    /// every direction in its own time, cells at their time steps; plain gradient × input equals
    /// autograd (Tools/bidirectional_relevance_reference.py); with bias factor 1 and ε = 0.05 the
    /// relevance is conserved.
    @Test(arguments: ["lstm1", "lstm2", "gru2", "rnn_tanh2"])
    func relevanceEqualsAutograd(name: String) throws {
        let reference = try SafeTensorsFile(path: Fixtures.path("bidirectional/\(name).relevance.safetensors"))
        let reading = try #require(FinalStateReading(rawValue: reference.metadata["reading"] ?? ""))
        let model = try Self.load(name, reading: reading)
        let data = try SafeTensorsFile(path: Fixtures.path("bidirectional/\(name).data.safetensors"))
        let targets = try reference.integers("target"), n = targets.count
        let inputs = try SequenceBatch(count: n, steps: 7, width: 3, values: Array(try data.floats("inputs").prefix(n * 7 * 3)))
        for backend in try Self.backends() {
            for (rule, keys) in [(RelevanceJob.Rule.lrp(epsilon: 0, biasFactor: 0), ("input", "cells")),
                                 (.gradientTimesInput, ("gradient_input", "gradient_cells"))] {
                let result = try backend.relevance(try RelevanceJob(network: model.network, inputs: inputs, output: .last, targets: targets, rule: rule))
                let scale = max(1e-6, (try reference.floats(keys.0)).map(abs).max()!)
                for (got, key) in [(result.input, keys.0), (result.cellRelevance, keys.1)] {
                    let want = try reference.floats(key)
                    let worst = zip(got, want).map { abs($0 - $1) }.max() ?? .infinity
                    #expect(got.count == want.count && worst <= 1e-4 * max(scale, want.map(abs).max()!),
                            "\(name) \(key) on \(backend.identity): max |Δ| \(worst)")
                }
                let score = zip(result.score, try reference.floats("score")).map { abs($0 - $1) }.max()!
                #expect(score <= 1e-5, "\(name) score: \(score)")
            }
            let lrp = try backend.relevance(try RelevanceJob(network: model.network, inputs: inputs, output: .last, targets: targets,
                                                             rule: .lrp(epsilon: 0.05, biasFactor: 1)))
            for s in 0..<n {
                let total = lrp.input[(s * 21)..<((s + 1) * 21)].reduce(0.0) { $0 + Double($1) } + Double(lrp.rest[s])
                #expect(abs(total - Double(lrp.score[s])) <= 1e-4 * max(1e-3, abs(Double(lrp.score[s]))), "\(name) sequence \(s): Σ \(total) vs \(lrp.score[s])")
            }
        }
    }

    /// Mean ablation's fill values: each cell's mean h over the data, each direction in its own
    /// time, equal PyTorch's output averaged over sequences and steps.
    @Test(arguments: ["gru1", "lstm1", "rnn_relu1"])
    func meanStatesFollowEachDirection(name: String) throws {
        let model = try Self.load(name, reading: .finalStates)
        let data = try SafeTensorsFile(path: Fixtures.path("bidirectional/\(name).data.safetensors"))
        let inputs = try SequenceBatch(count: 5, steps: 7, width: 3, values: try data.floats("inputs"))
        let hidden = try data.floats("hidden"), w = model.network.outputWidth
        let mean = AblationStudy.meanStates(model.network, inputs: inputs).h
        for j in 0..<w {
            let expected = (0..<35).reduce(0.0) { $0 + Double(hidden[$1 * w + j]) } / 35
            #expect(abs(Double(mean[j]) - expected) <= 1e-6, "\(name) cell \(j): \(mean[j]) vs \(expected)")
        }
    }
}
