import CellAuditCore
import Foundation
import Testing
import TestSupport

/// A dataset larger than the memory a run may take is read a chunk at a time (issue 27, item
/// 2): `eval` and `explain` on a 410 MB dataset finish under an address-space limit of 1.1 GB,
/// which the runtime (~0.6 GB) and the dataset mapped and copied whole (0.8 GB) would break, and
/// give the numbers of the same run on a small file of the same sequences.
@Suite(.serialized) struct StreamingCLITests {
    /// A 1-cell LSTM reading 1,024 channels, as a PyTorch state dict: little compute per byte.
    static let width = 1024, steps = 4, block = 500, repeats = 50

    static func writeModel(to path: String) throws {
        var writer = SafeTensorsWriter()
        try writer.add("rnn.weight_ih_l0", floats: RandomInputs.floats(4 * width, seed: 5).map { $0 * 0.05 }, shape: [4, width])
        try writer.add("rnn.weight_hh_l0", floats: [0.5, -0.3, 0.2, 0.7], shape: [4, 1])
        try writer.add("rnn.bias_ih_l0", floats: [0.1, 0.2, -0.1, 0.0], shape: [4])
        try writer.add("rnn.bias_hh_l0", floats: [0, 0, 0, 0.1], shape: [4])
        try writer.add("fc.weight", floats: [1.5, -2.0, 0.5], shape: [3, 1])
        try writer.add("fc.bias", floats: [0.0, 0.1, -0.1], shape: [3])
        try writer.write(to: path)
    }

    /// `repeats` copies of one block of `block` random sequences with labels.
    static func writeData(to path: String, repeats: Int) throws {
        let values = RandomInputs.floats(block * steps * width, seed: 9)
        let labels = (0..<block).map { Int32(($0 * 7) % 3) }
        let n = block * repeats
        let writer = try SafeTensorsStreamWriter(path: path, tensors: [.init("inputs", .F32, [n, steps, width]), .init("labels", .I32, [n])],
                                                 metadata: [:])
        for r in 0..<repeats {
            try values.withUnsafeBufferPointer { try writer.write("inputs", at: r * block * steps * width, $0) }
            try labels.withUnsafeBufferPointer { try writer.write("labels", at: r * block, $0) }
        }
        try writer.finish()
    }

    @Test func aDatasetLargerThanTheLimitIsStreamed() throws {
        let dir = try Fixtures.scratch("streaming")
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = dir.appendingPathComponent("wide.safetensors").path
        let small = dir.appendingPathComponent("small.safetensors").path, large = dir.appendingPathComponent("large.safetensors").path
        try Self.writeModel(to: model)
        try Self.writeData(to: small, repeats: 1)
        try Self.writeData(to: large, repeats: Self.repeats)
        let bytes = try FileManager.default.attributesOfItem(atPath: large)[.size] as! Int
        let limit = 1_100_000   // kB
        #expect(bytes > 400_000_000)

        let reference = try CLI.run(["eval", model, "--data", small, "--backend", "cpu", "--json"])
        #expect(reference.exitCode == 0, "\(reference.stderr)")
        let streamed = try MemoryBoundTests.underLimit(["eval", model, "--data", large, "--backend", "cpu", "--json"], kilobytes: limit)
        #expect(streamed.exitCode == 0, "eval under ulimit -v \(limit): \(streamed.stderr.suffix(300))")
        // The large file repeats the small one's sequences: the same accuracy over all of them.
        func accuracy(_ r: CLI.Result) -> Double? {
            (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])?["accuracy"] as? Double
        }
        #expect(accuracy(reference) != nil && accuracy(streamed) == accuracy(reference), "\(reference.stdout) \(streamed.stdout)")

        let out = dir.appendingPathComponent("explained").path
        let explained = try MemoryBoundTests.underLimit(["explain", model, "--data", large, "--backend", "cpu", "--per-step", "none",
                                                            "--samples", "1", "--out", out, "--quiet", "--json"], kilobytes: limit)
        #expect(explained.exitCode == 0, "explain under ulimit -v \(limit): \(explained.stderr.suffix(300))")
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/summary.json"))) as? [String: Any]
        #expect(summary?["sequences"] as? Int == Self.block * Self.repeats)
        // The last sequence's relevance was written in place: it equals the first block's last.
        let file = try SafeTensorsFile(path: out + "/relevance.safetensors", streaming: true)
        let per = Self.steps * Self.width, n = Self.block * Self.repeats
        let last = try file.floats("input", elements: ((n - 1) * per)..<(n * per))
        let firstBlockLast = try file.floats("input", elements: ((Self.block - 1) * per)..<(Self.block * per))
        let scale = firstBlockLast.map(abs).max() ?? 0
        #expect(scale > 0 && zip(last, firstBlockLast).allSatisfy { abs($0 - $1) <= 1e-5 * scale })
    }

    /// `eval --out` writes its file whole or not at all: a missing folder is named (not the
    /// hidden staging file), an empty name is a usage error, and a staging file left by a run
    /// that was killed (SIGKILL: no handler ran) is removed by the next run.
    @Test func evalOutNamesWhatIsWrongAndCleansUpAfterAKilledRun() throws {
        let dir = try Fixtures.scratch("eval-out")
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = Fixtures.path("digits_lstm8.safetensors"), data = Fixtures.path("digits_test.safetensors")
        let missing = dir.appendingPathComponent("no/such/o.safetensors").path
        let r = try CLI.run(["eval", model, "--data", data, "--backend", "cpu", "--out", missing])
        #expect(r.exitCode == 1 && r.stderr == "error: \(missing): cannot write: the folder \((missing as NSString).deletingLastPathComponent) does not exist\n", "\(r.stderr)")
        let empty = try CLI.run(["eval", model, "--data", data, "--backend", "cpu", "--out", ""])
        #expect(empty.exitCode == 2 && empty.stderr.contains("--out is empty"), "\(empty.stderr)")
        // A dead run's staging file (no such process), and a live one's (this test's), beside the target.
        let dead = dir.appendingPathComponent(".o.safetensors.partial-2147483646").path
        let live = dir.appendingPathComponent(".o.safetensors.partial-\(getpid())").path
        for path in [dead, live] { #expect(FileManager.default.createFile(atPath: path, contents: Data("partial".utf8))) }
        let out = dir.appendingPathComponent("o.safetensors").path
        let ok = try CLI.run(["eval", model, "--data", data, "--backend", "cpu", "--out", out])
        #expect(ok.exitCode == 0, "\(ok.stderr)")
        #expect(FileManager.default.fileExists(atPath: out) && !FileManager.default.fileExists(atPath: dead))
        #expect(FileManager.default.fileExists(atPath: live), "a running process's staging file is not touched")
    }
}
