import CellAuditCore
import Foundation
import Testing
import TestSupport

/// The golden-output test: every command × cell kind × backend on the fixtures, every output
/// file and the printed summary compared with stored goldens, numbers exact. It guards every
/// behaviour-preserving change (the one-shape redesign first): a change that moves a single bit of
/// any output fails here, naming the case and the file.
///
/// What is compared: SHA-256 of each file after `GoldenOutputs.normalize` takes out what differs
/// between two runs of the same binary on the same input (wall-clock times and rates, the scratch
/// directory's path, the host name, the version). Everything else, every number included, is
/// compared byte for byte; a safetensors file's tensor data is compared raw.
///
/// Goldens are kept per arithmetic (`baseline`: the architecture's baseline build; `fma`: built
/// with fused multiply-adds, as Tools/cellaudit.sh and the second pass of Tools/test.sh build),
/// with OpenBLAS's kernel and the thread count pinned for the runs, so a machine of another
/// vector width gives the same bytes. `CELLAUDIT_GOLDEN_RECORD=1` writes them anew (after a change
/// that is meant to change outputs, and only then):
///   CELLAUDIT_GOLDEN_RECORD=1 swift test --filter GoldenOutputTests
@Suite(.serialized) struct GoldenOutputTests {
    #if CELLAUDIT_FMA
    static let arithmetic = "fma"
    #else
    static let arithmetic = "baseline"
    #endif
    static let manifestPath = Fixtures.path("golden/\(arithmetic).json")
    static var recording: Bool { ProcessInfo.processInfo.environment["CELLAUDIT_GOLDEN_RECORD"] == "1" }

    /// The environment every golden run gets: one OpenBLAS kernel, two worker threads, and the
    /// OpenCL kernels' variants fixed (vector width, chains, work-group, forward tile), which
    /// otherwise follow the device (a CPU with AVX-512 gets 16 lanes, one with AVX2 8).
    static let environment = ["OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_NUM_THREADS": "1", "CELLAUDIT_THREADS": "2",
                              "CELLAUDIT_VW": "4", "CELLAUDIT_CHAINS": "1", "CELLAUDIT_WG": "64", "CELLAUDIT_FORWARD_TILE": "4"]

    /// One run: its name and its arguments, `OUT` standing for a fresh output path.
    struct Case: CustomStringConvertible, Sendable {
        let name: String
        let arguments: [String]
        var description: String { name }
    }

    static let bank = ["--step-amplitudes", "0.5,1", "--frequencies", "0.05", "--sine-amplitudes", "1", "--window", "60"]
    static let kinds: [(String, String)] = [("lstm", "digits_lstm16.safetensors"), ("gru", "digits_gru16.safetensors"),
                                            ("gru_reset_before", "digits_gru16_keras_reset_before.safetensors"),
                                            ("rnn", "digits_rnn16.safetensors")]
    static let backends = ["cpu", "opencl"]

    static var cases: [Case] {
        let data = Fixtures.path("digits_test.safetensors")
        var cases: [Case] = []
        for backend in backends {
            for (kind, file) in kinds {
                let model = Fixtures.path(file)
                let tag = "\(kind)-\(backend)"
                let common = ["--backend", backend, "--quiet"]
                cases += [
                    Case(name: "characterize-\(tag)", arguments: ["characterize", model, "--out", "OUT", "--trajectories", "0-2:0-2"] + bank + common),
                    Case(name: "audit-\(tag)", arguments: ["audit", model, "--data", data, "--out", "OUT", "--attractor-seeds", "64"] + bank + common),
                    Case(name: "ablate-\(tag)", arguments: ["ablate", model, "--data", data, "--out", "OUT"] + bank + common),
                    Case(name: "explain-\(tag)", arguments: ["explain", model, "--data", data, "--out", "OUT"] + common),
                    Case(name: "attractors-\(tag)", arguments: ["attractors", model, "--data", data, "--seeds", "128", "--out", "OUT"] + common),
                    Case(name: "eval-\(tag)", arguments: ["eval", model, "--data", data, "--backend", backend, "--out", "OUT"]),
                ]
            }
            cases += [
                Case(name: "capacity-\(backend)", arguments: ["capacity", Fixtures.path("digits_lstm8.safetensors"), Fixtures.path("digits_lstm16.safetensors"),
                                                              "--out", "OUT"] + bank + ["--backend", backend, "--quiet"]),
                Case(name: "eval-onnx-\(backend)", arguments: ["eval", Fixtures.path("digits_lstm16_onnx.onnx"), "--data", data, "--backend", backend, "--out", "OUT"]),
            ]
        }
        cases += [
            Case(name: "inspect-lstm", arguments: ["inspect", Fixtures.path("digits_lstm16.safetensors")]),
            Case(name: "inspect-onnx", arguments: ["inspect", Fixtures.path("digits_gru16_onnx.onnx")]),
            Case(name: "inspect-verify", arguments: ["inspect", Fixtures.path("digits_lstm16_keras.safetensors"), "--data", data, "--verify"]),
        ]
        return cases
    }

