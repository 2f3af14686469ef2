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
        return try onDevice(.forward, network: job.network, { try forwardOnDevice(job) }, onHost: { try $0.forward(job) })
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

        // Chunk size: every pair-dependent buffer of a layer (projection, y, state, r h) within
        // chunkBytes.
        let perPair = net.layers.enumerated().map { l, layer in
            (l == 0 ? 0 : steps * gates * layer.hiddenSize) + steps * layer.hiddenSize + 2 * layer.hiddenSize
        }.max()! * MemoryLayout<Float>.stride
        let chunk = max(1, min(pairs, settings.forwardChunkPairs ?? chunkBytes / perPair))
        let sharedCount = n * steps * gates * net.layers[0].hiddenSize
        guard sharedCount * MemoryLayout<Float>.stride <= Int(device.info.maxAllocationBytes) else {
            throw CLError(status: .memObjectAllocationFailure, call: "input_projection",
                          detail: "the layer-0 projection of \(n) sequences × \(steps) steps × \(gates * net.layers[0].hiddenSize) gate rows exceeds the device's allocation limit of \(device.info.maxAllocationBytes) bytes")
        }

        struct LayerBuffers {
            let W, R, b, bhn, keep, clampH, clampC: Buffer<Float>
            let proj: Buffer<Float>, y: Buffer<Float>, state: Buffer<Float>, rh: Buffer<Float>
            /// Elements of `proj` and `y` before their canary padding.
            let projCount: Int, yCount: Int
        }
        var events: [Event] = []
        func launch(_ kernel: Kernel, columns: Int, rows: Int, tile: Int) throws {
            let g = tile == 64 ? 16 : rt
            events.append(try queue.launch(kernel, global: [(columns + tile - 1) / tile * g, (rows + tile - 1) / tile * g], local: [g, g]))
        }
        let x = try context.buffer(Float.self, count: job.inputs.values.count, access: .readOnly)
        try queue.write(x, from: job.inputs.values)
        var offset = 0
        var layers: [LayerBuffers] = []
        for (l, layer) in net.layers.enumerated() {
            let h = layer.hiddenSize
            let projCount = l == 0 ? sharedCount : chunk * steps * gates * h, yCount = chunk * steps * h
            let buffers = LayerBuffers(
                W: try upload(layer.W), R: try upload(layer.R), b: try upload(layer.b), bhn: try upload(layer.cellExtra),
                keep: try upload(job.masks.flatMap { $0.keep[offset..<(offset + h)] }),
                clampH: try upload(Array(job.clampH[offset..<(offset + h)])), clampC: try upload(Array(job.clampC[offset..<(offset + h)])),
                proj: try context.buffer(Float.self, count: projCount + canaryPadding),
                y: try context.buffer(Float.self, count: yCount + canaryPadding),
                state: try context.buffer(Float.self, count: hasState ? chunk * h : 1),
                rh: try context.buffer(Float.self, count: resetBefore ? chunk * h : 1),
                projCount: projCount, yCount: yCount)
            if canaryPadding > 0 {
                try queue.write(buffers.proj, from: [Float](repeating: Self.canary, count: canaryPadding), offset: projCount)
                try queue.write(buffers.y, from: [Float](repeating: Self.canary, count: canaryPadding), offset: yCount)
            }
            layers.append(buffers)
            offset += h
        }

        // Layer 0's projection, once per sequence for every configuration.
        let first = net.layers[0], firstBuffers = layers[0]
        try projection.setArguments(x, Int32(first.inputSize), firstBuffers.W, Int32(first.inputSize), firstBuffers.b,
                                    firstBuffers.proj, Int32(gates * first.hiddenSize),
                                    Int32(n * steps), Int32(gates * first.hiddenSize), Int32(first.inputSize))
        try launch(projection, columns: gates * first.hiddenSize, rows: n * steps, tile: 64)

        let last = net.layers.last!.hiddenSize
        var outputs: [Float] = [], hidden: [Float] = []
        outputs.reserveCapacity(pairs * job.outputsPerSequence)
        if job.keepsHidden { hidden.reserveCapacity(pairs * steps * last) }
        for pair0 in stride(from: 0, to: pairs, by: chunk) {
            let count = min(chunk, pairs - pair0)
            for (l, layer) in net.layers.enumerated() {
                let h = layer.hiddenSize, buffers = layers[l]
                if canaryPadding > 0 {
                    try queue.write(buffers.y, from: [Float](repeating: .nan, count: buffers.yCount))
                }
                if l > 0 {
                    let below = net.layers[l - 1].hiddenSize
                    try projection.setArguments(layers[l - 1].y, Int32(below), buffers.W, Int32(below), buffers.b,
                                                buffers.proj, Int32(gates * h), Int32(count * steps), Int32(gates * h), Int32(below))
                    try launch(projection, columns: gates * h, rows: count * steps, tile: 64)
                }
                for t in 0..<steps {
                    try step.setArguments(buffers.proj, Int32(l == 0 ? 1 : 0), buffers.y, Int32(max(0, t - 1) * h), Int32(steps * h), buffers.R, buffers.bhn,
                                          buffers.keep, buffers.clampH, buffers.clampC, buffers.y, buffers.state, buffers.rh,
                                          Int32(pair0), Int32(count), Int32(n), Int32(steps), Int32(t), Int32(h))
                    try launch(step, columns: h, rows: count, tile: 32)
                    if let update {
                        try update.setArguments(buffers.proj, Int32(l == 0 ? 1 : 0), buffers.rh, Int32(0), Int32(h), buffers.R, buffers.bhn,
                                                buffers.keep, buffers.clampH, buffers.clampC, buffers.y, buffers.state, buffers.rh,
                                                Int32(pair0), Int32(count), Int32(n), Int32(steps), Int32(t), Int32(h))
                        try launch(update, columns: h, rows: count, tile: 32)
                    }
                }
            }
            let y = try queue.read(layers.last!.y, count: count * steps * last)
            outputs += net.readoutOutputs(hidden: y, sequences: count, steps: steps, output: job.output, workers: hostThreads)
            if job.keepsHidden { hidden += y }
        }
        for buffers in layers where canaryPadding > 0 {
            try checkCanary(buffers.proj, from: buffers.projCount, kernel: "input_projection")
            try checkCanary(buffers.y, from: buffers.yCount, kernel: "recurrent_step")
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
        let program = try KernelLibrary.program("forward.cl", in: context,
                                                defines: mathDefines + Self.cellDefines(net.layers[0]))
        let kernel = try program.kernel(named: "layer_forward")
        var x = try context.buffer(Float.self, count: job.inputs.values.count, access: .readOnly)
        try queue.write(x, from: job.inputs.values)
        var offset = 0
        var kernelTime = 0.0
        for (l, layer) in net.layers.enumerated() {
            let h = layer.hiddenSize
            let W = try upload(layer.W), R = try upload(layer.R), b = try upload(layer.b), bhn = try upload(layer.cellExtra)
            let keep = try upload(job.masks.flatMap { $0.keep[offset..<(offset + h)] })
            let clampH = try upload(Array(job.clampH[offset..<(offset + h)])), clampC = try upload(Array(job.clampC[offset..<(offset + h)]))
            let y = try context.buffer(Float.self, count: pairs * steps * h + canaryPadding)
            try queue.fill(y, with: .nan)
            if canaryPadding > 0 {
                try queue.write(y, from: [Float](repeating: Self.canary, count: canaryPadding), offset: pairs * steps * h)
            }
            try kernel.setArguments(x, Int32(l == 0 ? 0 : 1), W, R, b, bhn, keep, clampH, clampC, y, Int32(n), Int32(steps),
                                    Int32(l == 0 ? job.inputs.width : net.layers[l - 1].hiddenSize), Int32(h),
                                    LocalMemory<Float>(count: 2 * h))
            kernelTime += try queue.launch(kernel, global: [group, pairs], local: [group, 1]).durationSeconds()
            try checkCanary(y, from: pairs * steps * h, kernel: "layer_forward")
            x = y
            offset += h
        }
        kernelSeconds.withLock { $0 = kernelTime }
        let hidden = try queue.read(x, count: pairs * steps * net.layers.last!.hiddenSize)
        let outputs = net.readoutOutputs(hidden: hidden, sequences: pairs, steps: steps, output: job.output, workers: hostThreads)
        let k = net.readout!.outputs
        return ForwardResult(outputs: outputs, hidden: hidden,
                             shape: job.output == .last ? [configs, n, k] : [configs, n, steps, k])
    }
}
