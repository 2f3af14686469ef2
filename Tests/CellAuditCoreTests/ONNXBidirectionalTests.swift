import CellAuditCore
import CellAuditImport
import CellAuditOpenCL
import Foundation
import Testing
import TestSupport

/// ONNX recurrent nodes with direction="bidirectional" (issue 30, item 3; issue 29, item 1): a
/// node is a level of a forward and a reverse layer; the exporter's Transpose and Reshape that
/// merge the direction axis into the features, and its Concat/Gather/Concat of h_n for
/// `cat(h_n[-2], h_n[-1])`, are followed. Graphs of Tools/make_onnx_bidirectional_fixtures.py
/// (torch.onnx.export and onnx.helper) give onnxruntime's outputs within 1e-5 on both backends.
@Suite struct ONNXBidirectionalTests {
    static func path(_ name: String) -> String { Fixtures.path("onnx_bidirectional/\(name)") }

    static let torchGraphs: [String] = ["lstm", "gru", "rnn_tanh", "rnn_relu"].flatMap { kind in
        [1, 2].flatMap { layers in ["final", "last", "seq"].map { "torch_\(kind)_x\(layers)_\($0)" } }
    }

    @Test(arguments: torchGraphs + ["helper_lstm_final", "helper_gru_lens4"])
    func bidirectionalNodesEqualOnnxruntime(name: String) throws {
        let model = try ModelImport.load(Self.path("\(name).onnx"))
        let net = model.network
        #expect(net.levels.allSatisfy { $0.map { net.layers[$0].direction } == [.forward, .reverse] }, "\(name): \(net.levels)")
        if name.hasSuffix("_x2_final") || name.hasSuffix("_x1_final") || name.hasPrefix("helper") {
            #expect(net.readout?.reading == .finalStates)
        } else if name.hasSuffix("_last") {
            #expect(net.readout?.reading == .lastStep)
        } else {
            #expect(model.output == .sequence)
        }
        #expect(net.layers.first?.kind == (name.contains("lstm") ? .lstm : name.contains("gru") ? .gru : name.contains("relu") ? .rnnReLU : .rnnTanh))
        let data = try SafeTensorsFile(path: Self.path("\(name).data.safetensors"))
        let shape = try data.info("inputs").shape
        var dataset = Dataset(inputs: try SequenceBatch(count: shape[0], steps: shape[1], width: shape[2], values: try data.floats("inputs")))
        try dataset.prepare(for: model)
        let expected = try data.floats("outputs")
        let backends = try OpenCLTestSupport.backends()
        for backend in backends {
            let got = try backend.forward(try ForwardJob(network: net, inputs: dataset.inputs, output: model.output)).outputs
            let worst = zip(got, expected).map { abs($0 - $1) }.max() ?? .infinity
            #expect(got.count == expected.count && worst <= 1e-5, "\(name) on \(backend.identity): max |Δ| \(worst)")
        }
    }

    /// A readout of one direction's final state (half a level), and one that keeps the
    /// directions on an axis of their own, are refused by name.
    @Test(arguments: [("refuse_top_reverse_only", "of h_n alone"), ("refuse_directions_split", "directions on an axis of their own"),
                      ("refuse_lens_input_last_step", "ONNX zeroes Y past each sequence's length"),
                      ("refuse_swapped_final_states", "the reverse direction's final state before the forward one")])
    func partialReadingsAreRefused(name: String, expected: String) throws {
        do { _ = try ModelImport.load(Self.path("\(name).onnx")); Issue.record("\(name) loaded") } catch {
            #expect("\(error)".contains(expected) && "\(error)".contains("\(name).onnx"), "\(error)")
        }
    }

    /// torch's export of nn.Embedding (a Gather of the table's rows by the int64 ids input) is
    /// read as the model's token embedding, and a sequence_lens fed from a graph input stands for
    /// the dataset's lengths: both give onnxruntime's outputs on both backends, the data read as
    /// a user's would be (ids [N, T]; inputs with `lengths` [N]).
    @Test(arguments: ["torch_emb_bilstm_final", "helper_bigru_lens_input", "helper_bigru_lens_int64"])
    func tokenIdsAndLengthsInputsEqualOnnxruntime(name: String) throws {
        let model = try ModelImport.load(Self.path("\(name).onnx"))
        var data = try Dataset.load(Self.path("\(name).data.safetensors"), requireAnswers: false)
        if name.contains("emb") {
            #expect(model.embedding?.vocabularySize == 20 && model.embedding?.width == 4 && data.tokens != nil)
        } else {
            #expect(model.metadata["lengths_input"] == "lens" && data.inputs.lengths == (name.hasSuffix("int64") ? [2, 6, 4, 5] : [6, 3, 5, 1]))
        }
        try data.prepare(for: model)
        let expected = try SafeTensorsFile(path: Self.path("\(name).data.safetensors")).floats("outputs")
        let backends = try OpenCLTestSupport.backends()
        for backend in backends {
            let got = try backend.forward(try ForwardJob(network: model.network, inputs: data.inputs, output: model.output)).outputs
            let worst = zip(got, expected).map { abs($0 - $1) }.max() ?? .infinity
            #expect(got.count == expected.count && worst <= 1e-5, "\(name) on \(backend.identity): max |Δ| \(worst)")
        }
    }

    /// A fuzzer finding: a Transpose writing a value an earlier node already wrote made the walk
    /// follow a cycle for ever. A graph out of ONNX's topological order, or naming a value twice,
    /// is refused before any walk.
    @Test func aGraphThatIsNotTopologicallyOrderedIsRefusedAtOnce() throws {
        do { _ = try ONNXModel.load(Fixtures.path("fuzz/onnx_value_written_twice.onnx")); Issue.record("loaded") } catch let error as FormatError {
            #expect(error.problem.contains("names each value once"), "\(error)")
        }
    }
}
