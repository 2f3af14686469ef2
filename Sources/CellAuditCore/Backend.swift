import Foundation

/// What is probed in a decoupled cell: its output h (default) or its memory c.
public enum Probe: String, Sendable, CaseIterable {
    case h, c
}

public enum StimulusError: Error, CustomStringConvertible, Equatable {
    case invalid(String)
    public var description: String {
        switch self { case .invalid(let s): "bad stimulus: \(s)" }
    }
}

/// Decoupled cells under a stimulus bank: the unit of work of the characterization engine.
public struct ResponseJob: Sendable {
    public var cells: DecoupledCells
    public var bank: StimulusBank
    public var probe: Probe
    /// Settling band as a fraction of |Δ| (METHOD.md §4: 2 %).
    public var settlingBand: Float
    /// Each cell's unstimulated run: the start state of every run and the baseline b(t) that
    /// every metric is taken against (METHOD.md §4).
    public var baseline: Baseline

    /// - Throws: `StimulusError.invalid` for no cells, a probe the kind lacks, or a settling band or
    ///   rest tolerance out of range; `ModelError.nonFinite` for NaN or Inf parameters.
    public init(cells: DecoupledCells, bank: StimulusBank, probe: Probe = .h, settlingBand: Float = Defaults.settlingBand,
                restTolerance: Float = Baseline.defaultRestTolerance) throws {
        guard cells.cellCount > 0 else { throw StimulusError.invalid("no cells to simulate") }
        guard cells.parameters.allSatisfy(\.isFinite) else { throw ModelError.nonFinite("decoupled cell parameters contain NaN or Inf") }
        guard cells.kind.probes.contains(probe) else {
            throw StimulusError.invalid("probe \(probe.rawValue): a \(cells.kind.rawValue) cell has no memory c (probe c is LSTM-only)")
        }
        guard settlingBand > 0, settlingBand < 1 else {
            throw StimulusError.invalid("the settling band must lie in (0, 1), got \(settlingBand)")
        }
        try Baseline.checkRestTolerance(restTolerance)
        self.cells = cells; self.bank = bank; self.probe = probe; self.settlingBand = settlingBand
        baseline = cells.baseline(bank: bank, probe: probe, restTolerance: restTolerance)
    }

    private init(cells: DecoupledCells, bank: StimulusBank, probe: Probe, settlingBand: Float, baseline: Baseline) {
        self.cells = cells; self.bank = bank; self.probe = probe; self.settlingBand = settlingBand; self.baseline = baseline
    }

    /// Cell-stimulus-steps this job simulates, each step counted once however many passes run.
    public var simulatedSteps: Int { cells.cellCount * bank.simulatedSteps }

    /// The same job on some of the cells and stimuli (the baseline is cut, not recomputed).
    public func slice(cells: some Collection<Int>, stimuli: some Sequence<Int>) throws -> ResponseJob {
        let sub = try bank.subset(stimuli)
        return ResponseJob(cells: self.cells.subset(cells), bank: sub, probe: probe, settlingBand: settlingBand,
                           baseline: baseline.subset(cells, steps: sub.steps))
    }
}

/// Trajectories laid out [cell][stimulus][step].
public struct Trajectories: Sendable, Equatable {
    public let cellCount: Int
    public let stimulusCount: Int
    public let stepCount: Int
    public var values: [Float]

    public init(cellCount: Int, stimulusCount: Int, stepCount: Int, values: [Float]) {
        precondition(values.count == cellCount * stimulusCount * stepCount)
        self.cellCount = cellCount
        self.stimulusCount = stimulusCount
        self.stepCount = stepCount
        self.values = values
    }

    /// The trajectory of one (cell, stimulus) pair.
    public func series(cell: Int, stimulus: Int) -> ArraySlice<Float> {
        let start = (cell * stimulusCount + stimulus) * stepCount
        return values[start..<start + stepCount]
    }
}

