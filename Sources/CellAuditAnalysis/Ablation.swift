import CellAuditCore
import Foundation

/// Does the ranking hold? (METHOD.md §6.) Single-cell ablation of every cell, cumulative ablation
/// along each ranking, and rank correlations, all as batched forward passes with masks.
public struct AblationStudy: Sendable {
    /// What an ablated cell's h and c are held at (METHOD.md §6).
    public enum Clamp: String, Sendable, CaseIterable {
        /// 0 (the default).
        case zero
        /// The cell's mean h and c over every sequence and step of the data, with no cell ablated.
        case mean
    }

    /// Mean h and c of every cell (all layers, flat in `CellLayout` order) over every sequence and
    /// step of `inputs` (each sequence's own steps where the batch has lengths), with nothing ablated; accumulated in Double. Each direction runs in its
    /// own time; the next layer reads its level's output in time order.
    public static func meanStates(_ network: RecurrentNetwork, inputs: SequenceBatch) -> (h: [Float], c: [Float]) {
        var sumH = [Double](repeating: 0, count: network.cellCount), sumC = sumH
        var count = 0.0
        addStates(network, inputs: inputs, sumH: &sumH, sumC: &sumC, count: &count)
        return (sumH.map { Float($0 / count) }, sumC.map { Float($0 / count) })
    }

    /// The same over a dataset read in chunks: the same sums in the same order, so the same values.
    /// - Throws: what reading a chunk throws.
    public static func meanStates(_ network: RecurrentNetwork, data: DatasetStream) throws -> (h: [Float], c: [Float]) {
        var sumH = [Double](repeating: 0, count: network.cellCount), sumC = sumH
        var count = 0.0
        try data.forEachChunk { _, chunk in addStates(network, inputs: chunk.inputs, sumH: &sumH, sumC: &sumC, count: &count) }
        return (sumH.map { Float($0 / count) }, sumC.map { Float($0 / count) })
    }

    /// Adds every cell's h and c at every (sequence, own step) of `inputs` to the sums, and the
    /// steps to `count`.
    private static func addStates(_ network: RecurrentNetwork, inputs: SequenceBatch, sumH: inout [Double], sumC: inout [Double], count: inout Double) {
        let layout = network.layout, T = inputs.steps
        for seq in 0..<inputs.count {
            // A padded sequence runs its own length only (METHOD.md §8, "Lengths").
            let T = inputs.lengths?[seq] ?? T
            count += Double(T)
            var x = Array(inputs.values[(seq * inputs.steps * inputs.width)..<((seq * inputs.steps + T) * inputs.width)])
            var width = inputs.width
            for (l, level) in network.levels.enumerated() {
                let outWidth = network.outputWidth(ofLevel: l)
                var y = [Float](repeating: 0, count: T * outWidth)
                var column = 0
                for index in level {
                    let layer = network.layers[index], H = layer.hiddenSize
                    let offset = layout.range(ofLayer: l, direction: layer.direction).lowerBound
                    var h = [Float](repeating: 0, count: H), c = h
                    for step in 0..<T {
                        let t = layer.direction == .reverse ? T - 1 - step : step
                        layer.step(x[(t * width)..<((t + 1) * width)], h: &h, c: &c)
                        for j in 0..<H {
                            y[t * outWidth + column + j] = h[j]
                            sumH[offset + j] += Double(h[j]); sumC[offset + j] += Double(c[j])
                        }
                    }
                    column += H
                }
                x = y; width = outWidth
            }
        }
    }

    public struct Curve: Sendable {
        public var ranking: String
        /// top, bottom or random
        public var order: String
        public var k: [Int]
        /// Score (accuracy or MSE) with the first k cells of the order ablated; for random, the mean over seeds.
        public var score: [Double]
        /// Standard deviation over seeds (random), 0 otherwise.
        public var spread: [Double]
    }

    public struct Correlation: Sendable {
        public var name: String
        public var rho: Double
        /// 95 % bootstrap interval over cells.
        public var low: Double, high: Double
    }

