import CellAuditCore
import Foundation

/// METHOD.md §6, capacity: for a family of networks of different sizes on one task, the
/// distribution of every summary metric and the share of each class per size, and the
/// Kolmogorov–Smirnov distance between the sizes' distributions.
public struct CapacityStudy: Sendable {
    public struct Member: Sendable {
        public var name: String
        public var cells: Int
        public var summaries: [CellSummary]
        public var classes: [[CellClass]]
        public init(name: String, cells: Int, summaries: [CellSummary], classes: [[CellClass]]) {
            self.name = name; self.cells = cells; self.summaries = summaries; self.classes = classes
        }
    }

    public struct Distribution: Sendable {
        public var model: String, cells: Int, metric: String
        public var count: Int
        public var mean: Double, sd: Double
        public var q10: Double, q25: Double, median: Double, q75: Double, q90: Double
    }

    public struct Distance: Sendable {
        public var metric: String, a: String, b: String
        public var ks: Double
    }

    public var members: [Member]

    public init(members: [Member]) { self.members = members.sorted { $0.cells < $1.cells } }

    public static let metrics: [(String, @Sendable (CellSummary) -> Double)] = [
        ("gain", { $0.gain }), ("abs_gain", { abs($0.gain) }), ("settling_time", { $0.settlingTime }),
        ("rise_time", { $0.riseTime }), ("overshoot_pct", { $0.overshootPct }), ("linearity", { $0.linearity }),
        ("saturation", { $0.saturation }), ("bandwidth", { $0.bandwidth }), ("low_frequency_gain", { $0.lowFrequencyGain }),
        ("response_magnitude", { $0.responseMagnitude }),
    ]

    public func distributions() -> [Distribution] {
        members.flatMap { m in
            Self.metrics.map { name, value in
                let v = m.summaries.map(value).filter(\.isFinite).sorted()
                let mean = v.isEmpty ? Double.nan : v.reduce(0, +) / Double(v.count)
                let sd = v.isEmpty ? Double.nan : (v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(v.count)).squareRoot()
                return Distribution(model: m.name, cells: m.cells, metric: name, count: v.count, mean: mean, sd: sd,
                                    q10: Self.quantile(v, 0.1), q25: Self.quantile(v, 0.25), median: Self.quantile(v, 0.5),
                                    q75: Self.quantile(v, 0.75), q90: Self.quantile(v, 0.9))
            }
        }
    }

    /// Share of each class per member: (model, cells, class, count, share).
    public func classShares() -> [(String, Int, CellClass, Int, Double)] {
        members.flatMap { m in
            CellClass.allCases.map { c in
                let count = m.classes.filter { $0.contains(c) }.count
                return (m.name, m.cells, c, count, Double(count) / Double(max(1, m.summaries.count)))
            }
        }
    }

    public func distances() -> [Distance] {
        var out: [Distance] = []
        for (name, value) in Self.metrics {
            for i in members.indices {
                for j in members.indices where j > i {
                    out.append(Distance(metric: name, a: members[i].name, b: members[j].name,
                                        ks: Self.ks(members[i].summaries.map(value), members[j].summaries.map(value))))
                }
            }
        }
        return out
    }

    /// Linear-interpolated quantile of sorted values (NaN when empty).
    public static func quantile(_ sorted: [Double], _ q: Double) -> Double {
        guard !sorted.isEmpty else { return .nan }
        let position = q * Double(sorted.count - 1)
        let lo = Int(position.rounded(.down)), hi = min(sorted.count - 1, lo + 1)
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (position - Double(lo))
    }

    /// Two-sample Kolmogorov–Smirnov statistic sup |F_a − F_b| over the finite values (NaN if either is empty).
    public static func ks(_ a: [Double], _ b: [Double]) -> Double {
        let x = a.filter(\.isFinite).sorted(), y = b.filter(\.isFinite).sorted()
        guard !x.isEmpty, !y.isEmpty else { return .nan }
        var i = 0, j = 0, d = 0.0
        while i < x.count && j < y.count {
            let v = min(x[i], y[j])
            while i < x.count && x[i] == v { i += 1 }
            while j < y.count && y[j] == v { j += 1 }
            d = max(d, abs(Double(i) / Double(x.count) - Double(j) / Double(y.count)))
        }
        return d
    }
}
