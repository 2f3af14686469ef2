import ArgumentParser
import CellAuditAnalysis
import CellAuditCore
import Foundation
import Synchronization

/// Where a job writes, and how it talks while it runs.
struct OutputOptions: ParsableArguments {
    @Option(help: "Output directory (default: cellaudit-audit for audit, cellaudit-responses for characterize, cellaudit-ablation for ablate, cellaudit-explain, cellaudit-attractors, cellaudit-capacity, cellaudit-merged for merge). Never the folder of an input.")
    var out: String?

    @Flag(help: "Replace an existing non-empty output directory that cellaudit wrote (it holds .cellaudit-output).")
    var force = false

    @Flag(help: "No progress on stderr.")
    var quiet = false

    @Flag(help: "Print JSON on stdout instead of text.")
    var json = false

    /// The library's progress callback for `label`'s long phases: silent under --quiet or --json.
    func phaseProgress(_ label: String) -> WorkProgress { PhaseReporter(quiet: quiet || json, label: label).callback }
    /// A run's notes (the work ahead, the dynamics' progress) as lines on stderr; nil when quiet.
    var noteLines: (@Sendable (String) -> Void)? { quiet || json ? nil : { @Sendable line in Terminal.warn(line) } }
}

/// An output directory that appears whole or not at all: everything is written into a staging
/// directory beside it, which replaces the target only once the job has succeeded. An existing
/// non-empty target is refused unless `force`.
struct OutputDirectory {
    let target: URL
    let force: Bool

