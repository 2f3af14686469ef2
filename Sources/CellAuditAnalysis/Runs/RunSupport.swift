import CellAuditCore
import CellAuditOpenCL
import Foundation
import Synchronization

/// A run's failure as one line that names the problem and the file (the CLI prints it after
/// "error: " and exits 1). Thrown by the run entry points for what a user can fix.
public struct RunFailure: Error, CustomStringConvertible {
    public let description: String
    public init(description: String) { self.description = description }
}

/// This CellAudit's version, recorded in every output it writes (responses metadata, shard
/// manifests, summaries); `merge` refuses shards of another version.
public enum CellAuditVersion {
    public static let current = "0.1.0"
}

/// Named points in a run's writes (`figures`: the audit report's first figure; `attractors-figures`:
/// the dynamics' first figure) where a hook installed by the caller runs. The CLI's tests install
/// one that interrupts the process there; the library never reads the environment itself.
public enum RunCheckpoint {
    private static let hook = Mutex<(@Sendable (String) -> Void)?>(nil)
    /// Installs `body`, called with the point's name each time a run reaches one.
    public static func install(_ body: @escaping @Sendable (String) -> Void) { hook.withLock { $0 = body } }
    static func reach(_ point: String) { hook.withLock { $0 }?(point) }
}

/// Where a characterization reports its chunks (the CLI draws a progress bar): `report` after
/// each chunk, `finish` once when the run ends, however it ends.
public protocol ChunkProgressSink: AnyObject, Sendable {
    func report(_ progress: ChunkProgress)
    func finish()
}

/// The parts of a run that went to another backend than the one asked for (operation → where
/// it ran), or nil when everything ran where asked (`PlacementRecorder`).
public func otherBackends(_ backend: any ComputeBackend) -> [String: String]? {
    guard let recorder = backend as? PlacementRecorder, !recorder.elsewhere.isEmpty else { return nil }
    return Dictionary(uniqueKeysWithValues: recorder.elsewhere.map { ($0.operation.rawValue, "\($0.ranOn)") })
}

/// A value handed to one other thread at a time (here: the stream writer, used by the writer
/// queue while the engine runs and by the caller only after it has drained).
public struct UncheckedSendable<T>: @unchecked Sendable {
    public let value: T
    public init(_ value: T) { self.value = value }
}

/// Creates a directory inside a run's output (its parent must exist), or accepts one that is
/// there. It never creates parents: once an interrupt has moved the staging directory away, a
/// late write fails instead of creating the staging directory again.
public func makeOutputSubdirectory(_ url: URL) throws {
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue { return }
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: false)
}

/// A number in a CSV cell: `nan`, `inf` and `-inf` spelled out, others to six significant digits.
public func csvNumber(_ x: Double) -> String {
    x.isNaN ? "nan" : x.isInfinite ? (x > 0 ? "inf" : "-inf") : String(format: "%.6g", x)
}

/// `path` made absolute against the current directory, with `.` and `..` resolved (symbolic links
/// are kept).
public func absolutePath(_ path: String) -> String {
    URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath, isDirectory: true))
        .standardizedFileURL.path
}

/// Writes each (file name, SVG text) figure into DIR/figures/ (created inside the run's output,
/// never its parents); reaching `checkpoint` after the first.
func writeFigures(_ figures: [(String, String)], to dir: URL, checkpoint: String?) throws {
    let figureDir = dir.appendingPathComponent("figures")
    try makeOutputSubdirectory(figureDir)
    for (i, (file, svg)) in figures.enumerated() {
        try svg.write(to: figureDir.appendingPathComponent(file), atomically: false, encoding: .utf8)
        if i == 0, let checkpoint { RunCheckpoint.reach(checkpoint) }
    }
}
