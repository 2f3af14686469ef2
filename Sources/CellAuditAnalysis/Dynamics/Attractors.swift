import CellAuditCore
import Foundation

/// What `cellaudit attractors` computes for a network: per layer, the fixed and slow points of
/// the layer under a constant input, their stability, and the excitable network between the
/// stable ones (docs/METHOD.md §8).
public struct AttractorAnalysis: Sendable {
    /// The most sequences of a dataset whose visited states seed the search (the first ones).
    public static let seedSequences = 256
    /// One layer's part.
    public struct Layer: Sendable {
        public var index: Int
        /// The direction of the layer's cells: each direction of a bidirectional layer is its own
        /// map, analysed in its own processing time (METHOD.md §8).
        public var direction: TimeDirection = .forward
        /// "0", or "0 rev" for a reverse direction: how reports name it.
        public var label: String { direction == .forward ? "\(index)" : "\(index) rev" }
        /// "layer0", or "layer0_reverse": the stem of its figures' file names.
        public var fileStem: String { direction == .forward ? "layer\(index)" : "layer\(index)_reverse" }
        /// The constant input the layer was analysed under [I_l]: x̄ for layer 0; for a deeper
        /// layer, the h the layer below rests at (run from the zero state under x̄).
        public var input: [Double]
        public var dimension: Int
        /// Range of this layer's points in `points`.
        public var points: Range<Int>
        /// Edges and unresolved probes use global point indices.
        public var graph: ExcitableNetwork
        /// Sample trajectories of the layer's state on the data, [sequences][steps × D]; empty
        /// without data.
        public var trajectories: [[Double]]
        /// Seeds run, LM iterations taken, seeds that stopped with q ≥ the slow-point limit, and
        /// distinct points dropped as outside the map's range or as outliers.
        public var seeds: Int, iterations: Int, unconverged: Int, unreachable: Int, outliers: Int
    }

    public var points: [FixedPoint]
    public var layers: [Layer]
    /// Things a reader must know (a layer below that never settled, say).
    public var notes: [String]

    /// The readout y = V h + a at point `index` when it belongs to the last layer and the network
    /// has a readout [K]; nil otherwise.
    public func readout(at index: Int, of network: RecurrentNetwork) -> [Double]? {
        let point = points[index]
        // A direction of a bidirectional last layer alone does not give the readout's input.
        guard network.isForwardOnly, point.layer == network.layers.count - 1, let r = network.readout else { return nil }
        let H = network.layers[point.layer].hiddenSize
        return (0..<r.outputs).map { k in (0..<H).reduce(Double(r.a[k])) { $0 + Double(r.V[k * H + $1]) * point.state[$1] } }
    }

    /// Point indices of the stable fixed points (graph nodes), in order.
    public var stablePoints: [Int] { points.indices.filter { points[$0].isFixed && points[$0].isStable } }

    /// The peak memory of the fixed-point search, in bytes: every seed's state and its minimised
    /// point (and the copies made on the way: about 4 D-vectors of doubles per seed), plus one
    /// chunk of seeds searched at once (`FixedPointSet.find`: at least 16 seeds, whose
    /// Jacobians and normal matrices are D × D doubles each, or 16 MB of Jacobians); D is the
    /// widest layer's state.
    public static func peakBytes(network: RecurrentNetwork, seeds: Int) -> Int {
        let widest = widestState(network)
        let square = MemoryBudget.product(widest, widest, 8)
        let chunk = MemoryBudget.product(max(16, (16 << 20) / max(1, square)), square, 3)
        let states = MemoryBudget.product(seeds, widest, 4 * 8)
        let (sum, overflow) = states.addingReportingOverflow(chunk)
        return overflow ? Int.max : sum
    }

    /// D of the widest layer: its state (h, or h and c for an LSTM), as `LayerMap.dimension`.
    static func widestState(_ network: RecurrentNetwork) -> Int {
        network.layers.map { $0.kind.hasCellState ? 2 * $0.hiddenSize : $0.hiddenSize }.max() ?? 1
    }

    /// Refuses a search that would not fit in memory, before any work (`MemoryBudget`).
    /// - Throws: `ResourceError` naming the need, what is available and the option that lowers it.
    public static func checkMemory(network: RecurrentNetwork, seeds: Int, option: String = "--seeds") throws {
        try MemoryBudget.check(peakBytes(network: network, seeds: seeds), what: "the fixed-point search (\(seeds) seeds)",
                               fix: "use fewer \(option)")
    }

