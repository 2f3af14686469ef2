import COpenCL
import Synchronization

/// The kind of an OpenCL device, as CL_DEVICE_TYPE reports it.
public enum DeviceType: String, Sendable, Codable {
    case cpu, gpu, accelerator, custom, unknown

    init(bits: cl_device_type) {
        if bits & cl_device_type(CL_DEVICE_TYPE_GPU) != 0 { self = .gpu }
        else if bits & cl_device_type(CL_DEVICE_TYPE_ACCELERATOR) != 0 { self = .accelerator }
        else if bits & cl_device_type(CL_DEVICE_TYPE_CPU) != 0 { self = .cpu }
        else if bits & cl_device_type(CL_DEVICE_TYPE_CUSTOM) != 0 { self = .custom }
        else { self = .unknown }
    }
}

/// What a device says about itself; a plain value, safe to print and encode.
public struct DeviceInfo: Sendable, Codable, Equatable {
    public var name: String
    public var vendor: String
    public var type: DeviceType
    public var platformName: String
    public var deviceVersion: String
    public var driverVersion: String
    public var openCLCVersion: String
    public var computeUnits: Int
    public var globalMemoryBytes: UInt64
    public var maxAllocationBytes: UInt64
    public var localMemoryBytes: UInt64
    public var maxWorkGroupSize: Int
    public var maxClockMHz: Int
    public var supportsFP64: Bool
    /// Floats per native SIMD vector (CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT): 16 on AVX-512 CPUs
    /// under PoCL, 8 with AVX2, usually 1 on GPUs.
    public var nativeFloatVectorWidth: Int
}

/// One OpenCL device. A root device id needs no reference counting.
public struct Device: @unchecked Sendable {
    let id: cl_device_id?
    public let info: DeviceInfo
    /// Index of this device in `OpenCL.devices()` (the number `--device N` takes).
    public let index: Int

    init(id: cl_device_id?, platformName: String, index: Int) throws {
        self.id = id
        self.index = index
        let fp64Config = try CLRaw.deviceValue(id, CL_DEVICE_DOUBLE_FP_CONFIG, as: cl_device_fp_config.self)
        info = DeviceInfo(
            name: try CLRaw.deviceString(id, CL_DEVICE_NAME),
            vendor: try CLRaw.deviceString(id, CL_DEVICE_VENDOR),
            type: DeviceType(bits: try CLRaw.deviceValue(id, CL_DEVICE_TYPE, as: cl_device_type.self)),
            platformName: platformName,
            deviceVersion: try CLRaw.deviceString(id, CL_DEVICE_VERSION),
            driverVersion: try CLRaw.deviceString(id, CL_DRIVER_VERSION),
            openCLCVersion: try CLRaw.deviceString(id, CL_DEVICE_OPENCL_C_VERSION),
            computeUnits: Int(try CLRaw.deviceValue(id, CL_DEVICE_MAX_COMPUTE_UNITS, as: cl_uint.self)),
            globalMemoryBytes: try CLRaw.deviceValue(id, CL_DEVICE_GLOBAL_MEM_SIZE, as: cl_ulong.self),
            maxAllocationBytes: try CLRaw.deviceValue(id, CL_DEVICE_MAX_MEM_ALLOC_SIZE, as: cl_ulong.self),
            localMemoryBytes: try CLRaw.deviceValue(id, CL_DEVICE_LOCAL_MEM_SIZE, as: cl_ulong.self),
            maxWorkGroupSize: try CLRaw.deviceValue(id, CL_DEVICE_MAX_WORK_GROUP_SIZE, as: Int.self),
            maxClockMHz: Int(try CLRaw.deviceValue(id, CL_DEVICE_MAX_CLOCK_FREQUENCY, as: cl_uint.self)),
            supportsFP64: fp64Config != 0,
            nativeFloatVectorWidth: Int(try CLRaw.deviceValue(id, CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT, as: cl_uint.self))
        )
    }
}

/// One OpenCL platform (an installed driver) and its devices.
public struct Platform: Sendable {
    public let name: String
    public let vendor: String
    public let version: String
    public let devices: [Device]
}

public enum OpenCL {
    /// PoCL sets its devices up on the first enumeration and answers CL_DEVICE_NOT_FOUND to a
    /// thread that enumerates meanwhile (seen here as an empty device list in parallel tests;
    /// cogciprocate/ocl#189 reports the same), so enumeration is serialised process-wide.
    private static let enumeration = Mutex(())

    /// Every platform the ICD loader finds, with its devices. No platform installed is not an
    /// error: the list is empty.
    public static func platforms() throws -> [Platform] {
        try enumeration.withLock { _ in try enumerate() }
    }

    private static func enumerate() throws -> [Platform] {
        var next = 0
        return try CLRaw.platformIDs().map { pid in
            let name = try CLRaw.platformString(pid, CL_PLATFORM_NAME)
            let devices = try CLRaw.deviceIDs(pid).map { did in
                defer { next += 1 }
                return try Device(id: did, platformName: name, index: next)
            }
            return Platform(name: name,
                            vendor: try CLRaw.platformString(pid, CL_PLATFORM_VENDOR),
                            version: try CLRaw.platformString(pid, CL_PLATFORM_VERSION),
                            devices: devices)
        }
    }

    /// All devices of all platforms, numbered in platform order.
    public static func devices() throws -> [Device] {
        try platforms().flatMap(\.devices)
    }
}
