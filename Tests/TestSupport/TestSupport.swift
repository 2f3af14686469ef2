import CellAuditCore
import CellAuditOpenCL
import Foundation
import OpenCLKit

/// Where OpenCL tests run. With `CELLAUDIT_REQUIRE_OPENCL=1` (CI) they always run, so a missing
/// device fails them; otherwise they are skipped where no device exists.
public enum OpenCLTestSupport {
    public static var required: Bool { ProcessInfo.processInfo.environment["CELLAUDIT_REQUIRE_OPENCL"] == "1" }

    public static let devices: [Device] = {
        if ProcessInfo.processInfo.environment["POCL_CACHE_DIR"] == nil { setenv("POCL_CACHE_DIR", OpenCL.defaultPoclCacheDirectory(), 0) }
        return (try? OpenCL.devices()) ?? []
    }()

    /// Whether OpenCL tests should run at all.
    public static var enabled: Bool { required || !devices.isEmpty }

    /// The device tests use (`CELLAUDIT_TEST_DEVICE` picks; default the first).
    public static func device() throws -> Device {
        let index = Int(ProcessInfo.processInfo.environment["CELLAUDIT_TEST_DEVICE"] ?? "0") ?? 0
        guard devices.indices.contains(index) else {
            throw CLError(status: .deviceNotFound, call: "test setup",
                          detail: "no OpenCL device \(index) (found \(devices.count)); CELLAUDIT_REQUIRE_OPENCL=\(required ? 1 : 0)")
        }
        return devices[index]
    }

    /// The backends a parity test runs on: a CPU backend for each of `cpuThreads`, and the
    /// OpenCL backend on the test device where OpenCL tests run.
    public static func backends(cpuThreads: [Int] = [2]) throws -> [any ComputeBackend] {
        cpuThreads.map { CPUBackend(threads: $0) } + (enabled ? [try OpenCLBackend(device: try device())] : [])
    }
}

/// Random test inputs from a seed (never zeros).
public enum RandomInputs {
    public static func floats(_ count: Int, seed: UInt64, in range: ClosedRange<Float> = -1...1) -> [Float] {
        var rng = SeededGenerator(seed: seed)
        return (0..<count).map { _ in rng.uniform(range.lowerBound, range.upperBound) }
    }
}

/// Runs the built `cellaudit` binary.
public enum CLI {
    public struct Result: Sendable {
        public var exitCode: Int32
        public var stdout: String
        public var stderr: String
    }

    /// The products folder holding the test bundle also holds the `cellaudit` executable.
    public static var binary: URL {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("cellaudit")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            dir.deleteLastPathComponent()
        }
        return Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("cellaudit")
    }

    public static func run(_ arguments: [String], environment: [String: String] = [:],
                           launcher: [String] = [], cwd: URL? = nil) throws -> Result {
        let process = Process()
        if launcher.isEmpty {
            process.executableURL = binary
            process.arguments = arguments
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = launcher + [binary.path] + arguments
        }
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        if let cwd { process.currentDirectoryURL = cwd }
        let outPipe = Pipe(), errPipe = Pipe()
        process.standardOutput = outPipe
        process.standardError = errPipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Drain both pipes while the process runs, so a chatty child cannot block.
        let errData = LockedData()
        let drain = Thread { errData.set(errPipe.fileHandleForReading.readDataToEndOfFile()) }
        drain.start()
        let out = outPipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        while !errData.done { usleep(1000) }
        return Result(exitCode: process.terminationStatus,
                      stdout: String(decoding: out, as: UTF8.self),
                      stderr: String(decoding: errData.value, as: UTF8.self))
    }
}

final class LockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    private var finished = false
    func set(_ d: Data) { lock.lock(); data = d; finished = true; lock.unlock() }
    var done: Bool { lock.lock(); defer { lock.unlock() }; return finished }
    var value: Data { lock.lock(); defer { lock.unlock() }; return data }
}

/// The trained fixtures made by Tools/train_fixtures.py.
public enum Fixtures {
    public static let directory: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")
    public static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    public static let digitsModels = ["digits_lstm8", "digits_lstm16", "digits_lstm32", "digits_lstm64",
                                      "digits_lstm128", "digits_lstm32x2", "digits_lstm16_keras", "digits_lstm16_onnx",
                                      "digits_gru16", "digits_gru16_keras", "digits_gru16_onnx",
                                      "digits_gru16_keras_reset_before", "digits_gru16_onnx_lbr0",
                                      "digits_rnn16", "digits_rnn16_keras", "digits_rnn16_onnx"]
    public static let flipflopModels = ["flipflop_lstm64", "flipflop_gru32", "flipflop_rnn32"]

    /// A scratch folder for one test.
    public static func scratch(_ name: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cellaudit-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// A labeled dataset in a scratch folder: the `inputs` of fixture `data` (a safetensors file)
    /// with, as labels, the class its reference outputs `outputs` [N × classes] pick. Returns its path.
    public static func labeled(_ data: String, outputs key: String, classes k: Int) throws -> String {
        let file = try SafeTensorsFile(path: path(data))
        let outputs = try file.floats(key)
        let labels = (0..<(outputs.count / k)).map { n in (0..<k).max { outputs[n * k + $0] < outputs[n * k + $1] }! }
        let out = try scratch("labeled").appendingPathComponent("labeled.safetensors").path
        var writer = SafeTensorsWriter()
        try writer.add("inputs", floats: try file.floats("inputs"), shape: try file.info("inputs").shape)
        try writer.add("labels", int64s: labels, shape: [labels.count])
        try writer.write(to: out)
        return out
    }
}
