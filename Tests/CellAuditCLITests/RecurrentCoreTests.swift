import CellAuditCore
import CellAuditImport
import CellAuditOpenCL
import Foundation
import Testing
import TestSupport

/// `--core` (issue 30, item 4): the recurrent stack of a bigger model, and the linear map that
/// reads it, audited out of the whole file; everything else listed as ignored, nothing dropped
/// silently.
@Suite struct RecurrentCoreTests {
    static func torch(_ name: String) -> String { Fixtures.path("torch/\(name)") }

    /// BeatNet 1.1.3's beat tracker as its wheel ships it (Tools/fetch_real_models.sh, pinned by
    /// sha256): a Conv1d + Linear front end, a 2-layer 150-cell LSTM and a Linear head. With
    /// --core its LSTM and head give PyTorch's own outputs at every step on both backends
    /// (references by Tools/make_real_model_references.py); without --core it is refused naming
    /// the front end and --core.
    @Test func aRealBeatTrackersCoreEqualsPyTorch() throws {
        let model = Fixtures.path("real/beatnet_model_1_weights.pt")
        try #require(FileManager.default.fileExists(atPath: model),
                     "the real model is not here: run `bash Tools/fetch_real_models.sh` (Tools/test.sh does)")
        let data = Fixtures.path("real_refs/beatnet_core.safetensors")
        let refused = try CLI.run(["inspect", model])
        #expect(refused.exitCode == 1 && refused.stderr.contains("conv1.weight") && refused.stderr.contains("--core"), "\(refused.stderr)")
        let inspect = try CLI.run(["inspect", model, "--core"])
        #expect(inspect.exitCode == 0, "\(inspect.stderr)")
        #expect(inspect.stdout.contains("cells 150 → 150 → readout 3"))
        for tensor in ["conv1.bias [2]", "conv1.weight [2, 1, 10]", "linear0.bias [150]", "linear0.weight [150, 262]"] {
            #expect(inspect.stdout.contains(tensor), "\(tensor)")
        }
        try Self.expectCoreEvalEqualsTargets(model: model, data: data, tolerance: 1e-4, scratch: "beatnet-core")
    }

    /// A head of more than one layer: the first Linear's outputs feed another, so the core has no
    /// readout (its outputs are not the model's). The audit still runs, ranks by response
    /// magnitude alone and says so; eval is refused with the reason.
    @Test func aDeeperHeadLeavesTheCoreWithoutReadout() throws {
        let model = Self.torch("front_deep_head.pt")
        let inspect = try CLI.run(["inspect", model, "--core"])
        #expect(inspect.exitCode == 0 && inspect.stdout.contains("no readout"), "\(inspect.stdout)\(inspect.stderr)")
        #expect(inspect.stdout.contains("'fc1.'") && inspect.stdout.contains("'fc2.weight'"), "\(inspect.stdout)")
        for tensor in ["conv1.weight", "linear0.weight", "fc1.weight", "fc2.bias"] { #expect(inspect.stdout.contains(tensor)) }
        let out = try Fixtures.scratch("deep-head").appendingPathComponent("audit")
        let audit = try CLI.run(["audit", model, "--core", "--out", out.path, "--backend", "cpu", "--quiet"])
        #expect(audit.exitCode == 0, "\(audit.stderr)")
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("summary.json"))) as? [String: Any]
        #expect((summary?["ranker_formula"] as? String)?.hasPrefix("m_j") == true, "\(summary ?? [:])")
        #expect((summary?["ignored"] as? [String])?.count == 8)
        let report = try String(contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
        #expect(report.contains("response magnitude m<sub>j</sub> over the bank alone") && report.contains("ignored (--core)"))
        // The ranking is m_j: the cells.csv scores equal the response magnitudes.
        let rows = try String(contentsOf: out.appendingPathComponent("cells.csv"), encoding: .utf8).split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false) }
        let header = rows[0].map(String.init)
        let score = try #require(header.firstIndex(of: "score")), magnitude = try #require(header.firstIndex(of: "response_magnitude"))
        for row in rows.dropFirst() { #expect(Double(row[score]) == Double(row[magnitude]), "\(row)") }
        let dataset = try Fixtures.scratch("deep-head-data").appendingPathComponent("d.safetensors").path
        var writer = SafeTensorsWriter()
        try writer.add("inputs", floats: [Float](repeating: 0.1, count: 2 * 5 * 3), shape: [2, 5, 3])
        try writer.add("labels", int64s: [0, 1], shape: [2])
        try writer.write(to: dataset)
        let eval = try CLI.run(["eval", model, "--core", "--data", dataset, "--backend", "cpu"])
        #expect(eval.exitCode == 1 && eval.stderr.contains("no readout") && eval.stderr.contains("'fc2.weight'"), "\(eval.stderr)")
    }

    /// A 1×1 Conv1d head is the same linear map as a Linear: --core reads it as the readout, and the
    /// network equals its twin saved with the map as a Linear.
    @Test func aOneByOneConvolutionIsALinearReadout() throws {
        let core = try ModelImport.load(Self.torch("conv_head.pt"), hints: { var h = ModelHints(); h.core = true; return h }())
        let twin = try ModelImport.load(Self.torch("conv_head.safetensors"))
        #expect(core.network == twin.network && core.ignored.isEmpty && core.readoutNote == nil)
        #expect(throws: (any Error).self) { try ModelImport.load(Self.torch("conv_head.pt")) }
    }

    static func onnxCore(_ name: String) -> String { Fixtures.path("onnx_core/\(name)") }

    /// `cellaudit eval MODEL --core --data DATA` on each backend writes outputs equal to DATA's
    /// `targets` (a framework's own outputs of the same core) within `tolerance`.
    static func expectCoreEvalEqualsTargets(model: String, data: String, tolerance: Float, scratch: String) throws {
        let expected = try SafeTensorsFile(path: data).floats("targets")
        let dir = try Fixtures.scratch(scratch)
        for backend in ["cpu"] + (OpenCLTestSupport.enabled ? ["opencl"] : []) {
            let out = dir.appendingPathComponent("outputs-\(backend).safetensors").path
            let r = try CLI.run(["eval", model, "--core", "--data", data, "--backend", backend, "--out", out])
            #expect(r.exitCode == 0, "\(r.stderr)")
            let got = try SafeTensorsFile(path: out).floats("outputs")
            let worst = zip(got, expected).map { abs($0 - $1) }.max() ?? .infinity
            #expect(got.count == expected.count && worst <= tolerance, "\(model) on \(backend): max |Δ| \(worst)")
        }
    }

    /// --core on ONNX graphs (Tools/make_onnx_core_fixtures.py, torch.onnx.export): a Conv1d
    /// front end is left out and listed, the LSTM stack reads the data at its own input, and the
    /// Linear head at every step gives PyTorch's own outputs of the same core on both backends.
    /// Without --core the graph is refused naming the front end and --core.
    @Test func anONNXCoreEqualsPyTorchOnTheSameCore() throws {
        let model = Self.onnxCore("conv_lstm_linear.onnx"), data = Self.onnxCore("conv_lstm_linear.core.safetensors")
        let refused = try CLI.run(["inspect", model])
        #expect(refused.exitCode == 1 && refused.stderr.contains("'/conv/Conv' (Conv)") && refused.stderr.contains("--core"), "\(refused.stderr)")
        let inspect = try CLI.run(["inspect", model, "--core"])
        #expect(inspect.exitCode == 0 && inspect.stdout.contains("input 6 → cells 5 → 5 → readout 3 (sequence step)"), "\(inspect.stdout)\(inspect.stderr)")
        #expect(inspect.stdout.contains("node '/conv/Conv' (Conv)") && inspect.stdout.contains("graph input 'x'"), "\(inspect.stdout)")
        try Self.expectCoreEvalEqualsTargets(model: model, data: data, tolerance: 1e-5, scratch: "onnx-core")
    }

    /// A head that computes on the linear map's outputs (Linear → ReLU → Linear after a
    /// bidirectional GRU; Linear → sigmoid after an LSTM): the core has no readout, says why, and
    /// still audits (ranked by response magnitude alone).
    @Test(arguments: [("conv_bigru_deep_head.onnx", "'/Relu_1' (Relu) computes on its outputs"),
                      ("lstm_linear_sigmoid.onnx", "'/Sigmoid' (Sigmoid) computes on its outputs")])
    func anONNXHeadLeavesTheCoreWithoutReadout(name: String, reason: String) throws {
        let loaded = try ModelImport.load(Self.onnxCore(name), hints: { var h = ModelHints(); h.core = true; return h }())
        #expect(loaded.network.readout == nil && loaded.readoutNote?.contains(reason) == true, "\(loaded.readoutNote ?? "")")
        let out = try Fixtures.scratch("onnx-head-\(name)").appendingPathComponent("audit")
        let audit = try CLI.run(["audit", Self.onnxCore(name), "--core", "--out", out.path, "--backend", "cpu", "--quiet"])
        #expect(audit.exitCode == 0, "\(audit.stderr)")
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("summary.json"))) as? [String: Any]
        #expect((summary?["ranker_formula"] as? String)?.hasPrefix("m_j") == true)
    }

    /// silero-vad 6.2.3's voice-activity detector as its wheel ships it (Tools/fetch_real_models.sh,
    /// pinned by sha256): an STFT and Conv1d front end, one 128-cell LSTM node whose initial state
    /// comes from graph inputs, and a ReLU → 1×1 Conv → sigmoid head. With --core the LSTM is read
    /// (the state inputs taken as the zero state, the head leaving it without readout, every node
    /// left out listed); its states at every step equal onnxruntime's run of the node alone
    /// (Tools/make_real_model_references.py) on both backends, read through an identity readout.
    @Test func aRealVoiceActivityDetectorsCoreEqualsOnnxruntime() throws {
        let model = Fixtures.path("real/silero_vad_16k_sequence.onnx")
        try #require(FileManager.default.fileExists(atPath: model),
                     "the real model is not here: run `bash Tools/fetch_real_models.sh` (Tools/test.sh does)")
        let refused = try CLI.run(["inspect", model])
        #expect(refused.exitCode == 1 && refused.stderr.contains("--core"), "\(refused.stderr)")
        let loaded = try ModelImport.load(model, hints: { var h = ModelHints(); h.core = true; return h }())
        let net = loaded.network
        #expect(net.layers.count == 1 && net.inputSize == 128 && net.layers[0].hiddenSize == 128 && net.layers[0].kind == .lstm)
        #expect(net.readout == nil && loaded.readoutNote?.contains("'/Relu_4' (Relu)") == true, "\(loaded.readoutNote ?? "")")
        for part in ["node '/encoder.0/Conv' (Conv)", "node '/stft/Conv' (Conv)", "node '/output/Conv' (Conv)", "node '/Sigmoid' (Sigmoid)"] {
            #expect(loaded.ignored.contains(part), "\(part) not in \(loaded.ignored)")
        }
        #expect(loaded.ignored.contains { $0.hasPrefix("graph input 'h'") && $0.contains("zero state") })
        let reference = try SafeTensorsFile(path: Fixtures.path("real_refs/silero_vad_core.safetensors"))
        let shape = try reference.info("inputs").shape
        let inputs = try SequenceBatch(count: shape[0], steps: shape[1], width: shape[2], values: try reference.floats("inputs"))
        let expected = try reference.floats("hidden")
        var identity = [Float](repeating: 0, count: 128 * 128)
        for i in 0..<128 { identity[i * 128 + i] = 1 }
        let probe = try RecurrentNetwork(levels: [[net.layers[0]]], readout: .init(V: identity, a: [Float](repeating: 0, count: 128)))
        let backends = try OpenCLTestSupport.backends()
        for backend in backends {
            let got = try backend.forward(try ForwardJob(network: probe, inputs: inputs, output: .sequence)).outputs
            let worst = zip(got, expected).map { abs($0 - $1) }.max() ?? .infinity
            #expect(got.count == expected.count && worst <= 1e-5, "\(backend.identity): max |Δ| \(worst)")
        }
        let out = try Fixtures.scratch("silero-core").appendingPathComponent("audit")
        let audit = try CLI.run(["audit", model, "--core", "--out", out.path, "--backend", "cpu", "--quiet"])
        #expect(audit.exitCode == 0, "\(audit.stderr)")
    }
}
