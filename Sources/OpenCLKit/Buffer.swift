import Synchronization
import COpenCL

/// Element types that can live in a buffer or be passed as a kernel scalar, with the OpenCL C
/// spelling the kernel declares.
public protocol CLScalar: BitwiseCopyable, Sendable {
    static var clTypeName: String { get }
}
extension Float: CLScalar { public static var clTypeName: String { "float" } }
extension Double: CLScalar { public static var clTypeName: String { "double" } }
extension Int32: CLScalar { public static var clTypeName: String { "int" } }
extension UInt32: CLScalar { public static var clTypeName: String { "uint" } }
extension Int64: CLScalar { public static var clTypeName: String { "long" } }
extension UInt64: CLScalar { public static var clTypeName: String { "ulong" } }
extension Int8: CLScalar { public static var clTypeName: String { "char" } }
extension UInt8: CLScalar { public static var clTypeName: String { "uchar" } }

public enum BufferAccess: Sendable {
    case readOnly, writeOnly, readWrite

    var flags: cl_mem_flags {
        switch self {
        case .readOnly: cl_mem_flags(CL_MEM_READ_ONLY)
        case .writeOnly: cl_mem_flags(CL_MEM_WRITE_ONLY)
        case .readWrite: cl_mem_flags(CL_MEM_READ_WRITE)
        }
    }
}

/// Bytes of device buffers alive in one context, and the most there have been at once.
public final class BufferMeter: Sendable {
    private let state = Mutex<(live: Int, peak: Int)>((0, 0))
    public init() {}
    func add(_ bytes: Int) { state.withLock { $0.live += bytes; $0.peak = max($0.peak, $0.live) } }
    func remove(_ bytes: Int) { state.withLock { $0.live -= bytes } }
    public var liveBytes: Int { state.withLock { $0.live } }
    public var peakBytes: Int { state.withLock { $0.peak } }
    /// Starts a new peak from what is alive now.
    public func resetPeak() { state.withLock { $0.peak = $0.live } }
}

/// A device buffer of `count` elements of `T`, released when the last reference goes.
public final class Buffer<T: CLScalar>: @unchecked Sendable {
    let raw: cl_mem
    let meter: BufferMeter
    public let count: Int
    public var byteCount: Int { count * MemoryLayout<T>.stride }

    init(context: Context, count: Int, access: BufferAccess) throws {
        guard count > 0 else {
            throw CLError(status: .invalidBufferSize, call: "clCreateBuffer",
                          detail: "a buffer needs at least one element, got \(count)")
        }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: MemoryLayout<T>.stride)
        guard !overflow else {
            throw CLError(status: .invalidBufferSize, call: "clCreateBuffer", detail: "\(count) elements overflow")
        }
        let limit = context.device.info.maxAllocationBytes
        guard UInt64(bytes) <= limit else {
            throw CLError(status: .invalidBufferSize, call: "clCreateBuffer",
                          detail: "\(bytes) bytes exceed the device's largest allocation (\(limit) bytes)")
        }
        self.count = count
        raw = try CLRaw.createBuffer(context.raw, flags: access.flags, bytes: bytes)
        meter = context.bufferMeter
        meter.add(bytes)
    }

    deinit {
        CLRaw.release(mem: raw)
        meter.remove(byteCount)
    }
}

/// `__local` scratch memory of `count` elements of `T`, passed as a kernel argument.
public struct LocalMemory<T: CLScalar>: Sendable {
    public let count: Int
    public init(count: Int) { self.count = count }
}