    /// Runs the analysis.
    /// - Parameters:
    ///   - input: x̄ [I] (the network's input width).
    ///   - data: sequences whose visited states seed the search (at most `maxSequences` of them).
    /// - Throws: `DynamicsError` for settings out of range or a LAPACK failure, `ModelError` for an
    ///   input of the wrong width or non-finite, or the backend's error.
    public static func run(network: RecurrentNetwork, input: [Double], data: SequenceBatch?, options: FixedPointOptions,
                           pulses: PulseOptions, backend: any ComputeBackend, maxSequences: Int = seedSequences,
                           progress: (String) -> Void = { _ in }) throws -> AttractorAnalysis {
        // A padded batch seeds the search with the states of every sequence's real steps: each is
        // cut to the shortest length, so no padding enters a visited state.
        let data = try data.map { $0.isPadded ? try $0.gathering(Array(0..<$0.count), steps: $0.lengths!.min()!) : $0 }
        let options = try options.validated(), pulses = try pulses.validated()
        let widest = widestState(network)
        guard options.seeds <= 1 << 22, options.seeds * widest <= 1 << 30 else {
            throw DynamicsError.invalid("\(options.seeds) seeds of a \(widest)-dimensional state are more than CellAudit holds (at most 4,194,304 seeds and 2^30 values)")
        }
        try checkMemory(network: network, seeds: options.seeds)
        guard input.count == network.inputSize else {
            throw DynamicsError.invalid("--input has \(input.count) values; the network takes \(network.inputSize)")
        }
        var rng = SeededGenerator(seed: options.randomSeed)
        var points: [FixedPoint] = [], layers: [Layer] = [], notes: [String] = []
        var layerInput = input
        // The data's inputs to the current layer, [N × T × I_l], and the number of sequences used.
        var sequences: [Double]? = nil, N = 0, T = 0
        if let data {
            N = min(data.count, maxSequences); T = data.steps
            sequences = data.values[0..<(N * T * data.width)].map(Double.init)
        }
        for (l, level) in network.levels.enumerated() {
            // Each direction of a level is its own map under the same constant input; the next
            // level reads their rests (and, on the data, their h at each time step) side by side.
            var levelRest: [Double] = [], levelOutputs: [[Double]] = []
            for index in level {
                let layer = network.layers[index], reverse = layer.direction == .reverse
                let map = try LayerMap(layer: layer, input: layerInput)
                let D = map.dimension, H = layer.hiddenSize
                // States visited on the data: run the layer over the sequences, step by step.
                var visited: [Double]? = nil, trajectories: [[Double]] = [], nextSequences: [Double]? = nil
                if let seqIn = sequences {
                    // A reverse direction reads each sequence from its last step: its own processing time.
                    let width = seqIn.count / max(1, N * T)
                    let run = try Self.run(map: map, sequences: reverse ? Self.reversedInTime(seqIn, count: N, steps: T, width: width) : seqIn,
                                           count: N, steps: T, backend: backend)
                    visited = run.states
                    trajectories = (0..<min(N, 8)).map { Array(run.states[($0 * T * D)..<(($0 + 1) * T * D)]) }
                    nextSequences = reverse ? Self.reversedInTime(run.outputs, count: N, steps: T, width: H) : run.outputs
                }
                let name = reverse ? "layer \(l) rev" : "layer \(l)"
                progress("\(name): \(options.seeds) seeds, \(D)-dimensional state")
                let seeds = FixedPointSeeds(map: map, visited: visited, count: options.seeds, noise: options.seedNoise, rng: &rng)
                let found = try FixedPointSet.find(layer: l, map: map, seeds: seeds, options: options, backend: backend, progress: progress)
                let base = points.count
                points += found.points.map { var p = $0; p.direction = layer.direction; return p }
                let stable = (base..<points.count).filter { points[$0].isFixed && points[$0].isStable }
                progress("\(name): \(found.points.filter(\.isFixed).count) fixed points (\(stable.count) stable), \(found.points.filter { !$0.isFixed }.count) slow points; \(found.unconverged) seeds stopped with q ≥ 1e-4")
                // The graph over this layer's stable points (local indices inside `build`).
                let local = stable.map { $0 - base }
                let stateMatrix = found.points.flatMap(\.state)
                var graph = try ExcitableNetwork.build(map: map, states: stateMatrix, stable: local, options: pulses, backend: backend)
                graph.edges = graph.edges.map { var e = $0; e.from += base; e.to += base; return e }
                graph.unresolved = graph.unresolved.map { var u = $0; u.from += base; return u }
                layers.append(Layer(index: l, direction: layer.direction, input: layerInput, dimension: D, points: base..<points.count, graph: graph,
                                    trajectories: trajectories, seeds: seeds.count, iterations: found.iterations,
                                    unconverged: found.unconverged, unreachable: found.unreachable, outliers: found.outliers))
                // The next layer's constant input: this layer's rest from the zero state under its input.
                if l + 1 < network.levels.count {
                    let rest = try backend.mapSettle(map, states: [Double](repeating: 0, count: D), pulses: nil, rows: 1, pulseSteps: 0,
                                                     maxSteps: pulses.maxSteps, tolerance: pulses.settleTolerance)
                    if !rest.settled[0] {
                        notes.append("\(name) did not settle within \(pulses.maxSteps) steps from the zero state; layer \(l + 1) is analysed under the h it reached")
                    }
                    levelRest += rest.states[0..<H]
                    if let nextSequences { levelOutputs.append(nextSequences) }
                }
            }
            if l + 1 < network.levels.count {
                layerInput = levelRest
                if sequences != nil {
                    // [N × T × Σ H]: the directions' h side by side at each time step, forward first.
                    sequences = concatenatePerStep(levelOutputs, widths: level.map { network.layers[$0].hiddenSize })
                }
            }
        }
        return AttractorAnalysis(points: points, layers: layers, notes: notes)
    }

