import CellAuditCore
import CellAuditOpenCL
import Foundation

/// An explanation of a model's outputs by layer-wise relevance propagation (METHOD.md §7; Arras
/// et al. 2019): relevance of every input value and every cell, for every sequence of a dataset
/// read a chunk at a time. `write` produces DIR/relevance.safetensors (written in place chunk by
/// chunk), DIR/cells.csv, DIR/report.html with its figures, and DIR/summary.json.
public struct ExplainRun {
    public var loaded: LoadedModel
    public var stream: DatasetStream
    /// The model's and the dataset's file names, as the outputs record them.
    public var modelName: String
    public var dataName: String
    public var target: ExplanationTarget
    /// The target as the user wrote it (recorded in relevance.safetensors' metadata).
    public var targetText: String
    /// The ε-rule's ε (≥ 0) and the share of each map's bias and stabiliser given to its inputs
    /// (0…1; 1 conserves relevance): `RelevanceJob.Rule.lrp`.
    public var epsilon: Float
    public var biasFactor: Float
    /// Models with an output at every step: explain only this step's output (nil: the sum over steps).
    public var step: Int?
    /// Sequences drawn as heatmaps in the report.
    public var samples: Int
    /// "all"/"cells", "none", or nil (all when it takes at most `perStepDefaultBytes`).
    public var perStep: String?
    /// One token per embedding id, for a model with a token embedding.
    public var vocabulary: [String]?

    public init(loaded: LoadedModel, stream: DatasetStream, modelName: String, dataName: String, target: ExplanationTarget, targetText: String,
                epsilon: Float, biasFactor: Float, step: Int?, samples: Int, perStep: String?, vocabulary: [String]?) {
        self.loaded = loaded; self.stream = stream; self.modelName = modelName; self.dataName = dataName; self.target = target
        self.targetText = targetText; self.epsilon = epsilon; self.biasFactor = biasFactor; self.step = step; self.samples = samples; self.perStep = perStep
        self.vocabulary = vocabulary
    }

    var rule: RelevanceJob.Rule { .lrp(epsilon: epsilon, biasFactor: biasFactor) }

    /// The per-step cell relevance written by default up to this size.
    public static let perStepDefaultBytes = 1 << 30

    /// Whether `cells` [N, T, C] is written, and why, for N sequences of T steps and C cells.
    public func writesPerStep(sequences n: Int, steps t: Int, cells c: Int) -> (Bool, String) {
        switch perStep {
        case "all", "cells": return (true, "--per-step \(perStep!)")
        case "none": return (false, "--per-step none")
        default:
            let bytes = MemoryBudget.product(n, t, c, 4)
            return bytes <= Self.perStepDefaultBytes ? (true, "default: \(MemoryBudget.format(bytes)), at most 1 GiB")
                : (false, "default: per-step would take \(MemoryBudget.format(bytes)), more than 1 GiB; --per-step all writes it")
        }
    }

