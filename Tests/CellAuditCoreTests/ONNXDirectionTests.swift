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
                      ("lstm_fwd_rev", .finalStates), ("rnn_rev_sequence", .lastStep)])
    func reverseNodesEqualOnnxruntime(name: String, reading: FinalStateReading) throws {
        let model = try ModelImport.load(Self.path("\(name).onnx"))
        #expect(model.network.layers.last?.direction == .reverse)
        if model.output == .last { #expect(model.network.readout?.reading == reading) }
        let data = try SafeTensorsFile(path: Self.path("\(name).data.safetensors"))
        let shape = try data.info("inputs").shape
        let inputs = try SequenceBatch(count: shape[0], steps: shape[1], width: shape[2], values: try data.floats("inputs"))
        let expected = try data.floats("outputs")
        let backends: [any ComputeBackend] = [CPUBackend(threads: 2)]
            + (OpenCLTestSupport.enabled ? [try OpenCLBackend(device: try OpenCLTestSupport.device())] : [])
        for backend in backends {
            let got = try backend.forward(try ForwardJob(network: model.network, inputs: inputs, output: model.output)).outputs
            let worst = zip(got, expected).map { abs($0 - $1) }.max() ?? .infinity
            #expect(got.count == expected.count && worst <= 1e-5, "\(name) on \(backend.identity): max |Δ| \(worst)")
        }
    }

    /// Tools/make_onnx_fixtures.py's reverse node, made when such nodes were refused, now reads
    /// as one reverse layer; a bidirectional node is still refused by name.
    @Test func theEarlierRefusalFixturesReadAsTheyShould() throws {
        let reverse = try ModelImport.load(Fixtures.path("onnx/refuse_reverse.onnx"))
        #expect(reverse.network.layers.map(\.direction) == [.reverse])
        do { _ = try ModelImport.load(Fixtures.path("onnx/refuse_bidirectional.onnx")); Issue.record("bidirectional node loaded") } catch {
            #expect("\(error)".contains("direction 'bidirectional'"), "\(error)")
        }
    }
}
