import CellAuditCore
import CellAuditImport
import CellAuditOpenCL
import Foundation
import Testing
import TestSupport

private func onnxBackends() throws -> [any ComputeBackend] {
    var list: [any ComputeBackend] = [CPUBackend()]
    if OpenCLTestSupport.enabled { list.append(try OpenCLBackend(device: try OpenCLTestSupport.device())) }
    return list
}

/// The largest |a − b| over two arrays of the same length.
private func worst(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "\(a.count) values against \(b.count)")
    return zip(a, b).map { abs($0 - $1) }.max() ?? 0
}

@Suite("ONNX read natively (Tools/make_onnx_fixtures.py)")
struct ONNXTests {
    /// Every model torch.onnx.export writes for an LSTM, a GRU and an RNN with a Linear readout,
    /// 1 and 2 layers, with the TorchScript exporter and the dynamo one (which unrolls nn.RNN over
    /// its steps: read as the RNN it is), and the hand-built and external-data variants.
    static let models = ["lstm1_ts", "lstm2_ts", "gru1_ts", "gru2_ts", "rnn1_ts", "rnn2_ts",
                         "lstm1_dynamo", "lstm2_dynamo", "gru1_dynamo", "gru2_dynamo", "rnn1_dynamo", "rnn2_dynamo",
                         "lstm1_seq_ts", "rnn_relu1_ts", "gru1_external", "lstm1_batch_major", "lstm1_time_major",
                         // Found by review: static-shape dynamo exports, and fc(h_n[-1]) of 2-layer stacks.
                         "lstm2_dynamo_static", "gru2_dynamo_static", "rnn2_dynamo_static",
                         "lstm2_last_state_ts", "lstm2_last_state_dynamo", "gru2_last_state_ts", "gru2_last_state_dynamo"]

    @Test("Read natively, the network equals onnxruntime within 1e-4 on both backends", arguments: models)
    func equalsOnnxruntime(_ name: String) throws {
        let loaded = try ONNXModel.load(Fixtures.path("onnx/\(name).onnx"))
        let data = try Dataset.load(Fixtures.path("onnx/inputs.safetensors"))
        let golden = try SafeTensorsFile(path: Fixtures.path("onnx/golden.safetensors")).floats(name)
        #expect(loaded.output == (name.contains("seq") ? .sequence : .last))
        #expect(loaded.network.kind == (name.hasPrefix("lstm") ? .lstm : name.hasPrefix("gru") ? .gru : name.hasPrefix("rnn_relu") ? .rnnReLU : .rnnTanh))
        #expect(loaded.network.layers.count == (name.contains("2_") ? 2 : 1))
        #expect(golden.count == data.inputs.count * (loaded.output == .sequence ? data.inputs.steps : 1) * 3)
        for backend in try onnxBackends() {
            let result = try backend.forward(try ForwardJob(network: loaded.network, inputs: data.inputs, output: loaded.output))
            let d = worst(result.outputs, golden)
            #expect(d <= 1e-4, "\(name) on \(backend.identity): off by \(d)")
        }
    }

    @Test("The shared case torch-onnx-export equals PyTorch's outputs within 1e-4")
    func sharedTorchExport() throws {
        let loaded = try ONNXModel.load(Fixtures.path("cases/onnx/torch-onnx-export.onnx"))
        let data = try Dataset.load(Fixtures.path("cases/onnx/torch-onnx-export.data.safetensors"), requireAnswers: false)
        let want = try SafeTensorsFile(path: Fixtures.path("cases/onnx/torch-onnx-export.torch_out.safetensors")).floats("outputs")
        for backend in try onnxBackends() {
            let result = try backend.forward(try ForwardJob(network: loaded.network, inputs: data.inputs, output: loaded.output))
            #expect(worst(result.outputs, want) <= 1e-4, "on \(backend.identity)")
        }
    }

    /// One refusal per kind of graph CellAudit cannot represent, each naming the node and what it
    /// sets: made with torch where torch can build it, with onnx.helper where torch never writes it.
    @Test("What CellAudit cannot represent is refused in one line naming the node and the attribute", arguments: [
        ("onnx/refuse_op_before", "'/proj/MatMul' (MatMul) comes before the first recurrent node"),
        ("onnx/refuse_softmax_after", "'/Softmax' (Softmax) follows the readout"),
        ("onnx/refuse_first_step", "'/Gather' (Gather) reads step 0"),
        ("onnx/refuse_two_heads", "(Gemm) is a second linear map"),
        ("onnx/refuse_reads_memory", "memory output Y_c"),
        ("onnx/refuse_state_input", "3 inputs ('x', 'h0', 'c0')"),
        ("onnx/refuse_clip", "'lstm' (LSTM) sets attribute 'clip'"),
        ("onnx/refuse_input_forget", "'lstm' (LSTM) sets attribute 'input_forget'"),
        ("onnx/refuse_activations", "'lstm' (LSTM) has attribute 'activations'"),
        ("onnx/refuse_initial_h", "'lstm' (LSTM) takes input 'initial_h' that is not zero"),
        ("onnx/refuse_unrolled_untied", "unrolled over a fixed number of steps that is not one RNN layer"),
        ("onnx/refuse_unrolled_short", "unrolled over 9 steps, but the input has 11 steps"),
        ("onnx/refuse_bias_column", "bias C has shape [3, 1]"),
        ("onnx/refuse_cast_half", "'to_half' (Cast) casts the data to ONNX type 10"),
        ("onnx/refuse_huge_dims", "too large to hold"),
        ("onnx/refuse_swapped_names", "'scramble' (Reshape) reshapes the data in a way that mixes"),
        ("cases/onnx/onnx-clip", "sets attribute 'clip'"),
        ("cases/onnx/onnx-input-forget", "sets attribute 'input_forget'"),
        ("cases/onnx/onnx-input-projection-square", "(MatMul) comes before the first recurrent node"),
    ])
    func refusals(_ name: String, _ named: String) throws {
        do {
            _ = try ONNXModel.load(Fixtures.path("\(name).onnx"))
            Issue.record("\(name) was read")
        } catch let error as FormatError {
            let text = "\(error)"
            #expect(text.contains(named), "\(text)")
            #expect(text.contains((name as NSString).lastPathComponent + ".onnx"), "\(text)")
            #expect(!text.contains("\n"))
        }
    }

    @Test("Truncated, empty and foreign files are refused as unreadable ONNX, never a crash")
    func malformed() throws {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("onnx/lstm2_ts.onnx")))
        for cut in [0, 1, 7, 100, bytes.count / 2, bytes.count - 3] {
            #expect(throws: FormatError.self) { try ONNXModel.load(data: bytes.prefix(cut), path: "cut.onnx") }
        }
        let safetensors = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("digits_lstm8.safetensors")))
        #expect(throws: FormatError.self) { try ONNXModel.load(data: safetensors, path: "renamed.onnx") }
        var noise = SeededGenerator(seed: 5)
        for _ in 0..<200 {
            let junk = Data((0..<Int(noise.next() % 300)).map { _ in UInt8(truncatingIfNeeded: noise.next()) })
            #expect(throws: FormatError.self) { try ONNXModel.load(data: junk, path: "junk.onnx") }
        }
    }
}
