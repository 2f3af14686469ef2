import Foundation
import Testing
import TestSupport

/// Rules of the shape (docs/ARCHITECTURE.md) that a change could break without any output
/// changing, checked on the source tree.
@Suite struct ArchitectureTests {
    static var sources: URL { URL(fileURLWithPath: Fixtures.path("")).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Sources") }

    /// No library reads or writes the environment: the CLI reads CELLAUDIT_THREADS, the kernel
    /// settings, the backend choice, the shard index and POCL_CACHE_DIR, and passes them in.
    @Test func noLibraryReadsOrWritesTheEnvironment() throws {
        let programs: Set<String> = ["CellAuditCLI", "CellAuditFuzz", "KernelEmbedder"]
        var offenders: [String] = []
        let fm = FileManager.default
        for module in try fm.contentsOfDirectory(atPath: Self.sources.path) where !programs.contains(module) {
            let dir = Self.sources.appendingPathComponent(module)
            for file in (fm.enumerator(atPath: dir.path)?.allObjects as? [String] ?? []) where file.hasSuffix(".swift") && !file.hasSuffix(".pb.swift") {
                let text = try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8)
                for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
                where !line.trimmingCharacters(in: .whitespaces).hasPrefix("//") {
                    for call in ["processInfo.environment", "getenv(", "setenv(", "unsetenv(", "putenv("] where line.contains(call) {
                        offenders.append("\(module)/\(file):\(n + 1): \(call)")
                    }
                }
            }
        }
        #expect(offenders.isEmpty, "\(offenders.joined(separator: "; "))")
    }

    /// CELLAUDIT_THREADS is read by the CLI alone, checked, and reaches the backend it makes.
    @Test func threadCountComesFromTheCommandLineTool() throws {
        let r = try CLI.run(["devices", "--json"], environment: ["CELLAUDIT_THREADS": "3"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        #expect(r.stdout.contains("\"threads\" : 3") || r.stdout.contains("\"cpu_threads\" : 3"), "\(r.stdout)")
        let model = Fixtures.path("digits_lstm8.safetensors"), data = Fixtures.path("digits_test.safetensors")
        let one = try CLI.run(["eval", model, "--data", data, "--backend", "cpu"], environment: ["CELLAUDIT_THREADS": "1"])
        #expect(one.exitCode == 0 && one.stdout.contains("Swift on 1 thread,"), "\(one.stdout) \(one.stderr)")
        for bad in ["0", "two", "-1"] {
            let b = try CLI.run(["eval", model, "--data", data, "--backend", "cpu"], environment: ["CELLAUDIT_THREADS": bad])
            #expect(b.exitCode == 1 && b.stderr.contains("CELLAUDIT_THREADS") && b.stderr.split(separator: "\n").count == 1, "\(bad): \(b.stderr)")
        }
    }
}
