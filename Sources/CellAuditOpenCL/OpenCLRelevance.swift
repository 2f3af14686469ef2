import CellAuditCore
import Foundation
import OpenCLKit

extension OpenCLBackend {
    /// LRP on the device: per directed layer, `layer_forward` (forward.cl with `RECORD_TAPE=1`)
    /// keeps the forward's record, then `lrp_backward` (relevance.cl) walks every sequence
    /// backwards in each layer's own time from the top level down, one work-group per sequence. The readout's share (a single small map)
    /// is formed on the host by `RelevanceJob.readoutInjection`, as on the CPU. Gradient × input
    /// runs on the CPU backend (it serves the gradient ranker only). Sequences are taken in chunks
    /// that fit `chunkBytes`.
    public func relevance(_ job: RelevanceJob) throws -> RelevanceResult {
        if job.inputs.isPadded { return try job.byLength { try relevance($0) } }
        guard case .lrp = job.rule else { return try CPUBackend(threads: hostThreads).relevance(job) }
        return try lrpOnDevice(job)
    }

    private func lrpOnDevice(_ job: RelevanceJob) throws -> RelevanceResult {
        let steps = job.inputs.steps
        let perSequence = job.network.layers.reduce(0) { $0 + steps * ($1.gateRows + 4 * $1.hiddenSize + $1.inputSize) }
            * MemoryLayout<Float>.stride
        return try job.inChunks(bytes: chunkBytes, perSequenceBytes: perSequence, relevanceChunk)
    }

    /// One directed layer's forward record and weights; `column` is where its h sits in its
    /// level's output.
    private struct DeviceTape {
        let pre: Buffer<Float>, aux: Buffer<Float>, c: Buffer<Float>
        let W: Buffer<Float>, R: Buffer<Float>, b: Buffer<Float>, extra: Buffer<Float>
        let column: Int
    }

