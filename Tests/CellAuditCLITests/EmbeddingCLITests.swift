import CellAuditCore
import Foundation
import Testing
import TestSupport

/// A bidirectional LSTM over token embeddings from the command line (issue 29, item 2): explain
/// writes per-token relevance and shows the sequences as words; attractors take a token's
/// embedding as the constant input.
@Suite struct EmbeddingCLITests {
    static let model = Fixtures.path("embedding/emb_bilstm.pt")
    static let data = Fixtures.path("embedding/tokens.safetensors")
    static let vocab = Fixtures.path("embedding/vocab.txt")

    @Test func explainWritesTokenRelevanceAndWords() throws {
        let out = try Fixtures.scratch("embedding-explain").appendingPathComponent("explain")
        let r = try CLI.run(["explain", Self.model, "--data", Self.data, "--bidirectional-readout", "final-states", "--vocab", Self.vocab,
                             "--out", out.path, "--backend", "cpu", "--bias-factor", "1", "--quiet"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        let relevance = try SafeTensorsFile(path: out.appendingPathComponent("relevance.safetensors").path)
        #expect(try relevance.info("tokens").shape == [8, 7] && relevance.info("input").shape == [8, 7, 6])
        let tokens = try relevance.floats("tokens"), input = try relevance.floats("input")
        #expect(abs(tokens[9] - input[(9 * 6)..<(10 * 6)].reduce(0, +)) <= 1e-6)
        let ids = try SafeTensorsFile(path: Self.data).integers("inputs")
        let report = try String(contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
        #expect(report.contains("Token relevance of chosen sequences") && report.contains(">w\(ids[0])</span>"))
        let figure = try String(contentsOf: out.appendingPathComponent("figures/tokens.svg"), encoding: .utf8)
        #expect(figure.hasPrefix("<svg") && figure.contains(">w\(ids[0])</text>") && !figure.contains("w3<&>"))
        // Words are escaped (vocab line 3 is "w3<&>").
        #expect(!report.contains("w3<&>") && (!ids.prefix(42).contains(3) || report.contains("w3&lt;&amp;&gt;")))
    }

    @Test func badVocabulariesAndTokenOptionsAreRefused() throws {
        let dir = try Fixtures.scratch("embedding-bad")
        let short = dir.appendingPathComponent("short.txt")
        try "a\nb\nc\n".write(to: short, atomically: true, encoding: .utf8)
        let r = try CLI.run(["explain", Self.model, "--data", Self.data, "--bidirectional-readout", "final-states", "--vocab", short.path,
                             "--out", dir.appendingPathComponent("x").path, "--backend", "cpu"])
        #expect(r.exitCode == 1 && r.stderr.contains("short.txt: 3 tokens") && r.stderr.contains("40"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("x").path))
        // Windows line endings read as lines.
        let crlf = dir.appendingPathComponent("crlf.txt")
        try (0..<40).map { "w\($0)" }.joined(separator: "\r\n").write(to: crlf, atomically: true, encoding: .utf8)
        let ok = try CLI.run(["explain", Self.model, "--data", Self.data, "--bidirectional-readout", "final-states", "--vocab", crlf.path,
                              "--out", dir.appendingPathComponent("crlf-out").path, "--backend", "cpu", "--quiet"])
        #expect(ok.exitCode == 0, "\(ok.stderr)")
        let plain = try CLI.run(["attractors", Fixtures.path("bidirectional/lstm1.pt"), "--bidirectional-readout", "final-states",
                                 "--input-token", "2", "--out", dir.appendingPathComponent("y").path])
        #expect(plain.exitCode == 1 && plain.stderr.contains("no") && plain.stderr.contains("token embedding"), "\(plain.stderr)")
        let outside = try CLI.run(["attractors", Self.model, "--bidirectional-readout", "final-states", "--input-token", "40",
                                   "--out", dir.appendingPathComponent("z").path])
        #expect(outside.exitCode == 1 && outside.stderr.contains("0..<40"), "\(outside.stderr)")
    }

    @Test func attractorsUnderATokensEmbedding() throws {
        let out = try Fixtures.scratch("embedding-attractors").appendingPathComponent("a")
        let r = try CLI.run(["attractors", Self.model, "--bidirectional-readout", "final-states", "--input-token", "5", "--seeds", "64",
                             "--out", out.path, "--backend", "cpu", "--json"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        let summary = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        #expect((summary?["input_token"] as? Int) == 5)
        let input = try #require(summary?["input"] as? [Double])
        let table = try SafeTensorsFile(path: Self.model.replacingOccurrences(of: ".pt", with: ".safetensors")).floats("embedding.weight")
        #expect(input.count == 6 && zip(input, (30..<36).map { Double(table[$0]) }).allSatisfy { abs($0 - $1) <= 1e-6 })
    }
}
