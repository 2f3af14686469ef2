import ArgumentParser
import CellAuditAnalysis
import CellAuditCore
import CellAuditImport
import Foundation

struct Explain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Explain predictions by layer-wise relevance propagation: relevance of every input value and every cell.",
        discussion: """
        LRP through the readout and every recurrent layer (Arras et al. 2019; METHOD.md §7): the \
        ε-rule on every linear map, all relevance of a gated product to its signal. Writes \
        DIR/relevance.safetensors (input [N,T,I], cells [N,T,C], score, target, rest, \
        min_denominator, layer, cell; tokens [N,T] for a model with a token embedding), DIR/cells.csv, DIR/report.html and DIR/summary.json.
        """
    )

    @Argument(help: ArgumentHelp(modelArgumentHelp))
    var model: String

    @Option(help: "The dataset whose sequences are explained.")
    var data: String

    @Option(help: "The output explained: predicted (classification), label, or an output index.")
    var target: String = "predicted"

    @Option(help: "Models with an output at every step: explain only this step's output (default: the sum over steps).")
    var step: Int?

    @Option(help: "ε of the ε-rule (≥ 0): stabilises every denominator z as z + ε·sign(z).")
    var epsilon: Float = Defaults.relevanceEpsilon

    @Option(help: "Share of each map's bias and stabiliser given to its inputs, 0…1 (default 0; 1 conserves relevance).")
    var biasFactor: Float = Defaults.relevanceBiasFactor

    @Option(help: "Models with a token embedding: a text file of the vocabulary, one token per line (line v is id v, as many lines as the embedding has tokens); the report then shows the explained sequences as words.")
    var vocab: String?

    @Option(help: "Sequences drawn as heatmaps in the report.")
    var samples: Int = 6

    @Option(help: "The per-step relevance of every cell in relevance.safetensors: all ('cells' [N, T, C]; 'cells' means the same), or none ('cells_total' [N, C], summed over steps). Default: all when it takes at most 1 GiB, else none (the summary says which).")
    var perStep: String?

    /// The per-step cell relevance written by default up to this size.
    static let perStepDefaultBytes = 1 << 30

    /// Whether `cells` [N, T, C] is written, and why, for N sequences of T steps and C cells.
    func writesPerStep(sequences n: Int, steps t: Int, cells c: Int) -> (Bool, String) {
        switch perStep {
        case "all", "cells": return (true, "--per-step \(perStep!)")
        case "none": return (false, "--per-step none")
        default:
            let bytes = MemoryBudget.product(n, t, c, 4)
            return bytes <= Self.perStepDefaultBytes ? (true, "default: \(MemoryBudget.format(bytes)), at most 1 GiB")
                : (false, "default: per-step would take \(MemoryBudget.format(bytes)), more than 1 GiB; --per-step all writes it")
        }
    }

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var backendOptions: BackendOptions
    @OptionGroup var outputOptions: OutputOptions

    func validate() throws {
        guard epsilon.isFinite, epsilon >= 0 else { throw ValidationError("--epsilon must be finite and ≥ 0, got \(epsilon)") }
        guard biasFactor.isFinite, (0...1).contains(biasFactor) else { throw ValidationError("--bias-factor must lie in [0, 1], got \(biasFactor)") }
        guard samples >= 0 else { throw ValidationError("--samples must be ≥ 0, got \(samples)") }
        if let perStep, !["none", "cells", "all"].contains(perStep) { throw ValidationError("--per-step must be none, cells or all, got '\(perStep)'") }
        if let step, step < 0 { throw ValidationError("--step must be ≥ 0, got \(step)") }
        _ = try parsedTarget()
    }

    func parsedTarget() throws -> ExplanationTarget {
        do { return try ExplanationTarget(parsing: target) } catch RelevanceError.invalid(let problem) {
            throw ValidationError(problem)
        }
    }

    func run() throws {
        try failing {
            // Explaining predictions needs inputs only; labels only for --target label.
            var dataset = try Dataset.load(data, requireAnswers: false)
            let loaded = try modelOptions.load(model, data: dataset)
            guard loaded.network.readout != nil else {
                throw CleanFailure(description: "\((model as NSString).lastPathComponent): the model has no readout, so there is no output to explain")
            }
            try dataset.prepare(for: loaded)
            let vocabulary = try vocab.map { try readVocabulary($0, model: loaded) }
            let output = try OutputDirectory(outputOptions.out ?? "cellaudit-explain", force: outputOptions.force)
            let backend = try backendOptions.makeBackend()
            let targets = try parsedTarget().resolve(network: loaded.network, task: loaded.task, output: loaded.output,
                                                     dataset: dataset, step: step, on: backend)
            var job = try RelevanceJob(network: loaded.network, inputs: dataset.inputs, output: loaded.output, targets: targets,
                                       step: step, rule: .lrp(epsilon: epsilon, biasFactor: biasFactor))
            let progress = outputOptions.phaseProgress("explain")
            job.progress = { done, total in progress("relevance of sequences", done, total) }
            let summary = try output.build { dir -> ExplainSummary in
                let start = DispatchTime.now().uptimeNanoseconds
                let result = try backend.relevance(job)
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
                let rows = loaded.network.layout.all
                let meanAbsolute = result.meanAbsoluteCellRelevance()
                let ranks = rankPositions(meanAbsolute, rows: rows)
                let (perStepWritten, why) = writesPerStep(sequences: result.count, steps: result.steps, cells: result.cells)
                try writeRelevance(result, rows: rows, targets: targets, backend: backend, perStep: perStepWritten, tokens: dataset.tokens != nil,
                                   to: dir.appendingPathComponent("relevance.safetensors"))
                let directions = !loaded.network.isForwardOnly
                var csv = [(CellID.tableHeader(directions: directions) + ["mean_abs_relevance", "rank"]).joined(separator: ",")]
                for (j, row) in rows.enumerated() {
                    csv.append((row.tableFields(directions: directions) + [String(format: "%.6g", meanAbsolute[j]), String(ranks[j])]).joined(separator: ","))
                }
                try (csv.joined(separator: "\n") + "\n").write(to: dir.appendingPathComponent("cells.csv"), atomically: false, encoding: .utf8)

                var s = ExplainSummary()
                s.model = (model as NSString).lastPathComponent
                s.data = (data as NSString).lastPathComponent
                s.backend = "\(backend.identity)"
                s.sequences = result.count
                s.steps = result.steps
                s.target = try parsedTarget().description
                s.epsilon = Double("\(epsilon)") ?? Double(epsilon)
                s.biasFactor = Double("\(biasFactor)") ?? Double(biasFactor)
                s.explainedStep = step
                s.seconds = seconds
                s.perStep = perStepWritten ? "all" : "none"
                s.perStepReason = why
                s.sequenceStepsPerSecond = Double(result.count * result.steps) / max(seconds, 1e-12)
                if biasFactor == 1 {
                    let errors = result.conservationErrors().sorted()
                    s.conservationMedianRelativeError = JSONNumber(errors[errors.count / 2])
                    s.conservationWorstRelativeError = JSONNumber(errors.last!)
                }
                s.meanScore = JSONNumber(result.score.reduce(0.0) { $0 + Double($1) } / Double(result.count))
                s.inputShareOfScore = JSONNumber(median(result.inputShares()))
                s.topCells = ranks.indices.sorted { ranks[$0] < ranks[$1] }.prefix(10).map {
                    ExplainSummary.Cell(layer: rows[$0].layer, cell: rows[$0].index, direction: rows[$0].direction == .reverse ? "reverse" : nil,
                                        meanAbsRelevance: meanAbsolute[$0])
                }
                try writeExplainReport(s, result: result, rows: rows, targets: targets, dataset: dataset, vocabulary: vocabulary,
                                       meanAbsolute: meanAbsolute, ranks: ranks, to: dir)
                try encodeSummary(s).write(to: dir.appendingPathComponent("summary.json"))
                return s
            }
            if outputOptions.json { try printJSON(summary); return }
            summary.print()
            let out = outputOptions.out ?? "cellaudit-explain"
            print("wrote \(out)/report.html, \(out)/figures/, \(out)/relevance.safetensors, \(out)/cells.csv, \(out)/summary.json")
        }
    }

    private func median(_ values: [Double]) -> Double {
        let finite = values.filter(\.isFinite).sorted()
        return finite.isEmpty ? .nan : finite[finite.count / 2]
    }

    /// DIR/report.html and DIR/figures/*.svg.
    private func writeExplainReport(_ s: ExplainSummary, result: RelevanceResult, rows: [CellID], targets: [Int],
                                    dataset: Dataset, vocabulary: [String]?, meanAbsolute: [Double], ranks: [Int], to dir: URL) throws {
        // The first sequences, as LRP_for_LSTM shows sentences one by one.
        let shown = (0..<min(samples, result.count)).map { i -> (index: Int, caption: String) in
            var caption = "target \(targets[i]), score \(String(format: "%.3g", result.score[i]))"
            if let labels = dataset.labels { caption += ", label \(labels[i])" }
            return (i, caption)
        }
        let facts: [(String, String)] = [
            ("model", s.model), ("data", "\(s.data): \(s.sequences) sequences of \(s.steps) steps"), ("backend", s.backend),
            ("explained", "\(s.target)\(step.map { " at step \($0)" } ?? "")"),
            ("rule", "LRP ε-rule, ε = \(epsilon), bias factor \(biasFactor); signal-take-all at gated products"),
            ("time", String(format: "%.3g s (%.3g sequence-steps/s)", s.seconds, s.sequenceStepsPerSecond)),
        ]
        var report = RelevanceReport(title: "CellAudit relevance: \(s.model)", facts: facts, result: result, rows: rows, shown: shown,
                                     biasFactor: biasFactor)
        if let tokens = dataset.tokens { report.tokens = (tokens.ids, vocabulary) }
        let figures = report.figures(meanAbsolute: meanAbsolute, ranks: ranks)
        let figureDir = dir.appendingPathComponent("figures")
        try makeOutputSubdirectory(figureDir)
        for (name, svg) in figures { try svg.write(to: figureDir.appendingPathComponent(name), atomically: false, encoding: .utf8) }
        try report.html(figures: figures, meanAbsolute: meanAbsolute, ranks: ranks)
            .write(to: dir.appendingPathComponent("report.html"), atomically: false, encoding: .utf8)
    }

    /// - Parameter perStep: write `cells` [N, T, C] (else `cells_total` [N, C]), as `writesPerStep` decided.
    /// - Parameter tokens: also write `tokens` [N, T], each token's relevance (the sum of its
    ///   embedding's input relevance over the embedding dimensions).
    private func writeRelevance(_ r: RelevanceResult, rows: [CellID], targets: [Int], backend: any ComputeBackend, perStep: Bool,
                                tokens: Bool, to url: URL) throws {
        var writer = SafeTensorsWriter(metadata: [
            "model": (model as NSString).lastPathComponent, "data": (data as NSString).lastPathComponent,
            "rule": "lrp", "epsilon": "\(epsilon)", "bias_factor": "\(biasFactor)", "target": target,
            "step": step.map(String.init) ?? "all", "backend": "\(backend.identity)", "cellaudit_version": CellAudit.version,
        ])
        try writer.add("input", floats: r.input, shape: [r.count, r.steps, r.width])
        if tokens {
            try writer.add("tokens", floats: TokenEmbedding.tokenRelevance(r.input, count: r.count, steps: r.steps, width: r.width),
                           shape: [r.count, r.steps])
        }
        if perStep {
            try writer.add("cells", floats: r.cellRelevance, shape: [r.count, r.steps, r.cells])
        } else {
            var totals = [Float](repeating: 0, count: r.count * r.cells)
            for n in 0..<r.count {
                for t in 0..<r.steps {
                    let base = (n * r.steps + t) * r.cells
                    for c in 0..<r.cells { totals[n * r.cells + c] += r.cellRelevance[base + c] }
                }
            }
            try writer.add("cells_total", floats: totals, shape: [r.count, r.cells])
        }
        try writer.add("score", floats: r.score, shape: [r.count])
        try writer.add("target", int32s: targets.map(Int32.init), shape: [r.count])
        try writer.add("rest", floats: r.rest, shape: [r.count])
        try writer.add("min_denominator", floats: r.minimumDenominator, shape: [r.count])
        try writer.add("layer", int32s: rows.map { Int32($0.layer) }, shape: [rows.count])
        try writer.add("cell", int32s: rows.map { Int32($0.index) }, shape: [rows.count])
        if rows.contains(where: { $0.direction == .reverse }) {
            try writer.add("direction", int32s: rows.map { $0.direction == .reverse ? 1 : 0 }, shape: [rows.count])
        }
        try writer.write(to: url.path)
    }

    /// The vocabulary file: one token per line, exactly as many as the model's embedding has.
    private func readVocabulary(_ path: String, model: LoadedModel) throws -> [String] {
        let name = (path as NSString).lastPathComponent
        guard let embedding = model.embedding else {
            throw CleanFailure(description: "\(name): --vocab names the tokens of a token embedding, and \(model.fileName) has none")
        }
        InputFiles.record(path)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw CleanFailure(description: "\(name): no such file") }
        guard !isDirectory.boolValue else { throw CleanFailure(description: "\(name): is a directory; --vocab takes a text file, one token per line") }
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw CleanFailure(description: "\(name): not readable as UTF-8 text")
        }
        // Lines end in \n, \r\n or \r (Swift reads "\r\n" as one Character, a newline).
        var lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).map(String.init)
        if lines.last == "" { lines.removeLast() }
        guard lines.count == embedding.vocabularySize else {
            throw CleanFailure(description: "\(name): \(lines.count) tokens, but the embedding '\(embedding.source)' of \(model.fileName) has \(embedding.vocabularySize); line v must name id v")
        }
        return lines
    }
}
