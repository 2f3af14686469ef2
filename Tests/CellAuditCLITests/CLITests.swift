import CellAuditCore
import CellAuditImport
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
import TestSupport

/// `audit` of a small random network with a small bank, into a fresh scratch directory.
func auditArguments(_ extra: [String], label: String = "audit") throws -> [String] {
    let out = try Fixtures.scratch(label).appendingPathComponent("out").path
    return ["audit", "--out", out, "--force", "--quiet", "--step-amplitudes", "0.5,1", "--frequencies", "0.05,0.2",
            "--sine-amplitudes", "1", "--window", "60"] + extra
}

@Suite struct CLITests {
    @Test func versionPrints() throws {
        let r = try CLI.run(["--version"])
        #expect(r.exitCode == 0)
        #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ".").count == 3)
    }

    @Test func auditWritesARowPerCellAndASummary() throws {
        let args = try auditArguments(["--backend", "cpu", "--cells", "6"], label: "audit-rows")
        let r = try CLI.run(args)
        #expect(r.exitCode == 0, "\(r.stderr)")
        #expect(r.stdout.contains("backend: cpu") && r.stdout.contains("top cells"))
        #expect(r.stderr.isEmpty)
        let out = URL(fileURLWithPath: args[2])
        let csv = try String(contentsOf: out.appendingPathComponent("cells.csv"), encoding: .utf8).split(separator: "\n")
        #expect(csv.first?.hasPrefix("layer,cell,rank,score,classes,") == true)
        #expect(csv.count == 7)
        #expect(Set(csv.dropFirst().map { $0.split(separator: ",")[2] }) == Set((1...6).map { Substring(String($0)) }))
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("summary.json"))) as? [String: Any])
        #expect(summary["cells"] as? Int == 6 && (summary["top_cells"] as? [Any])?.count == 6)
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("responses.safetensors").path))
        // The report: every figure is well-formed XML, and the page needs nothing from elsewhere.
        let figures = try FileManager.default.contentsOfDirectory(atPath: out.appendingPathComponent("figures").path)
        #expect(figures.count >= 15 && figures.allSatisfy { $0.hasSuffix(".svg") })
        for name in figures {
            let data = try Data(contentsOf: out.appendingPathComponent("figures").appendingPathComponent(name))
            let parser = XMLParser(data: data)
            #expect(parser.parse(), "\(name): \(parser.parserError.map { "\($0)" } ?? "")")
        }
        let html = try String(contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
        #expect(html.hasPrefix("<!DOCTYPE html>") && html.contains("<svg") && html.contains("All cells, by rank"))
        for external in ["src=", "href=", "url(", "@import", "<script", "<link"] { #expect(!html.contains(external), "\(external)") }
        let withoutNamespaces = html.replacingOccurrences(of: "xmlns=\"http://www.w3.org/2000/svg\"", with: "")
        #expect(!withoutNamespaces.contains("http://") && !withoutNamespaces.contains("https://"))
        #expect(html.components(separatedBy: "<tr><td>").count - 1 == 6)
    }

    /// The README's first command: the bundled model and its test split, from any directory.
    @Test func auditWithoutAModelRunsTheBundledDefault() throws {
        let elsewhere = try Fixtures.scratch("audit-default")
        let args = try auditArguments(["--backend", "cpu", "--json", "--skip-ablation"], label: "audit-default-out")
        let r = try CLI.run(args, cwd: elsewhere)
        #expect(r.exitCode == 0, "\(r.stderr)")
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(summary["model"] as? String == "digits_lstm64.safetensors (bundled)")
        #expect(summary["cells"] as? Int == 64)
        #expect(abs((summary["accuracy"] as? Double ?? 0) - 0.9917) < 1e-3)
        #expect(try FileManager.default.contentsOfDirectory(atPath: elsewhere.path).isEmpty)
        #expect(summary["ablation"] == nil)
    }

    /// With a dataset, the audit checks the ranking by ablation and its report opens with it.
    @Test func auditWithDataChecksTheRankingByAblation() throws {
        let args = try auditArguments([Fixtures.path("digits_lstm8.safetensors"), "--data", Fixtures.path("digits_test.safetensors"),
                                       "--backend", "cpu", "--json"], label: "audit-ablation")
        let r = try CLI.run(args)
        #expect(r.exitCode == 0, "\(r.stderr)")
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let ablation = try #require(summary["ablation"] as? [String: Any])
        let rankers = try #require(ablation["rankers"] as? [[String: Any]])
        #expect(rankers.map { $0["name"] as? String } == ["response", "lrp", "gradient_x_input", "readout_weight", "random"])
        #expect(rankers.allSatisfy { ($0["rho"] as? Double)?.isFinite == true })
        #expect(abs((summary["accuracy"] as? Double ?? 0) - 0.9389) < 1e-3)
        let out = URL(fileURLWithPath: args[2])
        let html = try String(contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
        #expect(html.range(of: "Does the ranking hold?")!.lowerBound < html.range(of: "Cell classes")!.lowerBound)
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("figures/ablation_curves.svg").path))
        let csv = try String(contentsOf: out.appendingPathComponent("ablation.csv"), encoding: .utf8).split(separator: "\n")
        #expect(csv.count == 9 && csv[0].hasPrefix("layer,cell,damage,accuracy_drop,ablation_rank"))
    }

    @Test(arguments: [
        (["audit", "--step-amplitudes", "1,x"], "--step-amplitudes"),
        (["audit", "--window", "0"], "window"),
        (["audit", "--pre-steps", "-3"], "pre-steps"),
        (["audit", "--backend", "gpu"], "--backend"),
        (["audit", "--cells", "0", "--out", "/nonexistent-cellaudit/x"], "--cells"),
        (["audit", "--device", "-1"], "--device"),
        (["audit", "--no-such-option"], "--no-such-option"),
        (["characterize"], "model"),
    ])
    func badInputGivesOneClearLineAndNonZeroExit(arguments: [String], mention: String) throws {
        let r = try CLI.run(arguments, environment: ["CELLAUDIT_BACKEND": "cpu"])
        #expect(r.exitCode != 0)
        #expect(r.stderr.contains(mention), "\(r.stderr)")
        #expect(r.stderr.hasPrefix("error: ") && r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
        #expect(!r.stderr.contains("Fatal error"))
        #expect(r.stdout.isEmpty)
    }

    @Test func badEnvironmentBackendIsRefused() throws {
        let r = try CLI.run(["audit"], environment: ["CELLAUDIT_BACKEND": "tpu"])
        #expect(r.exitCode != 0)
        #expect(r.stderr.contains("CELLAUDIT_BACKEND"))
    }
}

@Suite(.enabled(if: OpenCLTestSupport.enabled, "no OpenCL device (set CELLAUDIT_REQUIRE_OPENCL=1 to fail instead)"))
struct CLIOpenCLTests {
    struct Listing: Decodable {
        struct PlatformEntry: Decodable { var name: String; var devices: [DeviceEntry] }
        struct DeviceEntry: Decodable { var index: Int; var info: Info }
        struct Info: Decodable { var name: String; var type: String; var computeUnits: Int; var globalMemoryBytes: UInt64 }
        struct Auto: Decodable { var backend: String; var reason: String }
        struct CPU: Decodable { var threads: Int; var arithmetic: String }
        var platforms: [PlatformEntry]
        var auto: Auto
        var cpu: CPU
    }

