import ArgumentParser
import CellAuditAnalysis
import CellAuditCore
import Foundation
import Synchronization

/// Removes a staging directory when the process is interrupted (SIGINT, SIGTERM), then exits
/// with 128 + the signal, so an interrupted run leaves nothing that looks like output. The
/// handler runs on a dispatch queue, not in signal context, so it may touch the file system.
final class SignalCleanup: @unchecked Sendable {
    private enum Phase { case working, committing, interrupted, lateSignal(Int32), done }
    private var sources: [DispatchSourceSignal] = []
    private let phase = Mutex<Phase>(.working)
    private static let queue = DispatchQueue(label: "cellaudit.signals")

    /// Signals that end a run with cleanup: interrupt, terminate, and a closed terminal.
    static let handled: [Int32] = [SIGINT, SIGTERM, SIGHUP]
    /// Temporary paths of this run (the unpacked bundled files) that an interrupted run removes.
    private static let temporaries = Mutex<[URL]>([])
    static func removeOnInterrupt(_ url: URL) { temporaries.withLock { $0.append(url) } }
    static func keepOnInterrupt(_ url: URL) { temporaries.withLock { $0.removeAll { $0 == url } } }

    /// Set once a signal has begun removing the output: from then on a failing write is the
    /// interrupt's doing, and the thread that meets it waits for the handler's exit
    /// (`awaitExitIfInterrupted`) instead of reporting an error of its own.
    private static let interruptedFlag = Mutex(false)
    static var isInterrupted: Bool { interruptedFlag.withLock { $0 } }

    /// Never returns when a signal is removing the output (the handler exits the process).
    static func awaitExitIfInterrupted() {
        guard isInterrupted else { return }
        while true { pause() }
    }

    /// Removes `paths` until none exists: a thread still writing when the signal came (audit
    /// writes its report on the main thread while its dynamics write on another) can add a file
    /// to a directory after its listing, which makes one removal fail. Writers cannot create the
    /// staging directory again (`makeOutputSubdirectory` never creates parents), so this ends;
    /// it gives up after about a second.
    private static func removeAll(_ paths: [URL]) {
        for _ in 0..<200 {
            for url in paths { try? FileManager.default.removeItem(at: url) }
            if !paths.contains(where: { FileManager.default.fileExists(atPath: $0.path) }) { return }
            usleep(5_000)
        }
    }

    /// Leaves at once with `status`, after removing the run's temporaries. `_exit`, not `exit`:
    /// the handler runs on its own thread while the main thread may be inside OpenBLAS, and
    /// `exit` would run the libraries' destructors under it (a segfault on interrupt).
    /// `flush` writes out buffered standard output first (only from the main thread: the signal
    /// thread must not wait on a stream lock the main thread may hold).
    static func leave(_ status: Int32, flush: Bool = false) -> Never {
        for url in temporaries.withLock({ $0 }) { try? FileManager.default.removeItem(at: url) }
        if flush { fflush(nil) }   // nil: every output stream
        _exit(status)
    }

    /// On SIGINT, SIGTERM or SIGHUP while the job works: the staging directory is first renamed
    /// (so the job, still writing on the main thread, can add nothing more to it), then removed
    /// with the lock file, and the process exits 128 + signal. A signal during the final move
    /// waits for it (`commit`): the output is then complete, and the process exits 128 + signal
    /// after it.
    static func install(staging: URL, lock: URL) -> SignalCleanup {
        let cleanup = SignalCleanup()
        for signalNumber in handled {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: queue)
            source.setEventHandler {
                cleanup.phase.withLock { phase in
                    switch phase {
                    case .working:
                        phase = .interrupted
                        interruptedFlag.withLock { $0 = true }
                        let doomed = staging.deletingLastPathComponent()
                            .appendingPathComponent(staging.lastPathComponent.replacingOccurrences(of: ".partial-", with: ".doomed-"))
                        let moved = (try? FileManager.default.moveItem(at: staging, to: doomed)) != nil
                        removeAll(moved ? [doomed, staging] : [staging])
                        try? FileManager.default.removeItem(at: lock)
                        Terminal.warn("error: interrupted (\(signalName(signalNumber))); removed the partial output \(staging.lastPathComponent)")
                        SignalCleanup.leave(128 + signalNumber)
                    case .committing:
                        phase = .lateSignal(signalNumber)
                    case .interrupted, .lateSignal, .done:
                        break
                    }
                }
            }
            source.resume()
            cleanup.sources.append(source)
        }
        return cleanup
    }

    /// Runs the final move of a finished output, which a signal no longer interrupts.
    func commit(_ move: () throws -> Void) throws {
        let go = phase.withLock { phase -> Bool in
            guard case .working = phase else { return false }
            phase = .committing
            return true
        }
        // Interrupted first: the handler is removing the output and exiting.
        guard go else { while true { pause() } }
        try move()
        let late = phase.withLock { phase -> Int32? in
            defer { phase = .done }
            if case .lateSignal(let number) = phase { return number }
            return nil
        }
        if let late {
            Terminal.warn("error: interrupted (\(signalName(late))) after the output was complete")
            SignalCleanup.leave(128 + late, flush: true)
        }
    }

    func uninstall() {
        for source in sources { source.cancel() }
        for number in Self.handled { signal(number, SIG_DFL) }
    }
}

private func signalName(_ number: Int32) -> String { number == SIGINT ? "SIGINT" : number == SIGHUP ? "SIGHUP" : "SIGTERM" }

/// `CELLAUDIT_SIGNAL_SELF_AT=point` (testing only): installs a `RunCheckpoint` hook by which the
/// process sends itself SIGTERM when a run reaches `point`, waits until the handler has begun
/// removing the output, and carries on writing, so a test interrupts a run in the middle of its
/// writes. Points: `figures` (audit's report figures, on the main thread) and
/// `attractors-figures` (the dynamics' figures, on their own thread in audit).
func installSignalSelfFromEnvironment() {
    guard let wanted = ProcessInfo.processInfo.environment["CELLAUDIT_SIGNAL_SELF_AT"], !wanted.isEmpty else { return }
    RunCheckpoint.install { point in
        guard point == wanted else { return }
        kill(getpid(), SIGTERM)
        for _ in 0..<1000 where !SignalCleanup.isInterrupted { usleep(1000) }
    }
}
