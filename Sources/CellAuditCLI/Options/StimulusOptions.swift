import ArgumentParser
import CellAuditAnalysis
import CellAuditCore
import Foundation

/// The stimulus bank and decoupling options shared by `characterize` and `audit`.
struct StimulusOptions: ParsableArguments {
    @Option(help: "Step amplitudes, comma-separated (default: 32 values ±1/16…4, log-spaced; 'none' for no steps).")
    var stepAmplitudes: String?

    @Option(help: "Sinusoid frequencies in cycles per step, comma-separated (default: 128 log-spaced from 2/window to 0.45; 'none' for no sinusoids).")
    var frequencies: String?

    @Option(help: "Sinusoid amplitudes, comma-separated (default: 0.25,0.5,1,2).")
    var sineAmplitudes: String?

    @Option(help: "Start from h = c = 0 and run exactly this many rest steps before the stimulus (default: start every cell at its resting state, found by iteration).")
    var preSteps: Int?

    @Option(help: "Largest change of a cell's unstimulated run, over the longest run, for the cell to count as at rest (METHOD.md §4).")
    var restTolerance: Float = Defaults.restTolerance

    @Option(help: "Further rest steps before onset.")
    var onset: Int = 0

    @Option(help: "Observation window after onset, in steps (T_obs).")
    var window: Int = Defaults.window

    @Option(help: "A JSON stimulus file (see README); replaces the grid options.")
    var stimuli: String?

    @Option(help: "Recurrence mode: self, clamped or network.")
    var mode: String = "self"

    @Option(help: "Stimulus direction: all, each, channel:K or a comma-separated vector.")
    var direction: String = "all"

    @Option(help: "Probed signal: h or c.")
    var probe: String = "h"

    @Option(help: "Settling band as a fraction of |Δ|.")
    var settlingBand: Float = Defaults.settlingBand

    /// What each option refuses on its own (exit 2): a mode, probe or list that is malformed
    /// whatever the model. Whether a value fits the model is checked later (exit 1).
    func validate() throws {
        if RecurrenceMode(rawValue: mode) == nil { throw ValidationError("--mode must be self, clamped or network, got '\(mode)'") }
        if Probe(rawValue: probe) == nil { throw ValidationError("--probe must be h or c, got '\(probe)'") }
        for (text, name) in [(stepAmplitudes, "--step-amplitudes"), (frequencies, "--frequencies"), (sineAmplitudes, "--sine-amplitudes")] {
            guard let text, text != "none" else { continue }
            do { _ = try parseFloats(text, name: name) } catch let error as RunFailure { throw ValidationError(error.description) }
        }
    }

    func bank() throws -> StimulusBank {
        if let stimuli {
            guard stepAmplitudes == nil, frequencies == nil, sineAmplitudes == nil else {
                throw RunFailure(description: "--stimuli replaces --step-amplitudes, --frequencies and --sine-amplitudes; give one or the other")
            }
            return try StimulusBank.load(json: stimuli, preSteps: preSteps, onsetDelay: onset, window: window)
        }
        guard window >= 2 else { throw StimulusError.invalid("the observation window must be ≥ 2 steps, got \(window)") }
        func list(_ text: String?, _ name: String, _ fallback: [Float]) throws -> [Float] {
            guard let text else { return fallback }
            return text == "none" ? [] : try parseFloats(text, name: name)
        }
        return try StimulusBank.grid(
            stepAmplitudes: try list(stepAmplitudes, "--step-amplitudes", StimulusBank.defaultStepAmplitudes),
            frequencies: try list(frequencies, "--frequencies", StimulusBank.defaultFrequencies(window: window)),
            sineAmplitudes: try list(sineAmplitudes, "--sine-amplitudes", StimulusBank.defaultSineAmplitudes),
            preSteps: preSteps, onsetDelay: onset, window: window)
    }

    func plan(_ network: RecurrentNetwork, layers: [Int]?) throws -> CharacterizationPlan {
        guard let mode = RecurrenceMode(rawValue: mode) else {
            throw RunFailure(description: "--mode must be self, clamped or network, got '\(mode)'")
        }
        guard let probe = Probe(rawValue: probe) else { throw RunFailure(description: "--probe must be h or c, got '\(probe)'") }
        return try CharacterizationPlan(network: network, layers: layers, mode: mode, direction: try DirectionSpec.parse(direction),
                                        probe: probe, bank: try bank(), settlingBand: settlingBand, restTolerance: restTolerance)
    }
}
