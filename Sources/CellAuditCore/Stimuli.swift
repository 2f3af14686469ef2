import Foundation

/// One stimulus of the bank (METHOD.md §3): a step u(t) = A·1[t ≥ t_on] or a sinusoid
/// u(t) = A·sin(2π f (t − t_on)) for t ≥ t_on, observed for `window` steps after onset.
public struct Stimulus: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable { case step, sine }
    public var kind: Kind
    public var amplitude: Float
    /// Cycles per step (sinusoids only; 0 for steps).
    public var frequency: Float

    public init(kind: Kind, amplitude: Float, frequency: Float = 0) {
        self.kind = kind; self.amplitude = amplitude; self.frequency = frequency
    }

    enum CodingKeys: String, CodingKey { case kind, amplitude, frequency }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        kind = try c.decode(Kind.self, forKey: .kind)
        amplitude = try c.decode(Float.self, forKey: .amplitude)
        frequency = try c.decodeIfPresent(Float.self, forKey: .frequency) ?? 0
    }

    public static func step(_ amplitude: Float) -> Stimulus { Stimulus(kind: .step, amplitude: amplitude) }
    public static func sine(_ amplitude: Float, frequency: Float) -> Stimulus {
        Stimulus(kind: .sine, amplitude: amplitude, frequency: frequency)
    }
}

/// Where each stimulus's samples fall in the simulated run, fixed once per bank so every backend
/// and the reference read the same numbers. All indices count steps from the start of the run.
public struct StimulusSchedule: Sendable, Equatable {
    /// First stimulated step (t_on).
    public var onset: Int
    /// Steps simulated in all (onset + this stimulus's window).
    public var end: Int
    /// Steps: first sample averaged for y_final. Sinusoids: first analysed sample.
    public var analysisStart: Int
    /// Samples averaged for y_final (steps) or analysed (sinusoids: whole periods).
    public var analysisLength: Int
    /// Harmonics (1…5) below the Nyquist frequency that the DFT measures (sinusoids).
    public var harmonics: Int
}

/// A bank of stimuli sharing one clock. By default every run starts at the cell's resting state,
/// found by iterating its own step under rest input (METHOD.md §2), sees one rest step (plus
/// `onsetDelay`) and then its stimulus for `window` steps; with explicit `preSteps` it starts at
/// h = c = 0 and sees exactly that many rest steps first. A sinusoid's window is extended where
/// it cannot hold the transient plus two whole periods (docs/METHOD.md).
public struct StimulusBank: Sendable, Equatable {
    public private(set) var stimuli: [Stimulus]
    /// Whether runs start at each cell's resting state (found by iteration) rather than at 0.
    public let startsAtRest: Bool
    /// Rest steps simulated before the stimulus (from the resting state: 1; from h = c = 0: the
    /// `--pre-steps` given).
    public let preSteps: Int
    /// Extra rest steps after `preSteps` before the stimulus starts (default 0).
    public let onsetDelay: Int
    /// Observation window after onset (T_obs).
    public let window: Int
    public let schedules: [StimulusSchedule]
    /// Steps of the longest run in the bank: the length of a trajectory row.
    public let steps: Int
    /// Steps actually simulated over the whole bank for one cell (each stimulus counted once).
    public let simulatedSteps: Int

    public static let largestRun = 1 << 22

    /// - Parameters:
    ///   - preSteps: nil (default) starts every run at the cell's resting state, found by
    ///     iteration, with one simulated rest step before onset; N starts at h = c = 0 and runs
    ///     exactly N rest steps (METHOD.md §2).
    /// - Throws: `StimulusError.invalid` naming the bad parameter.
    public init(stimuli: [Stimulus], preSteps: Int? = nil, onsetDelay: Int = 0, window: Int = Defaults.window) throws {
        guard !stimuli.isEmpty else { throw StimulusError.invalid("the stimulus bank is empty") }
        startsAtRest = preSteps == nil
        let preSteps = preSteps ?? 1
        guard preSteps >= 0 else { throw StimulusError.invalid("pre-steps must be ≥ 0, got \(preSteps)") }
        guard onsetDelay >= 0 else { throw StimulusError.invalid("the onset delay must be ≥ 0, got \(onsetDelay)") }
        guard window >= 2 else { throw StimulusError.invalid("the observation window must be ≥ 2 steps, got \(window)") }
        guard preSteps <= Self.largestRun, onsetDelay <= Self.largestRun, window <= Self.largestRun else {
            throw StimulusError.invalid("runs longer than \(Self.largestRun) steps are not supported")
        }
        for (i, s) in stimuli.enumerated() {
            guard s.amplitude.isFinite, s.frequency.isFinite else {
                throw StimulusError.invalid("stimulus \(i) has a non-finite amplitude or frequency")
            }
            if s.kind == .sine {
                guard s.frequency > 0, s.frequency < 0.5 else {
                    throw StimulusError.invalid("stimulus \(i): frequency \(s.frequency) must lie in (0, 0.5) cycles per step")
                }
                guard s.frequency * Float(Self.largestRun) >= 4 else {
                    throw StimulusError.invalid("stimulus \(i): frequency \(s.frequency) is too low to observe two periods")
                }
            }
        }
        self.stimuli = stimuli
        self.preSteps = preSteps
        self.onsetDelay = onsetDelay
        self.window = window
        let onset = preSteps + onsetDelay
        schedules = stimuli.map { Self.schedule($0, onset: onset, window: window) }
        steps = schedules.map(\.end).max()!
        simulatedSteps = schedules.reduce(0) { $0 + $1.end }
    }