    public var task: ModelTask
    /// The score (accuracy or MSE) with no cell ablated.
    public var baseline: Double
    /// The continuous loss (mean cross-entropy of the true class, or MSE) with no cell ablated.
    public var baselineLoss: Double
    /// The score with every cell ablated (the readout bias alone).
    public var allAblated: Double
    /// Per cell: the continuous damage of ablating that cell alone, ablated minus intact loss
    /// (METHOD.md §6). Rank correlations use it. NaN for a cell outside `checkedCells`.
    public var damage: [Double]
    /// The cells whose single-cell ablation was run (flat cell order), when a subset was chosen
    /// (`--ablate-cells`); nil when every cell was checked. Rank correlations use these cells only.
    public var checkedCells: [Int]?
    /// Classification only: per cell, the accuracy drop (intact minus ablated accuracy), beside
    /// the continuous damage; steps of 1/N, so mostly 0 or ±1 sample on small test sets.
    public var accuracyDrop: [Double]?
    /// The loss's name: cross_entropy or mse.
    public var lossName: String { task == .classification ? "cross_entropy" : "mse" }
    public var curves: [Curve]
    /// Spearman ρ of each ranker's scores with the damage.
    public var rankers: [Correlation]
    /// Spearman ρ of each summary metric with the damage.
    public var metrics: [Correlation]

    /// Runs the study. `rankings` are (name, score per cell) in the network's flat cell order;
    /// random-k uses `seeds` random orders; k runs over at most `points` values from 1 to all cells.
    /// `checkedCells`: only these cells' single-cell ablations run (the damage of the others is
    /// NaN and the correlations use the checked cells alone); nil runs every cell's.
    public static func run(network: RecurrentNetwork, dataset: Dataset, task: ModelTask, output: OutputMode,
                           rankings: [(String, [Double])], metrics: [(String, [Double])] = [],
                           seeds: Int = Defaults.ablationRandomSeeds, points: Int = 32, bootstrap: Int = 1000, clamp: Clamp = .zero,
                           single precomputed: SingleAblation? = nil, checkedCells: [Int]? = nil,
                           on backend: any ComputeBackend, progress: WorkProgress? = nil) throws -> AblationStudy {
        try run(network: network, data: try DatasetStream(dataset, preparedFor: nil, validate: false), task: task, output: output,
                rankings: rankings, metrics: metrics, seeds: seeds, points: points, bootstrap: bootstrap, clamp: clamp,
                single: precomputed, checkedCells: checkedCells, on: backend, progress: progress)
    }