    /// Explains every sequence into `dir` (a run's staging directory) on `backend`, reporting the
    /// relevance pass to `progress`.
    /// - Throws: `RelevanceError` for a target the data cannot give; the backend's and the file
    ///   system's errors.
    public func write(backend: any ComputeBackend, to dir: URL, progress: WorkProgress? = nil) throws -> ExplainSummary {
        let rows = loaded.network.layout.all
        let n = stream.count, t = stream.steps
        // One pass, a chunk of sequences at a time: each chunk's relevance is written in
        // place into relevance.safetensors and tallied; only the first `samples`
        // sequences (the report's pictures) are kept whole.
        let (perStepWritten, why) = writesPerStep(sequences: n, steps: t, cells: rows.count)
        let width = loaded.embedding?.width ?? loaded.network.inputSize
        let writer = try relevanceWriter(path: dir.appendingPathComponent("relevance.safetensors").path, sequences: n, steps: t,
                                         width: width, rows: rows, backend: backend, perStep: perStepWritten,
                                         tokens: stream.shape.holdsTokens)
        var tally = RelevanceTally(keep: samples)
        var shownTargets: [Int] = [], shownLabels: [Int] = [], shownTokens: [Int] = []
        var hasLabels = false
        var seconds = 0.0
        try stream.forEachChunk { range, chunk in
            let targets = try target.resolve(network: loaded.network, task: loaded.task, output: loaded.output,
                                             dataset: chunk, step: step, on: backend)
            let start = DispatchTime.now().uptimeNanoseconds
            var job = try RelevanceJob(network: loaded.network, inputs: chunk.inputs, output: loaded.output, targets: targets,
                                       step: step, rule: rule, firstSequence: range.lowerBound)
            job.progress = { done, _ in progress?("relevance of sequences", range.lowerBound + done, n) }
            let result = try backend.relevance(job)
            seconds += Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
            try writeRelevance(result, targets: targets, first: range.lowerBound, perStep: perStepWritten,
                               tokens: stream.shape.holdsTokens, to: writer)
            tally.add(result)
            let keep = max(0, min(samples - range.lowerBound, range.count))
            shownTargets += targets.prefix(keep)
            if let labels = chunk.labels { hasLabels = true; shownLabels += labels.prefix(keep) }
            if let tokens = chunk.tokens { shownTokens += tokens.ids.prefix(keep * t) }
        }
        try writeRows(rows, to: writer)
        try writer.finish()
        let meanAbsolute = tally.meanAbsoluteCellRelevance
        let ranks = rankPositions(meanAbsolute, rows: rows)
        let directions = !loaded.network.isForwardOnly
        var csv = [(CellID.tableHeader(directions: directions) + ["mean_abs_relevance", "rank"]).joined(separator: ",")]
        for (j, row) in rows.enumerated() {
            csv.append((row.tableFields(directions: directions) + [String(format: "%.6g", meanAbsolute[j]), String(ranks[j])]).joined(separator: ","))
        }
        try (csv.joined(separator: "\n") + "\n").write(to: dir.appendingPathComponent("cells.csv"), atomically: false, encoding: .utf8)

        var s = ExplainSummary()
        s.model = modelName
        s.data = dataName
        s.backend = "\(backend.identity)"
        s.sequences = n
        s.steps = t
        s.target = target.description
        s.epsilon = Double("\(epsilon)") ?? Double(epsilon)
        s.biasFactor = Double("\(biasFactor)") ?? Double(biasFactor)
        s.explainedStep = step
        s.seconds = seconds
        s.perStep = perStepWritten ? "all" : "none"
        s.perStepReason = why
        s.sequenceStepsPerSecond = Double(n * t) / max(seconds, 1e-12)
        if biasFactor == 1 {
            let errors = tally.conservationErrors.sorted()
            s.conservationMedianRelativeError = JSONNumber(errors[errors.count / 2])
            s.conservationWorstRelativeError = JSONNumber(errors.last!)
        }
        s.meanScore = JSONNumber(tally.scoreSum / Double(n))
        s.inputShareOfScore = JSONNumber(median(tally.inputShares))
        s.topCells = ranks.indices.sorted { ranks[$0] < ranks[$1] }.prefix(10).map {
            ExplainSummary.Cell(layer: rows[$0].layer, cell: rows[$0].index, direction: rows[$0].direction == .reverse ? "reverse" : nil,
                                meanAbsRelevance: meanAbsolute[$0])
        }
        // The first sequences, as LRP_for_LSTM shows sentences one by one.
        let shown = shownTargets.indices.map { i -> (index: Int, caption: String) in
            var caption = "target \(shownTargets[i]), score \(String(format: "%.3g", tally.shown!.score[i]))"
            if hasLabels { caption += ", label \(shownLabels[i])" }
            return (i, caption)
        }
        try writeExplainReport(s, tally: tally, rows: rows, shown: shown, tokens: stream.shape.holdsTokens ? shownTokens : nil,
                               vocabulary: vocabulary, meanAbsolute: meanAbsolute, ranks: ranks, to: dir)
        try encodeSummary(s).write(to: dir.appendingPathComponent("summary.json"))
        return s
        return s
    }

    private func median(_ values: [Double]) -> Double {
        let finite = values.filter(\.isFinite).sorted()
        return finite.isEmpty ? .nan : finite[finite.count / 2]
    }

    /// DIR/report.html and DIR/figures/*.svg.
    private func writeExplainReport(_ s: ExplainSummary, tally: RelevanceTally, rows: [CellID], shown: [(index: Int, caption: String)],
                                    tokens: [Int]?, vocabulary: [String]?, meanAbsolute: [Double], ranks: [Int], to dir: URL) throws {
        let facts: [(String, String)] = [
            ("model", s.model), ("data", "\(s.data): \(s.sequences) sequences of \(s.steps) steps"), ("backend", s.backend),
            ("explained", "\(s.target)\(step.map { " at step \($0)" } ?? "")"),
            ("rule", "LRP ε-rule, ε = \(epsilon), bias factor \(biasFactor); signal-take-all at gated products"),
            ("time", String(format: "%.3g s (%.3g sequence-steps/s)", s.seconds, s.sequenceStepsPerSecond)),
        ]
        var report = RelevanceReport(title: "CellAudit relevance: \(s.model)", facts: facts, tally: tally, rows: rows, shown: shown,
                                     biasFactor: biasFactor)
        if let tokens { report.tokens = (tokens, vocabulary) }
        let figures = report.figures(meanAbsolute: meanAbsolute, ranks: ranks)
        try writeFigures(figures, to: dir, checkpoint: nil)
        try report.html(figures: figures, meanAbsolute: meanAbsolute, ranks: ranks)
            .write(to: dir.appendingPathComponent("report.html"), atomically: false, encoding: .utf8)
    }

