import ArgumentParser
import CellAuditAnalysis
import CellAuditCore
import CellAuditImport
import Foundation

struct Attractors: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fixed points, their stability, and the excitable network of input-driven transitions between stable states.",
        discussion: """
        Each layer is taken as a map s' = F(s, x̄) under a constant input (Ceni, Ashwin & Livi 2019; \
        Sussillo & Barak 2013; docs/METHOD.md §8). Fixed points are found from --seeds seeds by \
        Levenberg–Marquardt on q = ½‖F(s) − s‖², merged within 1e-3, and classified by the \
        eigenvalues of the Jacobian (LAPACK). From every stable point, pulses on each input channel \
        of both signs are bisected for the smallest amplitude that moves the layer to another \
        stable point. Writes DIR/fixed_points.csv, DIR/fixed_points.safetensors, DIR/graph.json, \
        DIR/graph.dot, DIR/report.html (with DIR/figures/) and DIR/summary.json.
        """
    )

    @Argument(help: ArgumentHelp(modelArgumentHelp))
    var model: String

    @Option(help: "A dataset whose visited states seed the search (3/4 of the seeds, with noise) and drop outliers.")
    var data: String?

    @Option(help: "The constant input x̄, comma-separated, one value per input channel (default: zeros); write --input=-1,0,0 when it starts with a minus sign.")
    var input: String?

    @Option(help: "Models with a token embedding: the constant input is this token's embedding vector (instead of --input).")
    var inputToken: Int?

    @Option(help: "Seeds per layer.")
    var seeds: Int = Defaults.fixedPointSeeds

    @Option(help: "Largest pulse amplitude tried; thresholds are bisected in (0, max] to 1 %.")
    var maxAmplitude: Double = Defaults.pulseMaxAmplitude

    @Option(help: "Pulse length in steps.")
    var pulseLength: Int = 1

    @Option(help: "Random seed of the seeds' draws.")
    var seed: UInt64 = 0

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var backendOptions: BackendOptions
    @OptionGroup var outputOptions: OutputOptions

    func validate() throws {
        guard (1...4_194_304).contains(seeds) else { throw ValidationError("--seeds must lie in 1…4194304, got \(seeds)") }
        guard maxAmplitude.isFinite, maxAmplitude > 0, maxAmplitude <= 1e6 else {
            throw ValidationError("--max-amplitude must lie in (0, 1e6], got \(maxAmplitude)")
        }
        guard (1...10_000).contains(pulseLength) else { throw ValidationError("--pulse-length must lie in 1…10000 steps, got \(pulseLength)") }
        if let input { _ = try parseInput(input) }
    }

    func parseInput(_ text: String) throws -> [Double] {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        return try parts.map { part in
            guard let v = Double(part), v.isFinite else { throw ValidationError("--input: '\(part)' is not a finite number") }
            return v
        }
    }

    func run() throws {
        try failing {
            let file = try data.map { try DatasetFile($0, requireAnswers: false) }
            let loaded = try modelOptions.load(model, data: file)
            let dataset = try file.map { try DatasetStream($0, preparedFor: loaded) }
            var x = try input.map(parseInput) ?? [Double](repeating: 0, count: loaded.network.inputSize)
            if let inputToken {
                guard input == nil else { throw RunFailure(description: "--input-token and --input both give the constant input; give one") }
                guard let embedding = loaded.embedding else {
                    throw RunFailure(description: "\(loaded.fileName): --input-token needs a model with a token embedding, and it has none (give --input)")
                }
                guard (0..<embedding.vocabularySize).contains(inputToken) else {
                    throw RunFailure(description: "\(loaded.fileName): --input-token \(inputToken) is outside the embedding's vocabulary 0..<\(embedding.vocabularySize) ('\(embedding.source)')")
                }
                x = embedding.vector(inputToken).map(Double.init)
            }
            guard x.count == loaded.network.inputSize else {
                throw RunFailure(description: "--input has \(x.count) values; \((model as NSString).lastPathComponent) takes \(loaded.network.inputSize) input channels")
            }
            try AttractorAnalysis.checkMemory(network: loaded.network, seeds: seeds)
            let output = try OutputDirectory(outputOptions.out ?? "cellaudit-attractors", force: outputOptions.force)
            let backend = try backendOptions.makeBackend()
            var options = FixedPointOptions()
            options.seeds = seeds
            options.randomSeed = seed
            var pulses = PulseOptions()
            pulses.maxAmplitude = maxAmplitude
            pulses.length = pulseLength
            let quiet = outputOptions.quiet || outputOptions.json
            let summary = try output.build { dir in
                try AttractorOutput.run(network: loaded.network, input: x, inputToken: inputToken, data: dataset, options: options, pulses: pulses, backend: backend,
                                        model: (model as NSString).lastPathComponent, to: dir,
                                        progress: { if !quiet { Terminal.warn("attractors: \($0)") } })
            }
            if outputOptions.json { try printJSON(summary); return }
            summary.print()
            let out = outputOptions.out ?? "cellaudit-attractors"
            print("wrote \(out)/report.html, \(out)/figures/, \(out)/fixed_points.csv, \(out)/fixed_points.safetensors, \(out)/graph.json, \(out)/graph.dot, \(out)/summary.json")
        }
    }
}