    /// The same over a dataset read in chunks (`DatasetStream`): every configuration's score is
    /// accumulated over the chunks in sequence order, so the numbers are those of one pass over
    /// the whole dataset, in memory bounded by a chunk.
    public static func run(network: RecurrentNetwork, data: DatasetStream, task: ModelTask, output: OutputMode,
                           rankings: [(String, [Double])], metrics: [(String, [Double])] = [],
                           seeds: Int = Defaults.ablationRandomSeeds, points: Int = 32, bootstrap: Int = 1000, clamp: Clamp = .zero,
                           single precomputed: SingleAblation? = nil, checkedCells: [Int]? = nil,
                           on backend: any ComputeBackend, progress: WorkProgress? = nil) throws -> AblationStudy {
        let fill = clamp == .mean ? try meanStates(network, data: data) : nil
        let n = network.cellCount
        guard rankings.allSatisfy({ $0.1.count == n }), metrics.allSatisfy({ $0.1.count == n }) else {
            throw ModelError.shape("every ranking and metric needs one value per cell (\(n))")
        }
        guard seeds >= 1, points >= 1 else { throw StimulusError.invalid("seeds and points must be at least 1") }
        func scores(_ masks: [CellMask]) throws -> [Double] {
            var accumulators = masks.map { _ in ScoreAccumulator(task: task, output: output) }
            let chunks = data.chunks
            for (c, range) in chunks.enumerated() {
                let chunk = try data.read(range)
                let result = try forwardInBlocks(network: network, inputs: chunk.inputs, output: output, masks: masks, clamp: fill, on: backend,
                                                 phase: "ranked and random curves", progress: progress.map(chunkProgress(c, of: chunks.count)))
                for i in masks.indices { try accumulators[i].add(result, config: i, chunk: chunk, loss: false) }
            }
            return accumulators.map(\.score.value)
        }

        // Baseline, all cells, and each cell alone: one batched pass (or the merged shards' passes).
        if let checked = checkedCells {
            guard precomputed == nil else { throw ModelError.shape("a subset of checked cells cannot be combined with precomputed single-cell ablations") }
            guard !checked.isEmpty, checked.allSatisfy({ (0..<n).contains($0) }), Set(checked).count == checked.count else {
                throw ModelError.shape("the checked cells must be distinct cells of the network's \(n)")
            }
        }
        let evaluated: SingleAblation
        if let precomputed {
            evaluated = precomputed
        } else if let checked = checkedCells {
            // Configurations 0 and 1, then each checked cell's; the rest NaN.
            let part = try singleAblations(network: network, data: data, task: task, output: output, clamp: clamp,
                                           configurations: [0, 1] + checked.sorted().map { $0 + 2 }, fill: fill, on: backend, progress: progress)
            var scores = [Double](repeating: .nan, count: n + 2), losses = scores
            for (k, configuration) in ([0, 1] + checked.sorted().map { $0 + 2 }).enumerated() {
                scores[configuration] = part.scores[k]; losses[configuration] = part.losses[k]
            }
            evaluated = SingleAblation(scores: scores, losses: losses)
        } else {
            evaluated = try singleAblations(network: network, data: data, task: task, output: output, clamp: clamp,
                                            configurations: Array(0..<singleConfigurationCount(cells: n)), fill: fill, on: backend,
                                            progress: progress)
        }
        guard evaluated.scores.count == n + 2, evaluated.losses.count == n + 2 else {
            throw ModelError.shape("the single-cell ablations hold \(evaluated.scores.count) configurations; the network needs \(n + 2)")
        }
        let single = evaluated.scores, losses = evaluated.losses
        let baseline = single[0]
        let damage = losses.dropFirst(2).map { $0 - losses[0] }
        let accuracyDrop = task == .classification ? single.dropFirst(2).map { baseline - $0 } : nil

        let ks = Array(Set((1...points).map { max(1, Int((Double($0) / Double(points) * Double(n)).rounded())) })).sorted()
        var orders: [(String, String, [Int])] = []
        for (name, s) in rankings {
            let top = s.indices.sorted { s[$0] != s[$1] ? s[$0] > s[$1] : $0 < $1 }
            orders.append((name, "top", top))
            orders.append((name, "bottom", top.reversed()))
        }
        var rng = SeededGenerator(seed: 2019)
        for seed in 0..<seeds {
            var order = Array(0..<n)
            order.shuffle(using: &rng)
            orders.append(("random", "random-\(seed)", order))
        }
        let masks = orders.flatMap { order in ks.map { CellMask.ablating(order.2.prefix($0), of: n) } }
        let cumulative = try scores(masks)
        var curves: [Curve] = []
        for (i, order) in orders.enumerated() where !order.1.hasPrefix("random") {
            curves.append(Curve(ranking: order.0, order: order.1, k: ks, score: Array(cumulative[(i * ks.count)..<((i + 1) * ks.count)]),
                                spread: ks.map { _ in 0 }))
        }
        let randomStart = orders.firstIndex { $0.1.hasPrefix("random") }!
        let perSeed = (0..<seeds).map { s in Array(cumulative[((randomStart + s) * ks.count)..<((randomStart + s + 1) * ks.count)]) }
        let mean = ks.indices.map { k in perSeed.map { $0[k] }.reduce(0, +) / Double(seeds) }
        let spread = ks.indices.map { k in (perSeed.map { ($0[k] - mean[k]) * ($0[k] - mean[k]) }.reduce(0, +) / Double(seeds)).squareRoot() }
        curves.append(Curve(ranking: "random", order: "random", k: ks, score: mean, spread: spread))

        let measured = checkedCells?.sorted()
        func correlate(_ items: [(String, [Double])]) -> [Correlation] {
            items.map { name, all in
                let values = measured.map { $0.map { all[$0] } } ?? all
                let damage = measured.map { $0.map { damage[$0] } } ?? damage
                let (rho, low, high) = Statistics.spearmanWithBootstrap(values, damage, resamples: bootstrap, seed: 7)
                return Correlation(name: name, rho: rho, low: low, high: high)
            }
        }
        return AblationStudy(task: task, baseline: baseline, baselineLoss: losses[0], allAblated: single[1], damage: damage,
                             checkedCells: measured, accuracyDrop: accuracyDrop, curves: curves, rankers: correlate(rankings),
                             metrics: correlate(metrics))
    }
}

