import CellAuditCore
import Foundation

/// What to characterize (METHOD.md §2–§4): which layers, how the cells are decoupled, along which
/// direction, what is probed, under which bank.
public struct CharacterizationPlan: Sendable {
    public var network: RecurrentNetwork
    public var layers: [Int]
    public var mode: RecurrenceMode
    public var direction: DirectionSpec
    public var probe: Probe
    public var bank: StimulusBank
    public var settlingBand: Float
    /// Overrides the backend's chunk size (bytes of output per launch); tests use it to force chunking.
    public var chunkBytes: Int?

    /// One row per cell of the chosen layers, in flat order (layer, then direction, then index).
    public let rows: [CellID]
    /// One column per (direction, stimulus): direction-major, each direction a copy of the bank.
    public let directionLabels: [String]
    /// Largest change of a cell's unstimulated run for it to count as at rest (METHOD.md §4).
    public let restTolerance: Float

    public init(network: RecurrentNetwork, layers: [Int]? = nil, mode: RecurrenceMode = .self,
                direction: DirectionSpec = .single(.all), probe: Probe = .h, bank: StimulusBank,
                settlingBand: Float = Defaults.settlingBand, restTolerance: Float = Baseline.defaultRestTolerance, chunkBytes: Int? = nil) throws {
        let layers = layers ?? Array(network.levels.indices)
        guard !layers.isEmpty else { throw ModelError.shape("no layer chosen") }
        for l in layers where !network.levels.indices.contains(l) {
            throw ModelError.shape("layer \(l) does not exist; the network has \(network.levels.count) (0…\(network.levels.count - 1))")
        }
        guard Set(layers).count == layers.count else { throw ModelError.shape("a layer is chosen twice") }
        // The directions of a level read one input: its width is any of its directed layers'.
        let labels = layers.map { direction.directions(inputSize: network.layers[network.levels[$0][0]].inputSize).map(\.1) }
        guard labels.allSatisfy({ $0 == labels[0] }) else {
            throw StimulusError.invalid("direction each gives the chosen layers different numbers of input channels; choose one layer with --layer")
        }
        // Every layer must accept the direction (channel in range, vector of the right length).
        for l in layers {
            let layer = network.layers[network.levels[l][0]]
            for (d, _) in direction.directions(inputSize: layer.inputSize) { _ = try DecoupledCells(layer: layer, direction: d) }
        }
        guard settlingBand > 0, settlingBand < 1 else {
            throw StimulusError.invalid("the settling band must lie in (0, 1), got \(settlingBand)")
        }
        guard network.kind.probes.contains(probe) else {
            throw StimulusError.invalid("--probe \(probe.rawValue): a \(network.kind.rawValue) cell has no memory c (probe c is LSTM-only)")
        }
        self.network = network; self.layers = layers; self.mode = mode; self.direction = direction
        try Baseline.checkRestTolerance(restTolerance)
        self.probe = probe; self.bank = bank; self.settlingBand = settlingBand; self.chunkBytes = chunkBytes
        self.restTolerance = restTolerance
        rows = network.layout.cells(ofLayers: layers)
        directionLabels = labels[0]
    }

    public var columnCount: Int { directionLabels.count * bank.count }

    /// The directed layers of the chosen levels, in the rows' order, each as it is probed: in its
    /// own processing time (a reverse layer is run as a forward one: the stimulus enters at its
    /// first step).
    public var directedLayers: [RecurrentLayer] {
        layers.flatMap { network.levels[$0].map { directed(network.layers[$0]) } }
    }

    /// `layer` run in its own processing time.
    func directed(_ layer: RecurrentLayer) -> RecurrentLayer {
        var own = layer
        own.direction = .forward
        return own
    }
    /// Cell-stimulus-steps simulated, each step counted once.
    public var simulatedSteps: Int { rows.count * directionLabels.count * bank.simulatedSteps }
}

/// A piece of the [rows × columns] result: `block` covers rows `rowStart…` and columns `columnStart…`.
public struct ResponseChunk: Sendable {
    public var rowStart: Int
    public var columnStart: Int
    public var block: ResponseBlock
}

public struct ChunkProgress: Sendable {
    public var chunk: Int
    public var chunks: Int
    public var simulatedSteps: Int
    public var seconds: Double
}

