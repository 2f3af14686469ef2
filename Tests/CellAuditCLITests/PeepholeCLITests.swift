import CellAuditCore
import Foundation
import Testing
import TestSupport

/// A stacked peephole LSTM read from ONNX (issue 29 item 4), audited end to end from the command
/// line on both backends: responses of the peephole cells, the ablation check, relevance and the
/// dynamics of each layer's map, with inspect naming the peepholes.
@Suite struct PeepholeCLITests {
    static let model = Fixtures.path("onnx_peephole/helper_lstm_peephole_x2_final.onnx")

    /// The fixture's inputs with, as labels, the class onnxruntime's outputs pick.
    static func labeledData() throws -> String {
        try Fixtures.labeled("onnx_peephole/helper_lstm_peephole_x2_final.data.safetensors", outputs: "outputs", classes: 2)
    }

    @Test func inspectNamesThePeepholes() throws {
        let r = try CLI.run(["inspect", Self.model, "--json"])
        let info = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        #expect(r.exitCode == 0 && info?["peephole"] as? Bool == true && info?["parameters"] as? Int == 377, "\(r.stdout)\(r.stderr)")
        let plain = try CLI.run(["inspect", Self.model])
        #expect(plain.stdout.contains("lstm with peepholes"), "\(plain.stdout)")
    }

    @Test(arguments: ["cpu", "opencl"])
    func anAuditWithDataRunsOnEveryPart(backend: String) throws {
        guard backend == "cpu" || OpenCLTestSupport.enabled else { return }
        let data = try Self.labeledData()
        let out = try Fixtures.scratch("peephole-audit-\(backend)").appendingPathComponent("audit")
        let r = try CLI.run(["audit", Self.model, "--data", data, "--out", out.path, "--backend", backend, "--attractor-seeds", "32", "--quiet"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        let cells = try String(contentsOf: out.appendingPathComponent("cells.csv"), encoding: .utf8).split(separator: "\n")
        #expect(cells.count == 10 && cells.first?.contains("lrp_rank") == true, "\(cells)")
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("summary.json"))) as? [String: Any]
        #expect((summary?["accuracy"] as? Double) == 1.0, "\(String(describing: summary))")
        let points = try String(contentsOf: out.appendingPathComponent("attractors/fixed_points.csv"), encoding: .utf8).split(separator: "\n")
        #expect(points.count > 1, "no fixed point found")
        let explain = try CLI.run(["explain", Self.model, "--data", data, "--out", out.deletingLastPathComponent().appendingPathComponent("explain").path,
                                   "--backend", backend, "--quiet"])
        #expect(explain.exitCode == 0, "\(explain.stderr)")
    }
}