extension AblationStudy {
    /// The work of a study before it runs: masked forward passes over the whole dataset.
    public struct WorkAhead: Sendable, Equatable {
        /// Single-cell family: intact, all ablated, and one per checked cell.
        public var singleConfigurations: Int
        /// Cumulative curves: (2 per ranking + random seeds) × points.
        public var curveConfigurations: Int
        /// Multiply-adds of one forward pass of the dataset (the recurrent and input products).
        public var multiplyAddsPerPass: Int
        /// The single-cell configurations' work in whole passes: a deeper cell's runs its own
        /// level and those above only (`reuseLowerLevels`).
        public var singlePassEquivalents: Double
        public var passes: Int { singleConfigurations + curveConfigurations }
        /// The work in whole passes of the dataset.
        public var passEquivalents: Double { singlePassEquivalents + Double(curveConfigurations) }
    }

    /// What `run` will compute, counted as it counts it.
    /// Multiply-adds of one forward pass of `inputs` (every layer's input and recurrent products,
    /// each counted by `MemoryBudget.product`).
    static func multiplyAddsPerPass(_ network: RecurrentNetwork, _ inputs: SequenceBatch) -> Int {
        multiplyAddsPerPass(network, sequences: inputs.count, steps: inputs.steps)
    }

    static func multiplyAddsPerPass(_ network: RecurrentNetwork, sequences: Int, steps: Int) -> Int {
        network.layers.reduce(0) { $0 &+ MemoryBudget.product(sequences, steps, $1.gateRows, $1.inputSize + $1.hiddenSize) }
    }

    /// `checkedCells`: the subset's cells (flat order), nil for all.
    /// `sequences` × `steps`: the dataset's size.
    public static func workAhead(network: RecurrentNetwork, sequences: Int, steps: Int, rankings: Int, seeds: Int = Defaults.ablationRandomSeeds,
                                 points: Int = 32, checkedCells: [Int]? = nil) -> WorkAhead {
        let n = network.cellCount
        let ks = Set((1...max(1, points)).map { max(1, Int((Double($0) / Double(max(1, points)) * Double(n)).rounded())) }).count
        let levelWork = network.levels.map { level in
            level.reduce(0.0) { $0 + Double(network.layers[$1].gateRows) * Double(network.layers[$1].inputSize + network.layers[$1].hiddenSize) }
        }
        let whole = levelWork.reduce(0, +)
        // From level l up, as a share of a whole pass.
        let fromLevel = levelWork.indices.map { l in levelWork[l...].reduce(0, +) / max(whole, 1) }
        let layout = network.layout
        let singles = 2 + (checkedCells ?? Array(0..<n)).reduce(0.0) { $0 + fromLevel[layout.cell(at: $1).layer] }
        let perPass = multiplyAddsPerPass(network, sequences: sequences, steps: steps)
        return WorkAhead(singleConfigurations: (checkedCells?.count ?? n) + 2, curveConfigurations: (2 * rankings + seeds) * ks,
                         multiplyAddsPerPass: perPass, singlePassEquivalents: singles)
    }

