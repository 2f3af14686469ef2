import ArgumentParser
import CellAuditAnalysis
import CellAuditCore
import Foundation
import Synchronization

/// Progress of a long phase that is not a characterization (the ablation's masked forwards,
/// explain's relevance): one line on stderr at most once a second and at the end of each phase,
/// with the share done, the time so far and an estimate of the time left from the rate so far:
/// "ablate: single-cell ablations 120/258, 12.0 s, about 14 s left".
final class PhaseReporter: @unchecked Sendable {
    let quiet: Bool
    let label: String
    private struct State { var phase = ""; var start = DispatchTime.now().uptimeNanoseconds; var lastLine = 0.0 }
    private let state = Mutex(State())

    init(quiet: Bool, label: String) { self.quiet = quiet; self.label = label }

    func report(_ phase: String, done: Int, total: Int) {
        guard !quiet, total > 0 else { return }
        let line: String? = state.withLock { s in
            let now = DispatchTime.now().uptimeNanoseconds
            if s.phase != phase { s = State(phase: phase, start: now, lastLine: 0) }
            let seconds = Double(now - s.start) * 1e-9
            guard done == total || seconds - s.lastLine >= 1 else { return nil }
            s.lastLine = seconds
            let left = done > 0 && done < total ? String(format: ", about %.0f s left", seconds / Double(done) * Double(total - done)) : ""
            return String(format: "%@: %@ %d/%d, %.1f s%@", label, phase, done, total, seconds, left)
        }
        if let line { Terminal.warn(line) }
    }

    /// The reporter as the library's progress callback.
    var callback: WorkProgress { { [self] phase, done, total in report(phase, done: done, total: total) } }
}

/// Progress on stderr: a bar redrawn in place on a terminal, one line per update otherwise.
final class ProgressReporter: ChunkProgressSink, @unchecked Sendable {
    let quiet: Bool
    let label: String
    let terminal = isatty(STDERR_FILENO) != 0
    private var lastLine = 0.0
    private var drew = false

    init(quiet: Bool, label: String) { self.quiet = quiet; self.label = label }

    func report(_ p: ChunkProgress) {
        guard !quiet else { return }
        let rate = Double(p.simulatedSteps) / max(p.seconds, 1e-12)
        let share = Double(p.chunk) / Double(p.chunks)
        if terminal {
            let width = 30, filled = Int(share * Double(width))
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
            FileHandle.standardError.write(Data(String(format: "\r%@ [%@] %d/%d chunks, %.3g cell-steps/s", label, bar, p.chunk, p.chunks, rate).utf8))
            drew = true
        } else if p.chunk == p.chunks || p.seconds - lastLine >= 1 {
            lastLine = p.seconds
            Terminal.warn(String(format: "%@: chunk %d/%d, %.1f s, %.3g cell-steps/s", label, p.chunk, p.chunks, p.seconds, rate))
        }
    }

    func finish() {
        if drew { FileHandle.standardError.write(Data("\n".utf8)); drew = false }
    }
}
