import CellAuditCore
import CellAuditImport
import CellAuditOpenCL
import Foundation
import Testing
import TestSupport

/// Keras 3 .keras files read natively (issue 30, item 2): every fixture of
/// Tools/make_keras_fixtures.py gives Keras's own outputs (model.predict) within 1e-5, on both
/// backends; what CellAudit cannot represent is refused by name.
@Suite struct KerasTests {
    static func path(_ name: String) -> String { Fixtures.path("keras/\(name)") }

    static func backends() throws -> [any ComputeBackend] {
        try OpenCLTestSupport.backends()
    }

    @Test(arguments: ["lstm2", "gru_before", "bi_concat", "bi_sum_seq", "rnn_relu", "td_seq", "bi_ave", "emb_bigru"])
    func outputsEqualKeras(name: String) throws {
        let model = try ModelImport.load(Self.path("\(name).keras"))
        #expect(model.convention == .keras)
        var data = try Dataset.load(Self.path("\(name).data.safetensors"), requireAnswers: false)
        try data.prepare(for: model)
        let expected = try SafeTensorsFile(path: Self.path("\(name).data.safetensors")).floats("outputs")
        for backend in try Self.backends() {
            let got = try backend.forward(try ForwardJob(network: model.network, inputs: data.inputs, output: model.output)).outputs
            let worst = zip(got, expected).map { abs($0 - $1) }.max() ?? .infinity
            #expect(got.count == expected.count && worst <= 1e-5, "\(name) on \(backend.identity): max |Δ| \(worst), \(got.count) vs \(expected.count)")
        }
    }

    /// --core: the recurrent stack and the Dense layer that reads it, out of a bigger model; the
    /// rest listed as ignored. The core of a Conv1D → LSTM → Dense model, fed the Conv1D's outputs,
    /// gives the whole model's outputs; a deeper head leaves the core without a readout, and says why.
    @Test func theCoreOfABiggerModel() throws {
        var hints = ModelHints()
        hints.core = true
        let core = try ModelImport.load(Self.path("conv_core.keras"), hints: hints)
        #expect(core.ignored.count == 1 && core.ignored[0].contains("Conv1D") && core.network.inputSize == 4)
        let data = try SafeTensorsFile(path: Self.path("conv_core.data.safetensors"))
        let shape = try data.info("inputs").shape
        let inputs = try SequenceBatch(count: shape[0], steps: shape[1], width: shape[2], values: try data.floats("inputs"))
        let got = try CPUBackend(threads: 1).forward(try ForwardJob(network: core.network, inputs: inputs, output: .last)).outputs
        let expected = try data.floats("outputs")
        #expect(got.count == expected.count && zip(got, expected).allSatisfy { abs($0 - $1) <= 1e-5 })
        let deep = try ModelImport.load(Self.path("deep_head.keras"), hints: hints)
        #expect(deep.network.readout == nil && deep.readoutNote?.contains("relu") == true && deep.ignored.count == 2)
        do { _ = try ModelImport.load(Self.path("deep_head.keras")); Issue.record("a deeper head loaded without --core") } catch {
            #expect("\(error)".contains("--core"), "\(error)")
        }
    }

    /// Legacy .h5 files: Keras 3's legacy save, and the layout tf.keras 2 writes (Keras 2 config,
    /// fixed-length weight_names with ':0'), give the .keras file's outputs.
    @Test(arguments: [("lstm2_legacy.h5", "lstm2"), ("lstm2_keras2.h5", "lstm2"), ("lstm2_utf8.h5", "lstm2"), ("emb_bigru_legacy.h5", "emb_bigru")])
    func legacyH5FilesEqualKeras(file: String, data: String) throws {
        let model = try ModelImport.load(Self.path(file))
        #expect(model.network == (try ModelImport.load(Self.path("\(data).keras"))).network)
        var inputs = try Dataset.load(Self.path("\(data).data.safetensors"), requireAnswers: false)
        try inputs.prepare(for: model)
        let expected = try SafeTensorsFile(path: Self.path("\(data).data.safetensors")).floats("outputs")
        let got = try CPUBackend(threads: 1).forward(try ForwardJob(network: model.network, inputs: inputs.inputs, output: model.output)).outputs
        #expect(zip(got, expected).allSatisfy { abs($0 - $1) <= 1e-5 } && got.count == expected.count)
        do { _ = try ModelImport.load(Self.path("weights_only.weights.h5")); Issue.record("weights alone loaded") } catch {
            #expect("\(error)".contains("model_config"), "\(error)")
        }
    }

