import Foundation
import Synchronization

/// One operation of `ComputeBackend`, for saying where it ran.
public enum BackendOperation: String, CaseIterable, Sendable, Codable {
    case responses, trajectories, forward
    /// `relevance` with the LRP rule.
    case lrp
    /// `relevance` with the gradient × input rule.
    case gradientTimesInput = "gradient_x_input"
    case mapStep = "map_step", mapSettle = "map_settle"

    /// The operation that `relevance(job)` performs.
    public init(_ rule: RelevanceJob.Rule) {
        switch rule {
        case .lrp: self = .lrp
        case .gradientTimesInput: self = .gradientTimesInput
        }
    }

    /// In words, for reports.
    public var title: String {
        switch self {
        case .responses: "responses"
        case .trajectories: "trajectories"
        case .forward: "full forward"
        case .lrp: "LRP relevance"
        case .gradientTimesInput: "gradient × input"
        case .mapStep: "fixed-point map steps"
        case .mapSettle: "transition runs"
        }
    }
}

/// A backend that records where each operation a run used actually ran, so that the run can
/// report it honestly: an OpenCL backend runs gradient × input on the CPU, an `auto` backend may
/// route the full forward to the CPU or fall back to it mid-run. Forwards every call to `inner`
/// unchanged (same identity, chunk size and threads: results are bit-identical), asking `inner`
/// after each call where that operation ran (`ComputeBackend.placement(of:)`).
public final class PlacementRecorder: ComputeBackend, @unchecked Sendable {
    public let inner: any ComputeBackend
    private let used = Mutex<[BackendOperation: BackendIdentity]>([:])

    public init(_ inner: any ComputeBackend) { self.inner = inner }

    /// Every operation this run used, in `BackendOperation` order, with where it last ran.
    public var placements: [(operation: BackendOperation, ranOn: BackendIdentity)] {
        let map = used.withLock { $0 }
        return BackendOperation.allCases.compactMap { op in map[op].map { (op, $0) } }
    }

    /// The operations that ran somewhere other than the backend the run names (`identity`).
    public var elsewhere: [(operation: BackendOperation, ranOn: BackendIdentity)] {
        let main = identity
        return placements.filter { $0.ranOn != main }
    }

    private func record<R>(_ op: BackendOperation, _ body: () throws -> R) rethrows -> R {
        let result = try body()
        let placement = inner.placement(of: op)
        used.withLock { $0[op] = placement }
        return result
    }

    public var identity: BackendIdentity { inner.identity }
    public var chunkBytes: Int { inner.chunkBytes }
    public var hostThreads: Int { inner.hostThreads }
    public func placement(of operation: BackendOperation) -> BackendIdentity { inner.placement(of: operation) }
    public func responses(_ job: ResponseJob) throws -> ResponseBlock { try record(.responses) { try inner.responses(job) } }
    public func trajectories(_ job: ResponseJob) throws -> Trajectories { try record(.trajectories) { try inner.trajectories(job) } }
    public func forward(_ job: ForwardJob) throws -> ForwardResult { try record(.forward) { try inner.forward(job) } }
    public func relevance(_ job: RelevanceJob) throws -> RelevanceResult {
        try record(BackendOperation(job.rule)) { try inner.relevance(job) }
    }
    public func mapStep(_ map: LayerMap, states: [Double], inputs: [Double]?, rows: Int, jacobian: Bool) throws -> (next: [Double], jacobian: [Double]) {
        try record(.mapStep) { try inner.mapStep(map, states: states, inputs: inputs, rows: rows, jacobian: jacobian) }
    }
    public func mapSettle(_ map: LayerMap, states: [Double], pulses: [Double]?, rows: Int, pulseSteps: Int, maxSteps: Int,
                          tolerance: Double) throws -> (states: [Double], settled: [Bool]) {
        try record(.mapSettle) {
            try inner.mapSettle(map, states: states, pulses: pulses, rows: rows, pulseSteps: pulseSteps, maxSteps: maxSteps, tolerance: tolerance)
        }
    }
}
