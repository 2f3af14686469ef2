import OpenCLKit
import Testing
import TestSupport

/// A tiny kernel family for exercising the wrapper itself.
let wrapperSource = """
__kernel void scale(__global const float* in, __global float* out, const float factor, const int n) {
    int i = get_global_id(0);
    if (i < n) out[i] = in[i] * factor;
}
__kernel void copy_int(__global const int* in, __global int* out, const int n) {
    int i = get_global_id(0);
    if (i < n) out[i] = in[i];
}
"""

@Suite(.enabled(if: OpenCLTestSupport.enabled, "no OpenCL device (set CELLAUDIT_REQUIRE_OPENCL=1 to fail instead)"),
       .serialized)
struct OpenCLKitTests {
    @Test func listsDevicesWithSaneProperties() throws {
        let platforms = try OpenCL.platforms()
        #expect(!platforms.isEmpty)
        let devices = try OpenCL.devices()
        #expect(!devices.isEmpty)
        for (position, device) in devices.enumerated() {
            let info = device.info
            #expect(device.index == position)
            #expect(!info.name.isEmpty)
            #expect(info.computeUnits > 0)
            #expect(info.globalMemoryBytes > 0)
            #expect(info.maxAllocationBytes > 0 && info.maxAllocationBytes <= info.globalMemoryBytes)
            #expect(info.maxWorkGroupSize > 0)
            #expect(info.openCLCVersion.hasPrefix("OpenCL C"))
        }
    }

    /// Concurrent enumerations all see the same devices (PoCL answered an empty list to a thread
    /// that asked while another was setting its devices up, until enumeration was serialised).
    @Test func concurrentEnumerationsAgree() async throws {
        let counts = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<16 { group.addTask { try OpenCL.devices().count } }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(counts.count == 16 && Set(counts).count == 1 && counts[0] > 0, "device counts \(counts)")
    }

    @Test(arguments: [1, 7, 93, 4099])
    func bufferRoundTripOfRandomData(count: Int) throws {
        let context = try Context(device: try OpenCLTestSupport.device())
        let queue = try context.makeQueue()
        let floats = RandomInputs.floats(count, seed: UInt64(count))
        let fbuf = try context.buffer(Float.self, count: count)
        try queue.write(fbuf, from: floats)
        #expect(try queue.read(fbuf) == floats)

        let ints = floats.map { Int32($0 * 1e6) }
        let ibuf = try context.buffer(Int32.self, count: count)
        try queue.write(ibuf, from: ints)
        #expect(try queue.read(ibuf) == ints)

        // Partial reads and writes address the right elements.
        if count > 2 {
            try queue.write(fbuf, from: [42, 43], offset: count - 2)
            #expect(try queue.read(fbuf, offset: count - 2) == [42, 43])
            #expect(try queue.read(fbuf, count: count - 2) == Array(floats.prefix(count - 2)))
        }
        #expect(throws: CLError.self) { try queue.write(fbuf, from: floats, offset: 1) }
    }

