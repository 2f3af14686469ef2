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

    public var identity: BackendIdentity {
        BackendIdentity(kind: .cpu, device: "Swift on \(threads) thread\(threads == 1 ? "" : "s")")
    }

    public func stepTrajectories(_ job: StepTrajectoryJob) throws -> Trajectories {
        let cells = job.cells
        let n = cells.cellCount, stimuli = job.amplitudes.count, steps = job.timing.totalSteps
        var out = [Float](repeating: .nan, count: job.valueCount)
        let probeC = job.probe == .c
        out.withUnsafeMutableBufferPointer { buffer in
            let base = SendablePointer(buffer.baseAddress!)
            let chunks = min(threads * 4, n)
            DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
                for j in stride(from: chunk, to: n, by: chunks) {
                    let p = LSTMCellParameters(cells, j)
                    for s in 0..<stimuli {
                        let amplitude = job.amplitudes[s]
                        let row = base.pointer + (j * stimuli + s) * steps
                        var h: Float = 0, c: Float = 0
                        for t in 0..<steps {
                            let u: Float = t >= job.timing.onset ? amplitude : 0
                            p.step(u: u, h: &h, c: &c)
                            row[t] = probeC ? c : h
                        }
                    }
                }
            }
        }
        return Trajectories(cellCount: n, stimulusCount: stimuli, stepCount: steps, values: out)
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
struct SendablePointer<T>: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<T>
    init(_ pointer: UnsafeMutablePointer<T>) { self.pointer = pointer }
}
