import CellAuditCore
import Foundation
import OpenCLKit

extension OpenCLBackend {
    /// A read-only device buffer holding `values` (one 0 when empty: OpenCL has no empty buffers).
    func upload(_ values: [Float]) throws -> Buffer<Float> {
        let buffer = try context.buffer(Float.self, count: max(1, values.count), access: .readOnly)
        try queue.write(buffer, from: values.isEmpty ? [0] : values)
        return buffer
    }

    /// Work-items per work-group of `forward_tiled.cl` (16 × 16, fixed by its
    /// `reqd_work_group_size`).
    static let tiledGroupItems = 256

    /// The full forward (plain or ablation) on the device. On devices that run 256-item
    /// work-groups it is `forward_tiled.cl`: per layer one tiled GEMM for the input projection of
    /// every step, then one launch per step that multiplies a 32-sequence × 32-cell tile by R with
    /// every gate block in the same work-group and applies the cell update from registers (two
    /// launches per step for the reset-before GRU). Other devices run `layer_forward`, one
    /// work-group per sequence.
    ///
    /// The (configuration, sequence) pairs go through in chunks whose buffers stay within
    /// `chunkBytes` per pair-dependent buffer; layer 0's projection is computed once per
    /// sequence and shared by every configuration. Each output is summed in one fixed order,
    /// so a configuration's numbers do not depend on the chunk or the others in the job.
    /// - Returns: readout outputs [configurations × N × K] (`last`) or [configurations × N × T × K]
    ///   (`sequence`), and the last layer's h [configurations × N × T × H] unless the job's
    ///   `keepsHidden` is false (then empty).
    /// - Throws: `CLError` from building or running the kernels, or when a layer-0 projection of
    ///   N × T × G·H floats exceeds the device's allocation limit.
    public func forward(_ job: ForwardJob) throws -> ForwardResult {
        if job.inputs.isPadded { return try job.byLength { try forward($0) } }
        return try forwardOnDevice(job)
    }

