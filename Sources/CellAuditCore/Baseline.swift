import Foundation

/// Each decoupled cell's unstimulated run (METHOD.md §2 and §4): where every run starts, the
/// baseline b(t) every metric is measured against, and whether the cell is at rest.
///
/// Computed once on the host with the cells' own Swift step (`DecoupledLanes`) and handed to
/// every backend, so all of them start from the same state and subtract the same baseline.
public struct Baseline: Sendable, Equatable {
    /// The state every run starts from, per cell: the resting state found by iteration
    /// (`bank.startsAtRest`), else h = c = 0.
    public var initialH: [Float], initialC: [Float]
    /// Whether the rest search stopped because the state stopped changing (max-norm change
    /// between steps ≤ `restChange`) rather than at `restSearchLimit` steps; true when not searched.
    public var restFound: [Bool]
    /// b(t): the probed signal of the unstimulated run, [cells × steps] on the bank's clock.
    public var signal: [Float]
    public let steps: Int
    /// Whether max |b(t) − b(t_on − 1)| over the whole run stays within the rest tolerance.
    public var atRest: [Bool]

    /// METHOD.md §2: the rest search stops when the max-norm change between steps is ≤ 1e-7, or
    /// after 1,000 steps.
    public static let restChange: Float = 1e-7
    public static let restSearchLimit = 1000
    /// METHOD.md §4's default rest tolerance.
    public static let defaultRestTolerance: Float = Defaults.restTolerance

    /// - Throws: `StimulusError.invalid` unless `tolerance` is a finite number ≥ 0.
    public static func checkRestTolerance(_ tolerance: Float) throws {
        guard tolerance >= 0, tolerance.isFinite else {
            throw StimulusError.invalid("the rest tolerance must be a finite number ≥ 0, got \(tolerance)")
        }
    }

    /// Whether an unstimulated run stays within `tolerance` of its value just before onset (the
    /// probed start state when the stimulus starts at t = 0) from then to its end (METHOD.md §4).
    public static func staysAtRest(_ row: ArraySlice<Float>, onset: Int, start: Float, tolerance: Float) -> Bool {
        let reference = onset > 0 ? row[row.startIndex + onset - 1] : start
        return row.dropFirst(max(0, onset - 1)).allSatisfy { abs($0 - reference) <= tolerance }
    }

    /// The series b(t) of one cell.
    public func series(_ cell: Int) -> ArraySlice<Float> { signal[(cell * steps)..<((cell + 1) * steps)] }

    /// b(t_on − 1) of one cell: the resting value y0 that the metrics report, or the probed
    /// initial state when the stimulus starts at t = 0.
    public func y0(_ cell: Int, onset: Int, probe: Probe) -> Float {
        onset > 0 ? signal[cell * steps + onset - 1] : (probe == .c ? initialC[cell] : initialH[cell])
    }

    /// Some of the cells, renumbered from 0, on a clock cut to `steps` (a sub-bank's).
    public func subset(_ cells: some Collection<Int>, steps newSteps: Int) -> Baseline {
        precondition(newSteps <= steps)
        var out = Baseline(initialH: cells.map { initialH[$0] }, initialC: cells.map { initialC[$0] },
                           restFound: cells.map { restFound[$0] }, signal: [], steps: newSteps, atRest: cells.map { atRest[$0] })
        out.signal.reserveCapacity(cells.count * newSteps)
        for j in cells { out.signal += signal[(j * steps)..<(j * steps + newSteps)] }
        return out
    }
}

extension DecoupledCells {
    /// The unstimulated runs of every cell on `bank`'s clock, probing `probe`.
    public func baseline(bank: StimulusBank, probe: Probe, restTolerance: Float = Baseline.defaultRestTolerance) -> Baseline {
        struct Run: DecoupledLanesVisitor {
            let cells: DecoupledCells, bank: StimulusBank, probe: Probe, restTolerance: Float
            func visit<Lanes: DecoupledLanes>(_ lanes: Lanes.Type) -> Baseline {
                cells.baseline(lanes, bank: bank, probe: probe, restTolerance: restTolerance)
            }
        }
        return withLanes(Run(cells: self, bank: bank, probe: probe, restTolerance: restTolerance))
    }

    fileprivate func baseline<Lanes: DecoupledLanes>(_: Lanes.Type, bank: StimulusBank, probe: Probe, restTolerance: Float) -> Baseline {
        let n = cellCount, steps = bank.steps, onset = bank.onset
        var initialH = [Float](repeating: 0, count: n), initialC = initialH
        var found = [Bool](repeating: true, count: n), atRest = found
        var signal = [Float](repeating: 0, count: n * steps)
        let zero = Float32x16()
        for group in 0..<((n + 7) / 8) {
            let cells = Lanes(self, group: group)
            let lanes = min(8, n - group * 8)
            var h = Float32x16(), c = Float32x16()
            if bank.startsAtRest {
                var settled = false
                for _ in 0..<Baseline.restSearchLimit {
                    let (h1, c1) = (h, c)
                    cells.step(u: zero, h: &h, c: &c)
                    let change = max(vabs(h - h1), vabs(c - c1))
                    if (0..<lanes).allSatisfy({ change[$0] <= Baseline.restChange }) { settled = true; break }
                }
                if !settled {
                    // One more step tells which lanes are still moving.
                    var (h2, c2) = (h, c)
                    cells.step(u: zero, h: &h2, c: &c2)
                    let change = max(vabs(h2 - h), vabs(c2 - c))
                    for l in 0..<lanes where !(change[l] <= Baseline.restChange) { found[group * 8 + l] = false }
                }
            }
            for l in 0..<lanes { initialH[group * 8 + l] = h[l]; initialC[group * 8 + l] = c[l] }
            for t in 0..<steps {
                cells.step(u: zero, h: &h, c: &c)
                let y = probe == .c ? c : h
                for l in 0..<lanes { signal[(group * 8 + l) * steps + t] = y[l] }
            }
            for l in 0..<lanes {
                let j = group * 8 + l
                atRest[j] = Baseline.staysAtRest(signal[(j * steps)..<((j + 1) * steps)], onset: onset,
                                                 start: probe == .c ? initialC[j] : initialH[j], tolerance: restTolerance)
            }
        }
        return Baseline(initialH: initialH, initialC: initialC, restFound: found, signal: signal, steps: steps, atRest: atRest)
    }
}

private func max(_ a: Float32x16, _ b: Float32x16) -> Float32x16 { a.replacing(with: b, where: b .> a) }