    init(_ path: String, force: Bool) throws {
        guard !path.trimmingCharacters(in: .whitespaces).isEmpty else { throw RunFailure(description: "--out is empty; give a directory") }
        target = URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath()
        self.force = force
        // Replacing the root, the working directory or a folder above it would delete what the
        // user is standing in: refused even with --force.
        let here = URL(fileURLWithPath: FileManager.default.currentDirectoryPath).standardizedFileURL.resolvingSymlinksInPath().path
        let there = target.path
        if there == "/" || here == there || here.hasPrefix(there.hasSuffix("/") ? there : there + "/") {
            throw RunFailure(description: "--out \(path) is \(there == "/" ? "the root directory" : "the working directory or a folder above it"); give a new directory for the output")
        }
        try Self.refuseInputs(target: target.path, spelled: path)
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: target.path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw RunFailure(description: "\(path) exists and is not a directory") }
            let contents = (try? FileManager.default.contentsOfDirectory(atPath: target.path)) ?? []
            // Finished shards of a sharded run are never replaced by a whole run, even with --force.
            if let shard = contents.sorted().first(where: { $0.wholeMatch(of: /shard-[0-9]+-of-[0-9]+/) != nil }),
               FileManager.default.fileExists(atPath: target.appendingPathComponent(shard).appendingPathComponent("shard.json").path) {
                throw RunFailure(description: "\(path) holds shards of a sharded run (\(shard)); merge them with `cellaudit merge \(path)`, run a shard with --shard K/N, or choose another --out")
            }
            if !contents.isEmpty && !force {
                throw RunFailure(description: "\(path) exists and is not empty; use --force to replace it")
            }
            // --force replaces only what CellAudit wrote: a folder of other files is never deleted.
            if !contents.isEmpty && !Self.holdsMarker(target) {
                throw RunFailure(description: "\(path) holds files that cellaudit did not write (it has no \(Self.markerName) marker); --force replaces only a cellaudit output directory: choose another --out, or empty or remove it yourself")
            }
        }
    }

    /// The file every output directory carries, so that `--force` knows a directory CellAudit
    /// wrote (and may replace) from a folder of the user's files (which it never deletes).
    static let markerName = ".cellaudit-output"

    /// Whether `directory` holds the marker as a regular file of its own (a symbolic link named
    /// like it, pointing anywhere, does not count: lstat, not stat).
    static func holdsMarker(_ directory: URL) -> Bool {
        var info = stat()
        return lstat(directory.appendingPathComponent(markerName).path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }

    /// Refuses an output at `target` (resolved) that is, holds or lies inside any input this run
    /// has read (`InputFiles`), symbolic links resolved: writing there could replace the input.
    /// - Throws: `RunFailure` naming both paths.
    static func refuseInputs(target: String, spelled: String) throws {
        guard let input = InputFiles.conflict(withOutput: target) else { return }
        let resolved = InputFiles.resolve(target)
        let relation = InputFiles.path(input, isWithin: resolved)
            ? (input == resolved ? "is the input" : "holds the input") : "lies inside the input directory"
        throw RunFailure(description: "--out \(spelled) (\(resolved)) \(relation) \(input); cellaudit never writes over its inputs: choose an --out outside the inputs' folders")
    }

    /// Runs `body` on a staging directory and moves the result into place. While it runs, an
    /// exclusive lock on `.<name>.lock` beside the target turns a second run to the same target
    /// away at once, naming the holder (the lock file goes with the lock); SIGINT and SIGTERM
    /// remove the staging directory before
    /// exiting (130, 143); staging directories left by runs that died are removed first.
    func build<R>(_ body: (URL) throws -> R) throws -> R {
        let fm = FileManager.default
        let parent = target.deletingLastPathComponent()
        do { try fm.createDirectory(at: parent, withIntermediateDirectories: true) } catch {
            // Name the part of the path that is a file, not the whole path.
            var ancestor = parent, isDirectory: ObjCBool = false
            while ancestor.path != "/" && !fm.fileExists(atPath: ancestor.path, isDirectory: &isDirectory) { ancestor.deleteLastPathComponent() }
            if fm.fileExists(atPath: ancestor.path, isDirectory: &isDirectory), !isDirectory.boolValue {
                throw RunFailure(description: "--out \(target.path): \(ancestor.path) is a file, not a directory; choose an --out in a directory")
            }
            throw RunFailure(description: "cannot create \(parent.path): \(fileErrorReason(error))")
        }
        // Again here: a command may read an input after choosing its output directory.
        try Self.refuseInputs(target: target.path, spelled: target.path)
        let lock = try OutputLock(parent.appendingPathComponent(".\(target.lastPathComponent).lock"), target: target)
        defer { lock.release() }
        removeStaleStaging(of: target, in: parent)
        let pid = ProcessInfo.processInfo.processIdentifier
        let staging = parent.appendingPathComponent(".\(target.lastPathComponent).partial-\(pid)")
        try? fm.removeItem(at: staging)
        do { try fm.createDirectory(at: staging, withIntermediateDirectories: false) } catch {
            throw RunFailure(description: "cannot write in \(parent.path): \(fileErrorReason(error))")
        }
        do { try Data("written by cellaudit \(CellAudit.version)\n".utf8).write(to: staging.appendingPathComponent(Self.markerName)) } catch {
            try? fm.removeItem(at: staging)
            throw RunFailure(description: "cannot write in \(staging.path): \(fileErrorReason(error))")
        }
        let cleanup = SignalCleanup.install(staging: staging, lock: parent.appendingPathComponent(".\(target.lastPathComponent).lock"))
        defer { cleanup.uninstall() }
        lock.announce()
        let result: R
        do { result = try body(staging) } catch {
            try? fm.removeItem(at: staging)
            throw error
        }
        let old = parent.appendingPathComponent(".\(target.lastPathComponent).old-\(pid)")
        try cleanup.commit {
            do { try Self.refuseInputs(target: target.path, spelled: target.path) } catch {
                try? fm.removeItem(at: staging)
                throw error
            }
            if fm.fileExists(atPath: target.path) {
                // Checked again at the last moment: the directory may have changed since the start.
                let contents = (try? fm.contentsOfDirectory(atPath: target.path)) ?? []
                guard contents.isEmpty || Self.holdsMarker(target) else {
                    try? fm.removeItem(at: staging)
                    throw RunFailure(description: "\(target.path) gained files that cellaudit did not write while it ran; nothing was replaced")
                }
                try fm.moveItem(at: target, to: old)
            }
            do { try fm.moveItem(at: staging, to: target) } catch {
                if fm.fileExists(atPath: old.path) { try? fm.moveItem(at: old, to: target) }
                try? fm.removeItem(at: staging)
                throw RunFailure(description: "cannot move the finished output into \(target.path): \(fileErrorReason(error))")
            }
            try? fm.removeItem(at: old)
        }
        return result
    }

    /// `.<name>.partial-PID` and `.<name>.old-PID` beside the target whose PID no longer runs.
}

