@testable import CellAuditAnalysis
import CellAuditCore
import Foundation
import Testing
import TestSupport

@Suite struct ClassTests {
    static let base = CellSummary(
        id: CellID(layer: 0, index: 0), y0: 0, yFinal: 1, gain: 1, peakTime: 5, overshootPct: 0, undershootPct: 0, riseTime: 3,
        settlingTime: 40, ringing: 0, responded: true, gainSpread: 0, linearity: 1, saturation: 1,
        frequencies: [0.01, 0.1, 0.4], sineGains: [1, 1, 1], phases: [0, 0, 0], lowFrequencyGain: 1,
        bandwidth: .infinity, resonance: 1, resonanceFrequency: .nan, responseMagnitude: 0.5)

    func classes(_ change: (inout CellSummary) -> Void, _ t: ClassThresholds = ClassThresholds()) -> Set<CellClass> {
        var s = Self.base
        change(&s)
        return Set(t.classify(s, window: 400))
    }

    @Test func eachClassFollowsItsThreshold() {
        #expect(classes { _ in } == [.excitatory])
        #expect(classes { $0.settlingTime = 10 }.contains(.fast))
        #expect(classes { $0.settlingTime = 11 }.isDisjoint(with: [.fast, .slow]))
        #expect(classes { $0.settlingTime = 100 }.contains(.slow))
        #expect(classes { $0.settlingTime = 400 } == [.integrator, .excitatory])
        #expect(classes { $0.gain = -0.3 }.contains(.inhibitory))
        #expect(classes { $0.overshootPct = 20; $0.ringing = 3 }.contains(.oscillatory))
        #expect(!classes { $0.overshootPct = 20; $0.ringing = 1 }.contains(.oscillatory))
        #expect(classes { $0.saturation = 0.5 }.contains(.saturating))
        #expect(classes { $0.sineGains = [1, 0.8, 0.2] }.contains(.lowPass))
        #expect(classes { $0.sineGains = [0.2, 0.8, 1] }.contains(.highPass))
        #expect(classes { $0.sineGains = [0.2, 1, 0.2] }.contains(.bandPass))
        #expect(classes { $0.responseMagnitude = 1e-9 } == [.silent])
        // Several at once.
        #expect(classes { $0.settlingTime = 5; $0.gain = -1; $0.sineGains = [1, 0.5, 0.1] } == [.fast, .inhibitory, .lowPass])
    }

    @Test func thresholdsCanBeOverriddenFromAFile() throws {
        let dir = try Fixtures.scratch("classes")
        let file = dir.appendingPathComponent("t.json")
        try Data(#"{"fast_settling": 50}"#.utf8).write(to: file)
        let t = try ClassThresholds.load(json: file.path)
        #expect(t.fastSettling == 50 && t.slowSettling == 100)
        #expect(classes({ _ in }, t).contains(.fast))
        // Each problem named by key, type and file, as a class-threshold error (not a stimulus one).
        for (text, words) in [(#"{"fast_settling": "soon"}"#, "t.json: 'fast_settling' must be a number, got a string"),
                              (#"{"fast_setling": 5}"#, "unknown key 'fast_setling' (accepted: fast_settling, slow_settling"),
                              (#"{"saturation": true}"#, "'saturation' must be a number, got true/false"),
                              ("[1, 2]", "a class threshold file is a JSON object"), ("{", "t.json is not valid JSON")] {
            try Data(text.utf8).write(to: file)
            let error = try #require(throws: ClassThresholdError.self) { try ClassThresholds.load(json: file.path) }
            #expect("\(error)".hasPrefix("bad class thresholds: ") && "\(error)".contains(words), "\(error)")
        }
        #expect("\(try #require(throws: ClassThresholdError.self) { try ClassThresholds.load(json: dir.path) })".contains("is a directory"))
    }
}

/// The figures' coordinate formatter writes what "%.1f" writes.
@Test func figureCoordinatesFormatLikePrintf() {
    let plot = SVGPlot(title: "t", xLabel: "x", yLabel: "y")
    var rng = SeededGenerator(seed: 5)
    var values: [Double] = [0, -0.0, 0.04, -0.04, 0.05000001, 9.96, -9.96, 123.44, 1e13 + 0.3, -1e13, 1e15, .infinity, -.infinity, .nan]
    values += (0..<5000).map { _ in Double(rng.uniform(-2000, 2000)) }
    values += (0..<2000).map { _ in Double(rng.uniform(-1, 1)) * 1e-3 }
    // Ties at the second decimal, exact and inexact in binary, and plot coordinates like the figures'.
    values += (-2000..<2000).map { Double($0) / 20 } + (0..<4000).map { 58 + Double($0) / 400 * 262 }
    for x in values { #expect(plot.f(x) == String(format: "%.1f", x), "\(x)") }
}