    /// Sequences [N × T × W] with each sequence's steps in reverse order.
    static func reversedInTime(_ values: [Double], count N: Int, steps T: Int, width W: Int) -> [Double] {
        var out = values
        for n in 0..<N { for t in 0..<T { for k in 0..<W { out[(n * T + t) * W + k] = values[(n * T + (T - 1 - t)) * W + k] } } }
        return out
    }

    /// Parts [M × w_p] side by side: [M × Σ w_p].
    static func concatenatePerStep(_ parts: [[Double]], widths: [Int]) -> [Double] {
        if parts.count == 1 { return parts[0] }
        let total = widths.reduce(0, +), positions = parts[0].count / max(1, widths[0])
        var out = [Double](repeating: 0, count: positions * total)
        var offset = 0
        for (part, w) in zip(parts, widths) {
            for m in 0..<positions { for k in 0..<w { out[m * total + offset + k] = part[m * w + k] } }
            offset += w
        }
        return out
    }

    /// The states [N × T × D] a layer's map visits over `count` sequences of its inputs
    /// [N × T × I], and its h [N × T × H] (the next layer's inputs), stepped on `backend`.
    static func run(map: LayerMap, sequences: [Double], count N: Int, steps T: Int,
                    backend: any ComputeBackend) throws -> (states: [Double], outputs: [Double]) {
        let D = map.dimension, H = map.hiddenSize, I = map.inputSize
        var s = [Double](repeating: 0, count: N * D)
        var all = [Double](repeating: 0, count: N * T * D), out = [Double](repeating: 0, count: N * T * H)
        for t in 0..<T {
            var x = [Double](repeating: 0, count: N * I)
            for n in 0..<N { for k in 0..<I { x[n * I + k] = sequences[(n * T + t) * I + k] } }
            s = try backend.mapStep(map, states: s, inputs: x, rows: N, jacobian: false).next
            for n in 0..<N {
                for d in 0..<D { all[(n * T + t) * D + d] = s[n * D + d] }
                for j in 0..<H { out[(n * T + t) * H + j] = s[n * D + j] }
            }
        }
        return (all, out)
    }

    /// The states a first layer visits on `data` (at most `maxSequences` sequences), [V × D]:
    /// what `run` seeds the search with.
    public static func visitedStates(map: LayerMap, data: SequenceBatch, backend: any ComputeBackend,
                                     maxSequences: Int = seedSequences) throws -> [Double] {
        let N = min(data.count, maxSequences)
        return try run(map: map, sequences: data.values[0..<(N * data.steps * data.width)].map(Double.init), count: N,
                       steps: data.steps, backend: backend).states
    }
}
