import CellAuditCore
import CellAuditImport
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
        let reference = try SafeTensorsFile(path: data)
        let expected = try reference.floats("targets")
        let dir = try Fixtures.scratch("beatnet-core")
        for backend in ["cpu"] + (OpenCLTestSupport.enabled ? ["opencl"] : []) {
            let out = dir.appendingPathComponent("outputs-\(backend).safetensors").path
            let r = try CLI.run(["eval", model, "--core", "--data", data, "--backend", backend, "--out", out])
            #expect(r.exitCode == 0, "\(r.stderr)")
            let got = try SafeTensorsFile(path: out).floats("outputs")
            #expect(got.count == expected.count)
            let worst = zip(got, expected).map { abs($0 - $1) }.max() ?? .infinity
            #expect(worst <= 1e-4, "\(backend): max |Δ| \(worst)")
        }
    }

    /// A head of more than one layer: the first Linear's outputs feed another, so the core has no
    /// readout (its outputs are not the model's). The audit still runs, ranks by response
    /// magnitude alone and says so; eval is refused with the reason.
    @Test func aDeeperHeadLeavesTheCoreWithoutReadout() throws {
        let model = Self.torch("front_deep_head.pt")
        let inspect = try CLI.run(["inspect", model, "--core"])
        #expect(inspect.exitCode == 0 && inspect.stdout.contains("readout 0"), "\(inspect.stdout)\(inspect.stderr)")
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
}