    private func forwardOnDevice(_ job: ForwardJob) throws -> ForwardResult {
        guard device.info.maxWorkGroupSize >= Self.tiledGroupItems, !settings.perSequenceForward else { return try forwardPerSequence(job) }
        let net = job.network, n = job.inputs.count, steps = job.inputs.steps, configs = job.masks.count
        let pairs = configs * n, gates = net.kind.gateCount
        let resetBefore = net.kind == .gru && !net.layers[0].resetAfter
        let defines = mathDefines + Self.cellDefines(net.layers[0])
        let projection = try KernelLibrary.program("forward_tiled.cl", in: context, defines: defines).kernel(named: "input_projection")
        let rt = settings.forwardTileItems ?? (device.info.type == .cpu ? 4 : 16)
        let tileDefines = ["RT=\(rt)", "RW=\(32 / rt)"]
        let step = try KernelLibrary.program("forward_tiled.cl", in: context, defines: defines + tileDefines + (resetBefore ? ["STEP_PHASE=1"] : []))
            .kernel(named: "recurrent_step")
        let update = resetBefore
            ? try KernelLibrary.program("forward_tiled.cl", in: context, defines: defines + tileDefines + ["STEP_PHASE=2"]).kernel(named: "recurrent_step")
            : nil
        let hasState = net.kind == .lstm || resetBefore

        // Chunk size: every pair-dependent buffer of a level (its directions' projections and
        // states, its output y) within chunkBytes.
        let perPair = net.levels.enumerated().map { l, level in
            let width = net.outputWidth(ofLevel: l)
            return level.reduce(steps * width) { sum, index in
                let h = net.layers[index].hiddenSize
                return sum + (l == 0 ? 0 : steps * gates * h) + 2 * h
            }
        }.max()! * MemoryLayout<Float>.stride
        let chunk = max(1, min(pairs, settings.forwardChunkPairs ?? chunkBytes / perPair))
        let sharedCounts = net.levels[0].map { n * steps * gates * net.layers[$0].hiddenSize }
        guard let widest = sharedCounts.max(), widest * MemoryLayout<Float>.stride <= Int(device.info.maxAllocationBytes) else {
            throw CLError(status: .memObjectAllocationFailure, call: "input_projection",
                          detail: "the layer-0 projection of \(n) sequences × \(steps) steps × \(gates * net.layers[0].hiddenSize) gate rows exceeds the device's allocation limit of \(device.info.maxAllocationBytes) bytes")
        }

        /// One directed layer's weights, ablation values and work buffers.
        struct LayerBuffers {
            let W, R, b, extra, keep, clampH, clampC: Buffer<Float>
            let proj: Buffer<Float>, state: Buffer<Float>, rh: Buffer<Float>
            /// Elements of `proj` before its canary padding.
            let projCount: Int
        }
        var events: [Event] = []
        func launch(_ kernel: Kernel, columns: Int, rows: Int, tile: Int) throws {
            let g = tile == 64 ? 16 : rt
            events.append(try queue.launch(kernel, global: [(columns + tile - 1) / tile * g, (rows + tile - 1) / tile * g], local: [g, g]))
        }
        let x = try context.buffer(Float.self, count: job.inputs.values.count, access: .readOnly)
        try queue.write(x, from: job.inputs.values)
        let layout = net.layout
        var layers: [LayerBuffers] = []
        for (l, level) in net.levels.enumerated() {
            for (d, index) in level.enumerated() {
                let layer = net.layers[index], h = layer.hiddenSize
                let projCount = l == 0 ? sharedCounts[d] : chunk * steps * gates * h
                let ablation = job.ablation(of: layout.range(ofLayer: l, direction: layer.direction))
                let buffers = LayerBuffers(
                    W: try upload(layer.W), R: try upload(layer.R), b: try upload(layer.b), extra: try upload(layer.cellExtra),
                    keep: try upload(ablation.keep), clampH: try upload(ablation.clampH), clampC: try upload(ablation.clampC),
                    proj: try context.buffer(Float.self, count: projCount + canaryPadding),
                    state: try context.buffer(Float.self, count: hasState ? chunk * h : 1),
                    rh: try context.buffer(Float.self, count: resetBefore ? chunk * h : 1),
                    projCount: projCount)
                if canaryPadding > 0 {
                    try queue.write(buffers.proj, from: [Float](repeating: Self.canary, count: canaryPadding), offset: projCount)
                }
                layers.append(buffers)
            }
        }
        // Each level's output: its directions' h side by side, forward first [chunk, T, width].
        let yCounts = net.levels.indices.map { chunk * steps * net.outputWidth(ofLevel: $0) }
        let ys = try yCounts.map { count in
            let y = try context.buffer(Float.self, count: count + canaryPadding)
            if canaryPadding > 0 { try queue.write(y, from: [Float](repeating: Self.canary, count: canaryPadding), offset: count) }
            return y
        }

        // Layer 0's projection of each direction, once per sequence for every configuration.
        for index in net.levels[0] {
            let layer = net.layers[index], buffers = layers[index]
            try projection.setArguments(x, Int32(layer.inputSize), buffers.W, Int32(layer.inputSize), buffers.b,
                                        buffers.proj, Int32(gates * layer.hiddenSize),
                                        Int32(n * steps), Int32(gates * layer.hiddenSize), Int32(layer.inputSize))
            try launch(projection, columns: gates * layer.hiddenSize, rows: n * steps, tile: 64)
        }

        let last = net.outputWidth
        var outputs: [Float] = [], hidden: [Float] = []
        outputs.reserveCapacity(pairs * job.outputsPerSequence)
        if job.keepsHidden { hidden.reserveCapacity(pairs * steps * last) }
        for pair0 in stride(from: 0, to: pairs, by: chunk) {
            let count = min(chunk, pairs - pair0)
            for (l, level) in net.levels.enumerated() {
                let width = net.outputWidth(ofLevel: l), y = ys[l]
                if canaryPadding > 0 {
                    try queue.write(y, from: [Float](repeating: .nan, count: yCounts[l]))
                }
                var column = 0
                for index in level {
                    let layer = net.layers[index], h = layer.hiddenSize, buffers = layers[index]
                    if l > 0 {
                        let below = net.outputWidth(ofLevel: l - 1)
                        try projection.setArguments(ys[l - 1], Int32(below), buffers.W, Int32(below), buffers.b,
                                                    buffers.proj, Int32(gates * h), Int32(count * steps), Int32(gates * h), Int32(below))
                        try launch(projection, columns: gates * h, rows: count * steps, tile: 64)
                    }
                    // The layer's own time: t_prev is the step processed before t (−1 at the first).
                    for s in 0..<steps {
                        let t = layer.direction == .forward ? s : steps - 1 - s
                        let tPrev = s == 0 ? -1 : layer.direction == .forward ? t - 1 : t + 1
                        try step.setArguments(buffers.proj, Int32(l == 0 ? 1 : 0), y, Int32(max(0, tPrev) * width + column), Int32(steps * width),
                                              buffers.R, buffers.extra, buffers.keep, buffers.clampH, buffers.clampC, y, buffers.state, buffers.rh,
                                              Int32(pair0), Int32(count), Int32(n), Int32(steps), Int32(t), Int32(h),
                                              Int32(tPrev), Int32(width), Int32(column))
                        try launch(step, columns: h, rows: count, tile: 32)
                        if let update {
                            try update.setArguments(buffers.proj, Int32(l == 0 ? 1 : 0), buffers.rh, Int32(0), Int32(h),
                                                    buffers.R, buffers.extra, buffers.keep, buffers.clampH, buffers.clampC, y, buffers.state, buffers.rh,
                                                    Int32(pair0), Int32(count), Int32(n), Int32(steps), Int32(t), Int32(h),
                                                    Int32(tPrev), Int32(width), Int32(column))
                            try launch(update, columns: h, rows: count, tile: 32)
                        }
                    }
                    column += h
                }
            }
            let y = try queue.read(ys.last!, count: count * steps * last)
            outputs += net.readoutOutputs(hidden: y, sequences: count, steps: steps, output: job.output, workers: hostThreads)
            if job.keepsHidden { hidden += y }
        }
        for buffers in layers where canaryPadding > 0 {
            try checkCanary(buffers.proj, from: buffers.projCount, kernel: "input_projection")
        }
        for (y, count) in zip(ys, yCounts) where canaryPadding > 0 {
            try checkCanary(y, from: count, kernel: "recurrent_step")
        }
        let total = try events.reduce(0.0) { $0 + (try $1.durationSeconds()) }
        kernelSeconds.withLock { $0 = total }
        let k = net.readout!.outputs
        return ForwardResult(outputs: outputs, hidden: hidden,
                             shape: job.output == .last ? [configs, n, k] : [configs, n, steps, k])
    }

