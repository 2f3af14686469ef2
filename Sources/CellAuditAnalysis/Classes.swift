import CellAuditCore
import Foundation

/// The cell classes of METHOD.md §5. A cell can be in several.
public enum CellClass: String, CaseIterable, Sendable, Codable {
    case silent, drifting, fast, slow, integrator, excitatory, inhibitory, oscillatory, saturating
    case lowPass = "low-pass", bandPass = "band-pass", highPass = "high-pass"
}

/// Thresholds of the classes (docs/METHOD.md gives the reasons); every one can be
/// overridden from a JSON file with these keys.
public struct ClassThresholds: Sendable, Codable, Equatable {
    /// fast: settling time at most this many steps.
    public var fastSettling: Double = 10
    /// slow: settling time at least this many steps (but settled within the window).
    public var slowSettling: Double = 100
    /// oscillatory: overshoot at least this percentage and at least `oscillatoryRinging` sign changes.
    public var oscillatoryOvershootPct: Double = 5
    public var oscillatoryRinging: Double = 2
    /// saturating: gain at the largest amplitude below this share of the gain at the smallest.
    public var saturation: Double = 0.8
    /// frequency classes: a gain ratio of at least this (√2: 3 dB) between the ends and the peak.
    public var passRatio: Double = 2.0.squareRoot()
    /// silent: response magnitude over the bank below this.
    public var silentMagnitude: Double = 1e-6

    public init() {}

    /// Reads thresholds from a JSON object whose keys are the `CodingKeys` (every key optional).
    /// - Throws: `ClassThresholdError` naming the file and the unknown key, the key of the wrong
    ///   type, or the text that is not JSON.
    public static func load(json path: String) throws -> ClassThresholds {
        let fail = { (message: String) -> Error in ClassThresholdError.invalid(message) }
        let file = try JSONInput.object(path: path, what: "class threshold file", accepted: CodingKeys.allCases.map(\.rawValue), fail: fail)
        var t = ClassThresholds()
        let fields: [(CodingKeys, WritableKeyPath<ClassThresholds, Double>)] = [
            (.fastSettling, \.fastSettling), (.slowSettling, \.slowSettling), (.oscillatoryOvershootPct, \.oscillatoryOvershootPct),
            (.oscillatoryRinging, \.oscillatoryRinging), (.saturation, \.saturation), (.passRatio, \.passRatio),
            (.silentMagnitude, \.silentMagnitude)]
        for (key, path) in fields {
            if let v = try file.number(key.rawValue) {
                guard v.isFinite, v >= 0 else { throw fail("\(file.context): '\(key.rawValue)' must be a finite number ≥ 0, got \(v)") }
                t[keyPath: path] = v
            }
        }
        guard t.slowSettling >= t.fastSettling else {
            throw fail("\(file.context): slow_settling (\(t.slowSettling)) is below fast_settling (\(t.fastSettling))")
        }
        return t
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case fastSettling = "fast_settling", slowSettling = "slow_settling"
        case oscillatoryOvershootPct = "oscillatory_overshoot_pct", oscillatoryRinging = "oscillatory_ringing"
        case saturation, passRatio = "pass_ratio", silentMagnitude = "silent_magnitude"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = ClassThresholds.defaults
        fastSettling = try c.decodeIfPresent(Double.self, forKey: .fastSettling) ?? d.fastSettling
        slowSettling = try c.decodeIfPresent(Double.self, forKey: .slowSettling) ?? d.slowSettling
        oscillatoryOvershootPct = try c.decodeIfPresent(Double.self, forKey: .oscillatoryOvershootPct) ?? d.oscillatoryOvershootPct
        oscillatoryRinging = try c.decodeIfPresent(Double.self, forKey: .oscillatoryRinging) ?? d.oscillatoryRinging
        saturation = try c.decodeIfPresent(Double.self, forKey: .saturation) ?? d.saturation
        passRatio = try c.decodeIfPresent(Double.self, forKey: .passRatio) ?? d.passRatio
        silentMagnitude = try c.decodeIfPresent(Double.self, forKey: .silentMagnitude) ?? d.silentMagnitude
    }

    static let defaults = ClassThresholds()

    /// The classes of one cell observed over a window of `window` steps.
    public func classify(_ s: CellSummary, window: Int) -> [CellClass] {
        // Not at rest without a stimulus (METHOD.md §4): it self-oscillates or approaches rest more
        // slowly than the rest search allowed. Its metrics are still taken against its own
        // unstimulated run, so the other classes stand beside this one.
        var out: [CellClass] = s.atRest ? [] : [.drifting]
        if !(s.responseMagnitude >= silentMagnitude) { return out + [.silent] }
        if s.responded {
            if s.settlingTime >= Double(window) {
                out.append(.integrator)
            } else if s.settlingTime <= fastSettling {
                out.append(.fast)
            } else if s.settlingTime >= slowSettling {
                out.append(.slow)
            }
            if s.gain > 0 { out.append(.excitatory) } else if s.gain < 0 { out.append(.inhibitory) }
            if s.overshootPct >= oscillatoryOvershootPct && s.ringing >= oscillatoryRinging { out.append(.oscillatory) }
        }
        if s.saturation < saturation { out.append(.saturating) }
        if let low = s.sineGains.first, let high = s.sineGains.last, let peak = s.sineGains.max(), low > 0, high > 0 {
            if peak >= passRatio * low && peak >= passRatio * high {
                out.append(.bandPass)
            } else if low >= passRatio * high {
                out.append(.lowPass)
            } else if high >= passRatio * low {
                out.append(.highPass)
            }
        }
        return out
    }
}

/// A class-threshold file that cannot be used.
public enum ClassThresholdError: Error, CustomStringConvertible, Equatable {
    case invalid(String)
    public var description: String {
        switch self { case .invalid(let s): "bad class thresholds: \(s)" }
    }
}