    /// Seconds one masked pass of the whole dataset takes on `backend`: a batch of
    /// `configurations` single-cell masks of level-0 cells (whole passes, batched as the study
    /// batches them) on a slice of at most `sequences` sequences, per configuration, scaled by the sequence count. An estimate
    /// for the user, never a number in a result.
    /// `inputs`: the first sequences of a dataset of `total` sequences (at least `sequences` of
    /// them where the dataset has so many).
    public static func calibrate(network: RecurrentNetwork, inputs: SequenceBatch, total: Int, output: OutputMode, on backend: any ComputeBackend,
                                 sequences: Int = 512, configurations: Int = 4) throws -> Double {
        let count = min(inputs.count, max(1, sequences))
        let slice = try inputs.sequences(0..<count)
        let n = network.cellCount
        let masks = (0..<max(1, configurations)).map { singleConfiguration(2 + $0 % n, cells: n) }
        var job = try ForwardJob(network: network, inputs: slice, output: output, masks: masks)
        job.keepsHidden = false
        // A small run first: thread pools, kernel builds and first-touch pages are not the work.
        var warm = try ForwardJob(network: network, inputs: try inputs.sequences(0..<min(count, 4)), output: output, masks: Array(masks.prefix(2)))
        warm.keepsHidden = false
        _ = try backend.forward(warm)
        let start = DispatchTime.now().uptimeNanoseconds
        _ = try backend.forward(job)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        return seconds / Double(masks.count) * Double(total) / Double(count)
    }
}

/// Reports a long phase's progress: `phase` names it, `done` of `total` items (configurations,
/// sequences) are finished. Called on the thread that runs the phase, after each block.
public typealias WorkProgress = @Sendable (_ phase: String, _ done: Int, _ total: Int) -> Void

extension AblationStudy {
    /// The masked forward of `masks`, scored from the readout alone. A long phase (more than
    /// `blockWork` multiply-adds, about a second or more) runs in 16 blocks of configurations so
    /// that `progress` hears of each; a short one runs as one job (splitting would recompute the
    /// shared layer-0 projection per block for nothing). Every configuration of an ablation job is
    /// computed on its own (`ForwardJob.isAblation`), so the blocks give the same numbers as one
    /// job (tested).
    public static func forwardInBlocks(network: RecurrentNetwork, inputs: SequenceBatch, output: OutputMode, masks: [CellMask],
                                       clamp fill: (h: [Float], c: [Float])?, on backend: any ComputeBackend,
                                       phase: String, progress: WorkProgress?, blockWork: Int = 2_000_000_000) throws -> ForwardResult {
        let perConfiguration = multiplyAddsPerPass(network, inputs)
        let long = MemoryBudget.product(perConfiguration, masks.count) > blockWork
        let block = progress == nil || !long ? masks.count : max(1, (masks.count + 15) / 16)
        var outputs: [Float] = [], shape: [Int] = []
        for start in stride(from: 0, to: masks.count, by: block) {
            let part = Array(masks[start..<min(masks.count, start + block)])
            var job = try ForwardJob(network: network, inputs: inputs, output: output, masks: part, clamp: fill)
            job.keepsHidden = false   // scored from the readout alone
            let result = try backend.forward(job)
            if block == masks.count { progress?(phase, masks.count, masks.count); return result }
            outputs += result.outputs
            shape = result.shape
            progress?(phase, start + part.count, masks.count)
        }
        return ForwardResult(outputs: outputs, hidden: [], shape: [masks.count] + shape.dropFirst())
    }
}

/// Scores and continuous losses of a block of the single-cell configurations (see
/// `AblationStudy.singleConfigurationCount`), in configuration order.
public struct SingleAblation: Sendable, Equatable {
    public var scores: [Double]
    public var losses: [Double]
    public init(scores: [Double], losses: [Double]) { self.scores = scores; self.losses = losses }
}

extension AblationStudy {
    /// The single-cell configurations: 0 ablates nothing, 1 ablates every cell, 2 + j ablates
    /// cell j alone (flat cell order). `ablate --shard` splits these among the shards.
    public static func singleConfigurationCount(cells: Int) -> Int { cells + 2 }

    /// Configuration `index` of the single-cell family.
    public static func singleConfiguration(_ index: Int, cells n: Int) -> CellMask {
        switch index {
        case 0: .none(cells: n)
        case 1: .ablating(0..<n, of: n)
        default: .ablating([index - 2], of: n)
        }
    }

