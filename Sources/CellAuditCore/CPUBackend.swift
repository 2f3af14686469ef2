import Foundation

/// The pure-Swift backend: the reference implementation, spread over all cores.
public final class CPUBackend: ComputeBackend {
    public let threads: Int
    /// Host memory the forward pass may hold for one layer's activations at once; jobs with more
    /// ablation configurations than fit run them in slices.
    public let forwardWorkingSetBytes: Int

    /// The most bytes one block of a layer's input projections takes in the forward pass: x·Wᵀ + b
    /// is computed that many steps at a time into one reused buffer (8 MiB by default: below
    /// glibc's mmap threshold, so the block never faults in fresh pages).
    public let projectionBlockBytes: Int

    public init(threads: Int = Parallelism.cores, forwardWorkingSetBytes: Int = 256 << 20, projectionBlockBytes: Int = 8 << 20) {
        self.threads = max(1, threads)
        self.forwardWorkingSetBytes = forwardWorkingSetBytes
        self.projectionBlockBytes = max(1, projectionBlockBytes)
    }

    /// Host memory one chunk of engine output may take: 16 MiB, below glibc's largest mmap
    /// threshold (32 MiB, which the CLI sets), so each chunk's block comes from the heap that the
    /// last one was freed to instead of a fresh mapping faulted in page by page (2.1 million
    /// minor faults in the 7 GB characterize of BENCHMARKS.md at 64 MiB).
    public var chunkBytes: Int { 16 << 20 }
    public var hostThreads: Int { threads }
    public func placement(of operation: BackendOperation) -> BackendIdentity { identity }

    public var identity: BackendIdentity {
        BackendIdentity(kind: .cpu, device: "Swift on \(threads) thread\(threads == 1 ? "" : "s"), \(Self.arithmetic)")
    }

    /// Whether this binary was built for the CPU it runs on, as `Tools/cellaudit.sh` builds it
    /// (`-target-cpu native -D CELLAUDIT_FMA`): its vector math then runs as fast as PoCL's
    /// response kernels or faster (BENCHMARKS.md), which `--backend auto` takes into account.
    public static var builtForThisCPU: Bool {
        #if CELLAUDIT_FMA
        true
        #else
        false
        #endif
    }

    /// How this build's vector math rounds its multiply-adds (it changes speed and the last bits).
    public static var arithmetic: String {
        #if CELLAUDIT_FMA || arch(arm64)
        "fused multiply-add"
        #else
        "unfused multiply-add"
        #endif
    }

    public func responses(_ job: ResponseJob) throws -> ResponseBlock {
        let n = job.cells.cellCount, stimuli = job.bank.count
        var out = [Float](repeating: .nan, count: Metric.allCases.count * n * stimuli)
        let (wave, quadrature) = job.bank.waveforms()
        out.withUnsafeMutableBufferPointer { buffer in
            let base = SendablePointer(buffer.baseAddress!)
            forEachSimulated(job, wave: wave, response: true) { group, s, lanes, r, y0 in
                let sched = job.bank.schedules[s], stimulus = job.bank.stimuli[s]
                let row = s * job.bank.steps
                let m: [Float32x8] = stimulus.kind == .step
                    ? LaneMetrics.step(r, y0: y0, schedule: sched, amplitude: stimulus.amplitude, band: job.settlingBand)
                    : LaneMetrics.sine(r, y0: y0, schedule: sched, amplitude: stimulus.amplitude,
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
            forEachSimulated(job, wave: wave, response: false) { group, s, lanes, y, _ in
                let end = job.bank.schedules[s].end
                for lane in 0..<lanes {
                    let dst = base.pointer + ((group * 8 + lane) * stimuli + s) * steps
                    for t in 0..<end { dst[t] = y[t][lane] }
                }
            }
        }
        return Trajectories(cellCount: n, stimulusCount: stimuli, stepCount: steps, values: out)
    }

    /// Stimuli simulated together for one group of eight cells: four independent chains of
    /// SIMD16 (two stimuli each, eight cells per half). One cell's steps form a serial chain of
    /// exp/divide latencies, and four chains keep the vector units busy.
    static let blockStimuli = 8

    /// Simulates every group of eight cells under every stimulus from the cells' start states
    /// (`job.baseline`), on all cores, and hands each trajectory to `body(group, stimulus, lanes,
    /// trajectory, y0)`: with `response`, the response r(t) = y(t) − b(t) against each cell's
    /// unstimulated run, else y(t) itself; y0 = b(t_on − 1). The trajectories stay in cache, so
    /// the step metrics' second pass reads them instead of recomputing the run.
    private func forEachSimulated(_ job: ResponseJob, wave: [Float], response: Bool,
                                  _ body: @Sendable (Int, Int, Int, LaneMetrics.Trajectory, Float32x8) -> Void) {
        struct Run: DecoupledLanesVisitor {
            let backend: CPUBackend, job: ResponseJob, wave: [Float], response: Bool
            let body: @Sendable (Int, Int, Int, LaneMetrics.Trajectory, Float32x8) -> Void
            func visit<Lanes: DecoupledLanes>(_ lanes: Lanes.Type) {
                backend.forEachSimulated(job, wave: wave, response: response, lanes: lanes, body)
            }
        }
        withoutActuallyEscaping(body) { body in
            job.cells.withLanes(Run(backend: self, job: job, wave: wave, response: response, body: body))
        }
    }

    /// The engine for one cell kind, specialised on its lane step.
    fileprivate func forEachSimulated<Lanes: DecoupledLanes>(_ job: ResponseJob, wave: [Float], response: Bool, lanes: Lanes.Type,
                                                         _ body: @Sendable (Int, Int, Int, LaneMetrics.Trajectory, Float32x8) -> Void) {
        let n = job.cells.cellCount, groups = (n + 7) / 8, stimuli = job.bank.count
        let per = Self.blockStimuli, blocks = (stimuli + per - 1) / per
        let items = groups * blocks, steps = job.bank.steps
        let chunks = min(items, threads * 8)
        let probeC = job.probe == .c
        let prepared = GroupStarts(job, groups: groups, response: response)
        defer { prepared.deallocate() }
        wave.withUnsafeBufferPointer { wavePointer in
            let w = SendablePointer(UnsafeMutablePointer(mutating: wavePointer.baseAddress!))
            DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
                // scratch[4t + k] holds chain k at step t: stimulus 2k in the low half, 2k + 1 in the high.
                let scratch = UnsafeMutablePointer<Float32x16>.allocate(capacity: 4 * steps)
                let halves = UnsafeMutableRawPointer(scratch).assumingMemoryBound(to: Float32x8.self)
                defer { scratch.deallocate() }
                for item in (items * chunk / chunks)..<(items * (chunk + 1) / chunks) {
                    let block = item / groups, group = item % groups
                    let cell = Lanes(job.cells, group: group)
                    let baseline = prepared.baseline + group * steps
                    let start = (prepared.h[group], prepared.c[group]), y0 = prepared.y0[group]
                    // A short last block repeats its last stimulus (results unused).
                    let members = (0..<per).map { min(block * per + $0, stimuli - 1) }
                    let a = members.map { job.bank.stimuli[$0].amplitude }
                    let rows = members.map { UnsafePointer(w.pointer + $0 * steps) }
                    let end = members.map { job.bank.schedules[$0].end }.max()!
                    let (a0, a1, a2, a3, a4, a5, a6, a7) = (a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7])
                    let (r0, r1, r2, r3, r4, r5, r6, r7) = (rows[0], rows[1], rows[2], rows[3], rows[4], rows[5], rows[6], rows[7])
                    var (h0, c0) = start, (h1, c1) = start, (h2, c2) = start, (h3, c3) = start
                    for t in 0..<end {
                        cell.step(u: .pair(a0 * r0[t], a1 * r1[t]), h: &h0, c: &c0)
                        cell.step(u: .pair(a2 * r2[t], a3 * r3[t]), h: &h1, c: &c1)
                        cell.step(u: .pair(a4 * r4[t], a5 * r5[t]), h: &h2, c: &c2)
                        cell.step(u: .pair(a6 * r6[t], a7 * r7[t]), h: &h3, c: &c3)
                        let b = baseline[t]
                        scratch[4 * t] = (probeC ? c0 : h0) - b
                        scratch[4 * t + 1] = (probeC ? c1 : h1) - b
                        scratch[4 * t + 2] = (probeC ? c2 : h2) - b
                        scratch[4 * t + 3] = (probeC ? c3 : h3) - b
                    }
                    for k in 0..<per where block * per + k < stimuli {
                        body(group, block * per + k, min(8, n - group * 8),
                             LaneMetrics.Trajectory(base: halves + k, stride: 2 * 4), y0)
                    }
                }
            }
        }
    }
}

