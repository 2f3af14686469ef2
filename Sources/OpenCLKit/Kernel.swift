import COpenCL

/// A value that can be bound to a kernel argument, checked against the declared type.
public protocol KernelArgument {
    /// The OpenCL C type this value binds to, as `clGetKernelArgInfo` spells it without
    /// qualifiers (`float*`, `int`); nil for `__local` memory.
    var expectedTypeName: String? { get }
    func bind(to kernel: Kernel, at index: Int) throws
}

extension Float: KernelArgument {}
extension Double: KernelArgument {}
extension Int32: KernelArgument {}
extension UInt32: KernelArgument {}
extension Int64: KernelArgument {}
extension UInt64: KernelArgument {}

extension CLScalar where Self: KernelArgument {
    public var expectedTypeName: String? { Self.clTypeName }
    public func bind(to kernel: Kernel, at index: Int) throws {
        var copy = self
        try withUnsafeBytes(of: &copy) {
            try CLRaw.setArg(kernel.raw, index, bytes: $0.count, $0.baseAddress, name: kernel.name)
        }
    }
}

extension Buffer: KernelArgument {
    public var expectedTypeName: String? { T.clTypeName + "*" }
    public func bind(to kernel: Kernel, at index: Int) throws {
        var mem: cl_mem? = raw
        try CLRaw.setArg(kernel.raw, index, bytes: MemoryLayout<cl_mem>.size, &mem, name: kernel.name)
    }
}

extension LocalMemory: KernelArgument {
    public var expectedTypeName: String? { nil }
    public func bind(to kernel: Kernel, at index: Int) throws {
        guard count > 0 else {
            throw CLError(status: .invalidArgSize, call: "clSetKernelArg(\(kernel.name), \(index))",
                          detail: "local memory needs at least one element")
        }
        try CLRaw.setArg(kernel.raw, index, bytes: count * MemoryLayout<T>.stride, nil, name: kernel.name)
    }
}

/// A kernel with typed argument setting. Kernel objects hold argument state and are not
/// thread-safe (OpenCL 1.2 §A.2): use one per thread.
public final class Kernel {
    let raw: cl_kernel
    public let name: String
    public let program: Program
    /// Declared argument types, from the program's argument info.
    public let argumentTypes: [String?]
    private var isSet: [Bool]

    init(program: Program, name: String) throws {
        self.program = program
        self.name = name
        let kernel = try CLRaw.createKernel(program.raw, name: name)
        raw = kernel
        let count: Int
        do { count = try CLRaw.kernelArgCount(kernel) } catch {
            CLRaw.release(kernel: kernel)
            throw error
        }
        argumentTypes = (0..<count).map { index in
            if CLRaw.kernelArgIsLocal(kernel, index) { return "__local" }
            return CLRaw.kernelArgTypeName(kernel, index).map { $0.filter { !$0.isWhitespace } }
        }
        isSet = Array(repeating: false, count: count)
    }

    deinit { CLRaw.release(kernel: raw) }

    /// Binds `value` to argument `index`, refusing a value whose type differs from the kernel's
    /// declaration (where the implementation reports declarations).
    public func setArgument(_ index: Int, _ value: some KernelArgument) throws {
        let call = "clSetKernelArg(\(name), \(index))"
        guard argumentTypes.indices.contains(index) else {
            throw CLError(status: .invalidArgIndex, call: call,
                          detail: "kernel '\(name)' takes \(argumentTypes.count) arguments")
        }
        if let declared = argumentTypes[index] {
            let expected = value.expectedTypeName ?? "__local"
            if declared != expected {
                throw CLError(status: .invalidArgValue, call: call,
                              detail: "argument \(index) of '\(name)' is declared '\(declared)', got a value of type '\(expected)'")
            }
        }
        try value.bind(to: self, at: index)
        isSet[index] = true
    }

    /// Binds all arguments in order.
    public func setArguments(_ values: any KernelArgument...) throws {
        guard values.count == argumentTypes.count else {
            throw CLError(status: .invalidKernelArgs, call: "clSetKernelArg(\(name))",
                          detail: "kernel '\(name)' takes \(argumentTypes.count) arguments, got \(values.count)")
        }
        for (index, value) in values.enumerated() { try setArgument(index, value) }
    }

    func checkAllArgumentsSet() throws {
        if let missing = isSet.firstIndex(of: false) {
            throw CLError(status: .invalidKernelArgs, call: "clEnqueueNDRangeKernel(\(name))",
                          detail: "argument \(missing) is not set")
        }
    }
}
