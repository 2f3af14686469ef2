import CellAuditCore
import CellAuditImport
import CellAuditOpenCL
import Foundation
import Testing
import TestSupport

/// LSTMs with an output projection (`proj_size`, issue 29 item 4): h = W_hr (o ⊙ tanh c) is folded
/// into every map that reads h (the layer's own R, the next level's W, the readout), so the cells
/// are the H memory cells and every method runs on them unchanged. PyTorch networks of
/// Tools/make_projection_fixtures.py (1 and 2 layers, bidirectional, bias=False), read from their
/// state dicts and torch.save files, give PyTorch's outputs and its autograd gradient × input.
@Suite struct ProjectionTests {
    static let names = ["proj1", "proj2", "biproj2", "proj1_nobias"]

    static func load(_ name: String, reading: FinalStateReading?, output: OutputMode = .last, torch: Bool = false) throws -> LoadedModel {
        var hints = ModelHints(output: output)
        hints.bidirectionalReadout = name.hasPrefix("bi") ? reading : nil
        return try ModelImport.load(Fixtures.path("projection/\(name).\(torch ? "pt" : "safetensors")"), hints: hints)
    }

    static func backends() throws -> [any ComputeBackend] {
        try OpenCLTestSupport.backends()
    }

    @Test(arguments: names)
    func outputsEqualPyTorch(name: String) throws {
        let data = try SafeTensorsFile(path: Fixtures.path("projection/\(name).data.safetensors"))
        let shape = try data.info("inputs").shape
        let inputs = try SequenceBatch(count: shape[0], steps: shape[1], width: shape[2], values: try data.floats("inputs"))
        for (reading, output, key) in [(FinalStateReading.finalStates, OutputMode.last, "final_states"), (.lastStep, .last, "last_step"),
                                       (nil, .sequence, "sequence")] {
            if !name.hasPrefix("bi") && reading == .lastStep { continue }   // the same numbers without a reverse direction
            let model = try Self.load(name, reading: reading, output: output)
            #expect(model.network.layers.allSatisfy { $0.hiddenSize == 6 && $0.kind == .lstm } && model.metadata["projection"] == "4")
            #expect(try Self.load(name, reading: reading, output: output, torch: true).network == model.network)
            let expected = try data.floats(key)
            for backend in try Self.backends() {
                let result = try backend.forward(try ForwardJob(network: model.network, inputs: inputs, output: output))
                let worst = zip(result.outputs, expected).map { abs($0 - $1) }.max() ?? .infinity
                #expect(result.outputs.count == expected.count && worst <= 1e-5, "\(name) \(key) on \(backend.identity): max |Δ| \(worst)")
            }
        }
    }

    /// Gradient × input of the input values is a property of the function, so the folded network
    /// must give torch autograd's; LRP (bias factor 1) still conserves relevance.
    @Test(arguments: names)
    func gradientTimesInputEqualsAutograd(name: String) throws {
        let data = try SafeTensorsFile(path: Fixtures.path("projection/\(name).data.safetensors"))
        let shape = try data.info("inputs").shape
        let inputs = try SequenceBatch(count: shape[0], steps: shape[1], width: shape[2], values: try data.floats("inputs"))
        let model = try Self.load(name, reading: .finalStates)
        let expected = try data.floats("gradient_input")
        let targets = [Int](repeating: 0, count: shape[0])
        for backend in try Self.backends() {
            let g = try backend.relevance(try RelevanceJob(network: model.network, inputs: inputs, output: .last, targets: targets, rule: .gradientTimesInput))
            let worst = zip(g.input, expected).map { abs($0 - $1) }.max() ?? .infinity
            #expect(g.input.count == expected.count && worst <= 1e-5, "\(name) on \(backend.identity): max |Δ| \(worst)")
            let lrp = try backend.relevance(try RelevanceJob(network: model.network, inputs: inputs, output: .last, targets: targets,
                                                             rule: .lrp(epsilon: 0.001, biasFactor: 1)))
            #expect(lrp.conservationErrors().allSatisfy { $0 <= 1e-4 }, "\(lrp.conservationErrors())")
        }
    }

    /// A projection on one layer but not another, or one that does not shrink h, is refused by name.
    @Test func inconsistentProjectionsAreRefused() throws {
        let file = try SafeTensorsFile(path: Fixtures.path("projection/proj2.safetensors"))
        var writer = SafeTensorsWriter()
        for (key, info) in file.tensors where key != "rnn.weight_hr_l1" {
            try writer.add(key, floats: try file.floats(key), shape: info.shape)
        }
        let path = try Fixtures.scratch("projection").appendingPathComponent("half.safetensors").path
        try writer.write(to: path)
        do { _ = try ModelImport.load(path); Issue.record("a half-projected stack loaded") } catch {
            #expect("\(error)".contains("output projection 'rnn.weight_hr_l1'") && "\(error)".contains("half.safetensors"), "\(error)")
        }
    }
}