    /// Score and loss of each single-cell configuration in `configurations`, as one batched
    /// forward pass (the backend slices it by memory). With the clamp `mean`, the fill values come
    /// from the whole dataset, as in `run`.
    /// - Throws: `ModelError.shape` for a range outside the family; the backend's errors.
    public static func singleAblations(network: RecurrentNetwork, dataset: Dataset, task: ModelTask, output: OutputMode,
                                       clamp: Clamp = .zero, configurations: Range<Int>,
                                       on backend: any ComputeBackend, progress: WorkProgress? = nil) throws -> SingleAblation {
        try singleAblations(network: network, dataset: dataset, task: task, output: output, clamp: clamp,
                            configurations: Array(configurations), on: backend, progress: progress)
    }

    /// The same for a list of configurations, in the list's order. `reuseLowerLevels` (the
    /// default) runs a cell's configuration from its own level up, on the intact output of the
    /// levels below, computed once per level; false runs the whole network for every one (the
    /// same numbers: a test compares them exactly).
    public static func singleAblations(network: RecurrentNetwork, dataset: Dataset, task: ModelTask, output: OutputMode,
                                       clamp: Clamp = .zero, configurations: [Int], reuseLowerLevels: Bool = true,
                                       on backend: any ComputeBackend, progress: WorkProgress? = nil) throws -> SingleAblation {
        try singleAblations(network: network, data: try DatasetStream(dataset, preparedFor: nil, validate: false), task: task, output: output,
                            clamp: clamp, configurations: configurations, reuseLowerLevels: reuseLowerLevels, on: backend, progress: progress)
    }

    /// The same over a dataset read in chunks: each chunk runs every configuration (a deeper
    /// cell's from its own level, on the chunk's intact lower levels), and each configuration's
    /// score and loss accumulate over the chunks in sequence order: the numbers of one pass over
    /// the whole dataset, in memory bounded by a chunk. `fill`: the mean clamp's values when the
    /// caller has them already (nil computes them when `clamp` is `mean`).
    public static func singleAblations(network: RecurrentNetwork, data: DatasetStream, task: ModelTask, output: OutputMode,
                                       clamp: Clamp = .zero, configurations: [Int], reuseLowerLevels: Bool = true,
                                       fill known: (h: [Float], c: [Float])? = nil,
                                       on backend: any ComputeBackend, progress: WorkProgress? = nil) throws -> SingleAblation {
        let n = network.cellCount
        guard configurations.allSatisfy({ (0..<singleConfigurationCount(cells: n)).contains($0) }) else {
            throw ModelError.shape("single-cell configurations \(configurations.min() ?? 0)…\(configurations.max() ?? 0) lie outside 0..<\(singleConfigurationCount(cells: n))")
        }
        guard !configurations.isEmpty else { return SingleAblation(scores: [], losses: []) }
        let fill = clamp == .mean ? try known ?? meanStates(network, data: data) : nil
        // A cell of level l leaves the levels below it intact: its configuration runs levels l…
        // on their intact input, computed once per level (the configurations of level 0, and the
        // intact and all-ablated ones, run the whole network).
        let layout = network.layout
        func level(_ configuration: Int) -> Int { configuration < 2 || !reuseLowerLevels ? 0 : layout.cell(at: configuration - 2).layer }
        var accumulators = configurations.map { _ in ScoreAccumulator(task: task, output: output) }
        let byLevel = Dictionary(grouping: configurations.indices, by: { level(configurations[$0]) })
        // Per level that has configurations, the same for every chunk: the network from that
        // level up, the configurations' masks over its cells, and their clamp values.
        let runs = try network.levels.indices.compactMap { l -> (level: Int, positions: [Int], suffix: RecurrentNetwork, masks: [CellMask], fill: (h: [Float], c: [Float])?)? in
            guard let positions = byLevel[l] else { return nil }
            let offset = layout.range(ofLayer: l).lowerBound
            let suffix = l == 0 ? network : try RecurrentNetwork(levels: network.levels[l...].map { $0.map { network.layers[$0] } },
                                                                 readout: network.readout)
            let m = suffix.cellCount
            let masks = positions.map { k -> CellMask in
                let configuration = configurations[k]
                return l == 0 ? singleConfiguration(configuration, cells: n) : .ablating([configuration - 2 - offset], of: m)
            }
            return (l, positions, suffix, masks, fill.map { (h: Array($0.h[offset...]), c: Array($0.c[offset...])) })
        }
        let chunks = data.chunks
        for (c, range) in chunks.enumerated() {
            let chunk = try data.read(range)
            let chunkReport = progress.map(chunkProgress(c, of: chunks.count))
            var done = 0
            let total = configurations.count
            // The chunk's intact input of level `inputLevel`, computed up to the levels that need it.
            var levelInput = chunk.inputs, inputLevel = 0
            for run in runs {
                while inputLevel < run.level {
                    levelInput = try intactOutput(of: network, level: inputLevel, from: levelInput, on: backend)
                    inputLevel += 1
                }
                var levelProgress: WorkProgress?
                if let report = chunkReport {
                    let before = done
                    levelProgress = { phase, finished, _ in report(phase, before + finished, total) }
                }
                let result = try forwardInBlocks(network: run.suffix, inputs: levelInput, output: output, masks: run.masks, clamp: run.fill,
                                                 on: backend, phase: "single-cell ablations", progress: levelProgress)
                for (i, k) in run.positions.enumerated() { try accumulators[k].add(result, config: i, chunk: chunk) }
                done += run.positions.count
            }
        }
        return SingleAblation(scores: accumulators.map(\.score.value), losses: accumulators.map(\.loss))
    }

