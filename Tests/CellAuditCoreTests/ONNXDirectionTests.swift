import CellAuditCore
import CellAuditImport
import CellAuditOpenCL
import Foundation
import Testing
import TestSupport

/// ONNX recurrent nodes with direction="reverse" (issue 30, item 3, in part): each reads steps
/// T−1…0, its Y in time order, its Y_h the state after step 0; graphs of
/// Tools/make_onnx_direction_fixtures.py give onnxruntime's outputs within 1e-5 on both backends.
@Suite struct ONNXDirectionTests {
    static func path(_ name: String) -> String { Fixtures.path("onnx_direction/\(name)") }

    @Test(arguments: [("lstm_rev_last_state", FinalStateReading.finalStates), ("gru_rev_last_step", .lastStep),
                      ("lstm_fwd_rev", .finalStates), ("rnn_rev_sequence", .lastStep), ("lstm_rev_lens4", .finalStates)])
    func reverseNodesEqualOnnxruntime(name: String, reading: FinalStateReading) throws {
        let model = try ModelImport.load(Self.path("\(name).onnx"))
        #expect(model.network.layers.last?.direction == .reverse)
        if model.output == .last { #expect(model.network.readout?.reading == reading) }
        let data = try SafeTensorsFile(path: Self.path("\(name).data.safetensors"))
        let shape = try data.info("inputs").shape
        var dataset = Dataset(inputs: try SequenceBatch(count: shape[0], steps: shape[1], width: shape[2], values: try data.floats("inputs")))
        try dataset.prepare(for: model)   // a constant sequence_lens becomes the data's lengths
        let inputs = dataset.inputs
        let expected = try data.floats("outputs")
        let backends = try OpenCLTestSupport.backends()
        for backend in backends {
            let got = try backend.forward(try ForwardJob(network: model.network, inputs: inputs, output: model.output)).outputs
            let worst = zip(got, expected).map { abs($0 - $1) }.max() ?? .infinity
            #expect(got.count == expected.count && worst <= 1e-5, "\(name) on \(backend.identity): max |Δ| \(worst)")
        }
    }

    /// A constant sequence_lens that gives every sequence the same length is honoured (the shared
    /// case onnx-sequence-lens: 16 × 5 of 7 steps, equal to its onnxruntime outputs); one that
    /// depends on the batch position is refused by name.
    @Test func aUniformConstantSequenceLensIsHonoured() throws {
        let model = try ModelImport.load(Fixtures.path("cases/onnx/onnx-sequence-lens.onnx"))
        #expect(model.sequenceLength == 5)
        var data = try Dataset.load(Fixtures.path("cases/onnx/onnx-sequence-lens.data.safetensors"))
        try data.prepare(for: model)
        #expect(data.inputs.lengths == [Int](repeating: 5, count: 16))
        let expected = try SafeTensorsFile(path: Fixtures.path("cases/onnx/onnx-sequence-lens.ort_out.safetensors")).floats("outputs")
        let got = try CPUBackend(threads: 1).forward(try ForwardJob(network: model.network, inputs: data.inputs, output: model.output)).outputs
        #expect(got.count == expected.count && zip(got, expected).allSatisfy { abs($0 - $1) <= 1e-4 })
        #expect(try ModelImport.load(Fixtures.path("onnx/refuse_sequence_lens.onnx")).sequenceLength != nil)
        do { _ = try ModelImport.load(Self.path("refuse_varying_lens.onnx")); Issue.record("varying sequence_lens loaded") } catch {
            #expect("\(error)".contains("sequence_lens") && "\(error)".contains("position in the batch"), "\(error)")
        }
    }

    /// Tools/make_onnx_fixtures.py's reverse and bidirectional nodes, made when such nodes were
    /// refused, now read as one reverse layer and as a level of both directions.
    @Test func theEarlierRefusalFixturesReadAsTheyShould() throws {
        let reverse = try ModelImport.load(Fixtures.path("onnx/refuse_reverse.onnx"))
        #expect(reverse.network.layers.map(\.direction) == [.reverse])
        let both = try ModelImport.load(Fixtures.path("onnx/refuse_bidirectional.onnx"))
        #expect(both.network.levels.count == 1 && both.network.layers.map(\.direction) == [.forward, .reverse])
        #expect(both.network.readout?.reading == .lastStep)
    }
}