/// The characterization engine: runs a plan on a backend in chunks sized from the backend's
/// memory limits, handing each finished chunk to `sink` (which writes it out), so host and device
/// memory stay bounded whatever the network and bank.
public enum Characterizer {
    /// Runs the whole plan, or with `pairs` only the (row, column) pairs whose row-major index
    /// row · columnCount + column lies in it (a shard's block, docs/METHOD.md §9). Every value is
    /// computed exactly as in the whole run: decoupled cells are bit-identical under any slicing,
    /// and mode network runs each of its stimulus chunks whole and keeps the part asked for.
    /// Returns the seconds spent.
    public static func run(_ plan: CharacterizationPlan, on backend: any ComputeBackend, pairs: Range<Int>? = nil,
                           sink: (ResponseChunk) throws -> Void,
                           progress: (ChunkProgress) -> Void = { _ in }) throws -> Double {
        let budget = max(1 << 10, plan.chunkBytes ?? backend.chunkBytes)
        let columns = plan.columnCount
        let work = try units(plan, budget: budget).compactMap { unit -> (Unit, [GridRectangle])? in
            guard let pairs else { return (unit, [unit.rectangle]) }
            let pieces = unit.rectangle.intersection(pairs: pairs, columnCount: columns)
            return pieces.isEmpty ? nil : (unit, pieces)
        }
        let chunks = work.reduce(0) { $0 + $1.1.count }
        let clock = DispatchTime.now().uptimeNanoseconds
        var done = 0, index = 0
        for (unit, pieces) in work {
            // Mode network computes the unit whole once; its pieces are crops of it.
            let whole = unit.runsWhole ? try unit.run(backend, unit.rectangle) : nil
            if unit.runsWhole { done += unit.simulatedSteps(unit.rectangle) }
            for piece in pieces {
                let block: ResponseBlock
                if let whole {
                    block = whole.cropped(cells: (piece.rows.lowerBound - unit.rectangle.rows.lowerBound)..<(piece.rows.upperBound - unit.rectangle.rows.lowerBound),
                                          stimuli: (piece.columns.lowerBound - unit.rectangle.columns.lowerBound)..<(piece.columns.upperBound - unit.rectangle.columns.lowerBound))
                } else {
                    block = try unit.run(backend, piece)
                    done += unit.simulatedSteps(piece)
                }
                index += 1
                try sink(ResponseChunk(rowStart: piece.rows.lowerBound, columnStart: piece.columns.lowerBound, block: block))
                progress(ChunkProgress(chunk: index, chunks: chunks, simulatedSteps: done,
                                       seconds: Double(DispatchTime.now().uptimeNanoseconds - clock) * 1e-9))
            }
        }
        return Double(DispatchTime.now().uptimeNanoseconds - clock) * 1e-9
    }

    /// Cell-stimulus-steps simulated for the pairs in `pairs` (all when nil), each step counted once.
    public static func simulatedSteps(_ plan: CharacterizationPlan, pairs: Range<Int>? = nil) -> Int {
        guard let pairs else { return plan.simulatedSteps }
        let columns = plan.columnCount, bank = plan.bank
        guard columns > 0 else { return 0 }
        // Steps per column (stimulus), summed over each row's share of the range.
        var prefix = [0]
        for c in 0..<columns { prefix.append(prefix[c] + bank.schedules[c % bank.count].end) }
        var total = 0
        for piece in GridRectangle(rows: 0..<plan.rows.count, columns: 0..<columns).intersection(pairs: pairs, columnCount: columns) {
            total += piece.rows.count * (prefix[piece.columns.upperBound] - prefix[piece.columns.lowerBound])
        }
        return total
    }

    /// One launch's worth of work: a rectangle of the [rows × columns] grid (global indices).
    struct Unit {
        var rectangle: GridRectangle
        /// Mode network: the unit is computed whole (a coupled layer under a batch of stimuli) and cropped.
        var runsWhole: Bool
        /// Steps simulated for a piece of the rectangle.
        var simulatedSteps: (GridRectangle) -> Int
        /// The metrics of a piece of the rectangle (the rectangle itself when `runsWhole`).
        var run: (any ComputeBackend, GridRectangle) throws -> ResponseBlock
    }

