import COpenCL

/// An OpenCL status code as a small typed value. `name` is the C constant's spelling.
public struct CLStatus: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    public var name: String { Self.names[rawValue] ?? "CL_UNKNOWN_ERROR(\(rawValue))" }
    public var description: String { name }

    public static let success = CLStatus(rawValue: CL_SUCCESS)
    /// No device of the requested kind exists.
    public static let deviceNotFound = CLStatus(rawValue: CL_DEVICE_NOT_FOUND)
    public static let outOfResources = CLStatus(rawValue: CL_OUT_OF_RESOURCES)
    public static let outOfHostMemory = CLStatus(rawValue: CL_OUT_OF_HOST_MEMORY)
    public static let memObjectAllocationFailure = CLStatus(rawValue: CL_MEM_OBJECT_ALLOCATION_FAILURE)
    public static let buildProgramFailure = CLStatus(rawValue: CL_BUILD_PROGRAM_FAILURE)
    public static let invalidValue = CLStatus(rawValue: CL_INVALID_VALUE)
    public static let invalidBufferSize = CLStatus(rawValue: CL_INVALID_BUFFER_SIZE)
    public static let invalidKernelName = CLStatus(rawValue: CL_INVALID_KERNEL_NAME)
    public static let invalidArgIndex = CLStatus(rawValue: CL_INVALID_ARG_INDEX)
    public static let invalidArgValue = CLStatus(rawValue: CL_INVALID_ARG_VALUE)
    public static let invalidArgSize = CLStatus(rawValue: CL_INVALID_ARG_SIZE)
    public static let invalidKernelArgs = CLStatus(rawValue: CL_INVALID_KERNEL_ARGS)
    public static let invalidWorkGroupSize = CLStatus(rawValue: CL_INVALID_WORK_GROUP_SIZE)
    public static let invalidOperation = CLStatus(rawValue: CL_INVALID_OPERATION)
    /// The ICD loader found no platform (cl_khr_icd's CL_PLATFORM_NOT_FOUND_KHR).
    public static let platformNotFound = CLStatus(rawValue: -1001)

    static let names: [Int32: String] = [
        0: "CL_SUCCESS", -1: "CL_DEVICE_NOT_FOUND", -2: "CL_DEVICE_NOT_AVAILABLE",
        -3: "CL_COMPILER_NOT_AVAILABLE", -4: "CL_MEM_OBJECT_ALLOCATION_FAILURE",
        -5: "CL_OUT_OF_RESOURCES", -6: "CL_OUT_OF_HOST_MEMORY",
        -7: "CL_PROFILING_INFO_NOT_AVAILABLE", -8: "CL_MEM_COPY_OVERLAP", -9: "CL_IMAGE_FORMAT_MISMATCH",
        -10: "CL_IMAGE_FORMAT_NOT_SUPPORTED", -11: "CL_BUILD_PROGRAM_FAILURE", -12: "CL_MAP_FAILURE",
        -13: "CL_MISALIGNED_SUB_BUFFER_OFFSET", -14: "CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST",
        -15: "CL_COMPILE_PROGRAM_FAILURE", -16: "CL_LINKER_NOT_AVAILABLE", -17: "CL_LINK_PROGRAM_FAILURE",
        -18: "CL_DEVICE_PARTITION_FAILED", -19: "CL_KERNEL_ARG_INFO_NOT_AVAILABLE",
        -30: "CL_INVALID_VALUE", -31: "CL_INVALID_DEVICE_TYPE", -32: "CL_INVALID_PLATFORM",
        -33: "CL_INVALID_DEVICE", -34: "CL_INVALID_CONTEXT", -35: "CL_INVALID_QUEUE_PROPERTIES",
        -36: "CL_INVALID_COMMAND_QUEUE", -37: "CL_INVALID_HOST_PTR", -38: "CL_INVALID_MEM_OBJECT",
        -39: "CL_INVALID_IMAGE_FORMAT_DESCRIPTOR", -40: "CL_INVALID_IMAGE_SIZE", -41: "CL_INVALID_SAMPLER",
        -42: "CL_INVALID_BINARY", -43: "CL_INVALID_BUILD_OPTIONS", -44: "CL_INVALID_PROGRAM",
        -45: "CL_INVALID_PROGRAM_EXECUTABLE", -46: "CL_INVALID_KERNEL_NAME",
        -47: "CL_INVALID_KERNEL_DEFINITION", -48: "CL_INVALID_KERNEL", -49: "CL_INVALID_ARG_INDEX",
        -50: "CL_INVALID_ARG_VALUE", -51: "CL_INVALID_ARG_SIZE", -52: "CL_INVALID_KERNEL_ARGS",
        -53: "CL_INVALID_WORK_DIMENSION", -54: "CL_INVALID_WORK_GROUP_SIZE",
        -55: "CL_INVALID_WORK_ITEM_SIZE", -56: "CL_INVALID_GLOBAL_OFFSET", -57: "CL_INVALID_EVENT_WAIT_LIST",
        -58: "CL_INVALID_EVENT", -59: "CL_INVALID_OPERATION", -60: "CL_INVALID_GL_OBJECT",
        -61: "CL_INVALID_BUFFER_SIZE", -62: "CL_INVALID_MIP_LEVEL", -63: "CL_INVALID_GLOBAL_WORK_SIZE",
        -64: "CL_INVALID_PROPERTY", -65: "CL_INVALID_IMAGE_DESCRIPTOR", -66: "CL_INVALID_COMPILER_OPTIONS",
        -67: "CL_INVALID_LINKER_OPTIONS", -68: "CL_INVALID_DEVICE_PARTITION_COUNT",
        -1001: "CL_PLATFORM_NOT_FOUND_KHR",
    ]
}

