import Foundation

/// A small, fast, seedable generator (SplitMix64): the same seed gives the same numbers on
/// every platform, which is what reproducible fixtures and rankers need.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    public mutating func uniform(_ lo: Float, _ hi: Float) -> Float {
        lo + (hi - lo) * Float(next() >> 40) * (1.0 / Float(1 << 24))
    }

    /// Standard normal (Box–Muller).
    public mutating func normal() -> Float {
        let u1 = max(Double(next() >> 11) * 0x1p-53, .leastNonzeroMagnitude)
        let u2 = Double(next() >> 11) * 0x1p-53
        return Float((-2 * log(u1)).squareRoot() * cos(2 * .pi * u2))
    }
}