    static func units(_ plan: CharacterizationPlan, budget: Int) throws -> [Unit] {
        let bank = plan.bank, steps = bank.steps
        var units: [Unit] = []
        var rowStart = 0
        // Every directed layer of the chosen levels, in the rows' order. A reverse layer's cells
        // are probed in their own processing time, as a forward layer's (METHOD.md §2).
        for layer in plan.directedLayers {
            let n = layer.hiddenSize
            let rest = plan.mode == .clamped ? layer.restState().h : nil
            for (d, (direction, _)) in plan.direction.directions(inputSize: layer.inputSize).enumerated() {
                let columnStart = d * bank.count
                if plan.mode == .network {
                    let networkBank = try networkClock(plan, layer: layer)
                    // Trajectories of the whole layer, [stimuli × steps × cells] twice over (input and hidden).
                    let perStimulus = networkBank.steps * (n + layer.inputSize) * MemoryLayout<Float>.stride * 2
                    let chunk = max(1, min(bank.count, budget / max(perStimulus, 1)))
                    for s0 in stride(from: 0, to: bank.count, by: chunk) {
                        let range = s0..<min(bank.count, s0 + chunk)
                        let sub = try networkBank.subset(range)
                        let steps = n * sub.simulatedSteps
                        units.append(Unit(rectangle: GridRectangle(rows: rowStart..<(rowStart + n), columns: (columnStart + s0)..<(columnStart + range.upperBound)),
                                          runsWhole: true, simulatedSteps: { _ in steps }) { backend, _ in
                            try networkResponses(layer: layer, direction: direction, bank: sub, probe: plan.probe,
                                                 settlingBand: plan.settlingBand, on: backend)
                        })
                    }
                    continue
                }
                let cells = try DecoupledCells(layer: layer, direction: direction, mode: plan.mode, restState: rest)
                let job = try ResponseJob(cells: cells, bank: bank, probe: plan.probe, settlingBand: plan.settlingBand,
                                          restTolerance: plan.restTolerance)
                // Waveforms take at most a quarter of the budget; metric planes the rest.
                let stimulusChunk = max(1, min(bank.count, budget / 4 / max(steps * 8, 1)))
                let pairBytes = Metric.allCases.count * MemoryLayout<Float>.stride
                let cellChunk = max(1, min(n, budget / (stimulusChunk * pairBytes)))
                let (rows0, columns0) = (rowStart, columnStart)
                for s0 in stride(from: 0, to: bank.count, by: stimulusChunk) {
                    let stimuli = s0..<min(bank.count, s0 + stimulusChunk)
                    for c0 in stride(from: 0, to: n, by: cellChunk) {
                        let cellRange = c0..<min(n, c0 + cellChunk)
                        let rectangle = GridRectangle(rows: (rows0 + cellRange.lowerBound)..<(rows0 + cellRange.upperBound),
                                                      columns: (columns0 + stimuli.lowerBound)..<(columns0 + stimuli.upperBound))
                        units.append(Unit(rectangle: rectangle, runsWhole: false, simulatedSteps: { piece in
                            piece.rows.count * piece.columns.reduce(0) { $0 + bank.schedules[$1 - columns0].end }
                        }) { backend, piece in
                            try backend.responses(try job.slice(cells: (piece.rows.lowerBound - rows0)..<(piece.rows.upperBound - rows0),
                                                                stimuli: (piece.columns.lowerBound - columns0)..<(piece.columns.upperBound - columns0)))
                        })
                    }
                }
            }
            rowStart += n
        }
        return units
    }

    /// Mode `network`'s clock: a coupled layer cannot be started at its resting state through the
    /// forward (which starts at h = c = 0), so where the bank starts at rest it runs from zero
    /// for as many rest steps as the layer's rest search took, plus one (METHOD.md §2).
    static func networkClock(_ plan: CharacterizationPlan, layer: RecurrentLayer) throws -> StimulusBank {
        let bank = plan.bank
        guard bank.startsAtRest else { return bank }
        return try StimulusBank(stimuli: bank.stimuli, preSteps: layer.restState().steps + 1, onsetDelay: bank.onsetDelay, window: bank.window)
    }

    /// Mode `network`: the whole layer runs under each stimulus (through the backend's full
    /// forward), every cell is recorded, and the metrics come from the stored trajectories by
    /// the reference, against the layer's own unstimulated run.
    static func networkResponses(layer: RecurrentLayer, direction: StimulusDirection, bank: StimulusBank, probe: Probe,
                                 settlingBand: Float, on backend: any ComputeBackend) throws -> ResponseBlock {
        guard probe == .h else { throw StimulusError.invalid("mode network records h only; use --probe h") }
        let run = try networkTrajectories(layer: layer, direction: direction, bank: bank, on: backend)
        return ResponseBlock.reference(run.trajectories, baseline: run.baseline, bank: bank, settlingBand: settlingBand)
    }

