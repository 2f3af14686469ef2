import CellAuditCore
import CellAuditImport
import CellAuditOpenCL
import Foundation
import Testing
import TestSupport

/// Plain PyTorch state dicts (Tools/make_state_dicts.py): read exactly, or refused by name.
@Suite struct StateDictTests {
    static func path(_ name: String) -> String { Fixtures.path("state_dicts/\(name).safetensors") }

    /// Each model's outputs on its golden inputs equal PyTorch's, on both backends.
    @Test(arguments: [("lstm2_head", ModelHints()), ("module_gru", ModelHints()), ("rnn_relu", ModelHints(nonlinearity: "relu")),
                      ("lstm_nobias_seq", ModelHints(task: .regression, output: .sequence)),
                      ("module_gru", ModelHints(rnnPrefix: "module.rnn.", readoutPrefix: "module.head."))])
    func readsExactly(_ name: String, _ hints: ModelHints) throws {
        let loaded = try ModelFile.load(Self.path(name), hints: hints)
        let golden = try SafeTensorsFile(path: Fixtures.path("state_dicts/\(name).golden.safetensors"))
        let shape = try golden.info("inputs").shape
        let inputs = try SequenceBatch(count: shape[0], steps: shape[1], width: shape[2], values: try golden.floats("inputs"))
        let want = try golden.floats("outputs")
        var backends: [any ComputeBackend] = [CPUBackend()]
        if OpenCLTestSupport.enabled { backends.append(try OpenCLBackend(device: try OpenCLTestSupport.device())) }
        for backend in backends {
            let got = try backend.forward(try ForwardJob(network: loaded.network, inputs: inputs, output: loaded.output)).outputs
            #expect(got.count == want.count)
            let worst = zip(got, want).map { abs($0 - $1) }.max() ?? .infinity
            #expect(worst <= Tolerance.forward, "\(name) on \(backend.identity): max |cellaudit − pytorch| = \(worst)")
        }
    }

    @Test func kindsLayersAndPrefixesAreInferred() throws {
        let lstm = try ModelFile.load(Self.path("lstm2_head"))
        #expect(lstm.network.kind == .lstm && lstm.network.layers.map(\.hiddenSize) == [7, 7] && lstm.network.readout?.outputs == 3)
        let gru = try ModelFile.load(Self.path("module_gru"))
        #expect(gru.network.kind == .gru && gru.metadata["prefix"] == "module.rnn." && gru.metadata["readout_prefix"] == "module.head.")
        let tanh = try ModelFile.load(Self.path("rnn_relu"), hints: ModelHints(nonlinearity: "tanh"))
        #expect(tanh.network.kind == .rnnTanh)
    }

    /// A dataset settles what the state dict cannot say: targets [N, T, K] mean regression at every step.
    @Test func taskAndOutputFollowTheData() throws {
        var hints = ModelHints()
        let x = try SequenceBatch(count: 2, steps: 6, width: 5, values: RandomInputs.floats(60, seed: 3))
        hints.follow(Dataset(inputs: x, targets: RandomInputs.floats(24, seed: 4), targetShape: [2, 6, 2]))
        let seq = try ModelFile.load(Self.path("lstm_nobias_seq"), hints: hints)
        #expect(seq.task == .regression && seq.output == .sequence)
        var labelled = ModelHints()
        labelled.follow(Dataset(inputs: x, labels: [0, 1]))
        let last = try ModelFile.load(Self.path("lstm_nobias_seq"), hints: labelled)
        #expect(last.task == .classification && last.output == .last)
        // An explicit flag wins over the data.
        var both = hints
        both.output = .last
        #expect(try ModelFile.load(Self.path("lstm_nobias_seq"), hints: both).output == .last)
    }

    /// Every refusal names what it refuses, in one line that names the file.
    @Test(arguments: [
        ("rnn_relu", ModelHints(), "--nonlinearity"),
        ("two_heads", ModelHints(), "'aux.', 'head.'"),
        ("two_heads", ModelHints(readoutPrefix: "head."), "'aux.bias', 'aux.weight'"),
        ("extra_tensor", ModelHints(), "'scale'"),
        ("lstm_bidirectional", ModelHints(), "--bidirectional-readout final-states"),
        ("lstm2_head", ModelHints(rnnPrefix: "lstm."), "'rnn.'"),
        ("lstm2_head", ModelHints(readoutPrefix: "fc."), "'head.'"),
        ("lstm2_head", ModelHints(nonlinearity: "relu"), "nn.LSTM"),
    ])
    func refusals(_ name: String, _ hints: ModelHints, _ named: String) throws {
        do {
            _ = try ModelFile.load(Self.path(name), hints: hints)
            Issue.record("\(name) was read")
        } catch let error as FormatError {
            let text = "\(error)"
            #expect(text.contains("\(name).safetensors") && text.contains(named) && !text.contains("\n"), "\(text)")
        }
    }

    /// An LSTM with proj_size, refused when this fixture was made, is read with its projection
    /// folded in (ProjectionTests checks its numbers).
    @Test func aProjectionLSTMIsRead() throws {
        let model = try ModelFile.load(Self.path("lstm_proj"))
        #expect(model.network.layers.map(\.hiddenSize) == [6] && model.network.readout?.outputs == 2 && model.metadata["projection"] == "3")
    }

    @Test func aCellAuditFileRefusesStateDictFlags() throws {
        #expect(throws: FormatError.self) { try ModelFile.load(Fixtures.path("digits_lstm8.safetensors"), hints: ModelHints(task: .regression)) }
        // A dataset's hints are not flags: a CellAudit file still loads with them.
        var hints = ModelHints()
        hints.follow(Dataset(inputs: try SequenceBatch(count: 1, steps: 1, width: 8, values: [Float](repeating: 0, count: 8)), labels: [0]))
        #expect(try ModelFile.load(Fixtures.path("digits_lstm8.safetensors"), hints: hints).task == .classification)
    }
}