/// The one error type of OpenCLKit: which call failed, with which OpenCL status, and (for a
/// failed program build) the compiler's log.
public struct CLError: Error, Sendable, CustomStringConvertible {
    public let status: CLStatus
    /// The C call (or wrapper check) that failed, e.g. `clEnqueueNDRangeKernel(lstm_step)`.
    public let call: String
    /// A sentence of context where the status alone does not explain the problem.
    public let detail: String?
    /// The full build log of a failed `clBuildProgram`.
    public let buildLog: String?

    public init(status: CLStatus, call: String, detail: String? = nil, buildLog: String? = nil) {
        self.status = status
        self.call = call
        self.detail = detail
        self.buildLog = buildLog
    }

    /// One line: status, call, detail. The build log's first error line is folded in.
    public var description: String {
        var line = "\(call) failed with \(status.name)"
        if let detail { line += ": \(detail)" }
        if let first = firstCompilerError { line += ": \(first)" }
        return line
    }

    /// The first compiler error of the build log as `file:line:col: error: message`.
    /// Compilers differ (clang writes `f:l:c: error: m`, PoCL `error: f:l:c: m`); both are
    /// brought to clang's form.
    public var firstCompilerError: String? {
        guard let buildLog else { return nil }
        for raw in buildLog.split(separator: "\n") {
            var line = raw.trimmingCharacters(in: " \t")
            guard line.contains("error") else { continue }
            if line.hasPrefix("error: ") {
                line.removeFirst("error: ".count)
                let parts = line.split(separator: ":", maxSplits: 3, omittingEmptySubsequences: false)
                if parts.count == 4, Int(parts[1]) != nil, Int(parts[2]) != nil {
                    return "\(parts[0]):\(parts[1]):\(parts[2]): error:\(parts[3])"
                }
                return "error: " + line
            }
            return line
        }
        return nil
    }
}

extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let c = s.first, set.contains(c) { s = s.dropFirst() }
        while let c = s.last, set.contains(c) { s = s.dropLast() }
        return String(s)
    }
}