    @Test func theArchitectureIsReadAsKerasStatesIt() throws {
        let bi = try ModelImport.load(Self.path("bi_concat.keras"))
        #expect(bi.network.levels.count == 1 && bi.network.layers.map(\.direction) == [.forward, .reverse])
        #expect(bi.network.readout?.reading == .finalStates && bi.output == .last)
        let seq = try ModelImport.load(Self.path("bi_sum_seq.keras"))
        #expect(seq.output == .sequence && seq.network.layers[2].inputSize == 6)   // the sum read as both directions
        #expect(try ModelImport.load(Self.path("rnn_relu.keras")).network.kind == .rnnReLU)
        let gru = try ModelImport.load(Self.path("gru_before.keras"))
        #expect(gru.network.layers[0].resetAfter == false && gru.metadata["readout_activation"]?.hasPrefix("softmax") == true)
        let emb = try ModelImport.load(Self.path("emb_bigru.keras"))
        #expect(emb.embedding?.vocabularySize == 20 && emb.embedding?.width == 4)
    }

    @Test(arguments: [("bi_mul.keras", "merge_mode 'mul'"), ("masked.keras", "mask_zero"),
                      ("hard_sigmoid.keras", "recurrent_activation 'hard_sigmoid'"), ("conv.keras", "Conv1D"), ("mixed.keras", "mixes recurrent layer kinds")])
    func whatCannotBeRepresentedIsRefusedByName(file: String, words: String) throws {
        do { _ = try ModelImport.load(Self.path(file)); Issue.record("\(file) loaded") } catch {
            #expect("\(error)".contains(file) && "\(error)".contains(words), "\(error)")
        }
    }

    /// The shared cases keras-relu (an LSTM with activation relu: outputs differ by 3.1 if read as
    /// tanh) and keras-two-dense (LSTM → Dense(relu) → Dense): refused naming the activation and
    /// the layer between the stack and the readout; with --core the second gives a readout-free core.
    @Test func theSharedKerasCasesAreRefusedByName() throws {
        do { _ = try ModelImport.load(Fixtures.path("cases/keras/keras-relu.keras")); Issue.record("keras-relu loaded") } catch {
            #expect("\(error)".contains("keras-relu.keras") && "\(error)".contains("(LSTM) has activation 'relu'"), "\(error)")
        }
        do { _ = try ModelImport.load(Fixtures.path("cases/keras/keras-two-dense.keras")); Issue.record("keras-two-dense loaded") } catch {
            #expect("\(error)".contains("keras-two-dense.keras") && "\(error)".contains("(Dense) has activation 'relu'"), "\(error)")
        }
        var hints = ModelHints()
        hints.core = true
        let core = try ModelImport.load(Fixtures.path("cases/keras/keras-two-dense.keras"), hints: hints)
        #expect(core.network.readout == nil && core.ignored.count == 2)
    }

    /// A damaged archive (truncated, or bytes overwritten) is a clean error, never a trap: its
    /// members are CRC-checked before HDF5 sees them. (A damaged .h5 goes to HDF5 as it is, and
    /// HDF5 1.10 can crash on one: the CLI reads such files in a child process first, tested in
    /// KerasCLITests.)
    @Test(arguments: ["lstm2.keras"])
    func damagedKerasFilesFailCleanly(file: String) throws {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Self.path(file))))
        let scratch = try Fixtures.scratch("keras-damaged-\(file)").appendingPathComponent(file)
        var rng = SeededGenerator(seed: 31)
        var refused = 0, loaded = 0
        for trial in 0..<300 {
            var copy = bytes
            if trial % 3 == 0 { copy = Array(copy.prefix(Int(rng.next() % UInt64(copy.count)))) } else {
                for _ in 0..<(1 + Int(rng.next() % 8)) { copy[Int(rng.next() % UInt64(copy.count))] = UInt8(truncatingIfNeeded: rng.next()) }
            }
            try Data(copy).write(to: scratch)
            do { _ = try ModelImport.load(scratch.path); loaded += 1 } catch is FormatError { refused += 1 } catch is ModelRefusal { refused += 1 } catch {
                Issue.record("not a clean error: \(type(of: error)) \(error)")
            }
        }
        #expect(refused > 0 && refused + loaded == 300)
        // Truncated: named as a damaged archive, not as some other ZIP.
        try Data(bytes.prefix(bytes.count / 2)).write(to: scratch)
        do { _ = try ModelImport.load(scratch.path); Issue.record("half an archive loaded") } catch {
            #expect("\(error)".contains("damaged or truncated ZIP archive"), "\(error)")
        }
    }
}
