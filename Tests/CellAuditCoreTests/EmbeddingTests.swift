import CellAuditCore
import CellAuditImport
import CellAuditOpenCL
import Foundation
import Testing
import TestSupport

/// Token embeddings as a front end (issue 29, item 2), on the models of
/// Tools/make_embedding_fixtures.py: outputs equal PyTorch's on token ids, and the per-token LRP of
/// a bidirectional LSTM over embeddings equals ArrasL/LRP_for_LSTM's `LSTM_bidi.lrp` run on the same
/// weights (its numbers are in the fixture; its code is not).
@Suite struct EmbeddingTests {
    static func path(_ name: String) -> String { Fixtures.path("embedding/\(name)") }

    static func load(_ name: String, embeddingPrefix: String? = nil) throws -> LoadedModel {
        var hints = ModelHints()
        hints.bidirectionalReadout = .finalStates
        hints.embeddingPrefix = embeddingPrefix
        return try ModelImport.load(path(name), hints: hints)
    }

    static func tokens(for model: LoadedModel) throws -> Dataset {
        var data = try Dataset.load(path("tokens.safetensors"))
        try data.prepare(for: model)
        return data
    }

    static func backends() throws -> [any ComputeBackend] {
        try OpenCLTestSupport.backends()
    }

    @Test(arguments: [("emb_bilstm.pt", "emb_bilstm.refs.safetensors", "embedding.weight"),
                      ("emb_bilstm.safetensors", "emb_bilstm.refs.safetensors", "embedding.weight"),
                      ("emb_gru2.safetensors", "emb_gru2.refs.safetensors", "word_embeddings.weight")])
    func outputsOnTokenIdsEqualPyTorch(model name: String, refs: String, source: String) throws {
        let model = try Self.load(name)
        let embedding = try #require(model.embedding)
        #expect(embedding.source == source && embedding.width == model.network.inputSize)
        let data = try Self.tokens(for: model)
        #expect(data.inputs.width == embedding.width && data.tokens?.ids.count == 56)
        // Sequence 2, step 3 is the embedding row of its token.
        let id = data.tokens!.ids[2 * 7 + 3]
        #expect(Array(data.inputs.values[((2 * 7 + 3) * embedding.width)..<((2 * 7 + 4) * embedding.width)]) == Array(embedding.vector(id)))
        let expected = try SafeTensorsFile(path: Self.path(refs)).floats("logits")
        for backend in try Self.backends() {
            let outputs = try backend.forward(try ForwardJob(network: model.network, inputs: data.inputs, output: .last)).outputs
            let worst = zip(outputs, expected).map { abs($0 - $1) }.max() ?? .infinity
            #expect(outputs.count == expected.count && worst <= 1e-5, "\(name) on \(backend.identity): max |Δ| \(worst)")
        }
    }

    /// Arras et al.'s own code as the peer: per-token relevance (Rx + Rx_rev summed over the
    /// embedding) within 1e-3 of the largest |R| (it holds to ~1e-6), with bias factor 0 and 1;
    /// with bias factor 1 the rest left on the initial states matches too, and Σ tokens + rest
    /// equals the score (conservation) within 1e-4.
    @Test func relevanceEqualsArrasLRPForLSTM() throws {
        let model = try Self.load("emb_bilstm.pt")
        let data = try Self.tokens(for: model)
        let refs = try SafeTensorsFile(path: Self.path("emb_bilstm.refs.safetensors"))
        let targets = try refs.integers("target")
        for backend in try Self.backends() {
            for (biasFactor, key) in [(Float(0), "arras_tokens"), (1, "arras_tokens_bf1")] {
                let job = try RelevanceJob(network: model.network, inputs: data.inputs, output: .last, targets: targets,
                                           rule: .lrp(epsilon: 0.001, biasFactor: biasFactor))
                let result = try backend.relevance(job)
                let tokens = TokenEmbedding.tokenRelevance(result.input, count: result.count, steps: result.steps, width: result.width)
                let want = try refs.floats(key)
                let scale = want.map(abs).max()!
                let worst = zip(tokens, want).map { abs($0 - $1) }.max() ?? .infinity
                #expect(tokens.count == want.count && worst <= 1e-3 * scale, "\(key) on \(backend.identity): max |Δ| \(worst) of \(scale)")
                if biasFactor == 1 {
                    let rest = try refs.floats("arras_rest_bf1")
                    #expect(zip(result.rest, rest).allSatisfy { abs($0 - $1) <= 1e-5 }, "rest \(result.rest) vs \(rest)")
                    for s in 0..<result.count {
                        let total = tokens[(s * 7)..<((s + 1) * 7)].reduce(0.0) { $0 + Double($1) } + Double(result.rest[s])
                        #expect(abs(total - Double(result.score[s])) <= 1e-4 * max(1e-3, abs(Double(result.score[s]))))
                    }
                }
            }
        }
    }