    /// The full forward with `forward.cl`'s `layer_forward`: one work-group per (configuration,
    /// sequence) pair, one work-item per cell, h shared in local memory. For devices whose
    /// work-groups are smaller than `forward_tiled.cl` needs.
    func forwardPerSequence(_ job: ForwardJob) throws -> ForwardResult {
        let net = job.network, n = job.inputs.count, steps = job.inputs.steps, configs = job.masks.count
        let pairs = configs * n
        let widest = net.layers.map(\.hiddenSize).max()!
        let group = (widest + 31) / 32 * 32
        guard group <= device.info.maxWorkGroupSize else {
            throw CLError(status: .invalidWorkGroupSize, call: "layer_forward",
                          detail: "layers of \(widest) cells exceed the device's work-group limit of \(device.info.maxWorkGroupSize)")
        }
        let program = try KernelLibrary.program("forward.cl", in: context, defines: mathDefines + Self.cellDefines(net.layers[0]))
        let kernel = try program.kernel(named: "layer_forward")
        var x = try context.buffer(Float.self, count: job.inputs.values.count, access: .readOnly)
        try queue.write(x, from: job.inputs.values)
        let layout = net.layout
        var kernelTime = 0.0
        for (l, level) in net.levels.enumerated() {
            // The level's output: its directions' h side by side, forward first.
            let width = net.outputWidth(ofLevel: l)
            let y = try context.buffer(Float.self, count: pairs * steps * width + canaryPadding)
            try queue.fill(y, with: .nan)
            if canaryPadding > 0 {
                try queue.write(y, from: [Float](repeating: Self.canary, count: canaryPadding), offset: pairs * steps * width)
            }
            var column = 0
            for index in level {
                let layer = net.layers[index], h = layer.hiddenSize
                let W = try upload(layer.W), R = try upload(layer.R), b = try upload(layer.b), extra = try upload(layer.cellExtra)
                let ablation = job.ablation(of: layout.range(ofLayer: l, direction: layer.direction))
                let keep = try upload(ablation.keep), clampH = try upload(ablation.clampH), clampC = try upload(ablation.clampC)
                try kernel.setArguments(x, Int32(l == 0 ? 0 : 1), W, R, b, extra, keep, clampH, clampC, y, Int32(n), Int32(steps),
                                        Int32(layer.inputSize), Int32(h), Int32(layer.direction == .reverse ? 1 : 0), Int32(width), Int32(column),
                                        LocalMemory<Float>(count: 2 * h))
                kernelTime += try queue.launch(kernel, global: [group, pairs], local: [group, 1]).durationSeconds()
                column += h
            }
            try checkCanary(y, from: pairs * steps * width, kernel: "layer_forward")
            x = y
        }
        kernelSeconds.withLock { $0 = kernelTime }
        let hidden = try queue.read(x, count: pairs * steps * net.outputWidth)
        let outputs = net.readoutOutputs(hidden: hidden, sequences: pairs, steps: steps, output: job.output, workers: hostThreads)
        let k = net.readout!.outputs
        return ForwardResult(outputs: outputs, hidden: hidden,
                             shape: job.output == .last ? [configs, n, k] : [configs, n, steps, k])
    }
}