    /// Runs `c` in a fresh scratch directory; returns the normalized hash of stdout and of every file.
    static func run(_ c: Case) throws -> [String: String] {
        let scratch = try Fixtures.scratch("golden-\(c.name)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let out = scratch.appendingPathComponent("out")
        let arguments = c.arguments.map { $0 == "OUT" ? out.path : $0 }
        let r = try CLI.run(arguments, environment: environment, cwd: scratch)
        guard r.exitCode == 0 else { throw GoldenFailure("\(c.name): exit \(r.exitCode): \(r.stderr)") }
        let version = try CLI.run(["--version"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let context = GoldenOutputs.Context(scratch: scratch.path, fixtures: Fixtures.path(""), version: version)
        var hashes = ["<stdout>": GoldenOutputs.sha256(Data(GoldenOutputs.normalize(r.stdout, context).utf8))]
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: out.path, isDirectory: &isDirectory) {
            let files = isDirectory.boolValue
                ? try FileManager.default.subpathsOfDirectory(atPath: out.path).filter { path in
                    var d: ObjCBool = false
                    return FileManager.default.fileExists(atPath: out.appendingPathComponent(path).path, isDirectory: &d) && !d.boolValue
                }
                : [""]
            for file in files {
                let url = file.isEmpty ? out : out.appendingPathComponent(file)
                hashes[file.isEmpty ? "<out>" : file] = try GoldenOutputs.hash(file: url, context)
            }
        }
        return hashes
    }

    @Test func everyCommandKindAndBackendGivesTheGoldenOutputs() throws {
        let runnable = Self.cases.filter { !$0.name.hasSuffix("-opencl") || OpenCLTestSupport.enabled }
        if Self.recording {
            var manifest: [String: [String: String]] = [:]
            for c in Self.cases { manifest[c.name] = try Self.run(c) }
            let data = try JSONSerialization.data(withJSONObject: manifest, options: [.prettyPrinted, .sortedKeys])
            try data.write(to: URL(fileURLWithPath: Self.manifestPath))
            print("recorded \(manifest.count) golden runs in \(Self.manifestPath)")
            return
        }
        let stored = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Self.manifestPath))) as? [String: [String: String]],
            "no goldens at \(Self.manifestPath): record them with CELLAUDIT_GOLDEN_RECORD=1")
        #expect(Set(stored.keys) == Set(Self.cases.map(\.name)), "the goldens list other cases: record them again")
        #expect(runnable.count == Self.cases.count || !OpenCLTestSupport.required)
        for c in runnable {
            let golden = try #require(stored[c.name], "\(c.name): no golden")
            let now = try Self.run(c)
            #expect(Set(now.keys) == Set(golden.keys), "\(c.name): files \(now.keys.sorted()) vs golden \(golden.keys.sorted())")
            let changed = golden.keys.sorted().filter { now[$0] != nil && now[$0] != golden[$0] }
            #expect(changed.isEmpty, "\(c.name): these outputs differ from the goldens: \(changed.joined(separator: ", "))")
        }
    }

    /// The normalizer takes out times, rates and paths, and nothing else.
    @Test func normalizationRemovesOnlyTimesRatesAndPaths() {
        let context = GoldenOutputs.Context(scratch: "/tmp/s-1", fixtures: "/r/Fixtures/", version: "1.2.3")
        let json = "{\n  \"seconds\" : 0.39,\n  \"characterize_seconds\" : 1e-3,\n  \"cell_stimulus_steps_per_second\" : 311264.8,\n  \"gain\" : 0.39\n}"
        let normalized = GoldenOutputs.normalize(json, context)
        #expect(normalized.contains("\"gain\" : 0.39") && !normalized.contains("311264") && !normalized.contains("1e-3"))
        #expect(GoldenOutputs.normalize("<dt>time</dt><dd>0.394 s</dd><dt>cells</dt><dd>16</dd>", context)
                == "<dt>time</dt><dd>T</dd><dt>cells</dt><dd>16</dd>")
        #expect(GoldenOutputs.normalize("wrote /tmp/s-1/out/x.csv from /r/Fixtures/m.safetensors, cellaudit 1.2.3", context)
                == "wrote SCRATCH/out/x.csv from FIXTURES/m.safetensors, cellaudit VERSION")
        #expect(GoldenOutputs.normalize("forward: 0.0123 s, 4.5e+05 sequence-steps per second", context)
                == "forward: T s, R sequence-steps per second")
        #expect(GoldenOutputs.normalize("in 0.015 s: 2.17e+05 per second", context) == "in T s: R per second")
        #expect(GoldenOutputs.normalize("accuracy: 0.9389 on 360 sequences", context) == "accuracy: 0.9389 on 360 sequences")
    }
}

