import CellAuditCore
import Foundation
import Testing
import TestSupport

/// A bidirectional PyTorch LSTM saved with torch.save, audited end to end from the command line
/// (issue 29): eval, an audit with data (responses of every directed cell, the ablation check,
/// the dynamics of each direction), named by direction everywhere.
@Suite struct BidirectionalCLITests {
    static let model = Fixtures.path("bidirectional/lstm2.pt")

    /// inputs of the fixture and, as labels, the class PyTorch's outputs (final states) pick.
    static func labeledData() throws -> String {
        try Fixtures.labeled("bidirectional/lstm2.data.safetensors", outputs: "final_states", classes: 3)
    }

    @Test func evalReadsAsPyTorchAndSaysWhereItRan() throws {
        let data = try Self.labeledData()
        let refused = try CLI.run(["eval", Self.model, "--data", data, "--backend", "cpu"])
        #expect(refused.exitCode == 1 && refused.stderr.contains("--bidirectional-readout"), "\(refused.stderr)")
        let cpu = try CLI.run(["eval", Self.model, "--data", data, "--bidirectional-readout", "final-states", "--backend", "cpu"])
        #expect(cpu.exitCode == 0 && cpu.stdout.contains("accuracy: 1.0000"), "\(cpu.stdout)\(cpu.stderr)")
        if OpenCLTestSupport.enabled {
            let cl = try CLI.run(["eval", Self.model, "--data", data, "--bidirectional-readout", "final-states", "--backend", "opencl"])
            #expect(cl.exitCode == 0 && cl.stdout.contains("accuracy: 1.0000"), "\(cl.stdout)\(cl.stderr)")
            // The kernels run both directions: nothing of the forward ran elsewhere.
            #expect(cl.stdout.contains("backend: opencl") && !cl.stdout.contains("ran on"), "\(cl.stdout)")
        }
    }

    @Test func anAuditWithDataNamesEveryDirection() throws {
        let data = try Self.labeledData()
        let out = try Fixtures.scratch("bidirectional-audit").appendingPathComponent("audit")
        let r = try CLI.run(["audit", Self.model, "--data", data, "--bidirectional-readout", "final-states", "--out", out.path,
                             "--backend", "cpu", "--attractor-seeds", "32", "--quiet"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        let cells = try String(contentsOf: out.appendingPathComponent("cells.csv"), encoding: .utf8).split(separator: "\n")
        #expect(cells.first?.hasPrefix("layer,direction,cell,rank") == true)
        #expect(cells.count == 21 && cells.filter { $0.contains(",reverse,") }.count == 10)
        let ablation = try String(contentsOf: out.appendingPathComponent("ablation.csv"), encoding: .utf8).split(separator: "\n")
        #expect(ablation.first?.hasPrefix("layer,direction,cell,damage") == true && ablation.count == 21)
        let responses = try SafeTensorsFile(path: out.appendingPathComponent("responses.safetensors").path)
        #expect(try responses.integers("direction") == [Int](repeating: 0, count: 5) + [Int](repeating: 1, count: 5)
                + [Int](repeating: 0, count: 5) + [Int](repeating: 1, count: 5))
        let points = try String(contentsOf: out.appendingPathComponent("attractors/fixed_points.csv"), encoding: .utf8)
        #expect(points.hasPrefix("index,layer,direction,kind") && points.contains(",reverse,"))
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("summary.json"))) as? [String: Any]
        #expect((summary?["accuracy"] as? Double) == 1.0)
        let report = try String(contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
        #expect(report.contains("<th>direction</th>") && report.contains("<td>reverse</td>"))
        #expect(cells.first?.contains("lrp_rank") == true)
    }

    /// explain runs through both directions and names them; the audit's rankings include LRP.
    @Test func explainNamesDirections() throws {
        let data = try Self.labeledData()
        let out = try Fixtures.scratch("bidirectional-explain").appendingPathComponent("explain")
        let r = try CLI.run(["explain", Self.model, "--data", data, "--bidirectional-readout", "final-states", "--out", out.path,
                             "--backend", "cpu", "--quiet"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        let cells = try String(contentsOf: out.appendingPathComponent("cells.csv"), encoding: .utf8).split(separator: "\n")
        #expect(cells.first == "layer,direction,cell,mean_abs_relevance,rank" && cells.count == 21)
        let relevance = try SafeTensorsFile(path: out.appendingPathComponent("relevance.safetensors").path)
        #expect(try relevance.integers("direction").filter { $0 == 1 }.count == 10)
    }
}
