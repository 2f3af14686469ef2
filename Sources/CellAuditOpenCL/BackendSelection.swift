import CellAuditCore
import Foundation
import OpenCLKit
import Synchronization

/// How the user asks for a backend: `--backend` or `CELLAUDIT_BACKEND`.
public enum BackendChoice: String, Sendable, CaseIterable {
    case cpu, opencl, auto

    /// The flag wins over the environment; neither means `auto`.
    public static func resolve(flag: String?, environment: [String: String]) throws -> BackendChoice {
        let (raw, source) = flag.map { ($0, "--backend") }
            ?? environment["CELLAUDIT_BACKEND"].map { ($0, "CELLAUDIT_BACKEND") } ?? ("auto", "default")
        guard let choice = BackendChoice(rawValue: raw.lowercased()) else {
            throw BackendError.badChoice("\(source) must be cpu, opencl or auto, got '\(raw)'")
        }
        return choice
    }
}

public enum BackendError: Error, CustomStringConvertible {
    case badChoice(String)
    case unavailable(String)
    public var description: String {
        switch self {
        case .badChoice(let s): s
        case .unavailable(let s): s
        }
    }
}

/// What `auto` picks, and why, in words.
public struct AutoDecision: Sendable {
    public var device: Device?
    /// Run the full forward (eval, network mode, ablation) on the Swift path even so.
    public var forwardOnCPU: Bool = false
    public var reason: String
}

public enum BackendSelection {
    /// `auto`'s rule: an OpenCL GPU or accelerator if there is one (the one with the most
    /// global memory) for everything. On a machine whose only OpenCL devices are CPUs (PoCL) it
    /// goes by what measured fastest there (docs/METHOD.md, "Backend choice"):
    /// - a binary built for this CPU (`swiftBuiltForThisCPU`, what `Tools/cellaudit.sh` builds)
    ///   runs everything on the Swift path: its response engine measured 1.25–1.6× PoCL's kernels
    ///   on an AMD EPYC (AVX2) and level with them on an Intel Xeon (AVX-512), its forward 9×
    ///   PoCL's tiled forward, and it does not pay PoCL's start (about 0.1 s, most of a small job);
    /// - a baseline build (SSE2, `swift build -c release`) runs the response kernels on PoCL (3×
    ///   its Swift path there) and the full forward on the Swift path.
    /// No device: cpu.
    public static func autoDecision(devices: [Device], swiftBuiltForThisCPU: Bool = CPUBackend.builtForThisCPU) -> AutoDecision {
        let accelerated = devices.filter { $0.info.type == .gpu || $0.info.type == .accelerator }
        if let best = accelerated.max(by: { $0.info.globalMemoryBytes < $1.info.globalMemoryBytes }) {
            return AutoDecision(device: best, reason: "OpenCL \(best.info.type.rawValue) found")
        }
        if let cpu = devices.filter({ $0.info.type == .cpu }).max(by: { $0.info.computeUnits < $1.info.computeUnits }) {
            if swiftBuiltForThisCPU {
                return AutoDecision(device: nil,
                                    reason: "only OpenCL CPU devices found, and this build's Swift path (built for this CPU) is as fast as them or faster on every workload and starts without them")
            }
            return AutoDecision(device: cpu, forwardOnCPU: true,
                                reason: "only OpenCL CPU devices found: response kernels on device \(cpu.index) (faster than this baseline build's Swift path; Tools/cellaudit.sh builds one for this CPU), full forward on the Swift path (OpenBLAS, faster than the tiled forward kernel there)")
        }
        return AutoDecision(device: nil, reason: "no OpenCL device found")
    }

