import Foundation

/// The pure-Swift backend: the reference implementation, spread over all cores.
public final class CPUBackend: ComputeBackend {
    public let threads: Int
    /// Host memory the forward pass may hold for one layer's activations at once; jobs with more
    /// ablation configurations than fit run them in slices.
    public let forwardWorkingSetBytes: Int

    public init(threads: Int = ProcessInfo.processInfo.activeProcessorCount, forwardWorkingSetBytes: Int = 256 << 20) {
        self.threads = max(1, threads)
        self.forwardWorkingSetBytes = forwardWorkingSetBytes
    }

    /// Host memory one chunk of engine output may take.
    public var chunkBytes: Int { 64 << 20 }

    public var identity: BackendIdentity {
        BackendIdentity(kind: .cpu, device: "Swift on \(threads) thread\(threads == 1 ? "" : "s")")
    }

    public func responses(_ job: ResponseJob) throws -> ResponseBlock {
        let n = job.cells.cellCount, stimuli = job.bank.count
        var out = [Float](repeating: .nan, count: Metric.allCases.count * n * stimuli)
        let (wave, quadrature) = job.bank.waveforms()
        out.withUnsafeMutableBufferPointer { buffer in
            let base = SendablePointer(buffer.baseAddress!)
            forEachSimulated(job, wave: wave) { group, s, lanes, y in
                let sched = job.bank.schedules[s], stimulus = job.bank.stimuli[s]
                let row = s * job.bank.steps
                let m: [Float8] = stimulus.kind == .step
                    ? LaneMetrics.step(y, schedule: sched, amplitude: stimulus.amplitude, band: job.settlingBand)
                    : LaneMetrics.sine(y, schedule: sched, amplitude: stimulus.amplitude,
                                       wave: wave, quadrature: quadrature, row: row)
                for (k, plane) in m.enumerated() {
                    for lane in 0..<lanes {
                        base.pointer[(k * n + group * 8 + lane) * stimuli + s] = plane[lane]
                    }
                }
            }
        }
        return ResponseBlock(cellCount: n, stimulusCount: stimuli, values: out)
    }

    public func trajectories(_ job: ResponseJob) throws -> Trajectories {
        let n = job.cells.cellCount, stimuli = job.bank.count, steps = job.bank.steps
        var out = [Float](repeating: .nan, count: n * stimuli * steps)
        let wave = job.bank.waveforms().wave
        out.withUnsafeMutableBufferPointer { buffer in
            let base = SendablePointer(buffer.baseAddress!)
            forEachSimulated(job, wave: wave) { group, s, lanes, y in
                let end = job.bank.schedules[s].end
                for lane in 0..<lanes {
                    let dst = base.pointer + ((group * 8 + lane) * stimuli + s) * steps
                    for t in 0..<end { dst[t] = y[t][lane] }
                }
            }
        }
        return Trajectories(cellCount: n, stimulusCount: stimuli, stepCount: steps, values: out)
    }

