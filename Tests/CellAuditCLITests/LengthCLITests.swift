import CellAuditCore
import Foundation
import Testing
import TestSupport

/// A padded dataset with `lengths` from the command line (issue 29, item 3): eval scores each
/// sequence at its own end; explain leaves padding without relevance; a bad `lengths` is refused
/// naming the file.
@Suite struct LengthCLITests {
    static let model = Fixtures.path("lengths/lstm_bi2.safetensors")

    /// The fixture's inputs and lengths, with PyTorch's predicted classes as labels.
    static func labeled(lengths: [Int]? = nil) throws -> String {
        let data = try SafeTensorsFile(path: Fixtures.path("lengths/lstm_bi2.data.safetensors"))
        let path = try Fixtures.scratch("lengths-cli").appendingPathComponent("labeled\(lengths == nil ? "" : "-bad").safetensors").path
        var writer = SafeTensorsWriter()
        try writer.add("inputs", floats: try data.floats("inputs"), shape: [6, 9, 3])
        try writer.add("lengths", int64s: lengths ?? (try data.integers("lengths")), shape: [lengths?.count ?? 6])
        try writer.add("labels", int64s: try data.integers("target"), shape: [6])
        try writer.write(to: path)
        return path
    }

    @Test func evalAndExplainReadEachSequenceToItsOwnEnd() throws {
        let data = try Self.labeled()
        for backend in ["cpu"] + (OpenCLTestSupport.enabled ? ["opencl"] : []) {
            let r = try CLI.run(["eval", Self.model, "--data", data, "--bidirectional-readout", "final-states", "--backend", backend])
            #expect(r.exitCode == 0 && r.stdout.contains("accuracy: 1.0000"), "\(r.stdout)\(r.stderr)")
        }
        let out = try Fixtures.scratch("lengths-explain").appendingPathComponent("x")
        let e = try CLI.run(["explain", Self.model, "--data", data, "--bidirectional-readout", "final-states", "--out", out.path, "--quiet"])
        #expect(e.exitCode == 0, "\(e.stderr)")
        let input = try SafeTensorsFile(path: out.appendingPathComponent("relevance.safetensors").path).floats("input")
        // Sequence 2 has length 1: only its first step carries relevance.
        #expect(input[(2 * 27 + 3)..<(3 * 27)].allSatisfy { $0 == 0 } && input[(2 * 27)..<(2 * 27 + 3)].contains { $0 != 0 })
    }

    @Test func booleanLengthsAreRefused() throws {
        let data = try SafeTensorsFile(path: Fixtures.path("lengths/lstm_bi2.data.safetensors"))
        let path = try Fixtures.scratch("lengths-bool").appendingPathComponent("bool.safetensors").path
        var writer = SafeTensorsWriter()
        try writer.add("inputs", floats: try data.floats("inputs"), shape: [6, 9, 3])
        try writer.add("lengths", dtype: .BOOL, shape: [6], bytes: Data([1, 1, 1, 1, 1, 1]))
        try writer.write(to: path)
        let r = try CLI.run(["eval", Self.model, "--data", path, "--bidirectional-readout", "final-states"])
        #expect(r.exitCode == 1 && r.stderr.contains("'lengths'") && r.stderr.contains("not integer"), "\(r.stderr)")
    }

    @Test func badLengthsAreRefusedNamingTheFile() throws {
        for lengths in [[9, 4, 1, 7, 9, 10], [9, 4, 0, 7, 9, 4], [9, 4]] {
            let r = try CLI.run(["eval", Self.model, "--data", try Self.labeled(lengths: lengths), "--bidirectional-readout", "final-states"])
            #expect(r.exitCode == 1 && r.stderr.contains("labeled-bad.safetensors") && r.stderr.contains("'lengths'"), "\(r.stderr)")
        }
    }
}
