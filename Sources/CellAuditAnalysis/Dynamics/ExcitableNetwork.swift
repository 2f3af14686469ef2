import CellAuditCore
import Foundation

/// The excitable network attractor of one layer (Ceni, Ashwin & Livi 2019): its stable fixed
/// points as nodes, and an edge from A to B when a pulse along one input channel sends the layer
/// from A to B, labelled with the smallest amplitude that does (the excitability threshold).
public struct ExcitableNetwork: Sendable {
    /// An input-driven transition between two stable points.
    public struct Edge: Sendable, Equatable, Codable {
        /// Point indices (into the analysis's point list).
        public var from: Int, to: Int
        /// Input channel of the layer.
        public var channel: Int
        /// +1 or −1: the pulse's sign.
        public var sign: Int
        /// Smallest amplitude found that leaves `from` for `to`, to `PulseOptions.resolution`.
        public var threshold: Double
    }

    /// A probe whose outcome never settled near a stable point: no edge is drawn.
    public struct Unresolved: Sendable, Equatable, Codable {
        public var from: Int, channel: Int, sign: Int
        /// The amplitude at which it was unresolved.
        public var amplitude: Double
    }

    public var edges: [Edge]
    public var unresolved: [Unresolved]
}

/// How the pulses are applied and the thresholds searched (METHOD.md §7 and the defaults).
public struct PulseOptions: Sendable {
    /// Pulse length L in steps.
    public var length: Int = 1
    /// Largest amplitude tried; bisection runs over (0, maxAmplitude].
    public var maxAmplitude: Double = Defaults.pulseMaxAmplitude
    /// Bisection stops when the bracket is within this fraction of its upper end (1 %).
    public var resolution: Double = 0.01
    /// Settled when ‖s_{t+1} − s_t‖∞ is below this.
    public var settleTolerance: Double = 1e-6
    /// Steps at most after the pulse ends.
    public var maxSteps: Int = 2000
    /// A settled state within this (Euclidean) of a stable point has reached it.
    public var arrivalDistance: Double = 1e-2

    public init() {}

    /// - Throws: `DynamicsError.invalid` naming the first setting out of range.
    public func validated() throws -> PulseOptions {
        guard length >= 1 else { throw DynamicsError.invalid("--pulse-length must be at least 1 step, got \(length)") }
        guard maxAmplitude > 0, maxAmplitude.isFinite else { throw DynamicsError.invalid("--max-amplitude must be a positive number, got \(maxAmplitude)") }
        guard resolution > 0, resolution < 1 else { throw DynamicsError.invalid("the bisection resolution must lie in (0, 1), got \(resolution)") }
        guard length <= 10_000 else { throw DynamicsError.invalid("--pulse-length must be at most 10000 steps, got \(length)") }
        guard maxSteps >= 1 else { throw DynamicsError.invalid("the step limit must be at least 1, got \(maxSteps)") }
        return self
    }
}

extension ExcitableNetwork {
    /// Probes every (stable point, channel, sign) at once: first at the largest amplitude (no
    /// edge when the layer comes back to where it started), then by bisection on the amplitude,
    /// all probes of a round in one backend call. Monotone in between is assumed, as bisection
    /// must; a probe that does not settle near a stable point counts as having left, and the edge
    /// goes to where the smallest leaving amplitude found lands (none when that is unresolved).
    ///
    /// - Parameters:
    ///   - stable: indices of the stable fixed points into `states` [P × D].
    /// - Throws: the backend's error.
    public static func build(map: LayerMap, states: [Double], stable: [Int], options: PulseOptions,
                             backend: any ComputeBackend) throws -> ExcitableNetwork {
        let D = map.dimension, I = map.inputSize
        struct Probe { var from: Int, channel: Int, sign: Int, lo: Double, hi: Double, target: Int?, done: Bool }
        var probes: [Probe] = []
        for p in stable { for k in 0..<I { for sign in [1, -1] {
            probes.append(Probe(from: p, channel: k, sign: sign, lo: 0, hi: options.maxAmplitude, target: nil, done: false))
        } } }
        /// Where each probe lands at its amplitude: a stable point's index, or nil (unresolved).
        func outcomes(_ rows: [Int], amplitude: (Probe) -> Double) throws -> [Int?] {
            guard !rows.isEmpty else { return [] }
            var start = [Double](), pulses = [Double]()
            for r in rows {
                let probe = probes[r]
                start += states[(probe.from * D)..<((probe.from + 1) * D)]
                var x = map.input
                x[probe.channel] += Double(probe.sign) * amplitude(probe)
                pulses += x
            }
            let (end, settled) = try backend.mapSettle(map, states: start, pulses: pulses, rows: rows.count, pulseSteps: options.length,
                                                       maxSteps: options.length + options.maxSteps, tolerance: options.settleTolerance)
            return rows.indices.map { k -> Int? in
                guard settled[k] else { return nil }
                var best: (Int, Double)?
                for p in stable {
                    let sum = squaredDistance(end, k, states, p, dimension: D)
                    if best == nil || sum < best!.1 { best = (p, sum) }
                }
                guard let best, best.1.squareRoot() <= options.arrivalDistance else { return nil }
                return best.0
            }
        }
        var unresolved: [Unresolved] = []
        // Round 0: the largest amplitude.
        let all = Array(probes.indices)
        for (r, outcome) in zip(all, try outcomes(all, amplitude: { $0.hi })) {
            if outcome == probes[r].from { probes[r].done = true; probes[r].target = nil } else { probes[r].target = outcome }
        }
        // Bisection rounds until every bracket is within the resolution.
        while true {
            let rows = probes.indices.filter { !probes[$0].done && probes[$0].hi - probes[$0].lo > options.resolution * probes[$0].hi }
            if rows.isEmpty { break }
            for (r, outcome) in zip(rows, try outcomes(rows, amplitude: { ($0.lo + $0.hi) / 2 })) {
                let mid = (probes[r].lo + probes[r].hi) / 2
                if outcome == probes[r].from { probes[r].lo = mid } else { probes[r].hi = mid; probes[r].target = outcome }
            }
        }
        var edges: [Edge] = []
        for probe in probes where !probe.done {
            if let to = probe.target {
                edges.append(Edge(from: probe.from, to: to, channel: probe.channel, sign: probe.sign, threshold: probe.hi))
            } else {
                unresolved.append(Unresolved(from: probe.from, channel: probe.channel, sign: probe.sign, amplitude: probe.hi))
            }
        }
        return ExcitableNetwork(edges: edges, unresolved: unresolved)
    }
}
