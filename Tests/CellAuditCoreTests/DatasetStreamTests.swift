import CellAuditAnalysis
import CellAuditCore
import CellAuditImport
import CellAuditOpenCL
import Foundation
import Testing
import TestSupport

/// Datasets are read a chunk of sequences at a time (issue 27, item 2): a chunk read from the
/// file is exactly the same sequences read whole, in any order of chunks and for every format;
/// a run over chunks gives the numbers of a run over the whole dataset (sums in the same order;
/// losses to float rounding where the products see batches of another shape); a bad value deep
/// in the file is refused when the stream opens, naming its index in the file.
@Suite struct DatasetStreamTests {
    static let files = ["digits_test.safetensors", "flipflop_test.safetensors", "npz/digits20.npz", "npz/digits20_compressed.npz",
                        "npz/flipflop20.npz", "lengths/lstm_bi2.data.safetensors"]

    @Test(arguments: files)
    func chunksReadExactlyWhatTheWholeFileHolds(_ name: String) throws {
        let path = Fixtures.path(name)
        guard FileManager.default.fileExists(atPath: path) else { return }
        let file = try DatasetFile(path, requireAnswers: false)
        let whole = try file.readAll()
        let n = file.shape.count
        #expect(file.shape == whole.shape)
        // Awkward chunk sizes, read forward, then backward (an .npz member is reopened).
        for size in [1, 3, 7, n] {
            let ranges = stride(from: 0, to: n, by: size).map { $0..<min(n, $0 + size) }
            for order in [ranges, ranges.reversed()] {
                for range in order {
                    let part = try file.read(range)
                    let expected = try whole.read(range)
                    #expect(part.inputs == expected.inputs && part.labels == expected.labels && part.targets == expected.targets
                            && part.targetShape == expected.targetShape && part.firstSequence == range.lowerBound, "\(name) \(range)")
                }
            }
        }
    }

    /// A dataset of `count` random sequences with labels (and lengths), written as safetensors.
    static func write(_ count: Int, steps: Int, width: Int, classes: Int, lengths: Bool, to path: String,
                      poison: (sequence: Int, value: Float)? = nil) throws {
        var values = RandomInputs.floats(count * steps * width, seed: 41)
        if let poison { values[poison.sequence * steps * width + 1] = poison.value }
        var writer = SafeTensorsWriter()
        try writer.add("inputs", floats: values, shape: [count, steps, width])
        try writer.add("labels", int64s: (0..<count).map { ($0 * 7) % classes }, shape: [count])
        if lengths { try writer.add("lengths", int64s: (0..<count).map { 1 + ($0 * 5) % steps }, shape: [count]) }
        try writer.write(to: path)
    }

    @Test func aBadValueDeepInTheFileIsRefusedWhenTheStreamOpens() throws {
        let dir = try Fixtures.scratch("stream-poison")
        let path = dir.appendingPathComponent("poisoned.safetensors").path
        try Self.write(50, steps: 8, width: 8, classes: 10, lengths: false, to: path, poison: (37, .nan))
        let model = try ModelImport.load(Fixtures.path("digits_lstm8.safetensors"))
        do {
            // Chunks of about 4 sequences: the NaN is in the tenth.
            _ = try DatasetStream(try DatasetFile(path), preparedFor: model, chunkBytes: 4 * 8 * 56 * 4)
            Issue.record("a NaN in sequence 37 was read")
        } catch let error as FormatError {
            // Element 37·64 + 1, as the file numbers it (not the chunk).
            #expect("\(error)".contains("poisoned.safetensors") && "\(error)".contains("at element \(37 * 64 + 1)"), "\(error)")
        }
        // Lengths out of range are named by their sequence in the file too.
        var writer = SafeTensorsWriter()
        try writer.add("inputs", floats: RandomInputs.floats(30 * 8 * 8, seed: 3), shape: [30, 8, 8])
        try writer.add("labels", int64s: [Int](repeating: 0, count: 30), shape: [30])
        try writer.add("lengths", int64s: (0..<30).map { $0 == 23 ? 9 : 8 }, shape: [30])
        let bad = dir.appendingPathComponent("badlength.safetensors").path
        try writer.write(to: bad)
        #expect(throws: FormatError.self) { _ = try DatasetStream(try DatasetFile(bad), preparedFor: model, chunkBytes: 1) }
        do { _ = try DatasetStream(try DatasetFile(bad), preparedFor: model, chunkBytes: 1) } catch {
            #expect("\(error)".contains("sequence 23 has length 9"), "\(error)")
        }
    }

    /// The study's inputs: a stacked LSTM on its digits, and a padded bidirectional LSTM.
    static func cases() throws -> [(String, LoadedModel, String)] {
        let dir = try Fixtures.scratch("stream-cases")
        let padded = dir.appendingPathComponent("padded.safetensors").path
        var hints = ModelHints()
        hints.bidirectionalReadout = .finalStates
        let bidirectional = try ModelImport.load(Fixtures.path("bidirectional/lstm2.safetensors"), hints: hints)
        try write(45, steps: 6, width: bidirectional.network.inputSize, classes: bidirectional.network.readout!.outputs, lengths: true, to: padded)
        return [("digits_lstm32x2", try ModelImport.load(Fixtures.path("digits_lstm32x2.safetensors")), Fixtures.path("digits_test.safetensors")),
                ("bidirectional lstm2, padded", bidirectional, padded)]
    }

    @Test func anAblationStudyOverChunksGivesTheWholeDatasetsNumbers() throws {
        for (name, model, path) in try Self.cases() {
            let file = try DatasetFile(path)
            let whole = try DatasetStream(file, preparedFor: model)
            var dataset = try file.readAll()
            try dataset.prepare(for: model)
            // Chunks of a few sequences (the last one shorter).
            let chunked = try DatasetStream(file, preparedFor: model, chunkBytes: 1 << 14)
            #expect(chunked.chunks.count > 2 && whole.chunks.count == 1, "\(name): \(chunked.chunks.count) chunks")
            let fillWhole = AblationStudy.meanStates(model.network, inputs: dataset.inputs)
            let fillChunked = try AblationStudy.meanStates(model.network, data: chunked)
            #expect(fillWhole.h == fillChunked.h && fillWhole.c == fillChunked.c, "\(name): the mean clamp's sums run in the same order")
            for backend in try OpenCLTestSupport.backends() {
                let rankings = [("order", (0..<model.network.cellCount).map(Double.init))]
                let a = try AblationStudy.run(network: model.network, dataset: dataset, task: model.task, output: model.output,
                                              rankings: rankings, seeds: 2, points: 4, bootstrap: 50, clamp: .mean, on: backend)
                let b = try AblationStudy.run(network: model.network, data: chunked, task: model.task, output: model.output,
                                              rankings: rankings, seeds: 2, points: 4, bootstrap: 50, clamp: .mean, on: backend)
                #expect(a.baseline == b.baseline && a.allAblated == b.allAblated && a.accuracyDrop == b.accuracyDrop,
                        "\(name) on \(backend.identity)")
                #expect(a.curves.map(\.score) == b.curves.map(\.score), "\(name) on \(backend.identity)")
                // The losses: the same sums, of products formed over batches of another shape.
                let worst = zip(a.damage, b.damage).map { abs($0 - $1) / max(abs(a.baselineLoss), 1e-12) }.max() ?? .infinity
                // (Fused multiply-adds round the products' shapes apart further: 7.8e-7 measured.)
                let lossApart = abs(a.baselineLoss - b.baselineLoss) / max(abs(a.baselineLoss), 1e-12)
                #expect(worst <= 1e-5 && lossApart <= 1e-5, "\(name) on \(backend.identity): damage \(worst), loss \(lossApart)")
            }
        }
    }

    @Test func theRelevanceRankingOverChunksIsTheWholeDatasets() throws {
        let (_, model, path) = try Self.cases()[1]
        let file = try DatasetFile(path)
        var dataset = try file.readAll()
        try dataset.prepare(for: model)
        for backend in try OpenCLTestSupport.backends() {
            let whole = try RankingEvidence(dataset: dataset, task: model.task, output: model.output, backend: backend)
            let chunked = RankingEvidence(data: try DatasetStream(file, preparedFor: model, chunkBytes: 1 << 13), task: model.task,
                                          output: model.output, backend: backend)
            #expect(chunked.data.chunks.count > 3)
            for rule in [RelevanceJob.Rule.lrp(epsilon: 0.001, biasFactor: 0), .gradientTimesInput] {
                let a = try whole.meanAbsoluteCellRelevance(model.network, rule: rule)
                let b = try chunked.meanAbsoluteCellRelevance(model.network, rule: rule)
                let worst = zip(a, b).map { abs($0 - $1) / max(abs($0), 1e-9) }.max() ?? .infinity
                #expect(worst <= 1e-5, "\(rule) on \(backend.identity): \(worst)")
            }
        }
    }

    @Test func aScoreAccumulatedOverChunksIsTheWholeScore() throws {
        let model = try ModelImport.load(Fixtures.path("flipflop_gru32.safetensors"))
        let file = try DatasetFile(Fixtures.path("flipflop_test.safetensors"))
        let dataset = try file.readAll()
        let backend = CPUBackend(threads: 1)
        let whole = try backend.forward(try ForwardJob(network: model.network, inputs: dataset.inputs, output: model.output))
        var accumulator = ScoreAccumulator(task: model.task, output: model.output)
        for range in try DatasetStream(file, preparedFor: model, chunkBytes: 1).chunks {
            // The rows of the whole pass, a chunk at a time: the same sum, in the same order.
            let chunk = try dataset.read(range)
            let per = whole.outputs.count / dataset.inputs.count
            let part = ForwardResult(outputs: Array(whole.outputs[(range.lowerBound * per)..<(range.upperBound * per)]), hidden: [],
                                     shape: [1, range.count] + whole.shape.dropFirst(2))
            try accumulator.add(part, chunk: chunk)
        }
        #expect(accumulator.score == (try Score.of(whole, dataset: dataset, task: model.task, output: model.output)))
        #expect(accumulator.loss == (try Score.loss(whole, dataset: dataset, task: model.task, output: model.output)))
    }
}