    /// A phase's progress within chunk `chunk` of `count`, reported as progress over all of them
    /// (each chunk does the whole phase's items once).
    static func chunkProgress(_ chunk: Int, of count: Int) -> (@escaping WorkProgress) -> WorkProgress {
        { report in { phase, done, total in report(phase, chunk * total + done, count * total) } }
    }

    /// Level `level`'s output at every step, [N, T, W] with the batch's lengths (0 at padding),
    /// computed from `input` (that level's input) with nothing ablated: the intact input of the
    /// level above.
    static func intactOutput(of network: RecurrentNetwork, level: Int, from input: SequenceBatch, on backend: any ComputeBackend) throws -> SequenceBatch {
        let width = network.outputWidth(ofLevel: level)
        // A readout is required to run; this one is never read.
        let probe = try RecurrentNetwork(levels: [network.levels[level].map { network.layers[$0] }],
                                         readout: .init(V: [Float](repeating: 0, count: width), a: [0]))
        // As an ablation job of one configuration that ablates nothing: computed as every
        // configuration of the whole-network path computes these levels.
        let result = try backend.forward(try ForwardJob(network: probe, inputs: input, output: .sequence, masks: [.none(cells: probe.cellCount)]))
        var batch = try SequenceBatch(count: input.count, steps: input.steps, width: width, values: result.hidden)
        if let lengths = input.lengths { try batch.setLengths(lengths) }
        return batch
    }
}

/// The ground-truth ranker: single-cell ablation damage (METHOD.md §6) as the score.
public struct AblationRanker: CellRanker {
    public let name = "ablation"
    /// Damage per cell.
    public let damage: [CellID: Double]

    public init(damage: [Double], rows: [CellID]) {
        self.damage = Dictionary(zip(rows, damage), uniquingKeysWith: { a, _ in a })
    }

    public func scores(_ context: RankingContext) throws -> [Double] {
        try context.rows.map { row in
            guard let v = damage[row] else {
                throw ModelError.shape("no ablation damage for cell \(row)")
            }
            return v
        }
    }
}

public enum Statistics {
    /// Average ranks (ties share their mean rank), NaN values ranked last.
    public static func ranks(_ x: [Double]) -> [Double] {
        let order = x.indices.sorted { a, b in
            let (u, v) = (x[a].isNaN ? Double.infinity : x[a], x[b].isNaN ? Double.infinity : x[b])
            return u < v
        }
        var r = [Double](repeating: 0, count: x.count)
        var i = 0
        while i < order.count {
            var j = i
            while j + 1 < order.count && x[order[j + 1]] == x[order[i]] { j += 1 }
            let mean = Double(i + j) / 2 + 1
            for k in i...j { r[order[k]] = mean }
            i = j + 1
        }
        return r
    }

