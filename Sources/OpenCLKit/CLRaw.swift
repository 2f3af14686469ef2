import COpenCL
import Synchronization

// Every raw `cl*` call of CellAudit goes through this file. Each wrapper checks the status and
// throws a `CLError` naming the call. This is also the seam for testing error paths without a
// failing device: `CLFaults` can make any named call fail with a chosen status.

/// Deliberate failures of named OpenCL calls, for testing how callers cope with a device that
/// fails at run time. Off unless a test or `CELLAUDIT_OPENCL_FAULT` turns it on.
public enum CLFaults {
    /// Faults for the current task and the synchronous code it runs (tests use this, so tests
    /// running in parallel do not see each other's faults).
    @TaskLocal static var scoped: [String: CLStatus] = [:]
    /// Process-wide faults (the CLI's `CELLAUDIT_OPENCL_FAULT`).
    static let global = Mutex<[String: CLStatus]>([:])

    /// Runs `body` with `call` (a C function name such as `clEnqueueNDRangeKernel`) failing
    /// with `status` every time this task makes it.
    public static func with<R>(call: String, failingWith status: CLStatus, _ body: () throws -> R) rethrows -> R {
        var faults = scoped
        faults[call] = status
        return try $scoped.withValue(faults) { try body() }
    }

    /// Parses `call=CL_NAME[,call=CL_NAME…]` (the format of `CELLAUDIT_OPENCL_FAULT`) and makes
    /// those calls fail for the rest of the process.
    public static func install(spec: String) throws {
        for item in spec.split(separator: ",") {
            let parts = item.split(separator: "=")
            guard parts.count == 2,
                  let code = CLStatus.names.first(where: { $0.value == parts[1] })?.key
            else {
                throw CLError(status: .invalidValue, call: "CELLAUDIT_OPENCL_FAULT",
                              detail: "expected call=CL_STATUS_NAME, got '\(item)'")
            }
            guard calls.contains(String(parts[0])) else {
                throw CLError(status: .invalidValue, call: "CELLAUDIT_OPENCL_FAULT",
                              detail: "'\(parts[0])' is not an OpenCL call CellAudit makes (\(calls.sorted().joined(separator: ", ")))")
            }
            global.withLock { $0[String(parts[0])] = CLStatus(rawValue: code) }
        }
    }

    /// Every OpenCL call CellAudit makes, the names a fault may be injected into.
    public static let calls: Set<String> = [
        "clBuildProgram", "clCreateBuffer", "clCreateCommandQueue", "clCreateContext", "clCreateKernel",
        "clCreateProgramWithSource", "clEnqueueFillBuffer", "clEnqueueNDRangeKernel", "clEnqueueReadBuffer",
        "clEnqueueWriteBuffer", "clFinish", "clGetDeviceIDs", "clGetDeviceInfo", "clGetEventProfilingInfo",
        "clGetKernelInfo", "clGetPlatformIDs", "clGetPlatformInfo", "clGetProgramBuildInfo", "clSetKernelArg",
        "clWaitForEvents",
    ]

    static func check(_ function: String, call: String) throws {
        if let hit = scoped[function] ?? global.withLock({ $0[function] }) {
            throw CLError(status: hit, call: call, detail: "injected fault")
        }
    }
}

enum CLRaw {
    @inline(__always)
    static func check(_ status: cl_int, _ call: String, detail: String? = nil) throws {
        try CLFaults.check(String(call.prefix { $0 != "(" }), call: call)
        if status != CL_SUCCESS { throw CLError(status: CLStatus(rawValue: status), call: call, detail: detail) }
    }

    // MARK: platforms and devices

    static func platformIDs() throws -> [cl_platform_id?] {
        var count: cl_uint = 0
        let status = clGetPlatformIDs(0, nil, &count)
        if status == CLStatus.platformNotFound.rawValue || (status == CL_SUCCESS && count == 0) {
            try CLFaults.check("clGetPlatformIDs", call: "clGetPlatformIDs")
            return []
        }
        try check(status, "clGetPlatformIDs")
        var ids = [cl_platform_id?](repeating: nil, count: Int(count))
        try check(clGetPlatformIDs(count, &ids, nil), "clGetPlatformIDs")
        return ids
    }

    static func platformString(_ id: cl_platform_id?, _ param: Int32) throws -> String {
        var size = 0
        try check(clGetPlatformInfo(id, cl_platform_info(param), 0, nil, &size), "clGetPlatformInfo")
        var bytes = [CChar](repeating: 0, count: max(size, 1))
        try check(clGetPlatformInfo(id, cl_platform_info(param), size, &bytes, nil), "clGetPlatformInfo")
        return decode(bytes)
    }

    static func deviceIDs(_ platform: cl_platform_id?) throws -> [cl_device_id?] {
        var count: cl_uint = 0
        let status = clGetDeviceIDs(platform, cl_device_type(CL_DEVICE_TYPE_ALL), 0, nil, &count)
        if status == CL_DEVICE_NOT_FOUND { return [] }
        try check(status, "clGetDeviceIDs")
        var ids = [cl_device_id?](repeating: nil, count: Int(count))
        try check(clGetDeviceIDs(platform, cl_device_type(CL_DEVICE_TYPE_ALL), count, &ids, nil), "clGetDeviceIDs")
        return ids
    }