    /// Simulates every group of eight cells (one per lane) under every stimulus, on all cores,
    /// and hands each trajectory to `body(group, stimulus, lanes, trajectory)`. Four stimuli run
    /// interleaved: one cell's steps form a serial chain of exp/divide latencies, and four
    /// independent chains keep the vector units busy. The trajectory stays in cache, so the step
    /// metrics' second pass reads it instead of recomputing the run.
    private func forEachSimulated(_ job: ResponseJob, wave: [Float],
                                  _ body: @Sendable (Int, Int, Int, UnsafeMutablePointer<Float8>) -> Void) {
        let n = job.cells.cellCount, groups = (n + 7) / 8, stimuli = job.bank.count
        let blocks = (stimuli + 3) / 4
        let items = groups * blocks, steps = job.bank.steps
        let chunks = min(items, threads * 8)
        let probeC = job.probe == .c
        wave.withUnsafeBufferPointer { wavePointer in
            let w = SendablePointer(UnsafeMutablePointer(mutating: wavePointer.baseAddress!))
            DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
                let scratch = UnsafeMutablePointer<Float8>.allocate(capacity: 4 * steps)
                defer { scratch.deallocate() }
                for item in stride(from: chunk, to: items, by: chunks) {
                    let group = item % groups, block = item / groups
                    let cell = LaneCells(job.cells, group: group)
                    // Up to four stimuli; a short block repeats its last one (results unused).
                    let members = (0..<4).map { min(block * 4 + $0, stimuli - 1) }
                    let amplitude = members.map { job.bank.stimuli[$0].amplitude }
                    let rows = members.map { w.pointer + $0 * steps }
                    let end = members.map { job.bank.schedules[$0].end }.max()!
                    let (a0, a1, a2, a3) = (amplitude[0], amplitude[1], amplitude[2], amplitude[3])
                    let (r0, r1, r2, r3) = (rows[0], rows[1], rows[2], rows[3])
                    var h0 = Float8(), c0 = Float8(), h1 = Float8(), c1 = Float8()
                    var h2 = Float8(), c2 = Float8(), h3 = Float8(), c3 = Float8()
                    for t in 0..<end {
                        cell.step(u: a0 * r0[t], h: &h0, c: &c0)
                        cell.step(u: a1 * r1[t], h: &h1, c: &c1)
                        cell.step(u: a2 * r2[t], h: &h2, c: &c2)
                        cell.step(u: a3 * r3[t], h: &h3, c: &c3)
                        scratch[t] = probeC ? c0 : h0
                        scratch[steps + t] = probeC ? c1 : h1
                        scratch[2 * steps + t] = probeC ? c2 : h2
                        scratch[3 * steps + t] = probeC ? c3 : h3
                    }
                    for k in 0..<4 where block * 4 + k < stimuli {
                        body(group, block * 4 + k, min(8, n - group * 8), scratch + k * steps)
                    }
                }
            }
        }
    }
}

/// Eight decoupled cells side by side, one per SIMD lane (missing cells have all-zero parameters).
struct LaneCells {
    var w: (Float8, Float8, Float8, Float8), r: (Float8, Float8, Float8, Float8), b: (Float8, Float8, Float8, Float8)

    init(_ cells: DecoupledCells, group: Int) {
        let n = cells.cellCount, first = group * 8, lanes = min(8, n - first)
        func load(_ plane: Int) -> Float8 {
            var v = Float8()
            for l in 0..<lanes { v[l] = cells.parameters[plane * n + first + l] }
            return v
        }
        w = (load(0), load(1), load(2), load(3))
        r = (load(4), load(5), load(6), load(7))
        b = (load(8), load(9), load(10), load(11))
    }

    @inline(__always)
    func step(u: Float, h: inout Float8, c: inout Float8) {
        let i = vsigmoid(w.0 * u + r.0 * h + b.0)
        let f = vsigmoid(w.1 * u + r.1 * h + b.1)
        let g = vtanh(w.2 * u + r.2 * h + b.2)
        let o = vsigmoid(w.3 * u + r.3 * h + b.3)
        c = f * c + i * g
        h = o * vtanh(c)
    }
}

/// The twelve scalars of one decoupled LSTM cell and its update, written once for every CPU path.
public struct LSTMCellParameters: Sendable {
    public var w: SIMD4<Float>, r: SIMD4<Float>, b: SIMD4<Float>   // gates i, f, g, o

    public init(_ cells: DecoupledCells, _ j: Int) {
        w = SIMD4(cells.w(.input, j), cells.w(.forget, j), cells.w(.cell, j), cells.w(.output, j))
        r = SIMD4(cells.r(.input, j), cells.r(.forget, j), cells.r(.cell, j), cells.r(.output, j))
        b = SIMD4(cells.b(.input, j), cells.b(.forget, j), cells.b(.cell, j), cells.b(.output, j))
    }

    /// One time step: c' = f·c + i·g, h' = o·tanh(c').
    @inline(__always)
    public func step(u: Float, h: inout Float, c: inout Float) {
        let a = w * u + r * h + b
        let i = sigmoid(a[0]), f = sigmoid(a[1]), g = tanh(a[2]), o = sigmoid(a[3])
        c = f * c + i * g
        h = o * tanh(c)
    }
}

@inline(__always) public func sigmoid(_ x: Float) -> Float { 1 / (1 + exp(-x)) }

/// A pointer handed to parallel workers that write disjoint parts of one buffer.
public struct SendablePointer<T>: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<T>
    public init(_ pointer: UnsafeMutablePointer<T>) { self.pointer = pointer }
}