    /// Spearman's ρ: Pearson correlation of the average ranks. NaN with fewer than 3 values or no spread.
    public static func spearman(_ a: [Double], _ b: [Double]) -> Double {
        precondition(a.count == b.count)
        guard a.count >= 3 else { return .nan }
        return pearson(ranks(a), ranks(b))
    }

    public static func pearson(_ a: [Double], _ b: [Double]) -> Double {
        let n = Double(a.count)
        let ma = a.reduce(0, +) / n, mb = b.reduce(0, +) / n
        var sab = 0.0, saa = 0.0, sbb = 0.0
        for (x, y) in zip(a, b) { sab += (x - ma) * (y - mb); saa += (x - ma) * (x - ma); sbb += (y - mb) * (y - mb) }
        return saa > 0 && sbb > 0 ? sab / (saa * sbb).squareRoot() : .nan
    }

    /// ρ and a 95 % percentile bootstrap interval (resampling pairs with replacement, seeded).
    /// A resample is a multiset of the pairs, so its average ranks follow from how often it draws
    /// each pair, walked in the order of the full sample: O(n) per resample instead of two sorts.
    /// Values with NaN take the sorting path, where NaN copies rank apart.
    public static func spearmanWithBootstrap(_ a: [Double], _ b: [Double], resamples: Int, seed: UInt64) -> (Double, Double, Double) {
        let rho = spearman(a, b)
        let n = a.count
        guard resamples > 0, n >= 3 else { return (rho, .nan, .nan) }
        var rng = SeededGenerator(seed: seed)
        var samples: [Double] = []
        samples.reserveCapacity(resamples)
        let exact = a.contains(where: \.isNaN) || b.contains(where: \.isNaN)
        /// Indices by increasing value, cut into runs of equal values.
        func tiedRuns(_ x: [Double]) -> [[Int]] {
            let order = x.indices.sorted { x[$0] < x[$1] }
            var runs: [[Int]] = []
            for i in order {
                if let last = runs.last?.first, x[last] == x[i] { runs[runs.count - 1].append(i) } else { runs.append([i]) }
            }
            return runs
        }
        let runsA = exact ? [] : tiedRuns(a), runsB = exact ? [] : tiedRuns(b)
        var draws = [Int](repeating: 0, count: n)
        var rankA = [Double](repeating: 0, count: n), rankB = [Double](repeating: 0, count: n)
        /// The average rank, within the resample, of every pair it draws.
        func resampleRanks(_ runs: [[Int]], into rank: inout [Double]) {
            var below = 0
            for run in runs {
                let m = run.reduce(0) { $0 + draws[$1] }
                guard m > 0 else { continue }
                let mean = Double(below) + Double(m + 1) / 2
                for i in run { rank[i] = mean }
                below += m
            }
        }
        for _ in 0..<resamples {
            let idx = (0..<n).map { _ in Int(rng.next() % UInt64(n)) }
            let r: Double
            if exact {
                r = spearman(idx.map { a[$0] }, idx.map { b[$0] })
            } else {
                for i in 0..<n { draws[i] = 0 }
                for i in idx { draws[i] += 1 }
                resampleRanks(runsA, into: &rankA)
                resampleRanks(runsB, into: &rankB)
                // Pearson of the ranks, each drawn pair counted as often as it was drawn; both
                // rank means are (n + 1)/2.
                let mean = Double(n + 1) / 2
                var sab = 0.0, saa = 0.0, sbb = 0.0
                for i in 0..<n where draws[i] > 0 {
                    let w = Double(draws[i]), x = rankA[i] - mean, y = rankB[i] - mean
                    sab += w * x * y; saa += w * x * x; sbb += w * y * y
                }
                r = saa > 0 && sbb > 0 ? sab / (saa * sbb).squareRoot() : .nan
            }
            if r.isFinite { samples.append(r) }
        }
        guard samples.count >= 10 else { return (rho, .nan, .nan) }
        samples.sort()
        return (rho, samples[Int(0.025 * Double(samples.count - 1))], samples[Int(0.975 * Double(samples.count - 1))])
    }
}