    @Test func syntaxErrorThrowsWithBuildLogNamingFileAndLine() throws {
        let context = try Context(device: try OpenCLTestSupport.device())
        let broken = "__kernel void k(__global float* x) {\n    x[0] = 1.0f\n    x[1] = ;\n}\n"
        let error = try #require(throws: CLError.self) {
            try context.program(name: "broken.cl", source: broken)
        }
        #expect(error.status == .buildProgramFailure)
        let log = try #require(error.buildLog)
        #expect(log.contains("broken.cl:"))
        let first = try #require(error.firstCompilerError)
        #expect(first.hasPrefix("broken.cl:2:") || first.hasPrefix("broken.cl:3:"), "\(log)")
        #expect(error.description.contains("CL_BUILD_PROGRAM_FAILURE"))
        #expect(!error.description.contains("\n"))
    }

    @Test func bufferMeterTracksLiveAndPeakBytes() throws {
        let context = try Context(device: try OpenCLTestSupport.device())
        #expect(context.bufferMeter.liveBytes == 0)
        do {
            let a = try context.buffer(Float.self, count: 1000)
            let b = try context.buffer(Int32.self, count: 24)
            #expect(context.bufferMeter.liveBytes == 4000 + 96 && a.count + b.count == 1024)
        }
        #expect(context.bufferMeter.liveBytes == 0)
        #expect(context.bufferMeter.peakBytes == 4096)
        context.bufferMeter.resetPeak()
        #expect(context.bufferMeter.peakBytes == 0)
    }

    @Test func unknownKernelNameIsTyped() throws {
        let context = try Context(device: try OpenCLTestSupport.device())
        let program = try context.program(name: "wrapper.cl", source: wrapperSource)
        let error = try #require(throws: CLError.self) { try program.kernel(named: "no_such_kernel") }
        #expect(error.status == .invalidKernelName)
        #expect(error.call.contains("no_such_kernel"))
    }

    @Test func zeroSizedBufferIsTyped() throws {
        let context = try Context(device: try OpenCLTestSupport.device())
        let error = try #require(throws: CLError.self) { try context.buffer(Float.self, count: 0) }
        #expect(error.status == .invalidBufferSize)
        let huge = try #require(throws: CLError.self) { try context.buffer(Float.self, count: Int.max / 2) }
        #expect(huge.status == .invalidBufferSize)
    }

    @Test func wrongArgumentTypesAreTyped() throws {
        let context = try Context(device: try OpenCLTestSupport.device())
        let program = try context.program(name: "wrapper.cl", source: wrapperSource)
        let kernel = try program.kernel(named: "scale")
        #expect(kernel.argumentTypes == ["float*", "float*", "float", "int"])
        let ints = try context.buffer(Int32.self, count: 4)
        let floats = try context.buffer(Float.self, count: 4)
        for attempt in [{ try kernel.setArgument(0, ints) },
                        { try kernel.setArgument(2, Int32(3)) },
                        { try kernel.setArgument(3, Float(3)) },
                        { try kernel.setArgument(1, LocalMemory<Float>(count: 4)) }] {
            let error = try #require(throws: CLError.self, performing: attempt)
            #expect(error.status == .invalidArgValue)
        }
        let index = try #require(throws: CLError.self) { try kernel.setArgument(4, floats) }
        #expect(index.status == .invalidArgIndex)
        // A launch with an argument left unset is refused before it reaches the device.
        try kernel.setArgument(0, floats)
        let unset = try #require(throws: CLError.self) { try context.makeQueue().launch(kernel, global: [4]) }
        #expect(unset.status == .invalidKernelArgs)
    }

    @Test(arguments: [1, 7, 93, 144, 4096])
    func canaryPaddingPastBufferIsUntouched(count: Int) throws {
        let context = try Context(device: try OpenCLTestSupport.device())
        let queue = try context.makeQueue()
        let program = try context.program(name: "wrapper.cl", source: wrapperSource)
        let kernel = try program.kernel(named: "scale")
        let padding = 37
        let canary: Float = -12345.5
        let input = RandomInputs.floats(count + padding, seed: 9)
        let inBuf = try context.buffer(Float.self, count: count + padding)
        let outBuf = try context.buffer(Float.self, count: count + padding)
        try queue.write(inBuf, from: input)
        try queue.fill(outBuf, with: canary)
        try kernel.setArguments(inBuf, outBuf, Float(2.5), Int32(count))
        // Round the launch up to a multiple of 64 so the guard in the kernel matters.
        let event = try queue.launch(kernel, global: [(count + 63) / 64 * 64], local: [64])
        #expect(try event.durationNanoseconds() >= 0)
        let out = try queue.read(outBuf)
        for i in 0..<count { #expect(out[i] == input[i] * 2.5) }
        #expect(out[count...].allSatisfy { $0 == canary })
    }

    @Test func programsAreCachedPerContextAndOptions() throws {
        let context = try Context(device: try OpenCLTestSupport.device())
        let a = try context.program(name: "wrapper.cl", source: wrapperSource)
        let b = try context.program(name: "wrapper.cl", source: wrapperSource)
        let c = try context.program(name: "wrapper.cl", source: wrapperSource, options: ["-DFOO=1"])
        #expect(a === b)
        #expect(a !== c)
        #expect(context.cachedProgramCount == 2)
        let other = try Context(device: try OpenCLTestSupport.device())
        #expect(try other.program(name: "wrapper.cl", source: wrapperSource) !== a)
    }

    @Test func injectedFaultSurfacesAsTypedErrorThenClears() throws {
        let context = try Context(device: try OpenCLTestSupport.device())
        let queue = try context.makeQueue()
        let kernel = try context.program(name: "wrapper.cl", source: wrapperSource).kernel(named: "copy_int")
        let a = try context.buffer(Int32.self, count: 8), b = try context.buffer(Int32.self, count: 8)
        try kernel.setArguments(a, b, Int32(8))
        let error = try CLFaults.with(call: "clEnqueueNDRangeKernel", failingWith: .outOfResources) {
            try #require(throws: CLError.self) { try queue.launch(kernel, global: [8]) }
        }
        #expect(error.status == .outOfResources)
        #expect(error.description.hasPrefix("clEnqueueNDRangeKernel(copy_int) failed with CL_OUT_OF_RESOURCES"))
        try queue.launch(kernel, global: [8]).wait()
    }
}

@Test func statusNamesAndFaultSpecParsing() throws {
    #expect(CLStatus.outOfResources.name == "CL_OUT_OF_RESOURCES")
    #expect(CLStatus(rawValue: -9999).name == "CL_UNKNOWN_ERROR(-9999)")
    #expect(throws: CLError.self) { try CLFaults.install(spec: "clFinish=NOT_A_CODE") }
    #expect(throws: CLError.self) { try CLFaults.install(spec: "garbage") }
}
