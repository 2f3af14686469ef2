import CellAuditCore
import Foundation
import Testing
import TestSupport

/// Keras files from the command line (issue 30, item 2).
@Suite struct KerasCLITests {
    /// HDF5 1.10 crashes (SIGSEGV in its global heap) on some damaged .h5 files: the CLI reads
    /// every HDF5-backed model in a child process first, so each damaged file ends in exit 0 or 1
    /// with one line naming it, never in a signal.
    @Test func damagedH5FilesNeverCrashTheRun() throws {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("keras/lstm2_keras2.h5"))))
        let scratch = try Fixtures.scratch("keras-h5-damaged").appendingPathComponent("damaged.h5")
        var rng = SeededGenerator(seed: 7)
        var refused = 0
        for trial in 0..<80 {
            var copy = bytes
            if trial % 3 == 0 { copy = Array(copy.prefix(Int(rng.next() % UInt64(copy.count)))) } else {
                for _ in 0..<(1 + Int(rng.next() % 8)) { copy[Int(rng.next() % UInt64(copy.count))] = UInt8(truncatingIfNeeded: rng.next()) }
            }
            try Data(copy).write(to: scratch)
            let r = try CLI.run(["inspect", scratch.path], environment: ["SWIFT_BACKTRACE": "enable=no", "CELLAUDIT_HDF5_SECONDS": "5"])
            #expect(r.exitCode == 0 || r.exitCode == 1, "trial \(trial): exit \(r.exitCode) \(r.stderr.suffix(300))")
            if r.exitCode == 1 {
                refused += 1
                #expect(r.stderr.hasPrefix("error: damaged.h5") && r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
            }
        }
        #expect(refused > 0)
    }

    /// Two damaged files found by mutation: one on which HDF5 1.10 crashes (SIGSEGV in its global
    /// heap) and one on which it loops forever; each is refused in one line.
    @Test(arguments: [("hdf5_crash.h5", "crashed"), ("hdf5_loop.h5", "did not finish")])
    func hdf5CrashesAndLoopsAreRefused(file: String, words: String) throws {
        let r = try CLI.run(["inspect", Fixtures.path("fuzz/\(file)")], environment: ["CELLAUDIT_HDF5_SECONDS": "5"])
        #expect(r.exitCode == 1 && r.stderr.contains(file) && r.stderr.contains(words), "\(r.stderr)")
    }

    @Test func aKerasModelIsAuditedEndToEnd() throws {
        let out = try Fixtures.scratch("keras-audit").appendingPathComponent("a")
        let r = try CLI.run(["audit", Fixtures.path("keras/bi_concat.keras"), "--out", out.path, "--quiet", "--backend", "cpu"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        let cells = try String(contentsOf: out.appendingPathComponent("cells.csv"), encoding: .utf8).split(separator: "\n")
        #expect(cells.count == 9 && cells.filter { $0.contains(",reverse,") }.count == 4)
    }
}
