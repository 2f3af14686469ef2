import COpenCL
import Synchronization

/// An OpenCL context on one device, with its program cache: a program is built once per
/// (source, options) and reused by every caller.
public final class Context: @unchecked Sendable {
    // OpenCL contexts and programs are thread-safe objects (OpenCL 1.2 §A.2); the cache is
    // guarded by a mutex.
    let raw: cl_context
    public let device: Device
    /// Device memory held by this context's buffers.
    public let bufferMeter = BufferMeter()
    private let cache = Mutex<[ProgramKey: Program]>([:])

    struct ProgramKey: Hashable { let name: String; let source: String; let options: String }

    public init(device: Device) throws {
        self.device = device
        raw = try CLRaw.createContext(device.id)
    }

    deinit { CLRaw.release(context: raw) }

    /// Builds `source` (named `name`, e.g. the kernel file name, for error messages) with the
    /// given options, or returns the program already built with them.
    /// Compiler messages name `name` and the line: the source is prefixed by a `#line` directive.
    public func program(name: String, source: String, options: [String] = []) throws -> Program {
        let joined = (["-cl-kernel-arg-info"] + options).joined(separator: " ")
        let key = ProgramKey(name: name, source: source, options: joined)
        if let hit = cache.withLock({ $0[key] }) { return hit }
        let program = try Program(context: self, name: name, source: "#line 1 \"\(name)\"\n" + source,
                                  options: joined)
        return cache.withLock { table in
            if let raced = table[key] { return raced }
            table[key] = program
            return program
        }
    }

    /// How many programs this context holds built.
    public var cachedProgramCount: Int { cache.withLock { $0.count } }

    public func makeQueue(profiling: Bool = true) throws -> CommandQueue {
        try CommandQueue(context: self, profiling: profiling)
    }

    public func buffer<T: CLScalar>(_ type: T.Type = T.self, count: Int, access: BufferAccess = .readWrite) throws -> Buffer<T> {
        try Buffer<T>(context: self, count: count, access: access)
    }
}

/// A built program.
public final class Program: @unchecked Sendable {
    let raw: cl_program
    public let name: String
    public let options: String
    let context: Context

    init(context: Context, name: String, source: String, options: String) throws {
        self.context = context
        self.name = name
        self.options = options
        raw = try CLRaw.createProgram(context.raw, source: source)
        // Every stored property is set: if the build throws, deinit releases `raw`.
        try CLRaw.build(raw, context.device.id, options: options, name: name)
    }

    deinit { CLRaw.release(program: raw) }

    /// A new kernel object for the `__kernel` function `name`. Kernel objects carry their
    /// arguments, so each user takes its own.
    public func kernel(named name: String) throws -> Kernel {
        try Kernel(program: self, name: name)
    }
}
