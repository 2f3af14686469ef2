import CellAuditAnalysis
import CellAuditCore
import CellAuditImport
import CellAuditOpenCL
import Foundation
import Testing
import TestSupport

/// Single-cell ablation of a cell in level l runs levels l… on the intact output of the levels
/// below, computed once (issue 31, item 2): the same scores and losses as running the whole
/// network for every configuration, for stacked, bidirectional and padded data, both clamps, on
/// both backends: the scores exactly, the losses to float rounding (the products are formed
/// over differently shaped batches, so their last bits may differ: at most 1e-7 relative; a
/// padded batch already depends so on which configurations share a job).
@Suite struct AblationReuseTests {
    static func cases() throws -> [(String, LoadedModel, Dataset)] {
        var out: [(String, LoadedModel, Dataset)] = []
        out.append(("digits_lstm32x2", try ModelImport.load(Fixtures.path("digits_lstm32x2.safetensors")),
                    try Dataset.load(Fixtures.path("digits_test.safetensors"))))
        for name in ["gru2", "lstm2", "rnn_tanh2"] {
            var hints = ModelHints(nonlinearity: name.hasPrefix("rnn") ? "tanh" : nil)
            hints.bidirectionalReadout = .finalStates
            let model = try ModelImport.load(Fixtures.path("bidirectional/\(name).safetensors"), hints: hints)
            let data = try SafeTensorsFile(path: Fixtures.path("bidirectional/\(name).data.safetensors"))
            let shape = try data.info("inputs").shape
            var inputs = try SequenceBatch(count: shape[0], steps: shape[1], width: shape[2], values: try data.floats("inputs"))
            if name == "lstm2" { try inputs.setLengths([7, 3, 5, 1, 6]) }
            let K = model.network.readout!.outputs
            out.append((name, model, Dataset(inputs: inputs, labels: (0..<shape[0]).map { $0 % K })))
        }
        return out
    }

    @Test func reusingTheLowerLevelsGivesTheSameNumbers() throws {
        let backends = try OpenCLTestSupport.backends()
        for (name, model, dataset) in try Self.cases() {
            #expect(model.network.levels.count == 2)
            let all = Array(0..<AblationStudy.singleConfigurationCount(cells: model.network.cellCount))
            for (b, backend) in backends.enumerated() {
                // OpenCL: the zero clamp on a stacked and a padded bidirectional case (the path is the same).
                for clamp in AblationStudy.Clamp.allCases where b == 0 || (clamp == .zero && ["digits_lstm32x2", "lstm2"].contains(name)) {
                    let reused = try AblationStudy.singleAblations(network: model.network, dataset: dataset, task: model.task, output: model.output,
                                                                   clamp: clamp, configurations: all, on: backend)
                    let whole = try AblationStudy.singleAblations(network: model.network, dataset: dataset, task: model.task, output: model.output,
                                                                  clamp: clamp, configurations: all, reuseLowerLevels: false, on: backend)
                    #expect(reused.scores == whole.scores, "\(name) \(clamp) on \(backend.identity)")
                    let worst = zip(reused.losses, whole.losses).map { abs($0 - $1) / max(abs($1), 1e-12) }.max() ?? .infinity
                    #expect(reused.losses.count == whole.losses.count && worst <= 1e-7, "\(name) \(clamp) on \(backend.identity): \(worst)")
                    // A shuffled list of configurations gives each its own numbers, in the list's order.
                    let order = all.reversed().map { $0 }
                    let shuffled = try AblationStudy.singleAblations(network: model.network, dataset: dataset, task: model.task, output: model.output,
                                                                     clamp: clamp, configurations: order, on: backend)
                    let apart = zip(shuffled.losses, reused.losses.reversed()).map { abs($0 - $1) / max(abs($1), 1e-12) }.max() ?? .infinity
                    #expect(shuffled.scores == reused.scores.reversed().map { $0 } && apart <= 1e-7, "\(name): \(apart)")
                }
            }
        }
    }
}
