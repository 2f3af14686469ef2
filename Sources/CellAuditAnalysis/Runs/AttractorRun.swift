import CellAuditCore
import CellAuditOpenCL
import Foundation

/// The dynamics outputs, shared by `attractors` and `audit --data` (which writes them under
/// DIR/attractors/).
public enum AttractorOutput {
    /// `data`: the dataset whose first sequences' visited states seed the search (only they are read).
    public static func run(network: RecurrentNetwork, input: [Double], inputToken: Int? = nil, data: DatasetStream?, options: FixedPointOptions, pulses: PulseOptions,
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
        try writeFigures(figures, to: dir, checkpoint: "attractors-figures")
        try report.html(figures: figures).write(to: dir.appendingPathComponent("report.html"), atomically: false, encoding: .utf8)
        try encodeSummary(s).write(to: dir.appendingPathComponent("summary.json"))
        return s
    }

    /// fixed_points.csv, fixed_points.safetensors, graph.json and graph.dot.
    public static func write(_ analysis: AttractorAnalysis, network: RecurrentNetwork, options: FixedPointOptions, model: String, data: String?,
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
            "model": model, "data": data ?? "", "backend": "\(backend.identity)", "cellaudit_version": CellAuditVersion.current,
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
public struct AttractorGraph: Codable {
    public struct Node: Codable {
        public var index: Int, layer: Int, spectralRadius: Double
        /// The readout V h + a at the point (last layer, models with a readout).
        public var readout: [Double]?
        /// "reverse" for a point of a reverse direction's map; absent for forward layers.
        public var direction: String?
    }
    public struct Edge: Codable {
        public var layer: Int, from: Int, to: Int, channel: Int, sign: Int, threshold: Double
        public init(layer: Int, edge e: ExcitableNetwork.Edge) {
            self.layer = layer; from = e.from; to = e.to; channel = e.channel; sign = e.sign; threshold = e.threshold
        }
    }
    public struct Unresolved: Codable {
        public var layer: Int, from: Int, channel: Int, sign: Int, amplitude: Double
        public init(layer: Int, probe u: ExcitableNetwork.Unresolved) {
            self.layer = layer; from = u.from; channel = u.channel; sign = u.sign; amplitude = u.amplitude
        }
    }
    public var nodes: [Node], edges: [Edge], unresolved: [Unresolved]
}

/// DIR/summary.json of `attractors`.
public struct AttractorSummary: Codable, Sendable {
    public init() {}
    public struct Layer: Codable, Sendable {
        public var layer: Int, dimension: Int
        /// "reverse" for a reverse direction's map; absent for forward layers.
        public var direction: String?
        public var fixedPoints: Int, stableFixedPoints: Int, slowPoints: Int
        public var edges: Int, unresolvedProbes: Int
        /// Levenberg–Marquardt iterations of the longest-running seed chunk.
        public var iterations: Int
        /// Seeds that stopped with q ≥ 1e-4 (a local minimum of q that high, or the iteration
        /// limit): neither fixed nor slow points, not listed.
        public var unconvergedSeeds: Int
        /// Distinct points dropped: outside the states the map can produce, and outliers.
        public var unreachablePoints: Int, outlierPoints: Int
    }
    public var model = "", data: String?, backend = ""
    public var input: [Double] = []
    /// `--input-token`: the token whose embedding vector is the constant input.
    public var inputToken: Int?
    public var seeds = 0
    public var layers: [Layer] = []
    public var notes: [String] = []
    public var seconds = 0.0

    public func print() {
        Swift.print("attractors of \(model) under x̄ = \(inputToken.map { "the embedding of token \($0) " } ?? "")(\(input.map { String(format: "%g", $0) }.joined(separator: ", "))), \(seeds) seeds per layer\(data.map { ", seeded from \($0)" } ?? "")")
        Swift.print("backend: \(backend)")
        for l in layers {
            Swift.print("layer \(l.layer)\(l.direction == nil ? "" : " rev") (state of \(l.dimension)): \(l.fixedPoints) fixed points, \(l.stableFixedPoints) stable; \(l.slowPoints) slow points (\(l.unconvergedSeeds) of the seeds stopped with q ≥ 1e-4\(l.unreachablePoints + l.outlierPoints > 0 ? "; \(l.unreachablePoints) points outside the states the layer can take and \(l.outlierPoints) outliers dropped" : "")); \(l.edges) edges between stable points\(l.unresolvedProbes > 0 ? ", \(l.unresolvedProbes) probes unresolved" : "")")
        }
        for note in notes { Swift.print("note: \(note)") }
        Swift.print(String(format: "time: %.3g s", seconds))
    }
}
