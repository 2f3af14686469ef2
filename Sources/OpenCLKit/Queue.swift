import COpenCL

/// An in-order command queue. With profiling on, every event reports how long it ran.
public final class CommandQueue: @unchecked Sendable {
    let raw: cl_command_queue
    public let context: Context

    init(context: Context, profiling: Bool) throws {
        self.context = context
        raw = try CLRaw.createQueue(context.raw, context.device.id, profiling: profiling)
    }

    // Work still queued (a launch whose caller threw, say) finishes before the queue goes:
    // an OpenCL runtime torn down under a running command can abort the process at exit.
    deinit {
        try? CLRaw.finish(raw)
        CLRaw.release(queue: raw)
    }

    /// Copies `values` into `buffer` starting at element `offset` (blocking).
    @discardableResult
    public func write<T>(_ buffer: Buffer<T>, from values: [T], offset: Int = 0) throws -> Event? {
        try checkRange(buffer, offset: offset, count: values.count, call: "clEnqueueWriteBuffer")
        guard !values.isEmpty else { return nil }
        let event = try values.withUnsafeBytes {
            try CLRaw.write(raw, buffer.raw, offset: offset * MemoryLayout<T>.stride, bytes: $0.count, from: $0.baseAddress!)
        }
        return event.map(Event.init)
    }

    /// Reads `count` elements (all by default) starting at `offset` (blocking).
    public func read<T>(_ buffer: Buffer<T>, offset: Int = 0, count: Int? = nil) throws -> [T] {
        let n = count ?? (buffer.count - offset)
        try checkRange(buffer, offset: offset, count: n, call: "clEnqueueReadBuffer")
        guard n > 0 else { return [] }
        var event: cl_event?
        let values = try [T](unsafeUninitializedCapacity: n) { storage, initialized in
            event = try CLRaw.read(raw, buffer.raw, offset: offset * MemoryLayout<T>.stride,
                                   bytes: n * MemoryLayout<T>.stride, into: UnsafeMutableRawPointer(storage.baseAddress!))
            initialized = n
        }
        if let event { CLRaw.release(event: event) }
        return values
    }

    /// Sets every element of `buffer` to `value` (used to poison outputs before a run).
    @discardableResult
    public func fill<T>(_ buffer: Buffer<T>, with value: T) throws -> Event? {
        var pattern = value
        let event = try withUnsafeBytes(of: &pattern) {
            try CLRaw.fill(raw, buffer.raw, pattern: $0.baseAddress!, patternBytes: $0.count, bytes: buffer.byteCount)
        }
        return event.map(Event.init)
    }

    /// Launches `kernel` over `global` work-items (1–3 dimensions), in work-groups of `local`
    /// (implementation's choice where nil). Returns the launch's event.
    @discardableResult
    public func launch(_ kernel: Kernel, global: [Int], local: [Int]? = nil) throws -> Event {
        guard (1...3).contains(global.count), global.allSatisfy({ $0 > 0 }) else {
            throw CLError(status: .invalidValue, call: "clEnqueueNDRangeKernel(\(kernel.name))",
                          detail: "global size \(global) must have 1 to 3 positive dimensions")
        }
        if let local {
            guard local.count == global.count, zip(global, local).allSatisfy({ $1 > 0 && $0 % $1 == 0 }) else {
                throw CLError(status: .invalidWorkGroupSize, call: "clEnqueueNDRangeKernel(\(kernel.name))",
                              detail: "local size \(local) must divide global size \(global)")
            }
        }
        try kernel.checkAllArgumentsSet()
        guard let event = try CLRaw.enqueueKernel(raw, kernel.raw, global: global, local: local, name: kernel.name) else {
            throw CLError(status: .outOfResources, call: "clEnqueueNDRangeKernel(\(kernel.name))", detail: "no event")
        }
        return Event(event)
    }

    /// Blocks until everything queued has finished.
    public func finish() throws { try CLRaw.finish(raw) }

    private func checkRange<T>(_ buffer: Buffer<T>, offset: Int, count: Int, call: String) throws {
        guard offset >= 0, count >= 0, offset + count <= buffer.count else {
            throw CLError(status: .invalidValue, call: call,
                          detail: "elements \(offset)..<\(offset + count) are outside a buffer of \(buffer.count)")
        }
    }
}

/// A command's event; with a profiling queue it tells how long the command ran on the device.
public final class Event: @unchecked Sendable {
    let raw: cl_event
    init(_ raw: cl_event) { self.raw = raw }
    deinit { CLRaw.release(event: raw) }

    public func wait() throws { try CLRaw.wait(raw) }

    /// Device time from start to end of the command, in nanoseconds (waits for it first).
    public func durationNanoseconds() throws -> UInt64 {
        try wait()
        let start = try CLRaw.profile(raw, CL_PROFILING_COMMAND_START)
        let end = try CLRaw.profile(raw, CL_PROFILING_COMMAND_END)
        return end >= start ? end - start : 0
    }

    public func durationSeconds() throws -> Double { Double(try durationNanoseconds()) * 1e-9 }
}