    static func deviceString(_ id: cl_device_id?, _ param: Int32) throws -> String {
        var size = 0
        try check(clGetDeviceInfo(id, cl_device_info(param), 0, nil, &size), "clGetDeviceInfo")
        var bytes = [CChar](repeating: 0, count: max(size, 1))
        try check(clGetDeviceInfo(id, cl_device_info(param), size, &bytes, nil), "clGetDeviceInfo")
        return decode(bytes)
    }

    static func deviceValue<T: BitwiseCopyable>(_ id: cl_device_id?, _ param: Int32, as: T.Type) throws -> T {
        var value = [UInt8](repeating: 0, count: MemoryLayout<T>.size)
        try check(clGetDeviceInfo(id, cl_device_info(param), MemoryLayout<T>.size, &value, nil), "clGetDeviceInfo")
        return value.withUnsafeBytes { $0.loadUnaligned(as: T.self) }
    }

    // MARK: context and queue

    static func createContext(_ device: cl_device_id?) throws -> cl_context {
        var status: cl_int = 0
        var dev = device
        let ctx = clCreateContext(nil, 1, &dev, nil, nil, &status)
        try check(status, "clCreateContext")
        guard let ctx else { throw CLError(status: .outOfHostMemory, call: "clCreateContext") }
        return ctx
    }

    static func createQueue(_ ctx: cl_context, _ device: cl_device_id?, profiling: Bool) throws -> cl_command_queue {
        var status: cl_int = 0
        let props = cl_command_queue_properties(profiling ? CL_QUEUE_PROFILING_ENABLE : 0)
        let queue = clCreateCommandQueue(ctx, device, props, &status)
        try check(status, "clCreateCommandQueue")
        guard let queue else { throw CLError(status: .outOfHostMemory, call: "clCreateCommandQueue") }
        return queue
    }

    static func finish(_ queue: cl_command_queue) throws {
        try check(clFinish(queue), "clFinish")
    }

    // MARK: memory

    static func createBuffer(_ ctx: cl_context, flags: cl_mem_flags, bytes: Int) throws -> cl_mem {
        var status: cl_int = 0
        let mem = clCreateBuffer(ctx, flags, bytes, nil, &status)
        try check(status, "clCreateBuffer", detail: "\(bytes) bytes")
        guard let mem else { throw CLError(status: .memObjectAllocationFailure, call: "clCreateBuffer") }
        return mem
    }

    static func write(_ queue: cl_command_queue, _ mem: cl_mem, offset: Int, bytes: Int,
                      from ptr: UnsafeRawPointer) throws -> cl_event? {
        var event: cl_event?
        try check(clEnqueueWriteBuffer(queue, mem, cl_bool(CL_TRUE), offset, bytes, ptr, 0, nil, &event),
                  "clEnqueueWriteBuffer")
        return event
    }

    static func read(_ queue: cl_command_queue, _ mem: cl_mem, offset: Int, bytes: Int,
                     into ptr: UnsafeMutableRawPointer) throws -> cl_event? {
        var event: cl_event?
        try check(clEnqueueReadBuffer(queue, mem, cl_bool(CL_TRUE), offset, bytes, ptr, 0, nil, &event),
                  "clEnqueueReadBuffer")
        return event
    }

    static func fill(_ queue: cl_command_queue, _ mem: cl_mem, pattern: UnsafeRawPointer, patternBytes: Int,
                     bytes: Int) throws -> cl_event? {
        var event: cl_event?
        try check(clEnqueueFillBuffer(queue, mem, pattern, patternBytes, 0, bytes, 0, nil, &event),
                  "clEnqueueFillBuffer")
        return event
    }

    // MARK: programs and kernels

    static func createProgram(_ ctx: cl_context, source: String) throws -> cl_program {
        var status: cl_int = 0
        let program: cl_program? = source.withCString { cstr in
            var ptr: UnsafePointer<CChar>? = cstr
            var length = strlenOf(cstr)
            return clCreateProgramWithSource(ctx, 1, &ptr, &length, &status)
        }
        try check(status, "clCreateProgramWithSource")
        guard let program else { throw CLError(status: .outOfHostMemory, call: "clCreateProgramWithSource") }
        return program
    }

    /// Builds; on failure throws with the build log attached.
    static func build(_ program: cl_program, _ device: cl_device_id?, options: String, name: String) throws {
        var dev = device
        let status = options.withCString { clBuildProgram(program, 1, &dev, $0, nil, nil) }
        do {
            try check(status, "clBuildProgram(\(name))")
        } catch var error as CLError {
            error = CLError(status: error.status, call: error.call, detail: error.detail,
                            buildLog: try? buildLog(program, device))
            throw error
        }
    }

