import CellAuditCore
import CellAuditImport
import CellAuditOpenCL
import Foundation
import Testing
import TestSupport

/// Padded batches with lengths (issue 29, item 3), against PyTorch's packed sequences
/// (Tools/make_length_fixtures.py): padding never enters a state (the fixtures fill it with large
/// values), a reverse direction starts at each sequence's last real step, readouts read each
/// sequence's own end, relevance of padding is exactly 0, and a padded batch equals its sequences
/// run one at a time.
@Suite struct LengthTests {
    static let names = ["lstm_bi2", "gru1", "rnn_bi1"]

    static func load(_ name: String, reading: FinalStateReading?, output: OutputMode = .last) throws -> LoadedModel {
        var hints = ModelHints(output: output, nonlinearity: name.hasPrefix("rnn") ? "tanh" : nil)
        hints.bidirectionalReadout = name == "gru1" ? nil : reading
        return try ModelImport.load(Fixtures.path("lengths/\(name).safetensors"), hints: hints)
    }

    static func data(_ name: String) throws -> (SafeTensorsFile, SequenceBatch) {
        let file = try SafeTensorsFile(path: Fixtures.path("lengths/\(name).data.safetensors"))
        let dataset = try Dataset.load(file.path, requireAnswers: false)
        #expect(dataset.inputs.lengths == [9, 4, 1, 7, 9, 4] && dataset.inputs.isPadded)
        return (file, dataset.inputs)
    }

    static func backends() throws -> [any ComputeBackend] {
        try OpenCLTestSupport.backends(cpuThreads: [2, 1])
    }

    @Test(arguments: names)
    func outputsEqualPackedPyTorch(name: String) throws {
        let (file, inputs) = try Self.data(name)
        for (reading, output, key) in [(FinalStateReading.finalStates, OutputMode.last, "final_states"), (.lastStep, .last, "last_step"),
                                       (nil, .sequence, "sequence")] {
            if name == "gru1" && key == "last_step" { continue }
            let model = try Self.load(name, reading: reading, output: output)
            let expected = try file.floats(key)
            for backend in try Self.backends() {
                let got = try backend.forward(try ForwardJob(network: model.network, inputs: inputs, output: output)).outputs
                let worst = zip(got, expected).map { abs($0 - $1) }.max() ?? .infinity
                #expect(got.count == expected.count && worst <= 1e-5, "\(name) \(key) on \(backend.identity): max |Δ| \(worst)")
            }
        }
    }

    /// Bit for bit: changing the padding changes nothing; and each sequence alone gives the
    /// batch's numbers (forward, LRP and gradient × input), with padding relevance exactly 0.
    @Test(arguments: names)
    func aPaddedBatchEqualsItsSequencesAlone(name: String) throws {
        let (file, inputs) = try Self.data(name)
        let model = try Self.load(name, reading: .finalStates)
        let targets = try file.integers("target")
        var zeroed = inputs
        for (s, length) in inputs.lengths!.enumerated() {
            for i in ((s * 9 + length) * 3)..<((s + 1) * 9 * 3) { zeroed.values[i] = 0 }
        }
        for backend in try Self.backends() {
            let batch = try backend.forward(try ForwardJob(network: model.network, inputs: inputs, output: .last))
            #expect(try backend.forward(try ForwardJob(network: model.network, inputs: zeroed, output: .last)).outputs == batch.outputs)
            for rule in [RelevanceJob.Rule.lrp(epsilon: 0.001, biasFactor: 1), .gradientTimesInput] {
                let r = try backend.relevance(try RelevanceJob(network: model.network, inputs: inputs, output: .last, targets: targets, rule: rule))
                let z = try backend.relevance(try RelevanceJob(network: model.network, inputs: zeroed, output: .last, targets: targets, rule: rule))
                #expect(r.input == z.input && r.cellRelevance == z.cellRelevance && r.score == z.score)
                for (s, length) in inputs.lengths!.enumerated() {
                    let alone = try inputs.gathering([s], steps: length)
                    let one = try backend.relevance(try RelevanceJob(network: model.network, inputs: alone, output: .last, targets: [targets[s]], rule: rule))
                    let mine = Array(r.input[(s * 27)..<(s * 27 + length * 3)])
                    #expect(zip(mine, one.input).allSatisfy { abs($0 - $1) <= 1e-6 * max(1, abs($1)) }, "\(name) sequence \(s) on \(backend.identity)")
                    #expect(r.input[(s * 27 + length * 3)..<((s + 1) * 27)].allSatisfy { $0 == 0 })
                    let cells = model.network.cellCount
                    #expect(r.cellRelevance[((s * 9 + length) * cells)..<((s + 1) * 9 * cells)].allSatisfy { $0 == 0 })
                    let out = try backend.forward(try ForwardJob(network: model.network, inputs: alone, output: .last)).outputs
                    let k = out.count
                    #expect(zip(batch.outputs[(s * k)..<((s + 1) * k)], out).allSatisfy { abs($0 - $1) <= 1e-6 })
                }
            }
        }
    }

    @Test(arguments: names)
    func gradientTimesInputEqualsAutograd(name: String) throws {
        let (file, inputs) = try Self.data(name)
        let model = try Self.load(name, reading: .finalStates)
        let want = try file.floats("gradient_input")
        for backend in try Self.backends() {
            let r = try backend.relevance(try RelevanceJob(network: model.network, inputs: inputs, output: .last,
                                                           targets: try file.integers("target"), rule: .gradientTimesInput))
            let scale = want.map(abs).max()!
            let worst = zip(r.input, want).map { abs($0 - $1) }.max() ?? .infinity
            #expect(worst <= 1e-4 * scale, "\(name) on \(backend.identity): \(worst) of \(scale)")
        }
    }

    @Test func lengthsThatDoNotFitAreRefused() throws {
        var batch = try SequenceBatch(count: 2, steps: 3, width: 1, values: [0, 0, 0, 0, 0, 0])
        for bad in [[3], [3, 0], [4, 1], [-1, 2]] {
            #expect(throws: DataError.self) { try batch.setLengths(bad) }
        }
        try batch.setLengths([3, 3])
        #expect(!batch.isPadded)
        // A step to explain that is padding in some sequence.
        let model = try Self.load("gru1", reading: nil, output: .sequence)
        let (_, inputs) = try Self.data("gru1")
        #expect(throws: RelevanceError.self) {
            try RelevanceJob(network: model.network, inputs: inputs, output: .sequence, targets: [Int](repeating: 0, count: 6), step: 2)
        }
        #expect(throws: Never.self) {
            try RelevanceJob(network: model.network, inputs: inputs, output: .sequence, targets: [Int](repeating: 0, count: 6), step: 0)
        }
    }
}