struct GoldenFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Normalization and hashing of outputs for the golden test.
enum GoldenOutputs {
    struct Context { let scratch: String; let fixtures: String; let version: String }

    static func sha256(_ data: Data) -> String {
        let hash = try! ContentHash()
        data.withUnsafeBytes { hash.update($0) }
        return hash.finish()
    }

    /// `text` with times, rates, paths and the version replaced by placeholders.
    static func normalize(_ text: String, _ c: Context) -> String {
        var s = text
        let fixtures = c.fixtures.hasSuffix("/") ? String(c.fixtures.dropLast()) : c.fixtures
        s = s.replacingOccurrences(of: c.scratch, with: "SCRATCH").replacingOccurrences(of: fixtures, with: "FIXTURES")
        if !c.version.isEmpty { s = s.replacingOccurrences(of: c.version, with: "VERSION") }
        let number = #"-?[0-9][0-9.]*(?:[eE][+-]?[0-9]+)?"#
        // JSON keys that hold a time or a rate.
        s = s.replacing(try! Regex(#"("[A-Za-z_]*(?:seconds|per_second)[A-Za-z_]*"\s*:\s*)"# + number), with: { "\($0.output[1].substring!)T" })
        s = s.replacing(try! Regex(#"("host(?:name)?"\s*:\s*)"[^"]*""#), with: { "\($0.output[1].substring!)\"HOST\"" })
        // Report pages: the time and throughput entries.
        s = s.replacing(try! Regex(#"(<dt>(?:time|throughput|seconds)[^<]*</dt><dd>)[^<]*(</dd>)"#),
                        with: { "\($0.output[1].substring!)T\($0.output[2].substring!)" })
        // Printed summaries: "0.0123 s", "4.5e+05 … per second" / "…/s".
        s = s.replacing(try! Regex(number + #"( s\b)"#), with: { "T\($0.output[1].substring!)" })
        s = s.replacing(try! Regex(number + #"((?: [A-Za-z-]+)?(?: per second|/s)\b)"#), with: { "R\($0.output[1].substring!)" })
        return s
    }

    /// The hash of one output file: text normalized; a safetensors file's header normalized and
    /// its tensor bytes raw.
    static func hash(file url: URL, _ c: Context) throws -> String {
        let data = try Data(contentsOf: url)
        if url.pathExtension == "safetensors", data.count >= 8 {
            let length = Int(data.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
            if length <= data.count - 8 {
                let header = String(decoding: data[8..<(8 + length)], as: UTF8.self)
                return sha256(Data(normalize(header, c).utf8) + data[(8 + length)...])
            }
        }
        guard let text = String(data: data, encoding: .utf8) else { return sha256(data) }
        return sha256(Data(normalize(text, c).utf8))
    }
}