    /// The backend for `choice`. `auto` never fails for lack of OpenCL: it warns once through
    /// `warn` and uses the CPU backend, also when the device fails later, at run time.
    /// - Parameter poclCacheDirectory: the `POCL_CACHE_DIR` the caller runs with, to say why PoCL
    ///   shows no device when that is the reason.
    /// - Parameter threads: host threads of every backend made (the CPU backend's workers, an
    ///   OpenCL backend's host-side work); the CLI passes `CELLAUDIT_THREADS` here.
    public static func make(_ choice: BackendChoice, deviceIndex: Int? = nil, settings: KernelSettings = KernelSettings(),
                            threads: Int = Parallelism.cores, poclCacheDirectory: String? = nil,
                            warn: @escaping @Sendable (String) -> Void) throws -> any ComputeBackend {
        switch choice {
        case .cpu:
            return CPUBackend(threads: threads)
        case .opencl:
            let devices: [Device]
            do { devices = try OpenCL.devices() } catch {
                throw BackendError.unavailable("--backend opencl: cannot list OpenCL devices: \(error)")
            }
            guard !devices.isEmpty else {
                if let problem = OpenCL.poclCacheProblem(directory: poclCacheDirectory) { throw BackendError.unavailable("--backend opencl: \(problem)") }
                throw BackendError.unavailable("--backend opencl: no OpenCL device found (install an OpenCL driver such as pocl-opencl-icd, or use --backend cpu)")
            }
            let index = deviceIndex ?? autoDecision(devices: devices).device?.index ?? 0
            guard devices.indices.contains(index) else {
                throw BackendError.unavailable("--device \(index): \(deviceCount(devices.count)) (0…\(devices.count - 1)); see `cellaudit devices`")
            }
            do { return try OpenCLBackend(device: devices[index], settings: settings, hostThreads: threads) } catch {
                throw BackendError.unavailable("--backend opencl: device \(index) (\(devices[index].info.name)) failed: \(error)")
            }
        case .auto:
            let devices: [Device]
            do { devices = try OpenCL.devices() } catch {
                warn("warning: OpenCL unavailable (\(error)); using the cpu backend")
                return CPUBackend(threads: threads)
            }
            var decision = autoDecision(devices: devices)
            if let deviceIndex {
                guard devices.indices.contains(deviceIndex) else {
                    throw BackendError.unavailable("--device \(deviceIndex): \(deviceCount(devices.count)); see `cellaudit devices`")
                }
                decision = AutoDecision(device: devices[deviceIndex], forwardOnCPU: devices[deviceIndex].info.type == .cpu, reason: "chosen")
            }
            guard let device = decision.device else {
                if let problem = OpenCL.poclCacheProblem(directory: poclCacheDirectory) { warn("warning: \(problem); using the cpu backend") }
                return CPUBackend(threads: threads)
            }
            do {
                let opencl = try OpenCLBackend(device: device, settings: settings, hostThreads: threads)
                let primary: any ComputeBackend = decision.forwardOnCPU ? RoutedBackend(responses: opencl, forward: CPUBackend(threads: threads)) : opencl
                return FallbackBackend(primary: primary, fallback: CPUBackend(threads: threads), warn: warn)
            } catch {
                warn("warning: OpenCL device \(device.index) (\(device.info.name)) failed (\(error)); using the cpu backend")
                return CPUBackend(threads: threads)
            }
        }
    }
}

/// Runs on `primary` until it throws an OpenCL error, then warns once and stays on `fallback`.
/// `identity` always names the backend that ran the last job.
public final class FallbackBackend: ComputeBackend {
    let primary: any ComputeBackend
    let fallback: any ComputeBackend
    let warn: @Sendable (String) -> Void
    private let failed = Mutex(false)

    public init(primary: any ComputeBackend, fallback: any ComputeBackend, warn: @escaping @Sendable (String) -> Void) {
        self.primary = primary
        self.fallback = fallback
        self.warn = warn
    }

    public var identity: BackendIdentity { (failed.withLock { $0 } ? fallback : primary).identity }

    func run<R>(_ body: (any ComputeBackend) throws -> R) throws -> R {
        if !failed.withLock({ $0 }) {
            do { return try body(primary) } catch let error as CLError {
                failed.withLock { $0 = true }
                warn("warning: \(primary.identity) failed at run time (\(error)); using the cpu backend")
            }
        }
        return try body(fallback)
    }