    static func schedule(_ s: Stimulus, onset: Int, window: Int) -> StimulusSchedule {
        switch s.kind {
        case .step:
            let tail = max(1, Int((Double(window) * StepMetrics.finalFraction).rounded(.up)))
            return StimulusSchedule(onset: onset, end: onset + window, analysisStart: onset + window - tail,
                                    analysisLength: tail, harmonics: 0)
        case .sine:
            let period = 1 / Double(s.frequency)
            // (the frequency is a Float: allow for its rounding before taking the ceiling)
            let transient = Int((max(Double(window) / 4, 2 * period) - 1e-4).rounded(.up))
            let periods = max(2, Int((Double(window - transient) / period).rounded(.down)))
            let length = Int((Double(periods) * period).rounded())
            let harmonics = (1...5).last { Float($0) * s.frequency < 0.5 }!
            return StimulusSchedule(onset: onset, end: onset + max(window, transient + length),
                                    analysisStart: onset + transient, analysisLength: length, harmonics: harmonics)
        }
    }

    public var count: Int { stimuli.count }
    public var onset: Int { preSteps + onsetDelay }

    /// The bank restricted to some of its stimuli, on the same clock.
    public func subset(_ indices: some Sequence<Int>) throws -> StimulusBank {
        try StimulusBank(stimuli: indices.map { stimuli[$0] }, preSteps: startsAtRest ? nil : preSteps, onsetDelay: onsetDelay, window: window)
    }

    /// The stimulus waveforms on the run's clock, [stimulus × steps] each: `wave` is
    /// 1[t ≥ t_on] (steps) or sin(2πf(t − t_on)) for t ≥ t_on (sinusoids), so u(t) = A·wave;
    /// `quadrature` is cos(2πf(t − t_on)) for sinusoids in their analysed span (0 elsewhere).
    /// Computed in Double and rounded once, so every backend drives cells with the same values.
    public func waveforms() -> (wave: [Float], quadrature: [Float]) {
        let steps = self.steps
        var wave = [Float](repeating: 0, count: count * steps)
        var quadrature = wave
        for (i, (s, sched)) in zip(stimuli, schedules).enumerated() {
            let row = i * steps
            for t in sched.onset..<sched.end {
                switch s.kind {
                case .step:
                    wave[row + t] = 1
                case .sine:
                    let phase = 2 * Double.pi * Double(s.frequency) * Double(t - sched.onset)
                    wave[row + t] = Float(sin(phase))
                    if t >= sched.analysisStart && t < sched.analysisStart + sched.analysisLength {
                        quadrature[row + t] = Float(cos(phase))
                    }
                }
            }
        }
        return (wave, quadrature)
    }

    // MARK: The default grid and its parts

    /// METHOD.md §3's default bank: 32 step amplitudes ±(1/16 … 4) log-spaced, and 128
    /// frequencies log-spaced from 2/T_obs to 0.45 cycles per step at amplitudes 0.25, 0.5, 1, 2.
    public static func standard(preSteps: Int? = nil, onsetDelay: Int = 0, window: Int = Defaults.window) throws -> StimulusBank {
        try grid(stepAmplitudes: defaultStepAmplitudes, frequencies: defaultFrequencies(window: window),
                 sineAmplitudes: defaultSineAmplitudes, preSteps: preSteps, onsetDelay: onsetDelay, window: window)
    }