    private func relevanceChunk(_ job: RelevanceJob) throws -> RelevanceResult {
        guard case .lrp(let epsilon, let biasFactor) = job.rule else { preconditionFailure("LRP only") }
        let net = job.network, n = job.inputs.count, steps = job.inputs.steps, width = job.inputs.width
        let widest = net.layers.map(\.hiddenSize).max()!
        let group = (widest + 31) / 32 * 32
        guard group <= device.info.maxWorkGroupSize else {
            throw CLError(status: .invalidWorkGroupSize, call: "lrp_backward",
                          detail: "layers of \(widest) cells exceed the device's work-group limit of \(device.info.maxWorkGroupSize)")
        }
        let defines = mathDefines + Self.cellDefines(net.layers[0])
        let forward = try KernelLibrary.program("forward.cl", in: context, defines: defines + ["RECORD_TAPE=1"]).kernel(named: "layer_forward")
        let backward = try KernelLibrary.program("relevance.cl", in: context, defines: defines).kernel(named: "lrp_backward")
        var kernelTime = 0.0

        // Forward, keeping the record: per level its output (the directions' h side by side,
        // forward first), per directed layer its tape.
        let x0 = try context.buffer(Float.self, count: job.inputs.values.count, access: .readOnly)
        try queue.write(x0, from: job.inputs.values)
        var tapes: [DeviceTape] = [], outputs: [Buffer<Float>] = []
        var input = x0
        for (l, level) in net.levels.enumerated() {
            let levelWidth = net.outputWidth(ofLevel: l)
            let y = try context.buffer(Float.self, count: n * steps * levelWidth)
            var column = 0
            for index in level {
                let layer = net.layers[index], h = layer.hiddenSize
                let W = try upload(layer.W), R = try upload(layer.R), b = try upload(layer.b), extra = try upload(layer.cellExtra)
                let keep = try upload([Float](repeating: 1, count: h)), zeros = try upload([Float](repeating: 0, count: h))
                let pre = try context.buffer(Float.self, count: n * steps * layer.gateRows)
                let aux = try context.buffer(Float.self, count: layer.kind == .gru ? n * steps * h : 1)
                let c = try context.buffer(Float.self, count: layer.kind.hasCellState ? n * steps * h : 1)
                try forward.setArguments(input, Int32(l == 0 ? 0 : 1), W, R, b, extra, keep, zeros, zeros, y, pre, aux, c,
                                         Int32(n), Int32(steps), Int32(layer.inputSize), Int32(h),
                                         Int32(layer.direction == .reverse ? 1 : 0), Int32(levelWidth), Int32(column),
                                         LocalMemory<Float>(count: 2 * h))
                kernelTime += try queue.launch(forward, global: [group, n], local: [group, 1]).durationSeconds()
                tapes.append(DeviceTape(pre: pre, aux: aux, c: c, W: W, R: R, b: b, extra: extra, column: column))
                column += h
            }
            outputs.append(y)
            input = y
        }

        // The readout's share, on the host.
        let top = try queue.read(outputs.last!, count: n * steps * net.outputWidth)
        let (injectedTop, score, readoutMinimum) = top.withUnsafeBufferPointer {
            job.readoutInjection(hidden: $0.baseAddress!, sequenceMajor: true)
        }
        var injected = try context.buffer(Float.self, count: injectedTop.count, access: .readOnly)
        try queue.write(injected, from: injectedTop)
        let cellsTotal = net.cellCount
        let cells = try context.buffer(Float.self, count: n * steps * cellsTotal + canaryPadding)
        try poison(cells, count: n * steps * cellsTotal)
        let layout = net.layout
        var rest = [Float](repeating: 0, count: n), minimum = readoutMinimum
        // Level by level from the top; each direction walks back in its own time, and a level's
        // second direction adds its input relevance to the first's.
        for l in stride(from: net.levels.count - 1, through: 0, by: -1) {
            let inputs = net.layers[net.levels[l][0]].inputSize
            let toInput = try context.buffer(Float.self, count: n * steps * inputs + canaryPadding)
            try poison(toInput, count: n * steps * inputs)
            for (d, index) in net.levels[l].enumerated() {
                let layer = net.layers[index], tape = tapes[index], h = layer.hiddenSize
                let restOut = try context.buffer(Float.self, count: n), minOut = try context.buffer(Float.self, count: n)
                try backward.setArguments(l == 0 ? x0 : outputs[l - 1], tape.W, tape.R, tape.b, tape.extra, tape.pre, tape.aux, tape.c,
                                          outputs[l], injected, toInput, cells, restOut, minOut,
                                          Int32(steps), Int32(inputs), Int32(h), Int32(cellsTotal),
                                          Int32(layout.range(ofLayer: l, direction: layer.direction).lowerBound),
                                          epsilon, biasFactor, Int32(layer.direction == .reverse ? 1 : 0),
                                          Int32(net.outputWidth(ofLevel: l)), Int32(tape.column), Int32(d > 0 ? 1 : 0),
                                          LocalMemory<Float>(count: h), LocalMemory<Float>(count: h), LocalMemory<Float>(count: group))
                kernelTime += try queue.launch(backward, global: [group, n], local: [group, 1]).durationSeconds()
                for (s, v) in try queue.read(restOut, count: n).enumerated() { rest[s] += v }
                for (s, v) in try queue.read(minOut, count: n).enumerated() { minimum[s] = min(minimum[s], v) }
            }
            try checkCanary(toInput, from: n * steps * inputs, kernel: "lrp_backward")
            injected = toInput
        }
        try checkCanary(cells, from: n * steps * cellsTotal, kernel: "lrp_backward")
        kernelSeconds.withLock { $0 = kernelTime }
        return RelevanceResult(count: n, steps: steps, width: width, cells: cellsTotal,
                               input: try queue.read(injected, count: n * steps * width),
                               cellRelevance: try queue.read(cells, count: n * steps * cellsTotal),
                               score: score, rest: rest, minimumDenominator: minimum)
    }
}