    @Test func tokenDataThatDoesNotFitIsRefusedByName() throws {
        let model = try Self.load("emb_gru2.safetensors")
        // An id past the vocabulary (30 tokens): named by value, sequence and step.
        var ids = try Dataset.load(Self.path("tokens.safetensors")).tokens!.ids
        ids[3 * 7 + 5] = 30
        var bad = try Dataset(tokens: try TokenBatch(count: 8, steps: 7, ids: ids), fileName: "bad.safetensors")
        #expect(throws: DataError.mismatch("bad.safetensors: token id 30 at sequence 3, step 5 is outside the embedding's vocabulary 0..<30 ('word_embeddings.weight')")) {
            try bad.prepare(for: model)
        }
        ids[3 * 7 + 5] = -1
        bad = try Dataset(tokens: try TokenBatch(count: 8, steps: 7, ids: ids), fileName: "bad.safetensors")
        #expect(throws: DataError.self) { try bad.prepare(for: model) }
        // Float vectors for a model with an embedding, and token ids for one without.
        var floats = Dataset(inputs: try SequenceBatch(count: 2, steps: 3, width: 4, values: [Float](repeating: 0, count: 24)), fileName: "f.npz")
        do { try floats.prepare(for: model); Issue.record("float data accepted") } catch {
            #expect("\(error)".contains("f.npz") && "\(error)".contains("token ids"), "\(error)")
        }
        let plain = try ModelImport.load(Fixtures.path("bidirectional/lstm1.safetensors"), hints: {
            var h = ModelHints(); h.bidirectionalReadout = .finalStates; return h }())
        var tokens = try Dataset.load(Self.path("tokens.safetensors"))
        do { try tokens.prepare(for: plain); Issue.record("token ids accepted without an embedding") } catch {
            #expect("\(error)".contains("tokens.safetensors") && "\(error)".contains("no token embedding"), "\(error)")
        }
    }

    /// An embedding is found by its name ("emb…") or by --embedding-prefix, never by shape alone.
    @Test func theEmbeddingIsNamedOrGiven() throws {
        let file = try SafeTensorsFile(path: Self.path("emb_gru2.safetensors"))
        // The same tensors with the embedding renamed 'encoder.' (PyTorch's word-language example).
        var writer = SafeTensorsWriter()
        for name in file.tensors.keys.sorted() {
            let info = try file.info(name)
            try writer.add(name.replacingOccurrences(of: "word_embeddings.", with: "encoder."), floats: try file.floats(name), shape: info.shape)
        }
        let renamed = try Fixtures.scratch("embedding-names").appendingPathComponent("encoder.safetensors").path
        try writer.write(to: renamed)
        var hints = ModelHints(); hints.bidirectionalReadout = .finalStates
        do { _ = try ModelImport.load(renamed, hints: hints); Issue.record("an unnamed embedding was guessed") } catch {
            #expect("\(error)".contains("encoder.weight"), "\(error)")
        }
        hints.embeddingPrefix = "encoder."
        let given = try ModelImport.load(renamed, hints: hints)
        #expect(given.embedding?.source == "encoder.weight" && given.embedding?.vocabularySize == 30)
        #expect(given.network == (try Self.load("emb_gru2.safetensors")).network)
        hints.embeddingPrefix = "decoder."
        #expect(throws: FormatError.self) { try ModelImport.load(renamed, hints: hints) }
        // The embedding is part of the model's content hash.
        #expect(try given.contentHash() != (try given.network.contentHash()))
    }
}