    /// h of every cell of the coupled layer under each stimulus, [cell × stimulus × step], and
    /// under none (the baseline, [cell × step]), in one batch.
    static func networkTrajectories(layer: RecurrentLayer, direction: StimulusDirection, bank: StimulusBank,
                                    on backend: any ComputeBackend) throws -> (trajectories: Trajectories, baseline: [Float]) {
        let d = try direction.vector(inputSize: layer.inputSize)
        let steps = bank.steps, width = layer.inputSize, n = layer.hiddenSize
        let wave = bank.waveforms().wave
        // One more sequence, all zeros, for the baseline.
        var inputs = [Float](repeating: 0, count: (bank.count + 1) * steps * width)
        for s in 0..<bank.count {
            let a = bank.stimuli[s].amplitude
            for t in 0..<steps {
                let u = a * wave[s * steps + t]
                if u == 0 { continue }
                for i in 0..<width { inputs[(s * steps + t) * width + i] = u * d[i] }
            }
        }
        let single = try RecurrentNetwork(layers: [layer], readout: .init(V: [Float](repeating: 0, count: n), a: [0]))
        let job = try ForwardJob(network: single, inputs: try SequenceBatch(count: bank.count + 1, steps: steps, width: width, values: inputs),
                                 output: .sequence)
        let hidden = try backend.forward(job).hidden   // [stimulus × step × cell]
        var traj = [Float](repeating: .nan, count: n * bank.count * steps)
        for s in 0..<bank.count {
            let end = bank.schedules[s].end
            for j in 0..<n {
                let row = (j * bank.count + s) * steps
                for t in 0..<end {
                    let source: Int = (s * steps + t) * n + j
                    traj[row + t] = hidden[source]
                }
            }
        }
        var baseline = [Float](repeating: 0, count: n * steps)
        for j in 0..<n { for t in 0..<steps { baseline[j * steps + t] = hidden[(bank.count * steps + t) * n + j] } }
        return (Trajectories(cellCount: n, stimulusCount: bank.count, stepCount: steps, values: traj), baseline)
    }

    /// Whether each row's unstimulated run stays within the plan's rest tolerance (METHOD.md §4):
    /// the decoupled cell's own (modes self and clamped) or the coupled layer's (mode network).
    public static func atRest(_ plan: CharacterizationPlan, on backend: any ComputeBackend) throws -> [Bool] {
        try plan.directedLayers.flatMap { layer -> [Bool] in
            if plan.mode == .network {
                let bank = try networkClock(plan, layer: layer)
                let baseline = try networkTrajectories(layer: layer, direction: .all, bank: try bank.subset([0]), on: backend).baseline
                let steps = baseline.count / layer.hiddenSize, onset = bank.onset
                return (0..<layer.hiddenSize).map { j in
                    Baseline.staysAtRest(baseline[(j * steps)..<((j + 1) * steps)], onset: onset, start: 0, tolerance: plan.restTolerance)
                }
            }
            let rest = plan.mode == .clamped ? layer.restState().h : nil
            let cells = try DecoupledCells(layer: layer, direction: .all, mode: plan.mode, restState: rest)
            return cells.baseline(bank: plan.bank, probe: plan.probe, restTolerance: plan.restTolerance).atRest
        }
    }
}

extension Characterizer {
    /// Whole trajectories for the chosen rows × columns of a plan, [rows × columns × bank.steps],
    /// NaN past each stimulus's end.
    public static func trajectories(_ plan: CharacterizationPlan, rows: [Int], columns: [Int],
                                    on backend: any ComputeBackend) throws -> [Float] {
        let steps = plan.bank.steps, bankCount = plan.bank.count
        var out = [Float](repeating: .nan, count: rows.count * columns.count * steps)
        // Rows by directed layer, columns by stimulus direction: one backend call per pair.
        let byLayer = Dictionary(grouping: rows.indices) { plan.network.layerIndex(level: plan.rows[rows[$0]].layer, direction: plan.rows[rows[$0]].direction) }
        let byDirection = Dictionary(grouping: columns.indices) { columns[$0] / bankCount }
        for (index, rowSlots) in byLayer {
            let layer = plan.directed(plan.network.layers[index])
            let cells = rowSlots.map { plan.rows[rows[$0]].index }
            let rest = plan.mode == .clamped ? layer.restState().h : nil
            let directions = plan.direction.directions(inputSize: layer.inputSize)
            for (d, columnSlots) in byDirection {
                let stimuli = columnSlots.map { columns[$0] % bankCount }
                let bank = try plan.bank.subset(stimuli)
                let traj: Trajectories
                let source: [Int]
                if plan.mode == .network {
                    traj = try networkTrajectories(layer: layer, direction: directions[d].0, bank: bank, on: backend).trajectories
                    source = cells
                } else {
                    let decoupled = try DecoupledCells(layer: layer, direction: directions[d].0, mode: plan.mode, restState: rest)
                    let job = try ResponseJob(cells: decoupled, bank: bank, probe: plan.probe, settlingBand: plan.settlingBand)
                    traj = try backend.trajectories(try job.slice(cells: cells, stimuli: 0..<bank.count))
                    source = Array(cells.indices)
                }
                for (i, slot) in rowSlots.enumerated() {
                    for (k, columnSlot) in columnSlots.enumerated() {
                        // The sub-bank's clock can be shorter than the whole bank's: the rest stays NaN.
                        let series = traj.series(cell: source[i], stimulus: k)
                        let base = (slot * columns.count + columnSlot) * steps
                        out.replaceSubrange(base..<(base + series.count), with: series)
                    }
                }
            }
        }
        return out
    }
}