/// Which compute backend runs a job, and on what.
public struct BackendIdentity: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable { case cpu, opencl }
    public var kind: Kind
    /// The device in words, e.g. "Swift on 2 cores" or "pthread-skylake (Portable Computing Language)".
    public var device: String
    public var description: String { "\(kind.rawValue) (\(device))" }
    public init(kind: Kind, device: String) { self.kind = kind; self.device = device }
}

/// A compute backend. The CPU backend is the reference every other backend is tested against.
public protocol ComputeBackend: AnyObject, Sendable {
    var identity: BackendIdentity { get }
    /// Every metric of every (cell, stimulus) pair of the job, computed while the cells run.
    func responses(_ job: ResponseJob) throws -> ResponseBlock
    /// The probed signal of every (cell, stimulus) pair at every step of the bank's clock, NaN past
    /// each stimulus's end. Memory grows with cells × stimuli × steps: ask for few.
    func trajectories(_ job: ResponseJob) throws -> Trajectories
    /// The full network over a batch of sequences, for every ablation configuration of the job.
    func forward(_ job: ForwardJob) throws -> ForwardResult
    /// Relevance (LRP or gradient × input) of every input value and cell for one readout output
    /// per sequence (METHOD.md §7).
    func relevance(_ job: RelevanceJob) throws -> RelevanceResult
    /// One step of a layer's map s' = F(s, x) for `rows` states [rows × D] at once, in Float64, with
    /// the Jacobians ∂F/∂s [rows × D × D] when `jacobian` is true (`LayerMap.step` is the
    /// reference). `inputs` [rows × I] gives each row its own input; nil means the map's x̄.
    func mapStep(_ map: LayerMap, states: [Double], inputs: [Double]?, rows: Int, jacobian: Bool) throws -> (next: [Double], jacobian: [Double])
    /// Every row run `pulseSteps` steps under its pulse input, then under x̄ until it settles
    /// (`LayerMap.settle` is the reference).
    func mapSettle(_ map: LayerMap, states: [Double], pulses: [Double]?, rows: Int, pulseSteps: Int, maxSteps: Int,
                   tolerance: Double) throws -> (states: [Double], settled: [Bool])
    /// The most bytes one launch's outputs should take (the engine sizes its chunks from it).
    var chunkBytes: Int { get }
    /// Host threads this backend's CPU work may use (the CPU backend's every product and update;
    /// an OpenCL backend's host-side work: readouts, the fixed-point solves around its map steps).
    /// Analyses that work on the host beside a backend use this count too, never a global one.
    var hostThreads: Int { get }
    /// Where `operation` runs when this backend is asked for it: its own identity, or that of
    /// the backend it hands the operation to (never an OpenCL label on CPU work).
    func placement(of operation: BackendOperation) -> BackendIdentity
}

extension ResponseBlock {
    /// The metrics computed plainly from stored trajectories and each cell's baseline
    /// (`Baseline.signal`, [cells × bank.steps]) by `referenceMetrics`, on all cores.
    public static func reference(_ trajectories: Trajectories, baseline: [Float], bank: StimulusBank, settlingBand: Float) -> ResponseBlock {
        let n = trajectories.cellCount, stimuli = trajectories.stimulusCount
        precondition(stimuli == bank.count)
        var values = [Float](repeating: .nan, count: Metric.allCases.count * n * stimuli)
        values.withUnsafeMutableBufferPointer { buffer in
            let out = SendablePointer(buffer.baseAddress!)
            DispatchQueue.concurrentPerform(iterations: n) { j in
                for s in 0..<stimuli {
                    let m = referenceMetrics(series: trajectories.series(cell: j, stimulus: s),
                                             baseline: baseline[(j * bank.steps)..<((j + 1) * bank.steps)], stimulus: bank.stimuli[s],
                                             schedule: bank.schedules[s], settlingBand: settlingBand)
                    for (k, v) in m.enumerated() { out.pointer[(k * n + j) * stimuli + s] = v }
                }
            }
        }
        return ResponseBlock(cellCount: n, stimulusCount: stimuli, values: values)
    }
}