    static func buildLog(_ program: cl_program, _ device: cl_device_id?) throws -> String {
        var size = 0
        let param = cl_program_build_info(CL_PROGRAM_BUILD_LOG)
        try check(clGetProgramBuildInfo(program, device, param, 0, nil, &size), "clGetProgramBuildInfo")
        var bytes = [CChar](repeating: 0, count: max(size, 1))
        try check(clGetProgramBuildInfo(program, device, param, size, &bytes, nil), "clGetProgramBuildInfo")
        return decode(bytes)
    }

    static func createKernel(_ program: cl_program, name: String) throws -> cl_kernel {
        var status: cl_int = 0
        let kernel = clCreateKernel(program, name, &status)
        try check(status, "clCreateKernel(\(name))")
        guard let kernel else { throw CLError(status: .invalidKernelName, call: "clCreateKernel(\(name))") }
        return kernel
    }

    static func kernelArgCount(_ kernel: cl_kernel) throws -> Int {
        var count: cl_uint = 0
        try check(clGetKernelInfo(kernel, cl_kernel_info(CL_KERNEL_NUM_ARGS), MemoryLayout<cl_uint>.size, &count, nil),
                  "clGetKernelInfo")
        return Int(count)
    }

    /// The declared type name of argument `index` (e.g. `float*`), or nil where the
    /// implementation keeps no argument info.
    static func kernelArgTypeName(_ kernel: cl_kernel, _ index: Int) -> String? {
        var size = 0
        let param = cl_kernel_arg_info(CL_KERNEL_ARG_TYPE_NAME)
        guard clGetKernelArgInfo(kernel, cl_uint(index), param, 0, nil, &size) == CL_SUCCESS else { return nil }
        var bytes = [CChar](repeating: 0, count: max(size, 1))
        guard clGetKernelArgInfo(kernel, cl_uint(index), param, size, &bytes, nil) == CL_SUCCESS else { return nil }
        return decode(bytes)
    }

    static func kernelArgIsLocal(_ kernel: cl_kernel, _ index: Int) -> Bool {
        var qualifier: cl_kernel_arg_address_qualifier = 0
        let param = cl_kernel_arg_info(CL_KERNEL_ARG_ADDRESS_QUALIFIER)
        guard clGetKernelArgInfo(kernel, cl_uint(index), param, MemoryLayout.size(ofValue: qualifier),
                                 &qualifier, nil) == CL_SUCCESS else { return false }
        return qualifier == cl_kernel_arg_address_qualifier(CL_KERNEL_ARG_ADDRESS_LOCAL)
    }

    static func setArg(_ kernel: cl_kernel, _ index: Int, bytes: Int, _ value: UnsafeRawPointer?, name: String) throws {
        try check(clSetKernelArg(kernel, cl_uint(index), bytes, value), "clSetKernelArg(\(name), \(index))")
    }

    static func enqueueKernel(_ queue: cl_command_queue, _ kernel: cl_kernel, global: [Int], local: [Int]?,
                              name: String) throws -> cl_event? {
        // An injected fault stops the launch before it reaches the device, as a real failure would.
        try CLFaults.check("clEnqueueNDRangeKernel", call: "clEnqueueNDRangeKernel(\(name))")
        var event: cl_event?
        var globalSizes = global
        var status: cl_int
        if var localSizes = local {
            status = clEnqueueNDRangeKernel(queue, kernel, cl_uint(global.count), nil, &globalSizes, &localSizes,
                                            0, nil, &event)
        } else {
            status = clEnqueueNDRangeKernel(queue, kernel, cl_uint(global.count), nil, &globalSizes, nil,
                                            0, nil, &event)
        }
        try check(status, "clEnqueueNDRangeKernel(\(name))")
        return event
    }

    // MARK: events

    static func wait(_ event: cl_event) throws {
        var e: cl_event? = event
        try check(clWaitForEvents(1, &e), "clWaitForEvents")
    }

    static func profile(_ event: cl_event, _ param: Int32) throws -> UInt64 {
        var value: cl_ulong = 0
        try check(clGetEventProfilingInfo(event, cl_profiling_info(param), MemoryLayout<cl_ulong>.size, &value, nil),
                  "clGetEventProfilingInfo")
        return value
    }

    // MARK: release

    static func release(context: cl_context) { clReleaseContext(context) }
    static func release(queue: cl_command_queue) { clReleaseCommandQueue(queue) }
    static func release(mem: cl_mem) { clReleaseMemObject(mem) }
    static func release(program: cl_program) { clReleaseProgram(program) }
    static func release(kernel: cl_kernel) { clReleaseKernel(kernel) }
    static func release(event: cl_event) { clReleaseEvent(event) }

    private static func decode(_ bytes: [CChar]) -> String {
        let end = bytes.firstIndex(of: 0) ?? bytes.count
        return String(decoding: bytes[..<end].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            .trimmingCharacters(in: " \n\t")
    }

    private static func strlenOf(_ p: UnsafePointer<CChar>) -> Int {
        var n = 0
        while p[n] != 0 { n += 1 }
        return n
    }
}