    /// relevance.safetensors laid out for N sequences, its tensors written in place chunk by
    /// chunk (`writeRelevance`) and the cell identity at the end (`writeRows`): input [N, T, I];
    /// tokens [N, T] with a token embedding (each token's relevance, the sum of its embedding's
    /// input relevance); cells [N, T, C] with `perStep`, else cells_total [N, C]; score, target,
    /// rest, min_denominator [N]; layer, cell [C]; direction [C] for a network with reverse layers.
    private func relevanceWriter(path: String, sequences n: Int, steps t: Int, width: Int, rows: [CellID], backend: any ComputeBackend,
                                 perStep: Bool, tokens: Bool) throws -> SafeTensorsStreamWriter {
        let c = rows.count
        var tensors: [SafeTensorsStreamWriter.Declaration] = [.init("input", .F32, [n, t, width])]
        if tokens { tensors.append(.init("tokens", .F32, [n, t])) }
        tensors.append(perStep ? .init("cells", .F32, [n, t, c]) : .init("cells_total", .F32, [n, c]))
        tensors += [.init("score", .F32, [n]), .init("target", .I32, [n]), .init("rest", .F32, [n]), .init("min_denominator", .F32, [n]),
                    .init("layer", .I32, [c]), .init("cell", .I32, [c])]
        if rows.contains(where: { $0.direction == .reverse }) { tensors.append(.init("direction", .I32, [c])) }
        return try SafeTensorsStreamWriter(path: path, tensors: tensors, metadata: [
            "model": modelName, "data": dataName,
            "rule": "lrp", "epsilon": "\(epsilon)", "bias_factor": "\(biasFactor)", "target": targetText,
            "step": step.map(String.init) ?? "all", "backend": "\(backend.identity)", "cellaudit_version": CellAuditVersion.current,
        ])
    }

    /// One chunk's relevance, sequences from `first` on, into the file `relevanceWriter` laid out.
    private func writeRelevance(_ r: RelevanceResult, targets: [Int], first: Int, perStep: Bool, tokens: Bool,
                                to writer: SafeTensorsStreamWriter) throws {
        try r.input.withUnsafeBufferPointer { try writer.write("input", at: first * r.steps * r.width, $0) }
        if tokens {
            try TokenEmbedding.tokenRelevance(r.input, count: r.count, steps: r.steps, width: r.width)
                .withUnsafeBufferPointer { try writer.write("tokens", at: first * r.steps, $0) }
        }
        if perStep {
            try r.cellRelevance.withUnsafeBufferPointer { try writer.write("cells", at: first * r.steps * r.cells, $0) }
        } else {
            var totals = [Float](repeating: 0, count: r.count * r.cells)
            for n in 0..<r.count {
                for t in 0..<r.steps {
                    let base = (n * r.steps + t) * r.cells
                    for c in 0..<r.cells { totals[n * r.cells + c] += r.cellRelevance[base + c] }
                }
            }
            try totals.withUnsafeBufferPointer { try writer.write("cells_total", at: first * r.cells, $0) }
        }
        try r.score.withUnsafeBufferPointer { try writer.write("score", at: first, $0) }
        try targets.map(Int32.init).withUnsafeBufferPointer { try writer.write("target", at: first, $0) }
        try r.rest.withUnsafeBufferPointer { try writer.write("rest", at: first, $0) }
        try r.minimumDenominator.withUnsafeBufferPointer { try writer.write("min_denominator", at: first, $0) }
    }

    /// The cell identity of relevance.safetensors' cell columns.
    private func writeRows(_ rows: [CellID], to writer: SafeTensorsStreamWriter) throws {
        try rows.map { Int32($0.layer) }.withUnsafeBufferPointer { try writer.write("layer", at: 0, $0) }
        try rows.map { Int32($0.index) }.withUnsafeBufferPointer { try writer.write("cell", at: 0, $0) }
        if rows.contains(where: { $0.direction == .reverse }) {
            try rows.map { $0.direction == .reverse ? Int32(1) : 0 }.withUnsafeBufferPointer { try writer.write("direction", at: 0, $0) }
        }
    }

    /// The vocabulary file: one token per line, exactly as many as the model's embedding has.
    public static func readVocabulary(_ path: String, model: LoadedModel) throws -> [String] {
        let name = (path as NSString).lastPathComponent
        guard let embedding = model.embedding else {
            throw RunFailure(description: "\(name): --vocab names the tokens of a token embedding, and \(model.fileName) has none")
        }
        InputFiles.record(path)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw RunFailure(description: "\(name): no such file") }
        guard !isDirectory.boolValue else { throw RunFailure(description: "\(name): is a directory; --vocab takes a text file, one token per line") }
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw RunFailure(description: "\(name): not readable as UTF-8 text")
        }
        // Lines end in \n, \r\n or \r (Swift reads "\r\n" as one Character, a newline).
        var lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).map(String.init)
        if lines.last == "" { lines.removeLast() }
        guard lines.count == embedding.vocabularySize else {
            throw RunFailure(description: "\(name): \(lines.count) tokens, but the embedding '\(embedding.source)' of \(model.fileName) has \(embedding.vocabularySize); line v must name id v")
        }
        return lines
    }
}
