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
            let file = try DatasetFile(data, requireAnswers: false)
            let loaded = try modelOptions.load(model, data: file)
            guard loaded.network.readout != nil else {
                throw RunFailure(description: "\((model as NSString).lastPathComponent): the model has no readout, so there is no output to explain")
            }
            let stream = try DatasetStream(file, preparedFor: loaded)
            let vocabulary = try vocab.map { try ExplainRun.readVocabulary($0, model: loaded) }
            let output = try OutputDirectory(outputOptions.out ?? "cellaudit-explain", force: outputOptions.force)
            let backend = try backendOptions.makeBackend()
            let target = try parsedTarget()
            let progress = outputOptions.phaseProgress("explain")
            let run = ExplainRun(loaded: loaded, stream: stream, modelName: (model as NSString).lastPathComponent,
                                 dataName: (data as NSString).lastPathComponent, target: target, targetText: self.target, epsilon: epsilon, biasFactor: biasFactor,
                                 step: step, samples: samples, perStep: perStep, vocabulary: vocabulary)
            let summary = try output.build { dir in try run.write(backend: backend, to: dir, progress: progress) }
            if outputOptions.json { try printJSON(summary); return }
            summary.print()
            let out = outputOptions.out ?? "cellaudit-explain"
            print("wrote \(out)/report.html, \(out)/figures/, \(out)/relevance.safetensors, \(out)/cells.csv, \(out)/summary.json")
        }
    }
}