    public static func grid(stepAmplitudes: [Float], frequencies: [Float], sineAmplitudes: [Float],
                            preSteps: Int? = nil, onsetDelay: Int = 0, window: Int = Defaults.window) throws -> StimulusBank {
        try StimulusBank(stimuli: gridStimuli(stepAmplitudes, frequencies, sineAmplitudes),
                         preSteps: preSteps, onsetDelay: onsetDelay, window: window)
    }

    /// Steps at every amplitude, then every frequency × sine amplitude.
    static func gridStimuli(_ stepAmplitudes: [Float], _ frequencies: [Float], _ sineAmplitudes: [Float]) throws -> [Stimulus] {
        if !frequencies.isEmpty && sineAmplitudes.isEmpty {
            throw StimulusError.invalid("frequencies were given but no sine amplitudes")
        }
        let steps = stepAmplitudes.map(Stimulus.step)
        return steps + frequencies.flatMap { f in sineAmplitudes.map { Stimulus.sine($0, frequency: f) } }
    }

    public static let defaultSineAmplitudes: [Float] = [0.25, 0.5, 1, 2]

    public static var defaultStepAmplitudes: [Float] {
        let magnitudes = logSpaced(from: 1.0 / 16, to: 4, count: 16)
        return magnitudes.reversed().map { -$0 } + magnitudes
    }

    public static func defaultFrequencies(window: Int) -> [Float] {
        logSpaced(from: min(2 / Double(window), 0.45), to: 0.45, count: 128)
    }

    public static func logSpaced(from a: Double, to b: Double, count: Int) -> [Float] {
        guard count > 1 else { return [Float(a)] }
        return (0..<count).map { Float(exp(log(a) + (log(b) - log(a)) * Double($0) / Double(count - 1))) }
    }

    // MARK: Stimulus files

    /// A JSON stimulus file. Either a grid or an explicit list, or both (concatenated):
    /// `{"pre_steps": 20, "onset": 0, "window": 400, "step_amplitudes": [...],
    ///   "frequencies": [...], "sine_amplitudes": [...],
    ///   "stimuli": [{"kind": "step", "amplitude": 1}, {"kind": "sine", "amplitude": 0.5, "frequency": 0.1}]}`.
    /// Missing timing keys take the given defaults.
    public static func load(json path: String, preSteps: Int? = nil, onsetDelay: Int = 0, window: Int = Defaults.window) throws -> StimulusBank {
        let fail = { (message: String) -> Error in StimulusError.invalid(message) }
        let file = try JSONInput.object(path: path, what: "stimulus file",
                                        accepted: ["pre_steps", "onset", "window", "step_amplitudes", "frequencies", "sine_amplitudes", "stimuli"],
                                        fail: fail)
        var listed = try gridStimuli(try file.floats("step_amplitudes") ?? [], try file.floats("frequencies") ?? [],
                                     try file.floats("sine_amplitudes") ?? [])
        for entry in try file.objects("stimuli", accepted: ["kind", "amplitude", "frequency"]) ?? [] {
            guard let kindName = try entry.string("kind") else { throw fail("\(entry.context): 'kind' is missing (step or sine)") }
            guard let kind = Stimulus.Kind(rawValue: kindName) else { throw fail("\(entry.context): 'kind' must be step or sine, got '\(kindName)'") }
            guard let amplitude = try entry.float("amplitude") else { throw fail("\(entry.context): 'amplitude' is missing") }
            let frequency = try entry.float("frequency")
            switch kind {
            case .step:
                if frequency != nil { throw fail("\(entry.context): a step has no frequency") }
                listed.append(.step(amplitude))
            case .sine:
                guard let frequency else { throw fail("\(entry.context): a sine needs a 'frequency' in cycles per step") }
                listed.append(.sine(amplitude, frequency: frequency))
            }
        }
        guard !listed.isEmpty else {
            throw fail("\(file.context) lists no stimulus: give step_amplitudes, frequencies with sine_amplitudes, or a stimuli list")
        }
        do {
            return try StimulusBank(stimuli: listed, preSteps: try file.integer("pre_steps") ?? preSteps,
                                    onsetDelay: try file.integer("onset") ?? onsetDelay, window: try file.integer("window") ?? window)
        } catch StimulusError.invalid(let problem) {
            throw fail("\(file.context): \(problem)")
        }
    }

    public static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let c): return c.debugDescription
        case DecodingError.keyNotFound(let k, let c): return "missing \(k.stringValue) at \(c.codingPath.map(\.stringValue).joined(separator: "."))"
        case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c):
            return "wrong type at \(c.codingPath.map(\.stringValue).joined(separator: ".")): \(c.debugDescription)"
        default: return "\(error)"
        }
    }
}