    @Test func devicesJSONParsesAndNamesTheDevice() throws {
        let r = try CLI.run(["devices", "--json"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        let listing = try JSONDecoder().decode(Listing.self, from: Data(r.stdout.utf8))
        let devices = listing.platforms.flatMap(\.devices)
        #expect(!devices.isEmpty)
        #expect(devices.allSatisfy { $0.info.computeUnits > 0 && $0.info.globalMemoryBytes > 0 })
        #expect(!listing.auto.reason.isEmpty)
        // The fallback says how this build rounds, which is what the test binary was built with.
        #expect(listing.cpu.threads > 0 && listing.cpu.arithmetic == CPUBackend.arithmetic)
        if OpenCLTestSupport.required {
            // CI installs PoCL: it must be listed.
            #expect(listing.platforms.contains { $0.name.contains("Portable Computing Language") })
        }
    }

    @Test func explicitOpenCLRunsOnTheDevice() throws {
        let r = try CLI.run(try auditArguments(["--backend", "opencl", "--cells", "5"], label: "audit-opencl"))
        #expect(r.exitCode == 0, "\(r.stderr)")
        #expect(r.stdout.contains("backend: opencl"))
    }

    @Test func runtimeDeviceFailure() throws {
        let fault = ["CELLAUDIT_OPENCL_FAULT": "clEnqueueNDRangeKernel=CL_OUT_OF_RESOURCES"]
        // Explicit opencl: a clear error, non-zero exit, nothing on stdout. An empty PoCL cache
        // makes the kernel compile during the run: failing then must not abort the process.
        for call in ["clEnqueueNDRangeKernel", "clEnqueueReadBuffer"] {
            let cache = try Fixtures.scratch("pocl-cache").path
            let explicit = try CLI.run(try auditArguments(["--backend", "opencl", "--cells", "5"], label: "audit-fault"),
                                       environment: ["CELLAUDIT_OPENCL_FAULT": "\(call)=CL_OUT_OF_RESOURCES", "POCL_CACHE_DIR": cache])
            #expect(explicit.exitCode == 1)
            #expect(explicit.stderr.contains("\(call)") && explicit.stderr.contains("CL_OUT_OF_RESOURCES"))
            #expect(explicit.stderr.split(separator: "\n").count == 1, "\(explicit.stderr)")
            #expect(explicit.stdout.isEmpty)
        }
        // auto on that device: one warning, the job completes on cpu and says so.
        let auto = try CLI.run(try auditArguments(["--backend", "auto", "--device", "0", "--cells", "5"], label: "audit-auto"), environment: fault)
        #expect(auto.exitCode == 0, "\(auto.stderr)")
        #expect(auto.stderr.split(separator: "\n").count == 1)
        #expect(auto.stderr.hasPrefix("warning:"))
        #expect(auto.stdout.contains("backend: cpu"))
    }

    @Test func noOpenCLPlatformFallsBackOrFailsClearly() throws {
        // An ICD folder with nothing in it: the loader finds no platform.
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("cellaudit-empty-icd-\(getpid())")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        let env = ["OCL_ICD_VENDORS": empty.path + "/", "OPENCL_VENDOR_PATH": empty.path]
        let explicit = try CLI.run(try auditArguments(["--backend", "opencl", "--cells", "3"], label: "audit-noicd"), environment: env)
        #expect(explicit.exitCode != 0)
        #expect(explicit.stderr.contains("no OpenCL device"))
        let auto = try CLI.run(try auditArguments(["--cells", "3"], label: "audit-noicd-auto"), environment: env)
        #expect(auto.exitCode == 0, "\(auto.stderr)")
        #expect(auto.stdout.contains("backend: cpu"))
        let devices = try CLI.run(["devices"], environment: env)
        #expect(devices.exitCode == 0)
        #expect(devices.stdout.contains("no platform"))
    }

    /// Every kernel once under oclgrind's data-race, bounds and API checks. (Its --uninitialized
    /// plugin aborts on LLVM's `freeze` instruction, which PoCL-era compilers emit.)
    @Test(.enabled(if: Oclgrind.path != nil || OpenCLTestSupport.required, "oclgrind is not installed"))
    func kernelsRunCleanUnderOclgrind() throws {
        let oclgrind = try #require(Oclgrind.path, "oclgrind is required in CI")
        let r = try CLI.run(["check-kernels"], launcher: [oclgrind, "--data-races", "--check-api"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        #expect(r.stdout.contains("Oclgrind"))
        // The harness's tiny table: every kind, both response kernels and the masked forward.
        for kind in ["lstm", "gru", "rnn_tanh", "rnn_relu"] {
            #expect(r.stdout.contains("\(kind) response_metrics") && r.stdout.contains("\(kind) trajectories"))
        }
        #expect(r.stdout.contains("gru(reset-before) masked_forward") && r.stdout.contains(" 0 failed"))
        // Both forward kernels: the tiled one (the default) and the per-sequence one.
        #expect(r.stdout.contains("lstm masked_forward 5x3, 3 sequences: ") && r.stdout.contains("lstm masked_forward 5x3, 3 sequences, per-sequence kernel"))
        #expect(r.stderr.isEmpty, "oclgrind reported: \(r.stderr)")
    }
}

enum Oclgrind {
    static let path: String? = ["/usr/bin/oclgrind", "/usr/local/bin/oclgrind"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }
}

@Suite(.enabled(if: OpenCLTestSupport.enabled, "no OpenCL device (set CELLAUDIT_REQUIRE_OPENCL=1 to fail instead)"))
struct KernelEmbeddingTests {
    /// The binary carries its kernels: it runs them from a folder with no `Kernels/` in sight.
    @Test func kernelsAreFoundFromAnyWorkingDirectory() throws {
        let elsewhere = FileManager.default.temporaryDirectory.appendingPathComponent("cellaudit-cwd-\(getpid())")
        try FileManager.default.createDirectory(at: elsewhere, withIntermediateDirectories: true)
        #expect(!FileManager.default.fileExists(atPath: elsewhere.appendingPathComponent("Kernels").path))
        let r = try CLI.run(["check-kernels"], cwd: elsewhere)
        #expect(r.exitCode == 0, "\(r.stderr)")
        #expect(r.stdout.contains("lstm response_metrics") && r.stdout.contains(" 0 failed"))
    }
}

@Suite struct ModelCLITests {
    @Test func evalPrintsTheRealAccuracyAndWritesOutputs() throws {
        let dir = try Fixtures.scratch("eval")
        let out = dir.appendingPathComponent("outputs.safetensors").path
        let r = try CLI.run(["eval", Fixtures.path("digits_lstm64.safetensors"), "--data", Fixtures.path("digits_test.safetensors"),
                             "--backend", "cpu", "--out", out, "--json"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(abs((json["accuracy"] as? Double ?? 0) - 0.9917) < 1e-3)
        #expect(FileManager.default.fileExists(atPath: out))
        let header = try Data(contentsOf: URL(fileURLWithPath: out))
        #expect(String(decoding: header.prefix(200), as: UTF8.self).contains(#""shape":[360,10]"#))
    }

    @Test func inspectDescribesTheModel() throws {
        let r = try CLI.run(["inspect", Fixtures.path("digits_lstm32x2.safetensors"), "--json"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(json["hidden_sizes"] as? [Int] == [32, 32])
        // Canonical count, one fused bias per gate row: W, R, b per layer, then V and a.
        let layer0 = 4 * 32 * 8 + 4 * 32 * 32 + 4 * 32
        let layer1 = 4 * 32 * 32 + 4 * 32 * 32 + 4 * 32
        #expect(json["parameters"] as? Int == layer0 + layer1 + 10 * 32 + 10)
    }

    @Test func badModelFilesFailCleanlyAndWriteNothing() throws {
        let dir = try Fixtures.scratch("bad")
        let truncated = dir.appendingPathComponent("truncated.safetensors")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("digits_lstm8.safetensors")))
        try bytes.prefix(bytes.count / 2).write(to: truncated)
        let out = dir.appendingPathComponent("out.safetensors").path
        for args in [["eval", truncated.path, "--data", Fixtures.path("digits_test.safetensors"), "--out", out],
                     ["eval", Fixtures.path("digits_lstm8.safetensors"), "--data", Fixtures.path("flipflop_test.safetensors"), "--out", out],
                     ["eval", dir.appendingPathComponent("nope.safetensors").path, "--data", Fixtures.path("digits_test.safetensors")],
                     ["eval", Fixtures.path("digits_lstm8.safetensors"), "--data", Fixtures.path("digits_test.safetensors"), "--repeat", "0", "--out", out],
                     ["inspect", Fixtures.path("digits_test.safetensors")]] {
            let r = try CLI.run(args + ["--backend", "cpu"])
            #expect(r.exitCode != 0)
            #expect(r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
            #expect(r.stderr.hasPrefix("error: "))
            #expect(!FileManager.default.fileExists(atPath: out))
        }
    }
}

@Suite struct CharacterizeCLITests {
    @Test func writesResponsesStimuliAndTrajectories() throws {
        let dir = try Fixtures.scratch("characterize").appendingPathComponent("out")
        let r = try CLI.run(["characterize", Fixtures.path("digits_lstm32x2.safetensors"), "--backend", "cpu", "--out", dir.path,
                             "--step-amplitudes=-1,0.5,2", "--frequencies", "0.02,0.3", "--sine-amplitudes", "1",
                             "--window", "100", "--trajectories", "0-1,40:0,4", "--json"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(json["cells"] as? Int == 64 && json["stimuli"] as? Int == 5)
        let responses = try SafeTensorsFile(path: dir.appendingPathComponent("responses.safetensors").path)
        for m in Metric.allCases {
            #expect(responses.tensors[m.name]?.shape == [64, 5], "\(m.name)")
        }
        #expect(try responses.integers("layer").suffix(32).allSatisfy { $0 == 1 })
        let settling = try responses.floats("settling_time"), sineGain = try responses.floats("sine_gain")
        #expect(settling[0 * 5 + 0].isFinite && settling[0 * 5 + 3].isNaN)
        #expect(sineGain[0 * 5 + 3].isFinite && sineGain[0 * 5 + 0].isNaN)
        #expect(responses.metadata["mode"] == "self" && responses.metadata["window"] == "100")
        let csv = try String(contentsOf: dir.appendingPathComponent("stimuli.csv"), encoding: .utf8).split(separator: "\n")
        #expect(csv.first == "index,direction,kind,amplitude,frequency,onset,window,analysis_start,analysis_length")
        // Runs start at each cell's resting state with one rest step: onset 1.
        #expect(csv.count == 6 && csv[4].hasPrefix("3,all,sine,1.0,0.02,1,"))
        let traj = try SafeTensorsFile(path: dir.appendingPathComponent("trajectories.safetensors").path)
        let steps = traj.tensors["trajectories"]!.shape[2]
        #expect(traj.tensors["trajectories"]?.shape == [3, 2, steps])
        #expect(try traj.integers("cell") == [0, 1, 8] && traj.integers("layer") == [0, 0, 1])
    }

    @Test func refusesBadRequestsWithOneLineAndWritesNothing() throws {
        let scratch = try Fixtures.scratch("characterize-bad")
        let model = Fixtures.path("digits_lstm8.safetensors")
        let full = scratch.appendingPathComponent("full")
        try FileManager.default.createDirectory(at: full, withIntermediateDirectories: true)
        try Data("keep".utf8).write(to: full.appendingPathComponent("mine.txt"))
        let out = scratch.appendingPathComponent("never").path
        let cases: [([String], String)] = [
            (["--frequencies", "0.5"], "frequency"),
            (["--frequencies", "0.1", "--sine-amplitudes", "none", "--step-amplitudes", "none"], "sine amplitudes"),
            (["--step-amplitudes", "none", "--frequencies", "none"], "empty"),
            (["--window=-4"], "window"),
            (["--window"], "--window"),
            (["--mode", "frozen"], "--mode"),
            (["--direction", "channel:99"], "channel 99"),
            (["--layer", "3"], "layer 3"),
            (["--trajectories", "0-900:0"], "outside"),
            (["--trajectories", "5-2:0"], "range 5-2 is reversed; write it low-high (2-5)"),
            (["--trajectories", "0-7:0-543", "--window", "100000"], "limit"),
            (["--stimuli", scratch.appendingPathComponent("none.json").path], "none.json: no such stimulus file"),
        ]
        for (extra, words) in cases {
            let r = try CLI.run(["characterize", model, "--backend", "cpu", "--out", out, "--quiet"] + extra)
            #expect(r.exitCode != 0, "\(extra)")
            #expect(r.stderr.split(separator: "\n").count == 1 && r.stderr.hasPrefix("error: ") && r.stderr.contains(words), "\(extra): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: out))
        }
        let r = try CLI.run(["characterize", model, "--backend", "cpu", "--out", full.path, "--step-amplitudes", "1", "--frequencies", "none"])
        #expect(r.exitCode != 0 && r.stderr.contains("--force"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: full.path) == ["mine.txt"])
        // --force never deletes a folder of the user's files: only a directory cellaudit wrote.
        let refused = try CLI.run(["characterize", model, "--backend", "cpu", "--out", full.path, "--step-amplitudes", "1",
                                   "--frequencies", "none", "--force", "--quiet"])
        #expect(refused.exitCode == 1 && refused.stderr.contains("did not write") && refused.stderr.contains(full.path), "\(refused.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: full.path) == ["mine.txt"])
        let written = scratch.appendingPathComponent("written").path
        for _ in 0..<2 {   // the second run replaces the first's output
            let forced = try CLI.run(["characterize", model, "--backend", "cpu", "--out", written, "--step-amplitudes", "1",
                                      "--frequencies", "none", "--force", "--quiet"])
            #expect(forced.exitCode == 0, "\(forced.stderr)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: written).sorted() == [".cellaudit-output", "responses.safetensors", "stimuli.csv"])
        }
        // Nothing staged is left beside it.
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path).allSatisfy { !$0.contains("partial") && !$0.contains(".old-") })
    }
}

@Suite struct BenchCLITests {
    @Test func benchReportsEveryWorkloadWithComputedRates() throws {
        let r = try CLI.run(["bench", "--backend", "cpu", "--cells", "9", "--window", "20", "--repeats", "2", "--json"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])
        #expect(rows.map { $0["workload"] as? String } == ["response", "forward", "ablation", "relevance"])
        for row in rows {
            let work = try #require(row["work"] as? Int), seconds = try #require(row["median_seconds"] as? Double)
            let rate = try #require(row["median_per_second"] as? Double)
            #expect(work > 0 && seconds > 0 && abs(rate - Double(work) / seconds) <= 1e-6 * rate)
        }
        let bad = try CLI.run(["bench", "--workload", "nap"])
        #expect(bad.exitCode != 0 && bad.stderr.hasPrefix("error: ") && bad.stderr.contains("--workload"))
        // A bidirectional forward counts sequence-steps as the plain one does; elsewhere the flag is refused.
        let bi = try CLI.run(["bench", "--backend", "cpu", "--workload", "forward", "--bidirectional", "--cells", "9", "--repeats", "1", "--json"])
        let row = try #require((try JSONSerialization.jsonObject(with: Data(bi.stdout.utf8)) as? [[String: Any]])?.first)
        #expect(bi.exitCode == 0 && (row["size"] as? String)?.hasSuffix("per direction, bidirectional") == true && row["work"] as? Int == 512 * 64)
        // The CPU rows name the OpenBLAS kernels the products ran on, as OPENBLAS_CORETYPE forces them.
        let haswell = try CLI.run(["bench", "--backend", "cpu", "--workload", "forward", "--cells", "9", "--repeats", "1", "--json"],
                                  environment: ["OPENBLAS_CORETYPE": "Haswell"])
        let haswellRow = try #require((try JSONSerialization.jsonObject(with: Data(haswell.stdout.utf8)) as? [[String: Any]])?.first)
        #expect((haswellRow["device"] as? String)?.hasSuffix("OpenBLAS Haswell kernels") == true, "\(haswellRow)")
        let refused = try CLI.run(["bench", "--workload", "response", "--bidirectional"])
        #expect(refused.exitCode != 0 && refused.stderr.contains("--bidirectional applies to --workload forward"), "\(refused.stderr)")
    }

    /// The fixed-point workload counts the seeds that converge and writes the seeds it used.
    @Test func benchFixedPointsCountsConvergedSeeds() throws {
        let seeds = try Fixtures.scratch("bench-fp").appendingPathComponent("seeds.safetensors")
        let r = try CLI.run(["bench", "--workload", "fixed-points", "--backend", "cpu", "--repeats", "1", "--seeds-out", seeds.path, "--json"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        let row = try #require((try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])?.first)
        #expect(row["cell"] as? String == "gru" && row["unit"] as? String == "seeds converged")
        let work = try #require(row["work"] as? Int)
        #expect(work > 512 && work <= 1024, "\(row)")
        #expect(try SafeTensorsFile(path: seeds.path).info("seeds").shape == [1024, 16])
        let missing = try CLI.run(["bench", "--workload", "fixed-points", "--model", "/nonexistent/m.safetensors"])
        #expect(missing.exitCode == 1 && missing.stderr.contains("does not exist"))
        // A model given to a workload that times synthetic networks is refused, not ignored.
        let ignored = try CLI.run(["bench", "--workload", "forward", "--model", Fixtures.path("digits_lstm8.safetensors")])
        #expect(ignored.exitCode == 1 && ignored.stderr.contains("--model applies to --workload fixed-points"), "\(ignored.stderr)")
    }
}

@Suite struct AblateCLITests {
    @Test func ablateWritesDamageCurvesAndCorrelations() throws {
        let out = try Fixtures.scratch("ablate").appendingPathComponent("out")
        let r = try CLI.run(["ablate", Fixtures.path("digits_lstm8.safetensors"), "--data", Fixtures.path("digits_test.safetensors"),
                             "--backend", "cpu", "--out", out.path, "--step-amplitudes", "0.5,1", "--frequencies", "0.05,0.2",
                             "--sine-amplitudes", "1", "--window", "60", "--seeds", "2", "--json"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(abs((json["baseline"] as? Double ?? 0) - 0.9389) < 1e-3)
        #expect((json["rankers"] as? [[String: Any]])?.map { $0["name"] as? String } == ["response", "lrp", "gradient_x_input", "readout_weight", "random"])
        let ablation = try String(contentsOf: out.appendingPathComponent("ablation.csv"), encoding: .utf8).split(separator: "\n")
        #expect(ablation.first == "layer,cell,damage,accuracy_drop,ablation_rank,response_rank,lrp_rank,gradient_x_input_rank,readout_weight_rank,random_rank")
        #expect(ablation.count == 9)
        // Which ranking to trust: named in the summary, drawn in rankers.svg.
        let best = try #require(json["most_consistent_ranking"] as? String)
        let rhos = try #require(json["rankers"] as? [[String: Any]]).filter { $0["name"] as? String != "random" }
        #expect(best == rhos.max { ($0["rho"] as? Double ?? -2) < ($1["rho"] as? Double ?? -2) }?["name"] as? String)
        let figure = try String(contentsOf: out.appendingPathComponent("rankers.svg"), encoding: .utf8)
        #expect(figure.contains("gradient_x_input") && figure.contains("lrp"))
        let curves = try String(contentsOf: out.appendingPathComponent("curves.csv"), encoding: .utf8).split(separator: "\n")
        #expect(curves.first == "ranking,order,k,accuracy,spread")
        #expect(curves.contains { $0.hasPrefix("random,random,8,") } && curves.contains { $0.hasPrefix("response,top,8,") })
        // A ranking read back from a CSV: the audit-style score column.
        let csv = out.deletingLastPathComponent().appendingPathComponent("mine.csv")
        try Data(("layer,cell,score\n" + (0..<8).map { "0,\($0),\(8 - $0)" }.joined(separator: "\n")).utf8).write(to: csv)
        let again = try CLI.run(["ablate", Fixtures.path("digits_lstm8.safetensors"), "--data", Fixtures.path("digits_test.safetensors"),
                                 "--backend", "cpu", "--out", out.path, "--force", "--quiet", "--step-amplitudes", "1", "--frequencies", "none",
                                 "--ranking", csv.path, "--seeds", "1"])
        #expect(again.exitCode == 0, "\(again.stderr)")
        #expect(again.stdout.contains("mine.csv"))
        #expect(again.stdout.hasPrefix("backend: cpu (Swift on"), "\(again.stdout)")
        let bad = try CLI.run(["ablate", Fixtures.path("digits_lstm8.safetensors"), "--data", Fixtures.path("digits_test.safetensors"),
                               "--backend", "cpu", "--out", out.path + "-bad", "--ranking", "vibes"])
        #expect(bad.exitCode != 0 && bad.stderr.hasPrefix("error: ") && bad.stderr.contains("vibes"))
        #expect(!FileManager.default.fileExists(atPath: out.path + "-bad"))
        // A NaN score is refused, naming the file's cell.
        try Data(("layer,cell,score\n" + (0..<8).map { "0,\($0),\($0 == 3 ? "nan" : "\(8 - $0)")" }.joined(separator: "\n")).utf8).write(to: csv)
        let nan = try CLI.run(["ablate", Fixtures.path("digits_lstm8.safetensors"), "--data", Fixtures.path("digits_test.safetensors"),
                               "--backend", "cpu", "--out", out.path + "-nan", "--ranking", csv.path])
        #expect(nan.exitCode == 1 && nan.stderr.split(separator: "\n").count == 1 && nan.stderr.contains("layer 0 cell 3"), "\(nan.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out.path + "-nan"))
    }
}

@Suite struct CapacityCLITests {
    @Test func capacityComparesTheBundledFamily() throws {
        let out = try Fixtures.scratch("capacity").appendingPathComponent("out")
        let r = try CLI.run(["capacity", "--backend", "cpu", "--out", out.path, "--quiet", "--step-amplitudes", "0.5,1",
                             "--frequencies", "0.02,0.2", "--sine-amplitudes", "1", "--window", "60"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        let distributions = try String(contentsOf: out.appendingPathComponent("distributions.csv"), encoding: .utf8).split(separator: "\n")
        #expect(distributions.first == "model,cells,metric,count,mean,sd,q10,q25,median,q75,q90")
        #expect(distributions.count == 1 + 5 * CapacityMetricCount.value)
        #expect(distributions.contains { $0.hasPrefix("digits_lstm128,128,gain,128,") })
        let ks = try String(contentsOf: out.appendingPathComponent("ks.csv"), encoding: .utf8).split(separator: "\n")
        #expect(ks.count == 1 + 10 * CapacityMetricCount.value)
        #expect(ks.dropFirst().allSatisfy { Double($0.split(separator: ",")[3]).map { (0...1).contains($0) } ?? false })
        let classes = try String(contentsOf: out.appendingPathComponent("classes.csv"), encoding: .utf8).split(separator: "\n")
        #expect(classes.count == 1 + 5 * 12)   // 12 classes, drifting among them
        let html = try String(contentsOf: out.appendingPathComponent("capacity.html"), encoding: .utf8)
        #expect(html.contains("<svg") && !html.contains("<script") && !html.contains("src="))
        let one = try CLI.run(["capacity", Fixtures.path("digits_lstm8.safetensors"), "--out", out.path + "-one"])
        #expect(one.exitCode != 0 && one.stderr.contains("at least two"))
    }
}

enum CapacityMetricCount { static let value = 10 }

/// Every command on GRU and RNN networks.
@Suite struct CellKindCLITests {
    @Test(arguments: [("digits_gru16", "gru", 3), ("digits_gru16_keras_reset_before", "gru", 3), ("digits_rnn16", "rnn_tanh", 1)])
    func inspectAndEvalNameTheKind(model: String, cell: String, gates: Int) throws {
        let path = Fixtures.path(model + ".safetensors")
        let r = try CLI.run(["inspect", path, "--json", "--data", Fixtures.path("digits_test.safetensors"), "--backend", "cpu"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(json["cell"] as? String == cell)
        #expect((json["gates"] as? [String])?.count == gates)
        // W, R and the fused b per gate block, the GRU's b_hn, the readout.
        let bhn = cell == "gru" ? 16 : 0
        #expect(json["parameters"] as? Int == gates * 16 * (8 + 16 + 1) + bhn + 10 * 16 + 10)
        #expect((json["accuracy"] as? Double ?? 0) > 0.9)
        if cell == "gru" { #expect(json["reset_after"] as? Bool == !model.contains("reset_before")) }
    }

    @Test func ablateAndAuditRunOnAGRUAndAnRNN() throws {
        let dir = try Fixtures.scratch("kinds")
        defer { try? FileManager.default.removeItem(at: dir) }
        let small = ["--step-amplitudes=-1,1", "--frequencies", "0.05,0.2", "--sine-amplitudes", "1", "--window", "80", "--backend", "cpu", "--quiet"]
        let ablate = try CLI.run(["ablate", Fixtures.path("digits_gru16.safetensors"), "--data", Fixtures.path("digits_test.safetensors"),
                                  "--out", dir.appendingPathComponent("ablate").path, "--json"] + small)
        #expect(ablate.exitCode == 0, "\(ablate.stderr)")
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(ablate.stdout.utf8)) as? [String: Any])
        #expect(summary["clamped_state"] as? String == "h")
        let csv = try String(contentsOf: dir.appendingPathComponent("ablate/ablation.csv"), encoding: .utf8)
        #expect(csv.split(separator: "\n").count == 17)
        let audit = try CLI.run(["audit", Fixtures.path("digits_rnn16.safetensors"), "--skip-ablation",
                                 "--out", dir.appendingPathComponent("audit").path] + small)
        #expect(audit.exitCode == 0, "\(audit.stderr)")
        let cells = try String(contentsOf: dir.appendingPathComponent("audit/cells.csv"), encoding: .utf8)
        #expect(cells.split(separator: "\n").count == 17)
        let capacity = try CLI.run(["capacity", Fixtures.path("digits_gru16.safetensors"), Fixtures.path("digits_rnn16.safetensors"),
                                    "--out", dir.appendingPathComponent("capacity").path] + small)
        #expect(capacity.exitCode == 0, "\(capacity.stderr)")
    }

    @Test func probeCIsRefusedForKindsWithoutAMemory() throws {
        let dir = try Fixtures.scratch("probe-c")
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("out").path
        let r = try CLI.run(["characterize", Fixtures.path("digits_gru16.safetensors"), "--probe", "c", "--backend", "cpu", "--out", out])
        #expect(r.exitCode != 0)
        #expect(r.stderr.split(separator: "\n").count == 1 && r.stderr.contains("LSTM-only"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out))
    }
}

/// Two runs to one target, an interrupted run, and what a dead run left behind.
@Suite(.serialized) struct OutputSafetyTests {
    /// A slow characterize (a large random-free bank on the bundled-size model) running in the background.
    func startSlowRun(out: String) throws -> Process {
        let process = Process()
        process.executableURL = CLI.binary
        process.arguments = ["characterize", Fixtures.path("digits_lstm128.safetensors"), "--backend", "cpu", "--window", "20000",
                             "--frequencies", "none", "--out", out, "--quiet"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    func waitForLock(_ lock: String, pid: Int32) -> Bool {
        for _ in 0..<600 {
            if let text = try? String(contentsOfFile: lock, encoding: .utf8), text.trimmingCharacters(in: .whitespacesAndNewlines) == "\(pid)" { return true }
            usleep(10_000)
        }
        return false
    }

    /// Runs cellaudit under `ulimit -f` (bash counts KiB) with SIGXFSZ at its default: the exit
    /// status (128 + signal if one ended it) and stderr.
    func runUnderFileSizeLimit(kibibytes: Int, _ arguments: [String]) throws -> (status: Int32, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-c", "ulimit -f \(kibibytes); exec \"$0\" \"$@\"", CLI.binary.path] + arguments
        let stderr = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = stderr
        try process.run()
        let text = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationReason == .exit ? process.terminationStatus : 128 + process.terminationStatus, text)
    }

    /// A file-size limit met while the writer thread streams responses.safetensors (as a full
    /// disk would be): one line naming the file and the system's reason, a non-zero exit, and no
    /// output that looks complete.
    @Test func aWriteFailureOnTheWriterThreadEndsTheRunCleanly() throws {
        let dir = try Fixtures.scratch("fsize")
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("out").path
        // 100 KiB: past the header and the first metric tensors, short of the 261 KB file.
        let (status, text) = try runUnderFileSizeLimit(kibibytes: 100, ["characterize", Fixtures.path("digits_lstm8.safetensors"),
                                                                       "--backend", "cpu", "--out", out, "--quiet"])
        #expect(status == 1, "exit status \(status)")
        #expect(text.split(separator: "\n").count == 1 && text.contains("responses.safetensors") && text.contains("File too large"), "\(text)")
        #expect(!FileManager.default.fileExists(atPath: out))
        let left = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { !$0.hasSuffix(".lock") }
        #expect(left.isEmpty, "left behind: \(left)")
    }

    /// Foundation's own writes (the report, figures) under a file-size limit: the file and the
    /// system's reason on one line, not an NSError dump.
    @Test func aReportWriteFailureNamesTheFile() throws {
        let dir = try Fixtures.scratch("fsize-report")
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("out").path
        let (status, text) = try runUnderFileSizeLimit(kibibytes: 30, ["audit", Fixtures.path("digits_lstm8.safetensors"),
                                                                      "--data", Fixtures.path("digits_test.safetensors"), "--frequencies", "none",
                                                                      "--backend", "cpu", "--out", out, "--quiet"])
        #expect(status == 1, "exit status \(status)")
        #expect(text.split(separator: "\n").count == 1 && text.contains("File too large") && !text.contains("NSCocoaErrorDomain"), "\(text)")
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    /// SIGHUP (a closed terminal) cleans up like SIGINT and SIGTERM: 128 + 1, nothing left.
    @Test func aHangupLeavesNothing() throws {
        let dir = try Fixtures.scratch("hangup")
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("out").path
        let run = try startSlowRun(out: out)
        #expect(waitForLock(dir.appendingPathComponent(".out.lock").path, pid: run.processIdentifier))
        kill(run.processIdentifier, SIGHUP)
        run.waitUntilExit()
        #expect(run.terminationReason == .exit && run.terminationStatus == 128 + SIGHUP)
        let left = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { !$0.hasSuffix(".lock") }
        #expect(left.isEmpty, "left behind: \(left)")
    }

    @Test func aSecondRunToTheSameTargetFailsAtOnceAndASignalLeavesNothing() throws {
        let dir = try Fixtures.scratch("lock")
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("out").path
        let first = try startSlowRun(out: out)
        #expect(waitForLock(dir.appendingPathComponent(".out.lock").path, pid: first.processIdentifier))
        let second = try CLI.run(["characterize", Fixtures.path("digits_lstm8.safetensors"), "--backend", "cpu", "--out", out,
                                  "--frequencies", "none", "--window", "10"])
        #expect(second.exitCode != 0)
        #expect(second.stderr.contains("being written by another cellaudit run (pid \(first.processIdentifier))"), "\(second.stderr)")
        #expect(second.stderr.split(separator: "\n").count == 1)
        // SIGTERM: the staging directory goes, no output appears, the exit status says why.
        kill(first.processIdentifier, SIGTERM)
        first.waitUntilExit()
        #expect(first.terminationStatus == 128 + SIGTERM)
        let left = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { !$0.hasSuffix(".lock") }
        #expect(left.isEmpty, "left behind: \(left)")
        // The lock is free again.
        let third = try CLI.run(["characterize", Fixtures.path("digits_lstm8.safetensors"), "--backend", "cpu", "--out", out,
                                 "--frequencies", "none", "--window", "10", "--quiet"])
        #expect(third.exitCode == 0, "\(third.stderr)")
    }

    /// A signal at any moment of a run that writes many files (explain's report): either the run
    /// finished first (exit 0, or 128 + signal after a complete output) or nothing is left, never
    /// a staging directory or a partial output.
    @Test func aSignalAtAnyMomentLeavesAWholeOutputOrNothing() throws {
        for (k, delay) in [150_000, 400_000, 800_000, 1_300_000].enumerated() {
            let dir = try Fixtures.scratch("signal-\(k)")
            defer { try? FileManager.default.removeItem(at: dir) }
            let out = dir.appendingPathComponent("out")
            let process = Process()
            process.executableURL = CLI.binary
            process.arguments = ["explain", Fixtures.path("digits_lstm32x2.safetensors"), "--data", Fixtures.path("digits_test.safetensors"),
                                 "--backend", "cpu", "--samples", "360", "--out", out.path, "--quiet"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            usleep(UInt32(delay))
            kill(process.processIdentifier, k % 2 == 0 ? SIGINT : SIGTERM)
            process.waitUntilExit()
            let entries = try FileManager.default.contentsOfDirectory(atPath: dir.path)
            #expect(!entries.contains { $0.contains(".partial-") || $0.contains(".doomed-") || $0.hasSuffix(".lock") }, "left behind: \(entries)")
            if FileManager.default.fileExists(atPath: out.path) {
                // Complete: every file the run writes is there.
                for file in ["relevance.safetensors", "cells.csv", "summary.json", "report.html"] {
                    #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent(file).path), "\(file) missing after delay \(delay)")
                }
            } else {
                #expect(process.terminationStatus == 130 || process.terminationStatus == 143, "status \(process.terminationStatus)")
            }
        }
    }

    /// audit writes its report on the main thread while its dynamics write theirs on another: a
    /// signal at either moment (the process signals itself there, CELLAUDIT_SIGNAL_SELF_AT) ends
    /// the run with 143 and one line, and leaves nothing: no staging or doomed directory, no lock,
    /// no error from a write the cleanup made fail.
    @Test(arguments: ["figures", "attractors-figures"])
    func aSignalWhileTwoThreadsWriteLeavesNothing(_ point: String) throws {
        let dir = try Fixtures.scratch("signal-two-writers")
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try CLI.run(["audit", Fixtures.path("digits_lstm8.safetensors"), "--data", Fixtures.path("digits_test.safetensors"),
                             "--backend", "cpu", "--window", "40", "--frequencies", "0.1", "--attractor-seeds", "32",
                             "--out", dir.appendingPathComponent("out").path, "--quiet"],
                            environment: ["CELLAUDIT_SIGNAL_SELF_AT": point])
        #expect(r.exitCode == 143, "\(r.exitCode) \(r.stderr)")
        let lines = r.stderr.split(separator: "\n").filter { !$0.hasPrefix("audit:") }
        #expect(lines.count == 1 && lines[0].hasPrefix("error: interrupted (SIGTERM)"), "\(r.stderr)")
        let entries = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        #expect(entries.isEmpty, "left behind: \(entries)")
    }

    /// The root, the working directory and the folders above it are never replaced, even with --force.
    @Test func outputsThatWouldDeleteWhereTheUserStandsAreRefused() throws {
        let dir = try Fixtures.scratch("out-here")
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data([1]).write(to: dir.appendingPathComponent("keep.txt"))
        for out in ["", ".", "..", "/"] {
            let r = try CLI.run(["explain", Fixtures.path("digits_lstm8.safetensors"), "--data", Fixtures.path("digits_test.safetensors"),
                                 "--backend", "cpu", "--out", out, "--force"], cwd: dir)
            #expect(r.exitCode != 0 && r.stderr.hasPrefix("error: ") && r.stderr.contains("--out"), "--out '\(out)': \(r.stderr)")
        }
        #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("keep.txt").path))
    }

    @Test func stagingLeftByADeadRunIsRemoved() throws {
        let dir = try Fixtures.scratch("stale")
        defer { try? FileManager.default.removeItem(at: dir) }
        // A PID above the kernel's maximum (4194304) never runs.
        let stale = dir.appendingPathComponent(".out.partial-4194399")
        try FileManager.default.createDirectory(at: stale, withIntermediateDirectories: true)
        try Data([1, 2, 3]).write(to: stale.appendingPathComponent("responses.safetensors"))
        let r = try CLI.run(["characterize", Fixtures.path("digits_lstm8.safetensors"), "--backend", "cpu",
                             "--out", dir.appendingPathComponent("out").path, "--frequencies", "none", "--window", "10", "--quiet"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: stale.path))
    }
}

/// Bad input found by the sweep of issue 14: each refused in one line, with the documented status.
@Suite struct BadInputSweepTests {
    @Test func nanTargetsAreRefusedBeforeAnyWork() throws {
        let dir = try Fixtures.scratch("nan-targets")
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = try SafeTensorsFile(path: Fixtures.path("flipflop_test.safetensors"))
        var targets = try source.floats("targets")
        targets[17] = .nan
        var writer = SafeTensorsWriter(metadata: source.metadata)
        try writer.add("inputs", floats: try source.floats("inputs"), shape: source.tensors["inputs"]!.shape)
        try writer.add("targets", floats: targets, shape: source.tensors["targets"]!.shape)
        let path = dir.appendingPathComponent("nan.safetensors").path
        try writer.write(to: path)
        let r = try CLI.run(["eval", Fixtures.path("flipflop_gru32.safetensors"), "--data", path, "--backend", "cpu"])
        #expect(r.exitCode == 1)
        #expect(r.stderr == "error: nan.safetensors: 'targets' contains nan at element 17 (sequence 0, step 5)\n", "\(r.stderr)")
    }

    @Test func evalOutRefusesToReplaceAFileWithoutForce() throws {
        let dir = try Fixtures.scratch("eval-out")
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("outputs.safetensors").path
        let args = ["eval", Fixtures.path("digits_gru16.safetensors"), "--data", Fixtures.path("digits_test.safetensors"), "--backend", "cpu", "--out", out]
        #expect(try CLI.run(args).exitCode == 0)
        let again = try CLI.run(args)
        #expect(again.exitCode == 1 && again.stderr.contains("exists; use --force"))
        #expect(try CLI.run(args + ["--force"]).exitCode == 0)
        let directory = try CLI.run(Array(args.dropLast()) + [dir.path])
        #expect(directory.exitCode == 1 && directory.stderr.contains("is a directory"))
    }

    /// Usage errors exit 2 whether the parser or the command's own validation finds them.
    @Test func usageErrorsExitTwo() throws {
        #expect(try CLI.run(["eval", "--no-such-option"]).exitCode == 2)
        #expect(try CLI.run(["eval", Fixtures.path("digits_lstm8.safetensors"), "--data", Fixtures.path("digits_test.safetensors"),
                             "--repeat", "0"]).exitCode == 2)
        #expect(try CLI.run(["audit", "--cells", "4", "--device", "-3"]).exitCode == 2)
    }

    @Test func capacityRefusesModelsOfDifferentTasks() throws {
        let r = try CLI.run(["capacity", Fixtures.path("digits_gru16.safetensors"), Fixtures.path("flipflop_gru32.safetensors"),
                             "--backend", "cpu", "--out", FileManager.default.temporaryDirectory.appendingPathComponent("cap-\(getpid())").path])
        #expect(r.exitCode == 1 && r.stderr.contains("one task"), "\(r.stderr)")
    }
}

/// Errors name the file and the kind of problem, and what went wrong with OpenCL says why.
@Suite struct ErrorWordingTests {
    @Test func aDirectoryGivenAsAModelIsNamedAsSuch() throws {
        let dir = try Fixtures.scratch("dir-model")
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try CLI.run(["inspect", dir.path])
        #expect(r.exitCode == 1)
        #expect(r.stderr == "error: \(dir.lastPathComponent) is a directory; give the model file\n", "\(r.stderr)")
        #expect(!r.stderr.contains("NSCocoaErrorDomain"))
    }

    @Test func anUnwritablePoclCacheIsNamedAsTheCause() throws {
        let env = ["POCL_CACHE_DIR": "/proc/cellaudit-no-cache"]
        let dir = try Fixtures.scratch("pocl-cache")
        defer { try? FileManager.default.removeItem(at: dir) }
        let explicit = try CLI.run(["audit", "--cells", "3", "--backend", "opencl", "--out", dir.appendingPathComponent("a").path], environment: env)
        #expect(explicit.exitCode == 1 && explicit.stderr.contains("POCL_CACHE_DIR=/proc/cellaudit-no-cache is not a writable directory"), "\(explicit.stderr)")
        let auto = try CLI.run(["audit", "--cells", "3", "--backend", "auto", "--out", dir.appendingPathComponent("b").path, "--quiet"], environment: env)
        #expect(auto.exitCode == 0)
        #expect(auto.stderr.contains("warning: POCL_CACHE_DIR=/proc/cellaudit-no-cache is not a writable directory") && auto.stderr.contains("using the cpu backend"), "\(auto.stderr)")
    }

    @Test func anUnknownFaultCallIsAnError() throws {
        let r = try CLI.run(["audit", "--cells", "3", "--backend", "cpu"], environment: ["CELLAUDIT_OPENCL_FAULT": "clNoSuchCall=CL_OUT_OF_RESOURCES"])
        #expect(r.exitCode == 1 && r.stderr.contains("'clNoSuchCall' is not an OpenCL call CellAudit makes"))
    }

    @Test func auditAndAblateEndWithThePathTheyWrote() throws {
        let dir = try Fixtures.scratch("paths")
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("audit").path
        let r = try CLI.run(["audit", "--cells", "4", "--backend", "cpu", "--out", out, "--quiet", "--window", "40", "--frequencies", "0.1"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        #expect(r.stdout.split(separator: "\n").last?.hasPrefix("wrote \(out)/report.html") == true, "\(r.stdout)")
    }
}

/// Problems found by trying the tool as a new user (issue 14's sweep, second round).
@Suite struct NewUserFindingsTests {
    @Test func anImpossibleWorkGroupSizeIsRefusedNotCrashed() throws {
        let r = try CLI.run(["characterize", Fixtures.path("digits_gru16.safetensors"), "--backend", "opencl", "--window", "40",
                             "--frequencies", "0.1", "--out", FileManager.default.temporaryDirectory.appendingPathComponent("wg-\(getpid())").path],
                            environment: ["CELLAUDIT_WG": "4096"])
        #expect(r.exitCode == 1 && r.stderr.contains("CELLAUDIT_WG must be 1…1024, got 4096"), "\(r.exitCode) \(r.stderr)")
    }

    @Test(arguments: [("CELLAUDIT_FORWARD_TILE", "5", "CELLAUDIT_FORWARD_TILE must be 4, 8 or 16 (work-items per side of the forward's step tile), got 5"),
                      ("CELLAUDIT_FORWARD_TILE", "x", "CELLAUDIT_FORWARD_TILE must be a whole number, got 'x'"),
                      ("CELLAUDIT_FORWARD", "blocked", "CELLAUDIT_FORWARD must be tiled or per-sequence, got 'blocked'")])
    func aBadForwardKernelSettingIsRefused(_ variable: String, _ value: String, _ message: String) throws {
        let r = try CLI.run(["eval", Fixtures.path("digits_lstm8.safetensors"), "--data", Fixtures.path("digits_test.safetensors"),
                             "--backend", "opencl"], environment: [variable: value])
        #expect(r.exitCode == 1 && r.stderr == "error: \(message)\n", "\(r.exitCode) \(r.stderr)")
    }

    @Test func theDatasetIsCheckedBeforeAnyCellIsCharacterized() throws {
        let dir = try Fixtures.scratch("early-data")
        defer { try? FileManager.default.removeItem(at: dir) }
        let start = Date()
        // A large bank that would take long to characterize: the mismatch must stop it first.
        let r = try CLI.run(["audit", Fixtures.path("digits_lstm128.safetensors"), "--data", Fixtures.path("flipflop_test.safetensors"),
                             "--backend", "cpu", "--window", "20000", "--out", dir.appendingPathComponent("a").path])
        #expect(r.exitCode == 1)
        #expect(r.stderr == "error: bad data: flipflop_test.safetensors: the data has 3 input channels but the model takes 8\n", "\(r.stderr)")
        #expect(Date().timeIntervalSince(start) < 30)
        let labels = try CLI.run(["ablate", Fixtures.path("flipflop_gru32.safetensors"), "--data", Fixtures.path("digits_test.safetensors"),
                                  "--backend", "cpu", "--out", dir.appendingPathComponent("b").path])
        #expect(labels.exitCode == 1 && labels.stderr.contains("digits_test.safetensors:"), "\(labels.stderr)")
    }

    @Test func nonsenseIsRefused() throws {
        let dir = try Fixtures.scratch("nonsense")
        defer { try? FileManager.default.removeItem(at: dir) }
        let thresholds = dir.appendingPathComponent("t.json")
        try Data(#"{"fast_settling": -5}"#.utf8).write(to: thresholds)
        let t = try CLI.run(["audit", "--cells", "3", "--backend", "cpu", "--class-thresholds", thresholds.path, "--out", dir.appendingPathComponent("t").path])
        #expect(t.exitCode == 1 && t.stderr.contains("'fast_settling' must be a finite number ≥ 0, got -5"), "\(t.stderr)")
        let stimuli = dir.appendingPathComponent("s.json")
        try Data(#"{"window": 100, "window": 200, "step_amplitudes": [1]}"#.utf8).write(to: stimuli)
        let s = try CLI.run(["characterize", Fixtures.path("digits_lstm8.safetensors"), "--backend", "cpu", "--stimuli", stimuli.path,
                             "--out", dir.appendingPathComponent("s").path])
        #expect(s.exitCode == 1 && s.stderr.contains("s.json: the key 'window' appears twice"), "\(s.stderr)")
        let device = try CLI.run(["audit", "--cells", "3", "--backend", "cpu", "--device", "99"])
        #expect(device.exitCode == 2 && device.stderr.contains("--backend cpu uses none"), "\(device.stderr)")
    }

    @Test func theLockFileGoesWithTheRun() throws {
        let dir = try Fixtures.scratch("lock-gone")
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try CLI.run(["characterize", Fixtures.path("digits_lstm8.safetensors"), "--backend", "cpu", "--frequencies", "none",
                             "--window", "10", "--out", dir.appendingPathComponent("out").path, "--quiet"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["out"])
    }
}

@Suite struct ExplainCLITests {
    /// explain writes every output, the relevance file holds what the summary says, and with bias
    /// factor 1 the relevance is conserved in the file.
    @Test func explainWritesRelevanceReportAndCells() throws {
        let out = try Fixtures.scratch("explain").appendingPathComponent("out")
        let r = try CLI.run(["explain", Fixtures.path("digits_lstm32x2.safetensors"), "--data", Fixtures.path("digits_test.safetensors"),
                             "--backend", "cpu", "--bias-factor", "1", "--epsilon", "0.05", "--samples", "3", "--out", out.path, "--json"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(json["sequences"] as? Int == 360 && json["target"] as? String == "predicted")
        #expect((json["conservation_worst_relative_error"] as? Double ?? 1) < 1e-4)
        #expect(json["explained_step"] == nil)
        let file = try SafeTensorsFile(path: out.appendingPathComponent("relevance.safetensors").path)
        #expect(try file.info("input").shape == [360, 8, 8] && file.info("cells").shape == [360, 8, 64])
        #expect(try file.info("target").dtype == .I32 && file.info("layer").shape == [64])
        let input = try file.floats("input"), rest = try file.floats("rest"), score = try file.floats("score")
        for s in [0, 100, 359] {
            let total = input[(s * 64)..<((s + 1) * 64)].reduce(0.0) { $0 + Double($1) } + Double(rest[s])
            #expect(abs(total - Double(score[s])) <= 1e-4 * abs(Double(score[s])))
        }
        let cells = try String(contentsOf: out.appendingPathComponent("cells.csv"), encoding: .utf8).split(separator: "\n")
        #expect(cells.first == "layer,cell,mean_abs_relevance,rank" && cells.count == 65)
        let top = try #require((json["top_cells"] as? [[String: Any]])?.first)
        #expect(cells.contains { $0.hasPrefix("\(top["layer"]!),\(top["cell"]!),") && $0.hasSuffix(",1") })
        let html = try String(contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
        #expect(html.contains("Sequence 2: input relevance") && !html.contains("Sequence 3: input relevance"))
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("figures/cells.svg").path))
        // The same output again is refused; the first run's files stay.
        let again = try CLI.run(["explain", Fixtures.path("digits_lstm32x2.safetensors"), "--data", Fixtures.path("digits_test.safetensors"),
                                 "--out", out.path])
        #expect(again.exitCode != 0 && again.stderr.contains("--force"))
    }

    /// A regression model with sequence outputs: one output at one step, explained on OpenCL
    /// where a device is, the same as on the CPU.
    @Test func explainOneStepOfASequenceOutput() throws {
        let dir = try Fixtures.scratch("explain-step")
        var files: [String: SafeTensorsFile] = [:]
        for backend in OpenCLTestSupport.enabled ? ["cpu", "opencl"] : ["cpu"] {
            let out = dir.appendingPathComponent(backend)
            let r = try CLI.run(["explain", Fixtures.path("flipflop_rnn32.safetensors"), "--data", Fixtures.path("flipflop_test.safetensors"),
                                 "--target", "2", "--step", "50", "--backend", backend, "--out", out.path, "--quiet"])
            #expect(r.exitCode == 0, "\(r.stderr)")
            files[backend] = try SafeTensorsFile(path: out.appendingPathComponent("relevance.safetensors").path)
        }
        let cpu = try #require(files["cpu"])
        let input = try cpu.floats("input")
        // Nothing after step 50 can be relevant to the output at step 50.
        for s in 0..<64 { for t in 51..<100 { for i in 0..<3 { #expect(input[(s * 100 + t) * 3 + i] == 0) } } }
        #expect(try cpu.integers("target").allSatisfy { $0 == 2 })
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("cpu/summary.json"))) as? [String: Any])
        #expect(summary["explained_step"] as? Int == 50 && summary["conservation_worst_relative_error"] == nil)
        if let opencl = files["opencl"] {
            let a = try opencl.floats("input"), scale = input.map(abs).max()!
            #expect(zip(a, input).allSatisfy { abs($0 - $1) <= Tolerance.relevance * scale + Tolerance.relevanceAbsolute })
        }
    }

    @Test(arguments: [
        (["--epsilon", "-1"], "--epsilon"), (["--bias-factor", "2"], "--bias-factor"), (["--target", "first"], "--target"),
        (["--target", "10"], "10 outputs"), (["--step", "3"], "every step"), (["--samples", "-1"], "--samples"),
    ])
    func explainRefusesBadOptions(_ extra: [String], _ named: String) throws {
        let out = try Fixtures.scratch("explain-bad").appendingPathComponent("out")
        let r = try CLI.run(["explain", Fixtures.path("digits_lstm8.safetensors"), "--data", Fixtures.path("digits_test.safetensors"),
                             "--backend", "cpu", "--out", out.path] + extra)
        #expect(r.exitCode != 0 && r.stderr.hasPrefix("error: ") && r.stderr.contains(named), "\(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1)
        #expect(!FileManager.default.fileExists(atPath: out.path))
    }

    /// Explaining a model's own predictions needs inputs only; `--target label` then asks for labels.
    @Test func explainNeedsNoLabelsForPredictions() throws {
        let dir = try Fixtures.scratch("explain-unlabelled")
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = try SafeTensorsFile(path: Fixtures.path("digits_test.safetensors"))
        var writer = SafeTensorsWriter()
        try writer.add("inputs", floats: Array(try source.floats("inputs")[0..<(20 * 64)]), shape: [20, 8, 8])
        let data = dir.appendingPathComponent("inputs_only.safetensors").path
        try writer.write(to: data)
        let r = try CLI.run(["explain", Fixtures.path("digits_lstm8.safetensors"), "--data", data, "--backend", "cpu",
                             "--out", dir.appendingPathComponent("out").path, "--quiet", "--json"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        let label = try CLI.run(["explain", Fixtures.path("digits_lstm8.safetensors"), "--data", data, "--backend", "cpu",
                                 "--target", "label", "--out", dir.appendingPathComponent("out2").path])
        #expect(label.exitCode == 1 && label.stderr.contains("inputs_only.safetensors") && label.stderr.contains("labels"), "\(label.stderr)")
        // Scoring still needs the answers.
        let eval = try CLI.run(["eval", Fixtures.path("digits_lstm8.safetensors"), "--data", data, "--backend", "cpu"])
        #expect(eval.exitCode == 1 && eval.stderr.contains("neither 'labels' nor 'targets'"), "\(eval.stderr)")
    }

    @Test func explainRefusesAPredictionOfAMultiOutputRegression() throws {
        let out = try Fixtures.scratch("explain-regression").appendingPathComponent("out")
        let r = try CLI.run(["explain", Fixtures.path("flipflop_rnn32.safetensors"), "--data", Fixtures.path("flipflop_test.safetensors"),
                             "--backend", "cpu", "--out", out.path])
        #expect(r.exitCode == 1 && r.stderr.contains("--target"), "\(r.stderr)")
        let label = try CLI.run(["explain", Fixtures.path("flipflop_rnn32.safetensors"), "--data", Fixtures.path("flipflop_test.safetensors"),
                                 "--backend", "cpu", "--out", out.path, "--target", "label"])
        #expect(label.exitCode == 1 && label.stderr.contains("flipflop_test.safetensors") && label.stderr.contains("labels"), "\(label.stderr)")
    }
}

@Suite struct StateDictCLITests {
    /// A plain state dict on the command line: what it cannot say comes from flags, and a missing
    /// one is asked for in one line.
    @Test func aStateDictNeedsOnlyWhatItCannotSay() throws {
        let path = Fixtures.path("state_dicts/rnn_relu.safetensors")
        let missing = try CLI.run(["inspect", path])
        #expect(missing.exitCode == 1 && missing.stderr.hasPrefix("error: rnn_relu.safetensors: ") && missing.stderr.contains("--nonlinearity"))
        #expect(missing.stderr.split(separator: "\n").count == 1)
        let r = try CLI.run(["inspect", path, "--nonlinearity", "relu", "--json"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(json["cell"] as? String == "rnn_relu" && json["outputs"] as? Int == 2 && json["hidden_sizes"] as? [Int] == [6])
        let bad = try CLI.run(["inspect", path, "--nonlinearity", "sigmoid"])
        #expect(bad.exitCode == 2 && bad.stderr.contains("--nonlinearity"))
        let flagged = try CLI.run(["inspect", Fixtures.path("digits_lstm8.safetensors"), "--task", "regression"])
        #expect(flagged.exitCode == 1 && flagged.stderr.contains("plain state dicts"))
    }
}

@Suite struct VerifyCLITests {
    /// A model file checks itself against the outputs its framework stored in it.
    @Test func verifyRerunsTheGoldenOutputs() throws {
        let data = Fixtures.path("digits_test.safetensors")
        for model in ["digits_lstm32x2", "digits_gru16_keras_reset_before", "digits_rnn16_onnx"] {
            let r = try CLI.run(["inspect", Fixtures.path("\(model).safetensors"), "--data", data, "--verify", "--backend", "cpu", "--json"])
            #expect(r.exitCode == 0, "\(model): \(r.stderr)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
            #expect(json["outputs"] != nil && json["hidden states"] != nil && json["accuracy"] != nil, "\(json)")
        }
        // One readout weight off by 1 %: caught, named, one line.
        let dir = try Fixtures.scratch("verify")
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = try SafeTensorsFile(path: Fixtures.path("digits_lstm8.safetensors"))
        var writer = SafeTensorsWriter(metadata: source.metadata)
        for name in source.tensors.keys.sorted() {
            var values = try source.floats(name)
            if name == "fc.weight" { values[3] *= 1.01 }
            try writer.add(name, floats: values, shape: try source.info(name).shape)
        }
        let tampered = dir.appendingPathComponent("tampered.safetensors").path
        try writer.write(to: tampered)
        let bad = try CLI.run(["inspect", tampered, "--data", data, "--verify", "--backend", "cpu"])
        #expect(bad.exitCode == 1 && bad.stderr.hasPrefix("error: tampered.safetensors: outputs differ from the framework's"), "\(bad.stderr)")
        #expect(bad.stderr.split(separator: "\n").count == 1)
        let none = try CLI.run(["inspect", Fixtures.path("state_dicts/lstm2_head.safetensors"), "--data", data, "--verify"])
        #expect(none.exitCode == 1 && none.stderr.contains("no golden outputs"), "\(none.stderr)")
        let noData = try CLI.run(["inspect", Fixtures.path("digits_lstm8.safetensors"), "--verify"])
        #expect(noData.exitCode == 2 && noData.stderr.contains("--verify needs --data"))
    }

    /// attractors writes every output, each consistent with the others: one CSV row and one
    /// safetensors row per point, graph nodes = the stable fixed points, the dot file has every edge.
    @Test func attractorsWritesPointsGraphAndReport() throws {
        let out = try Fixtures.scratch("attractors").appendingPathComponent("out")
        let model = Fixtures.path("dynamics/flipflop3_gru16.safetensors"), data = Fixtures.path("dynamics/flipflop3_test.safetensors")
        let r = try CLI.run(["attractors", model, "--data", data, "--seeds", "200", "--backend", "cpu", "--out", out.path, "--json"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let layer = try #require((json["layers"] as? [[String: Any]])?.first)
        #expect(layer["stable_fixed_points"] as? Int == 8 && layer["edges"] as? Int ?? 0 >= 24, "\(layer)")
        let csv = try String(contentsOf: out.appendingPathComponent("fixed_points.csv"), encoding: .utf8).split(separator: "\n")
        #expect(csv.first == "index,layer,kind,stable,q,spectral_radius,unstable_modes,slowest_time_constant")
        let rows = csv.dropFirst().map { $0.split(separator: ",").map(String.init) }
        #expect(rows.enumerated().allSatisfy { Int($0.element[0]) == $0.offset })
        let file = try SafeTensorsFile(path: out.appendingPathComponent("fixed_points.safetensors").path)
        #expect(try file.info("states").shape == [rows.count, 16] && file.info("states").dtype == .F64)
        #expect(try file.info("eigenvalues").shape == [rows.count, 16, 2])
        let graph = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("graph.json"))) as? [String: Any])
        let nodes = try #require(graph["nodes"] as? [[String: Any]]).compactMap { $0["index"] as? Int }
        let stableRows = rows.filter { $0[2] == "fixed" && $0[3] == "true" }.map { Int($0[0])! }
        #expect(nodes == stableRows && nodes.count == 8)
        let edges = try #require(graph["edges"] as? [[String: Any]])
        #expect(edges.allSatisfy { nodes.contains($0["from"] as! Int) && nodes.contains($0["to"] as! Int) && [1, -1].contains($0["sign"] as! Int) })
        let dot = try String(contentsOf: out.appendingPathComponent("graph.dot"), encoding: .utf8)
        #expect(dot.hasPrefix("digraph") && dot.components(separatedBy: " -> ").count - 1 == edges.count)
        let html = try String(contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
        #expect(html.contains("excitable network") && FileManager.default.fileExists(atPath: out.appendingPathComponent("figures/layer0_graph.svg").path))
        // The same output again is refused.
        let again = try CLI.run(["attractors", model, "--out", out.path, "--backend", "cpu"])
        #expect(again.exitCode != 0 && again.stderr.contains("--force"))
    }

    @Test(arguments: [
        (["--input", "0,0"], "3 input channels"), (["--input", "0,nan,0"], "--input"), (["--seeds", "0"], "--seeds"),
        (["--max-amplitude", "-1"], "--max-amplitude"), (["--pulse-length", "0"], "--pulse-length"),
    ])
    func attractorsRefusesBadOptions(_ extra: [String], _ named: String) throws {
        let out = try Fixtures.scratch("attractors-bad").appendingPathComponent("out")
        let r = try CLI.run(["attractors", Fixtures.path("dynamics/flipflop3_gru16.safetensors"), "--backend", "cpu", "--out", out.path] + extra)
        // An --input of the wrong width does not fit the model (exit 1); the rest are malformed on their own (exit 2).
        let expected: Int32 = named == "3 input channels" ? 1 : 2
        #expect(r.exitCode == expected && r.stderr.hasPrefix("error: ") && r.stderr.contains(named), "\(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1)
        #expect(!FileManager.default.fileExists(atPath: out.path))
    }

    /// audit --data writes the dynamics beside the audit and its report links to them.
    @Test func auditWithDataLinksTheAttractors() throws {
        let args = try auditArguments([Fixtures.path("dynamics/flipflop3_lstm16.safetensors"), "--data", Fixtures.path("dynamics/flipflop3_test.safetensors"),
                                       "--backend", "cpu", "--skip-ablation", "--attractor-seeds", "128", "--json"], label: "audit-attractors")
        let out = URL(fileURLWithPath: args[2])
        let r = try CLI.run(args)
        #expect(r.exitCode == 0, "\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let layer = try #require((json["attractors"] as? [[String: Any]])?.first)
        #expect(layer["stable_fixed_points"] as? Int == 8)
        let html = try String(contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
        #expect(html.contains("href=\"attractors/report.html\""))
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("attractors/graph.json").path))
    }

    /// Every command reads an .onnx file itself: eval equals PyTorch, a refusal is one line.
    @Test func commandsReadONNXNatively() throws {
        let model = Fixtures.path("cases/onnx/torch-onnx-export.onnx"), data = Fixtures.path("cases/onnx/torch-onnx-export.data.safetensors")
        let out = try Fixtures.scratch("onnx-eval").appendingPathComponent("outputs.safetensors")
        let r = try CLI.run(["eval", model, "--data", data, "--out", out.path, "--backend", "cpu"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        let got = try SafeTensorsFile(path: out.path).floats("outputs")
        let want = try SafeTensorsFile(path: Fixtures.path("cases/onnx/torch-onnx-export.torch_out.safetensors")).floats("outputs")
        #expect(zip(got, want).allSatisfy { abs($0 - $1) <= 1e-4 })
        let inspect = try CLI.run(["inspect", Fixtures.path("onnx/gru2_dynamo.onnx"), "--json"])
        #expect(inspect.exitCode == 0 && inspect.stdout.contains("\"gru\""), "\(inspect.stdout) \(inspect.stderr)")
        let refused = try CLI.run(["inspect", Fixtures.path("cases/onnx/onnx-clip.onnx")])
        #expect(refused.exitCode == 1 && refused.stderr.hasPrefix("error: onnx-clip.onnx: ") && refused.stderr.contains("'clip'"))
        #expect(refused.stderr.split(separator: "\n").count == 1)
        let flag = try CLI.run(["inspect", model, "--rnn-prefix", "rnn."])
        #expect(flag.exitCode != 0 && flag.stderr.contains("--rnn-prefix applies to plain state dicts"), "\(flag.stderr)")
        let dyn = try Fixtures.scratch("onnx-attractors").appendingPathComponent("out")
        let a = try CLI.run(["attractors", Fixtures.path("onnx/lstm2_dynamo.onnx"), "--seeds", "32", "--backend", "cpu", "--out", dyn.path, "--quiet"])
        #expect(a.exitCode == 0 && a.stdout.contains("layer 1"), "\(a.stderr)")
    }
}
