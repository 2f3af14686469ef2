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
                guard input == nil else { throw CleanFailure(description: "--input-token and --input both give the constant input; give one") }
                guard let embedding = loaded.embedding else {
                    throw CleanFailure(description: "\(loaded.fileName): --input-token needs a model with a token embedding, and it has none (give --input)")
                }
                guard (0..<embedding.vocabularySize).contains(inputToken) else {
                    throw CleanFailure(description: "\(loaded.fileName): --input-token \(inputToken) is outside the embedding's vocabulary 0..<\(embedding.vocabularySize) ('\(embedding.source)')")
                }
                x = embedding.vector(inputToken).map(Double.init)
            }
            guard x.count == loaded.network.inputSize else {
                throw CleanFailure(description: "--input has \(x.count) values; \((model as NSString).lastPathComponent) takes \(loaded.network.inputSize) input channels")
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

/// The dynamics outputs, shared by `attractors` and `audit --data` (which writes them under
/// DIR/attractors/).
enum AttractorOutput {
    /// `data`: the dataset whose first sequences' visited states seed the search (only they are read).
    static func run(network: RecurrentNetwork, input: [Double], inputToken: Int? = nil, data: DatasetStream?, options: FixedPointOptions, pulses: PulseOptions,
                    backend: any ComputeBackend, model: String, to dir: URL, progress: (String) -> Void) throws -> AttractorSummary {
        let start = DispatchTime.now().uptimeNanoseconds
        let seeding = try data?.leadingSequences(AttractorAnalysis.seedSequences)
        let analysis = try AttractorAnalysis.run(network: network, input: input, data: seeding?.inputs, options: options, pulses: pulses,
                                                 backend: backend, progress: progress)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        try write(analysis, network: network, options: options, model: model, data: data?.fileName, backend: backend, to: dir)
        var s = AttractorSummary()
        s.model = model
        s.data = data?.fileName
        s.backend = "\(backend.identity)"
        s.input = input
        s.inputToken = inputToken
        s.seeds = options.seeds
        s.seconds = seconds
        s.notes = analysis.notes
        s.layers = analysis.layers.map { layer in
            let points = analysis.points[layer.points]
            return AttractorSummary.Layer(layer: layer.index, dimension: layer.dimension, direction: layer.direction == .reverse ? "reverse" : nil,
                                          fixedPoints: points.filter(\.isFixed).count,
                                          stableFixedPoints: points.filter { $0.isFixed && $0.isStable }.count,
                                          slowPoints: points.filter { !$0.isFixed }.count, edges: layer.graph.edges.count,
                                          unresolvedProbes: layer.graph.unresolved.count, iterations: layer.iterations,
                                          unconvergedSeeds: layer.unconverged, unreachablePoints: layer.unreachable,
                                          outlierPoints: layer.outliers)
        }
        let facts: [(String, String)] = [
            ("model", model), ("data", data.map { "\($0.fileName): \($0.count) sequences (states visited seed the search)" } ?? "none (random seeds)"),
            ("backend", s.backend), ("constant input", input.map { String(format: "%g", $0) }.joined(separator: ", ")),
            ("search", "\(options.seeds) seeds per layer, Levenberg–Marquardt to q < \(options.qTolerance), merged within \(options.mergeDistance)"),
            ("pulses", "\(pulses.length) step(s), amplitude bisected in (0, \(pulses.maxAmplitude)] to \(Int(pulses.resolution * 100)) %"),
            ("time", String(format: "%.3g s", seconds)),
        ]
        let report = AttractorReport(title: "CellAudit attractors: \(model)", facts: facts, analysis: analysis, network: network)
        let figures = try report.figures()
        let figureDir = dir.appendingPathComponent("figures")
        try makeOutputSubdirectory(figureDir)
        for (i, (name, svg)) in figures.enumerated() {
            try svg.write(to: figureDir.appendingPathComponent(name), atomically: false, encoding: .utf8)
            if i == 0 { signalSelfForTesting(at: "attractors-figures") }
        }
        try report.html(figures: figures).write(to: dir.appendingPathComponent("report.html"), atomically: false, encoding: .utf8)
        try encodeSummary(s).write(to: dir.appendingPathComponent("summary.json"))
        return s
    }

    /// fixed_points.csv, fixed_points.safetensors, graph.json and graph.dot.
    static func write(_ analysis: AttractorAnalysis, network: RecurrentNetwork, options: FixedPointOptions, model: String, data: String?,
                      backend: any ComputeBackend, to dir: URL) throws {
        let points = analysis.points, P = points.count
        let directions = !network.isForwardOnly
        var csv = ["index,layer,\(directions ? "direction," : "")kind,stable,q,spectral_radius,unstable_modes,slowest_time_constant"]
        for (i, p) in points.enumerated() {
            csv.append("\(i),\(p.layer),\(directions ? p.direction.rawValue + "," : "")\(p.isFixed ? "fixed" : "slow"),\(p.isStable),\(String(format: "%.6e", p.q)),"
                       + "\(String(format: "%.9g", p.spectralRadius)),\(p.unstableModes),\(String(format: "%.6g", p.slowestTimeConstant))")
        }
        try (csv.joined(separator: "\n") + "\n").write(to: dir.appendingPathComponent("fixed_points.csv"), atomically: false, encoding: .utf8)

        // States [P, D] and eigenvalues [P, D, 2] in float64; rows of layers with a smaller state
        // are padded with NaN (`dimension` gives each row's own D).
        let D = max(1, analysis.layers.map(\.dimension).max() ?? 1)
        var states = [Double](repeating: .nan, count: P * D), eig = [Double](repeating: .nan, count: P * D * 2)
        for (i, p) in points.enumerated() {
            for (k, v) in p.state.enumerated() { states[i * D + k] = v }
            for (k, e) in p.eigenvalues.enumerated() { eig[(i * D + k) * 2] = e.re; eig[(i * D + k) * 2 + 1] = e.im }
        }
        var writer = SafeTensorsWriter(metadata: [
            "model": model, "data": data ?? "", "backend": "\(backend.identity)", "cellaudit_version": CellAudit.version,
            "q_tolerance": "\(options.qTolerance)", "seeds": "\(options.seeds)",
            "layout": "states [P, D]: h, then c for an LSTM; eigenvalues [P, D, 2]: (real, imaginary) by decreasing modulus; NaN past a row's dimension",
        ])
        func doubles(_ name: String, _ values: [Double], _ shape: [Int]) throws {
            try writer.add(name, dtype: .F64, shape: shape, bytes: values.withUnsafeBufferPointer { Data(buffer: $0) })
        }
        try doubles("states", states, [P, D])
        try doubles("eigenvalues", eig, [P, D, 2])
        try doubles("q", points.map(\.q), [P])
        try writer.add("layer", int32s: points.map { Int32($0.layer) }, shape: [P])
        if directions { try writer.add("direction", int32s: points.map { $0.direction == .reverse ? 1 : 0 }, shape: [P]) }
        try writer.add("dimension", int32s: points.map { Int32($0.state.count) }, shape: [P])
        try writer.add("stable", int32s: points.map { Int32($0.isStable ? 1 : 0) }, shape: [P])
        try writer.write(to: dir.appendingPathComponent("fixed_points.safetensors").path)

        let graph = AttractorGraph(
            nodes: analysis.stablePoints.map {
                AttractorGraph.Node(index: $0, layer: points[$0].layer, spectralRadius: points[$0].spectralRadius,
                                    readout: analysis.readout(at: $0, of: network),
                                    direction: points[$0].direction == .reverse ? "reverse" : nil)
            },
            edges: analysis.layers.flatMap { l in l.graph.edges.map { AttractorGraph.Edge(layer: l.index, edge: $0) } },
            unresolved: analysis.layers.flatMap { l in l.graph.unresolved.map { AttractorGraph.Unresolved(layer: l.index, probe: $0) } })
        try encodeSummary(graph).write(to: dir.appendingPathComponent("graph.json"))

        var dot = ["digraph attractors {", "  // CellAudit excitable network: stable fixed points and the pulses that move between them",
                   "  node [shape=circle];"]
        for node in graph.nodes { dot.append("  p\(node.index) [label=\"\(node.index)\\nL\(node.layer)\(node.direction == nil ? "" : " rev")\"];") }
        for e in graph.edges {
            dot.append("  p\(e.from) -> p\(e.to) [label=\"ch \(e.channel)\(e.sign > 0 ? "+" : "-") \(String(format: "%.3g", e.threshold))\"];")
        }
        dot.append("}")
        try (dot.joined(separator: "\n") + "\n").write(to: dir.appendingPathComponent("graph.dot"), atomically: false, encoding: .utf8)
    }
}

/// DIR/graph.json.
struct AttractorGraph: Codable {
    struct Node: Codable {
        var index: Int, layer: Int, spectralRadius: Double
        /// The readout V h + a at the point (last layer, models with a readout).
        var readout: [Double]?
        /// "reverse" for a point of a reverse direction's map; absent for forward layers.
        var direction: String?
    }
    struct Edge: Codable {
        var layer: Int, from: Int, to: Int, channel: Int, sign: Int, threshold: Double
        init(layer: Int, edge e: ExcitableNetwork.Edge) {
            self.layer = layer; from = e.from; to = e.to; channel = e.channel; sign = e.sign; threshold = e.threshold
        }
    }
    struct Unresolved: Codable {
        var layer: Int, from: Int, channel: Int, sign: Int, amplitude: Double
        init(layer: Int, probe u: ExcitableNetwork.Unresolved) {
            self.layer = layer; from = u.from; channel = u.channel; sign = u.sign; amplitude = u.amplitude
        }
    }
    var nodes: [Node], edges: [Edge], unresolved: [Unresolved]
}

/// DIR/summary.json of `attractors`.
struct AttractorSummary: Codable {
    struct Layer: Codable {
        var layer: Int, dimension: Int
        /// "reverse" for a reverse direction's map; absent for forward layers.
        var direction: String?
        var fixedPoints: Int, stableFixedPoints: Int, slowPoints: Int
        var edges: Int, unresolvedProbes: Int
        /// Levenberg–Marquardt iterations of the longest-running seed chunk.
        var iterations: Int
        /// Seeds that stopped with q ≥ 1e-4 (a local minimum of q that high, or the iteration
        /// limit): neither fixed nor slow points, not listed.
        var unconvergedSeeds: Int
        /// Distinct points dropped: outside the states the map can produce, and outliers.
        var unreachablePoints: Int, outlierPoints: Int
    }
    var model = "", data: String?, backend = ""
    var input: [Double] = []
    /// `--input-token`: the token whose embedding vector is the constant input.
    var inputToken: Int?
    var seeds = 0
    var layers: [Layer] = []
    var notes: [String] = []
    var seconds = 0.0

    func print() {
        Swift.print("attractors of \(model) under x̄ = \(inputToken.map { "the embedding of token \($0) " } ?? "")(\(input.map { String(format: "%g", $0) }.joined(separator: ", "))), \(seeds) seeds per layer\(data.map { ", seeded from \($0)" } ?? "")")
        Swift.print("backend: \(backend)")
        for l in layers {
            Swift.print("layer \(l.layer)\(l.direction == nil ? "" : " rev") (state of \(l.dimension)): \(l.fixedPoints) fixed points, \(l.stableFixedPoints) stable; \(l.slowPoints) slow points (\(l.unconvergedSeeds) of the seeds stopped with q ≥ 1e-4\(l.unreachablePoints + l.outlierPoints > 0 ? "; \(l.unreachablePoints) points outside the states the layer can take and \(l.outlierPoints) outliers dropped" : "")); \(l.edges) edges between stable points\(l.unresolvedProbes > 0 ? ", \(l.unresolvedProbes) probes unresolved" : "")")
        }
        for note in notes { Swift.print("note: \(note)") }
        Swift.print(String(format: "time: %.3g s", seconds))
    }
}