/// Removes what runs that died (SIGKILL: no handler ran) left beside `target` in `parent`: their
/// staging (`.NAME.partial-PID`), replaced (`.old-PID`) and half-removed (`.doomed-PID`) copies,
/// whichever process no longer exists. Shared by output directories and single output files.
func removeStaleStaging(of target: URL, in parent: URL) {
    let prefixes = [".\(target.lastPathComponent).partial-", ".\(target.lastPathComponent).old-", ".\(target.lastPathComponent).doomed-"]
    for entry in (try? FileManager.default.contentsOfDirectory(atPath: parent.path)) ?? [] {
        guard let prefix = prefixes.first(where: { entry.hasPrefix($0) }), let pid = Int32(entry.dropFirst(prefix.count)) else { continue }
        if kill(pid, 0) != 0 && errno == ESRCH {
            try? FileManager.default.removeItem(at: parent.appendingPathComponent(entry))
        }
    }
}

/// An exclusive advisory lock (flock) on a file beside an output target, holding the owner's PID.
/// The file is removed when the lock is released; a run that locked a file another run had just
/// removed notices (the path no longer names the inode it holds) and locks the new one.
final class OutputLock {
    private let fd: Int32
    private let path: String

    /// - Throws: `RunFailure` naming the target and the PID of the run that holds it.
    init(_ url: URL, target: URL) throws {
        path = url.path
        while true {
            let handle = open(url.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard handle >= 0 else { throw RunFailure(description: "cannot create the lock \(url.path): \(String(cString: strerror(errno)))") }
            if flock(handle, LOCK_EX | LOCK_NB) != 0 {
                var buffer = [UInt8](repeating: 0, count: 32)
                let count = pread(handle, &buffer, 31, 0)
                let holder = count > 0 ? String(decoding: buffer.prefix(count), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : "unknown"
                close(handle)
                throw RunFailure(description: "\(target.path) is being written by another cellaudit run (pid \(holder)); wait for it or choose another --out")
            }
            var held = stat(), named = stat()
            if fstat(handle, &held) == 0, stat(url.path, &named) == 0, held.st_ino == named.st_ino, held.st_dev == named.st_dev {
                fd = handle
                break
            }
            close(handle)   // released and removed by its holder meanwhile: lock the new file
        }
    }

    /// Writes the owner's PID into the lock file. Called once the run's signal handling is in
    /// place, so that whoever reads the PID (a second run's message, a test about to send a
    /// signal) sees a run that a signal cleans up, never one still starting.
    func announce() {
        let pid = "\(ProcessInfo.processInfo.processIdentifier)\n"
        _ = ftruncate(fd, 0)
        _ = pid.withCString { pwrite(fd, $0, strlen($0), 0) }
    }

    func release() {
        unlink(path)
        flock(fd, LOCK_UN)
        close(fd)
    }
}

/// A single output file that appears whole or not at all: `body` writes it under a hidden
/// staging name beside `path` (`.NAME.partial-PID`), which is renamed over `path` only when
/// `body` returns; an error or a signal (SIGINT, SIGTERM, SIGHUP) removes the staging file.
/// - Throws: what `body` throws; `RunFailure` naming `path` when the rename fails.
func writeFileWhole(_ path: String, _ body: (String) throws -> Void) throws {
    guard !path.isEmpty else { throw RunFailure(description: "--out is empty: give a file name") }
    let target = URL(fileURLWithPath: path), folder = target.deletingLastPathComponent()
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDirectory), isDirectory.boolValue else {
        throw RunFailure(description: "\(path): cannot write: the folder \(folder.path) does not exist")
    }
    guard access(folder.path, W_OK) == 0 else {
        throw RunFailure(description: "\(path): cannot write in \(folder.path): \(String(cString: strerror(errno)))")
    }
    removeStaleStaging(of: target, in: folder)
    let staging = folder.appendingPathComponent(".\(target.lastPathComponent).partial-\(getpid())")
    let cleanup = SignalCleanup.install(staging: staging, lock: staging)
    defer { cleanup.uninstall() }
    do { try body(staging.path) } catch {
        try? FileManager.default.removeItem(at: staging)
        SignalCleanup.awaitExitIfInterrupted()
        throw error
    }
    try cleanup.commit {
        guard rename(staging.path, target.path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: staging)
            throw RunFailure(description: "\(path): cannot write: \(reason)")
        }
    }
}