/// Per group of eight cells, laid out once per job for the engine: the start state in both
/// halves of 16 lanes, y0 = b(t_on − 1), and b(t) at every step (zeros for plain trajectories).
struct GroupStarts: @unchecked Sendable {
    let h: UnsafeMutablePointer<Float32x16>, c: UnsafeMutablePointer<Float32x16>
    let y0: UnsafeMutablePointer<Float32x8>
    let baseline: UnsafeMutablePointer<Float32x16>

    init(_ job: ResponseJob, groups: Int, response: Bool) {
        let n = job.cells.cellCount, steps = job.bank.steps, base = job.baseline
        h = .allocate(capacity: groups); c = .allocate(capacity: groups)
        y0 = .allocate(capacity: groups)
        baseline = .allocate(capacity: groups * steps)
        for group in 0..<groups {
            let lanes = min(8, n - group * 8)
            var h0 = Float32x8(), c0 = Float32x8(), y = Float32x8()
            for l in 0..<lanes {
                let j = group * 8 + l
                h0[l] = base.initialH[j]; c0[l] = base.initialC[j]
                y[l] = base.y0(j, onset: job.bank.onset, probe: job.probe)
            }
            (h + group).initialize(to: Float32x16(lowHalf: h0, highHalf: h0))
            (c + group).initialize(to: Float32x16(lowHalf: c0, highHalf: c0))
            (y0 + group).initialize(to: y)
            base.signal.withUnsafeBufferPointer { signal in
                for t in 0..<steps {
                    var b = Float32x8()
                    if response { for l in 0..<lanes { b[l] = signal[(group * 8 + l) * base.steps + t] } }
                    (baseline + group * steps + t).initialize(to: Float32x16(lowHalf: b, highHalf: b))
                }
            }
        }
    }

    func deallocate() { h.deallocate(); c.deallocate(); y0.deallocate(); baseline.deallocate() }
}

extension Float32x16 {
    /// `a` in the low eight lanes, `b` in the high eight.
    @inline(__always)
    static func pair(_ a: Float, _ b: Float) -> Float32x16 {
        Float32x16(lowHalf: Float32x8(repeating: a), highHalf: Float32x8(repeating: b))
    }
}

@inline(__always) public func sigmoid(_ x: Float) -> Float { 1 / (1 + exp(-x)) }

/// A pointer handed to parallel workers that write disjoint parts of one buffer.
public struct SendablePointer<T>: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<T>
    public init(_ pointer: UnsafeMutablePointer<T>) { self.pointer = pointer }
}