    public var chunkBytes: Int { min(primary.chunkBytes, fallback.chunkBytes) }
    public var hostThreads: Int { failed.withLock { $0 } ? fallback.hostThreads : primary.hostThreads }
    public func placement(of operation: BackendOperation) -> BackendIdentity {
        (failed.withLock { $0 } ? fallback : primary).placement(of: operation)
    }

    public func responses(_ job: ResponseJob) throws -> ResponseBlock {
        try run { try $0.responses(job) }
    }

    public func trajectories(_ job: ResponseJob) throws -> Trajectories {
        try run { try $0.trajectories(job) }
    }

    public func forward(_ job: ForwardJob) throws -> ForwardResult {
        try run { try $0.forward(job) }
    }

    public func relevance(_ job: RelevanceJob) throws -> RelevanceResult {
        try run { try $0.relevance(job) }
    }

    public func mapStep(_ map: LayerMap, states: [Double], inputs: [Double]?, rows: Int, jacobian: Bool) throws -> (next: [Double], jacobian: [Double]) {
        try run { try $0.mapStep(map, states: states, inputs: inputs, rows: rows, jacobian: jacobian) }
    }

    public func mapSettle(_ map: LayerMap, states: [Double], pulses: [Double]?, rows: Int, pulseSteps: Int, maxSteps: Int,
                          tolerance: Double) throws -> (states: [Double], settled: [Bool]) {
        try run { try $0.mapSettle(map, states: states, pulses: pulses, rows: rows, pulseSteps: pulseSteps, maxSteps: maxSteps, tolerance: tolerance) }
    }
}

/// Responses and trajectories on one backend, the full forward (and relevance) on another (auto on a CPU-only
/// OpenCL machine).
public final class RoutedBackend: ComputeBackend {
    let responsesBackend: any ComputeBackend
    let forwardBackend: any ComputeBackend

    public init(responses: any ComputeBackend, forward: any ComputeBackend) {
        responsesBackend = responses
        forwardBackend = forward
    }

    public var identity: BackendIdentity {
        let r = responsesBackend.identity
        return BackendIdentity(kind: r.kind, device: "\(r.device); full forward, relevance and dynamics on \(forwardBackend.identity)")
    }

    public var chunkBytes: Int { min(responsesBackend.chunkBytes, forwardBackend.chunkBytes) }
    public var hostThreads: Int { forwardBackend.hostThreads }
    public func placement(of operation: BackendOperation) -> BackendIdentity {
        [.responses, .trajectories].contains(operation) ? responsesBackend.placement(of: operation) : forwardBackend.placement(of: operation)
    }
    public func responses(_ job: ResponseJob) throws -> ResponseBlock { try responsesBackend.responses(job) }
    public func trajectories(_ job: ResponseJob) throws -> Trajectories { try responsesBackend.trajectories(job) }
    public func forward(_ job: ForwardJob) throws -> ForwardResult { try forwardBackend.forward(job) }
    /// Relevance runs where the full forward runs: it is the same kind of work (a batched forward
    /// and its mirror image).
    public func relevance(_ job: RelevanceJob) throws -> RelevanceResult { try forwardBackend.relevance(job) }
    /// The dynamics' map steps run where the full forward runs, for the same reason.
    public func mapStep(_ map: LayerMap, states: [Double], inputs: [Double]?, rows: Int, jacobian: Bool) throws -> (next: [Double], jacobian: [Double]) {
        try forwardBackend.mapStep(map, states: states, inputs: inputs, rows: rows, jacobian: jacobian)
    }
    public func mapSettle(_ map: LayerMap, states: [Double], pulses: [Double]?, rows: Int, pulseSteps: Int, maxSteps: Int,
                          tolerance: Double) throws -> (states: [Double], settled: [Bool]) {
        try forwardBackend.mapSettle(map, states: states, pulses: pulses, rows: rows, pulseSteps: pulseSteps, maxSteps: maxSteps, tolerance: tolerance)
    }
}

/// "there is 1 OpenCL device", "there are 3 OpenCL devices", "there is no OpenCL device".
func deviceCount(_ n: Int) -> String {
    n == 0 ? "there is no OpenCL device" : n == 1 ? "there is 1 OpenCL device" : "there are \(n) OpenCL devices"
}
