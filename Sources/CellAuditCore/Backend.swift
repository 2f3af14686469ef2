/// What is probed in a decoupled cell: its output h (default) or its memory c.
public enum Probe: String, Sendable, CaseIterable {
    case h, c
}

/// Timing of a step experiment (METHOD.md §2–§3): the cell starts at h = c = 0, sees
/// `preSteps` steps of rest input, then the stimulus from onset (t_on = preSteps) for `window`
/// steps. Trajectories cover all `preSteps + window` steps.
public struct StepTiming: Sendable, Equatable {
    public var preSteps: Int
    public var window: Int

    public init(preSteps: Int = 20, window: Int = 400) throws {
        guard preSteps >= 0 else { throw StimulusError.invalid("pre-steps must be ≥ 0, got \(preSteps)") }
        guard window >= 1 else { throw StimulusError.invalid("the observation window must be ≥ 1 step, got \(window)") }
        let (total, overflow) = preSteps.addingReportingOverflow(window)
        guard !overflow, total <= Int(Int32.max) else { throw StimulusError.invalid("pre-steps + window is too large") }
        self.preSteps = preSteps
        self.window = window
    }

    public var onset: Int { preSteps }
    public var totalSteps: Int { preSteps + window }
}

public enum StimulusError: Error, CustomStringConvertible, Equatable {
    case invalid(String)
    public var description: String {
        switch self { case .invalid(let s): "bad stimulus: \(s)" }
    }
}

/// Decoupled cells under a bank of step stimuli u(t) = A·1[t ≥ t_on], one per amplitude.
public struct StepTrajectoryJob: Sendable {
    public var cells: DecoupledCells
    public var amplitudes: [Float]
    public var timing: StepTiming
    public var probe: Probe

    public init(cells: DecoupledCells, amplitudes: [Float], timing: StepTiming, probe: Probe = .h) throws {
        guard cells.cellCount > 0 else { throw StimulusError.invalid("no cells to simulate") }
        guard !amplitudes.isEmpty else { throw StimulusError.invalid("the stimulus bank is empty") }
        guard amplitudes.allSatisfy(\.isFinite) else { throw StimulusError.invalid("step amplitudes must be finite") }
        guard cells.parameters.allSatisfy(\.isFinite) else { throw ModelError.nonFinite("decoupled cell parameters contain NaN or Inf") }
        self.cells = cells
        self.amplitudes = amplitudes
        self.timing = timing
        self.probe = probe
    }

    /// Values in the full trajectory tensor.
    public var valueCount: Int { cells.cellCount * amplitudes.count * timing.totalSteps }
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
    /// The probed signal of every cell under every step stimulus, at every step.
    func stepTrajectories(_ job: StepTrajectoryJob) throws -> Trajectories
    /// The full network over a batch of sequences, for every ablation configuration of the job.
    func forward(_ job: ForwardJob) throws -> ForwardResult
}
