import CellAuditCore
import Foundation
import OpenCLKit

extension OpenCLBackend {
    /// Work-group size of the dynamics kernels: a power of two, at most 64.
    private var dynamicsGroup: Int {
        var g = 64
        while g > device.info.maxWorkGroupSize && g > 1 { g /= 2 }
        return g
    }

    private func requireFP64() throws {
        guard device.info.supportsFP64 else {
            throw CLError(status: .invalidOperation, call: "dynamics.cl",
                          detail: "\(device.info.name) has no double precision (cl_khr_fp64), which the fixed-point analysis needs; use --backend cpu")
        }
    }

    private struct MapWeights { let W: Buffer<Double>, R: Buffer<Double>, b: Buffer<Double>, bhn: Buffer<Double> }

    private func upload(_ values: [Double], access: BufferAccess = .readOnly) throws -> Buffer<Double> {
        let buffer = try context.buffer(Double.self, count: max(1, values.count), access: access)
        try queue.write(buffer, from: values.isEmpty ? [0] : values)
        return buffer
    }

    private func weights(_ map: LayerMap) throws -> MapWeights {
        let p = map.parameters
        return MapWeights(W: try upload(p.W), R: try upload(p.R), b: try upload(p.b), bhn: try upload(p.extra))
    }

    private func dynamicsDefines(_ map: LayerMap, jacobian: Bool) -> [String] {
        Self.cellDefines(map.layer) + (jacobian ? ["JACOBIAN=1"] : [])
    }

    /// `map_step` (dynamics.cl), in chunks of rows whose Jacobians fit `chunkBytes`.
    public func mapStep(_ map: LayerMap, states: [Double], inputs: [Double]?, rows: Int, jacobian: Bool) throws -> (next: [Double], jacobian: [Double]) {
        try requireFP64()
        let D = map.dimension, H = map.hiddenSize, I = map.inputSize, scratchWidth = map.layer.gateRows + 2 * H
        let kernel = try KernelLibrary.program("dynamics.cl", in: context, defines: dynamicsDefines(map, jacobian: jacobian)).kernel(named: "map_step")
        let w = try weights(map)
        let perRow = (jacobian ? D * D : 0) + 2 * D + scratchWidth
        let chunk = max(1, min(rows, chunkBytes / (perRow * 8)))
        var next = [Double](), jac = [Double]()
        next.reserveCapacity(rows * D)
        if jacobian { jac.reserveCapacity(rows * D * D) }
        var time = 0.0
        for start in stride(from: 0, to: rows, by: chunk) {
            let n = min(chunk, rows - start)
            let s = try upload(Array(states[(start * D)..<((start + n) * D)]))
            let x = try upload(inputs.map { Array($0[(start * I)..<((start + n) * I)]) } ?? map.input)
            let scratch = try context.buffer(Double.self, count: n * scratchWidth)
            let out = try context.buffer(Double.self, count: n * D)
            let j = try context.buffer(Double.self, count: jacobian ? n * D * D : 1)
            try kernel.setArguments(s, x, Int32(inputs == nil ? 0 : I), w.W, w.R, w.b, w.bhn, scratch, out, j, Int32(I), Int32(H))
            time += try queue.launch(kernel, global: [dynamicsGroup, n], local: [dynamicsGroup, 1]).durationSeconds()
            next += try queue.read(out, count: n * D)
            if jacobian { jac += try queue.read(j, count: n * D * D) }
        }
        kernelSeconds.withLock { $0 = time }
        return (next, jac)
    }

    /// `map_settle` (dynamics.cl): every row runs to rest inside one launch.
    public func mapSettle(_ map: LayerMap, states: [Double], pulses: [Double]?, rows: Int, pulseSteps: Int, maxSteps: Int,
                          tolerance: Double) throws -> (states: [Double], settled: [Bool]) {
        try requireFP64()
        guard rows > 0 else { return ([], []) }
        let D = map.dimension, H = map.hiddenSize, I = map.inputSize, scratchWidth = map.layer.gateRows + 2 * H
        let kernel = try KernelLibrary.program("dynamics.cl", in: context, defines: dynamicsDefines(map, jacobian: false)).kernel(named: "map_settle")
        let w = try weights(map)
        let s = try upload(states, access: .readWrite)   // updated in place
        let p = try upload(pulses ?? [Double](repeating: 0, count: rows * I))
        let xbar = try upload(map.input)
        let scratch = try context.buffer(Double.self, count: rows * scratchWidth)
        let work = try context.buffer(Double.self, count: rows * D)
        let settled = try context.buffer(Int32.self, count: rows)
        try kernel.setArguments(s, p, xbar, w.W, w.R, w.b, w.bhn, scratch, work, settled, Int32(I), Int32(H),
                                Int32(pulses == nil ? 0 : pulseSteps), Int32(maxSteps), tolerance, LocalMemory<Double>(count: dynamicsGroup))
        let time = try queue.launch(kernel, global: [dynamicsGroup, rows], local: [dynamicsGroup, 1]).durationSeconds()
        kernelSeconds.withLock { $0 = time }
        return (try queue.read(s, count: rows * D), try queue.read(settled, count: rows).map { $0 != 0 })
    }
}
