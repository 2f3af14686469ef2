import CellAuditCore
import CellAuditImport
import Foundation
import Testing
import TestSupport

/// Bad inputs of the kinds found on 2026-12-07 (Tests/Fixtures/cases/2026-12-07, from
/// ../shared/cases/2026-12-07): each gets one line naming the file and the problem and exit 1,
/// never a trap, a wrong result, or a pass.
@Suite struct BadInputKindsTests {
    static func path(_ name: String) -> String { Fixtures.path("cases/2026-12-07/\(name)") }

    static func expectRefusal(_ arguments: [String], naming words: [String], cwd: URL? = nil) throws {
        let r = try CLI.run(arguments, cwd: cwd)
        let context = "\(arguments.joined(separator: " ")): rc \(r.exitCode) \(r.stderr)"
        #expect(r.exitCode == 1, "\(context)")
        #expect(r.stderr.hasPrefix("error: ") && r.stderr.split(separator: "\n").count == 1, "\(context)")
        for w in words { #expect(r.stderr.contains(w), "\(context): should name \(w)") }
    }

    /// Sizes of 2^61 and 2^62 trapped on overflow (SIGILL); now refused before any arithmetic.
    @Test(arguments: [("g_hidden_huge.onnx", "hidden_size"), ("g_gru_hidden_huge.onnx", "hidden_size"), ("ca_h61.safetensors", "hidden_sizes")])
    func hugeSizesAreRefused(file: String, key: String) throws {
        try Self.expectRefusal(["inspect", Self.path(file)], naming: [file, key, "16777216"])
    }

    /// Labels stored as uint64 ≥ 2^63 trapped at the conversion; now refused naming the array.
    @Test(arguments: ["d_lab_u64.npz", "d_lab_u64max.npz"])
    func labelsOutsideTheIntegersAreRefused(file: String) throws {
        try Self.expectRefusal(["eval", Self.path("lstm1.safetensors"), "--data", Self.path(file), "--backend", "cpu"], naming: [file, "labels"])
    }

    /// Safetensors headers hold JSON integers where the format says integer, as its reference
    /// reader requires: 10.0, 1e1 and true are refused.
    @Test(arguments: ["st_shape_float.safetensors", "st_shape_exponent.safetensors", "st_offset_float.safetensors", "st_shape_bool.safetensors"])
    func nonIntegerShapesAndOffsetsAreRefused(file: String) throws {
        try Self.expectRefusal(["inspect", Self.path(file)], naming: [file, "JSON integers"])
    }

    /// --verify fails on a golden that holds NaN, on an unparseable golden score, and says that
    /// an ONNX graph carries no goldens instead of misreading it as safetensors.
    @Test func verifyIsStrict() throws {
        let data = Self.path("data.npz")
        try Self.expectRefusal(["inspect", Self.path("ca_golden_nan.safetensors"), "--data", data, "--verify"], naming: ["ca_golden_nan.safetensors", "nan"])
        try Self.expectRefusal(["inspect", Self.path("ca_golden_accbad.safetensors"), "--data", data, "--verify"],
                               naming: ["ca_golden_accbad.safetensors", "golden_accuracy", "banana"])
        try Self.expectRefusal(["inspect", Fixtures.path("onnx/gru1_ts.onnx"), "--data", data, "--verify"], naming: ["gru1_ts.onnx", "ONNX graph"])
    }

    /// ONNX external data reached through a symbolic link out of the model's folder (to
    /// /etc/passwd) was read as weights; onnxruntime refuses it, and so does CellAudit.
    @Test func externalDataMustStayInsideTheModelsFolder() throws {
        let dir = try Fixtures.scratch("ext-symlink")
        try FileManager.default.copyItem(atPath: Self.path("x_ext_symlink.onnx"), toPath: dir.appendingPathComponent("x_ext_symlink.onnx").path)
        try FileManager.default.createSymbolicLink(atPath: dir.appendingPathComponent("link.bin").path, withDestinationPath: "/etc/passwd")
        try Self.expectRefusal(["eval", dir.appendingPathComponent("x_ext_symlink.onnx").path, "--data", Self.path("data.npz"), "--backend", "cpu"],
                               naming: ["x_ext_symlink.onnx", "link.bin", "outside the model's directory"])
    }
}

/// Every model and dataset argument passes one door that tells a file by its content: a file of a
/// format CellAudit does not read is named for what it is, with the way forward.
@Suite struct FormatSniffingTests {
    static func path(_ name: String) -> String { Fixtures.path("cases/2026-12-07/\(name)") }

    @Test(arguments: [("legacy.pt", "torch 1.6"), ("keras3_like.keras", "Keras 3"), ("hdf5_like.h5", "HDF5"),
                      ("d_plain.npy", ".npy"), ("data.npz", "holds data, not a model"), ("other.zip", "ZIP archive that is not")])
    func aModelOfAnotherFormatIsNamed(file: String, words: String) throws {
        for command in [["inspect"], ["eval", "--data", Self.path("data.npz")]] {
            let arguments = [command[0], Self.path(file)] + command.dropFirst()
            try BadInputKindsTests.expectRefusal(arguments, naming: [file, words])
            let r = try CLI.run(arguments)
            #expect(!r.stderr.contains("header length"), "\(r.stderr)")
        }
    }

    /// A torch.save file is read natively (the case that was refused before issue 30): `inspect`
    /// names the same network as its safetensors twin, under any extension.
    @Test func aTorchSaveFileIsRead() throws {
        let dir = try Fixtures.scratch("sniff-pt")
        let renamed = dir.appendingPathComponent("weights.bin").path
        try FileManager.default.copyItem(atPath: Fixtures.path("torch/lstm2_f32.pt"), toPath: renamed)
        let twin = try CLI.run(["inspect", Fixtures.path("torch/lstm2_f32.safetensors")])
        for model in [Self.path("model.pt"), Fixtures.path("torch/lstm2_f32.pt"), renamed] {
            let r = try CLI.run(["inspect", model])
            #expect(r.exitCode == 0, "\(model): \(r.stderr)")
            if model != Self.path("model.pt") {
                #expect(r.stdout.split(separator: "\n").dropFirst() == twin.stdout.split(separator: "\n").dropFirst())
            }
        }
    }

    /// A model renamed `.bin` is still read by content; an ONNX graph with another extension too.
    @Test func contentNotNameDecides() throws {
        let dir = try Fixtures.scratch("sniff")
        let renamed = dir.appendingPathComponent("weights.bin").path
        try FileManager.default.copyItem(atPath: Fixtures.path("digits_lstm8.safetensors"), toPath: renamed)
        let graph = dir.appendingPathComponent("graph.model").path
        try FileManager.default.copyItem(atPath: Fixtures.path("onnx/gru1_ts.onnx"), toPath: graph)
        for model in [renamed, graph] {
            let r = try CLI.run(["inspect", model])
            #expect(r.exitCode == 0, "\(model): \(r.stderr)")
        }
    }

    @Test(arguments: [("model.pt", "a model, not a dataset"), ("d_plain.npy", "numpy.savez"), ("other.zip", "ZIP archive"),
                      ("nope.npz", "no such file")])
    func aDatasetOfAnotherFormatIsNamed(file: String, words: String) throws {
        try BadInputKindsTests.expectRefusal(["eval", Self.path("lstm1.safetensors"), "--data", Self.path(file), "--backend", "cpu"],
                                             naming: [file, words])
        let r = try CLI.run(["eval", Self.path("lstm1.safetensors"), "--data", Self.path(file), "--backend", "cpu"])
        #expect(!r.stderr.contains("NSError") && !r.stderr.contains("Domain="), "\(r.stderr)")
    }
}

/// Counts that set how much memory a run takes have ceilings, and a run that cannot fit is
/// refused before any work with one line saying what it needs, never ended by the allocator
/// (SIGABRT) or the OOM killer. Run under an address-space limit (`ulimit -v`).
@Suite struct MemoryBoundTests {
    static func underLimit(_ arguments: [String], kilobytes: Int = 3_000_000) throws -> CLI.Result {
        try CLI.run(arguments, launcher: ["bash", "-c", "ulimit -v \(kilobytes); exec \"$0\" \"$@\""])
    }

    @Test func aFixedPointSearchThatCannotFitIsRefused() throws {
        let out = try Fixtures.scratch("mem-attractors").appendingPathComponent("out").path
        for arguments in [["attractors", Fixtures.path("digits_lstm128.safetensors"), "--seeds", "4000000", "--out", out, "--backend", "cpu"],
                          ["audit", Fixtures.path("digits_lstm128.safetensors"), "--data", Fixtures.path("digits_test.safetensors"),
                           "--attractor-seeds", "4194304", "--out", out, "--backend", "cpu"]] {
            let r = try Self.underLimit(arguments)
            #expect(r.exitCode == 1, "\(arguments): rc \(r.exitCode) \(r.stderr)")
            #expect(r.stderr.hasPrefix("error: the fixed-point search") && r.stderr.contains("GB") && r.stderr.contains("seeds")
                    && r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: out))
        }
    }

    /// Every command, on both backends where it takes one, runs to a clean exit under a 3 GB
    /// address-space limit on the fixtures: nothing reserves or allocates beyond what the work
    /// needs (the Swift runtime, OpenBLAS and PoCL included).
    @Test(arguments: ["inspect", "eval", "characterize", "audit", "ablate", "explain", "attractors", "capacity", "merge", "bench",
                      "devices", "check-kernels"])
    func everyCommandRunsUnderAnAddressSpaceLimit(command: String) throws {
        let lstm8 = Fixtures.path("digits_lstm8.safetensors"), data = Fixtures.path("digits_test.safetensors")
        let scratch = try Fixtures.scratch("ulimit-\(command)")
        let needsDevice = ["devices", "check-kernels"].contains(command)
        guard !needsDevice || OpenCLTestSupport.enabled else { return }
        let backends = ["inspect", "merge", "devices", "check-kernels"].contains(command) ? [nil]
            : ["cpu"] + (OpenCLTestSupport.enabled ? ["opencl"] : [])
        let stimuli = ["--step-amplitudes", "1", "--frequencies", "0.1", "--window", "40"]
        for backend in backends {
            let out = scratch.appendingPathComponent("out-\(backend ?? "none")").path
            var arguments: [String]
            switch command {
            case "inspect": arguments = [command, lstm8]
            case "eval": arguments = [command, lstm8, "--data", data]
            case "characterize": arguments = [command, lstm8, "--out", out] + stimuli
            case "audit": arguments = [command, lstm8, "--data", data, "--out", out, "--attractor-seeds", "32"] + stimuli
            case "ablate": arguments = [command, lstm8, "--data", data, "--out", out, "--seeds", "2"] + stimuli
            case "explain": arguments = [command, lstm8, "--data", data, "--out", out]
            case "attractors": arguments = [command, Fixtures.path("flipflop_gru32.safetensors"), "--seeds", "64", "--out", out]
            case "capacity": arguments = [command, lstm8, Fixtures.path("digits_lstm16.safetensors"), "--out", out] + stimuli
            case "merge":
                // Two shards of a characterize run, then the merge under the limit.
                for k in 0..<2 {
                    let shard = try CLI.run(["characterize", lstm8, "--out", scratch.appendingPathComponent("sharded").path,
                                             "--shard", "\(k)/2", "--backend", "cpu", "--quiet"] + stimuli)
                    #expect(shard.exitCode == 0, "\(shard.stderr)")
                }
                let dir = scratch.appendingPathComponent("sharded").path
                arguments = [command, dir + "/shard-0-of-2", dir + "/shard-1-of-2", "--out", out]
            case "bench": arguments = [command, "--workload", "forward", "--cells", "16"]
            default: arguments = [command]
            }
            if let backend { arguments += ["--backend", backend] }
            if ["characterize", "audit", "ablate", "explain", "attractors", "capacity", "merge"].contains(command) { arguments.append("--quiet") }
            let r = try Self.underLimit(arguments)
            #expect(r.exitCode == 0, "\(arguments) under ulimit -v 3000000: rc \(r.exitCode) \(r.stderr.suffix(400))")
        }
    }

    /// Under an address-space limit too small for the libraries' own reservations (OpenBLAS's
    /// buffers, libdispatch's threads, which then retry for ever) a run is refused before it starts,
    /// in one line, on either backend: never a hang.
    @Test(arguments: ["cpu", "opencl"])
    func aLimitTooSmallForTheRuntimeIsRefusedAtOnce(backend: String) throws {
        guard backend == "cpu" || OpenCLTestSupport.enabled else { return }
        let out = try Fixtures.scratch("mem-floor").appendingPathComponent("o").path
        let r = try Self.underLimit(["ablate", Fixtures.path("bidirectional/lstm2.pt"), "--bidirectional-readout", "final-states",
                                     "--data", Fixtures.path("bidirectional/lstm2.data.safetensors"), "--backend", backend, "--out", out],
                                    kilobytes: 600_000)
        #expect(r.exitCode == 1 && r.stderr.hasPrefix("error: the address-space limit (ulimit -v 600000)") && r.stderr.contains("1 GiB")
                && r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test(arguments: ["0", "10001", "100000000"])
    func ablationSeedsHaveACeiling(seeds: String) throws {
        let r = try Self.underLimit(["ablate", Fixtures.path("digits_lstm8.safetensors"), "--data", Fixtures.path("digits_test.safetensors"),
                                     "--seeds", seeds, "--backend", "cpu", "--out", try Fixtures.scratch("mem-ablate").appendingPathComponent("o").path])
        #expect(r.exitCode == 2 && r.stderr.contains("--seeds must lie in 1…10000"), "\(r.stderr)")
    }
}

/// Messages that misled (2026-12-07): each now names the file and the real problem.
@Suite struct HonestMessageTests {
    static func path(_ name: String) -> String { Fixtures.path("cases/2026-12-07/\(name)") }

    @Test(arguments: [("d_str.npz", "holds text"), ("d_object.npz", "Python objects"), ("n_overflowshape.npz", "too large"),
                      ("d_both.npz", "both 'labels'")])
    func datasetArraysAreNamedForWhatTheyHold(file: String, words: String) throws {
        try BadInputKindsTests.expectRefusal(["eval", Self.path("lstm1.safetensors"), "--data", Self.path(file), "--backend", "cpu"],
                                             naming: [file, words])
    }

    /// Errors about the model name its file.
    @Test(arguments: [("noreadout.safetensors", "has no readout"), ("k0.safetensors", "readout V"), ("i0.safetensors", "sizes must be positive"),
                      ("o_seq_relu.onnx", "output mode 'last'")])
    func modelProblemsNameTheModelFile(file: String, words: String) throws {
        try BadInputKindsTests.expectRefusal(["eval", Self.path(file), "--data", Self.path("data.npz"), "--backend", "cpu"], naming: [file, words])
    }

    /// A truncated safetensors dataset is named a truncated safetensors file, as a truncated model is.
    @Test func aTruncatedDatasetIsNamedTruncated() throws {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("digits_test.safetensors")))
        let path = try Fixtures.scratch("truncated-data").appendingPathComponent("cut.safetensors")
        try bytes.prefix(60).write(to: path)
        try BadInputKindsTests.expectRefusal(["eval", Fixtures.path("digits_lstm8.safetensors"), "--data", path.path, "--backend", "cpu"],
                                             naming: ["cut.safetensors", "truncated file?"])
    }

    /// An unused tensor is refused the same way in a CellAudit model file as in a state dict.
    @Test func anUnusedTensorIsRefusedInEveryFormat() throws {
        try BadInputKindsTests.expectRefusal(["inspect", Self.path("ca_extra_tensor.safetensors")], naming: ["ca_extra_tensor.safetensors", "'extra.weight'"])
    }

    /// Tensors a state dict leaves over are named for what they most likely are, not answered
    /// with an irrelevant --readout-prefix hint.
    @Test(arguments: [("wrongfc.safetensors", "reading 15 values, but the last layer has 16 cells"),
                      ("readout2h.safetensors", "bidirectional"), ("embedding.safetensors", "token embedding")])
    func leftoverTensorsAreNamedForWhatTheyAre(file: String, words: String) throws {
        try BadInputKindsTests.expectRefusal(["eval", Self.path(file), "--data", Self.path("data.npz"), "--backend", "cpu"], naming: [file, words])
        let r = try CLI.run(["eval", Self.path(file), "--data", Self.path("data.npz"), "--backend", "cpu"])
        #expect(!r.stderr.contains("--readout-prefix"), "\(r.stderr)")
    }

    /// ε = 0 on zero input and zero bias is 0/0, not an overflow: the message says to raise ε.
    @Test func zeroEpsilonOnZeroInputSaysSo() throws {
        let out = try Fixtures.scratch("eps0").appendingPathComponent("o").path
        let r = try CLI.run(["explain", Self.path("rnn2.safetensors"), "--nonlinearity", "tanh", "--data", Self.path("zeros2.npz"),
                             "--epsilon", "0", "--out", out, "--backend", "cpu"])
        #expect(r.exitCode == 1 && r.stderr.contains("--epsilon > 0") && !r.stderr.contains("overflow"), "\(r.stderr)")
    }

    /// capacity takes the model options: an nn.RNN state dict beside an LSTM is read with
    /// --nonlinearity (which the LSTM does not need).
    @Test func capacityReadsAnRNNStateDictWithItsNonlinearity() throws {
        let out = try Fixtures.scratch("capacity-rnn").appendingPathComponent("o").path
        let r = try CLI.run(["capacity", Self.path("rnn1.safetensors"), Self.path("lstm1.safetensors"), "--nonlinearity", "tanh",
                             "--step-amplitudes", "1", "--frequencies", "none", "--window", "40", "--backend", "cpu", "--out", out, "--quiet"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        let without = try CLI.run(["capacity", Self.path("rnn1.safetensors"), Self.path("lstm1.safetensors"),
                                   "--step-amplitudes", "1", "--frequencies", "none", "--window", "40", "--backend", "cpu", "--out", out + "2"])
        #expect(without.exitCode == 1 && without.stderr.contains("--nonlinearity"), "\(without.stderr)")
    }

    /// An audit in which no ablation changes the loss says so in words (not "correlated with: .").
    @Test func aDegenerateAuditSaysThatNoAblationChangedTheLoss() throws {
        let out = try Fixtures.scratch("zero-readout").appendingPathComponent("o")
        let r = try CLI.run(["audit", Self.path("zero_readout.safetensors"), "--data", Self.path("data.npz"), "--attractor-seeds", "0",
                             "--step-amplitudes", "1", "--frequencies", "none", "--window", "40", "--backend", "cpu", "--out", out.path, "--quiet"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        let html = try String(contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
        #expect(html.contains("No single-cell ablation changed") && !html.contains("correlated with the damage: ."))
    }

    /// Long phases talk: explain's relevance and the ablation's masked forwards report progress.
    @Test func longPhasesReportProgress() throws {
        let model = Fixtures.path("digits_lstm8.safetensors"), data = Fixtures.path("digits_test.safetensors")
        let dir = try Fixtures.scratch("progress")
        let explain = try CLI.run(["explain", model, "--data", data, "--backend", "cpu", "--out", dir.appendingPathComponent("e").path])
        #expect(explain.exitCode == 0 && explain.stderr.contains("explain: relevance of sequences 360/360"), "\(explain.stderr)")
        let ablate = try CLI.run(["ablate", model, "--data", data, "--backend", "cpu", "--step-amplitudes", "1", "--frequencies", "none",
                                  "--window", "40", "--out", dir.appendingPathComponent("a").path])
        #expect(ablate.exitCode == 0 && ablate.stderr.contains("ablate: single-cell ablations 10/10")
                && ablate.stderr.contains("ablate: ranked and random curves"), "\(ablate.stderr)")
    }
}

/// The README's exit codes, option by option: 2 for a value an option refuses on its own
/// (malformed whatever the model), 1 for a value that does not fit the model or its data.
@Suite struct ExitCodeTests {
    static let model = Fixtures.path("cases/2026-12-07/lstm1.safetensors")

    @Test(arguments: [
        (["characterize", model, "--mode", "foo"], Int32(2)), (["characterize", model, "--frequencies", "nan"], 2),
        (["characterize", model, "--step-amplitudes", "1,x"], 2), (["characterize", model, "--probe", "q"], 2),
        (["characterize", model, "--shard", "abc"], 2), (["characterize", model, "--shards", "0"], 2),
        (["ablate", model, "--data", Fixtures.path("cases/2026-12-07/data.npz"), "--seeds", "0"], 2),
        (["audit", "--cells", "0"], 2), (["explain", model, "--data", "x.npz", "--epsilon=-1"], 2),
        (["attractors", model, "--seeds", "0"], 2),
        (["attractors", model, "--input", "1,2"], 1), (["characterize", model, "--probe", "c", "--layer", "5"], 1),
        (["characterize", model, "--direction", "channel:99"], 1),
    ] as [([String], Int32)])
    func exitCodesFollowTheReadme(arguments: [String], code: Int32) throws {
        let out = try Fixtures.scratch("exit").appendingPathComponent("o").path
        let r = try CLI.run(arguments + ["--out", out, "--backend", "cpu"])
        #expect(r.exitCode == code, "\(arguments.joined(separator: " ")): rc \(r.exitCode), \(r.stderr)")
        #expect(r.stderr.hasPrefix("error: ") && r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
    }
}

/// Report figures found on 2026-12-07: the eigenvalue plot's unit circle is a circle, and the
/// excitable network's edge labels do not overlap.
@Suite struct ReportFigureTests {
    @Test func theUnitCircleIsRoundAndEdgeLabelsDoNotOverlap() throws {
        let out = try Fixtures.scratch("figures").appendingPathComponent("o")
        let r = try CLI.run(["attractors", Fixtures.path("cases/2026-12-07/lstm1.safetensors"), "--backend", "cpu", "--out", out.path, "--quiet"])
        #expect(r.exitCode == 0, "\(r.stderr)")
        let spectra = try String(contentsOf: out.appendingPathComponent("figures/layer0_spectra.svg"), encoding: .utf8)
        // The first polyline is |λ| = 1: its extent in pixels is the same across and up.
        let points = try #require(spectra.firstMatch(of: /<polyline[^>]*points="([^"]+)"/)).1
            .split(separator: " ").map { $0.split(separator: ",").map { Double($0)! } }
        let width = points.map { $0[0] }.max()! - points.map { $0[0] }.min()!, height = points.map { $0[1] }.max()! - points.map { $0[1] }.min()!
        #expect(abs(width - height) < 1, "circle \(width) × \(height) px")
        let graph = try String(contentsOf: out.appendingPathComponent("figures/layer0_graph.svg"), encoding: .utf8)
        let labels = graph.matches(of: /<text x="([0-9.]+)" y="([0-9.]+)" text-anchor="middle" fill="#[0-9a-f]+">([^<]+)<\/text>/).map {
            (x: Double($0.1)!, y: Double($0.2)!, half: Double($0.3.count) * 2.9)
        }
        #expect(labels.count >= 2)
        for (i, a) in labels.enumerated() {
            for b in labels[(i + 1)...] { #expect(abs(a.x - b.x) >= a.half + b.half || abs(a.y - b.y) >= 11, "labels overlap at \(a) and \(b)") }
        }
    }
}

/// explain --per-step: the per-step cell relevance [N, T, C] is written when asked or when it
/// fits in 1 GiB; otherwise its sum over steps, and the summary says which and why.
@Suite struct ExplainPerStepTests {
    @Test func perStepNoneWritesTheSumOverStepsAndAllTheWholeTensor() throws {
        let model = Fixtures.path("digits_lstm8.safetensors"), data = Fixtures.path("digits_test.safetensors")
        let dir = try Fixtures.scratch("per-step")
        var files: [String: SafeTensorsFile] = [:]
        for mode in ["none", "all"] {
            let out = dir.appendingPathComponent(mode)
            let r = try CLI.run(["explain", model, "--data", data, "--backend", "cpu", "--per-step", mode, "--out", out.path, "--quiet"])
            #expect(r.exitCode == 0, "\(r.stderr)")
            #expect(r.stdout.contains("per-step cell relevance: " + (mode == "all" ? "written" : "summed")), "\(r.stdout)")
            files[mode] = try SafeTensorsFile(path: out.appendingPathComponent("relevance.safetensors").path)
        }
        let all = try #require(files["all"]), none = try #require(files["none"])
        #expect(none.tensors["cells"] == nil && all.tensors["cells_total"] == nil)
        let perStep = try all.floats("cells"), totals = try none.floats("cells_total")
        let shape = try all.info("cells").shape   // [N, T, C]
        #expect(try none.info("cells_total").shape == [shape[0], shape[2]])
        for n in [0, shape[0] - 1] {
            for c in 0..<shape[2] {
                let sum = (0..<shape[1]).reduce(Float(0)) { $0 + perStep[(n * shape[1] + $1) * shape[2] + c] }
                #expect(abs(sum - totals[n * shape[2] + c]) <= 1e-6 * max(1, abs(sum)))
            }
        }
        let bad = try CLI.run(["explain", model, "--data", data, "--per-step", "some"])
        #expect(bad.exitCode == 2 && bad.stderr.contains("--per-step"))
    }
}

/// Found by trying the work as a new user (2026-12-07).
@Suite struct NewUserTrialTests {
    @Test func aForgedMarkerDoesNotLetForceDeleteAFolder() throws {
        let dir = try Fixtures.scratch("forged")
        let out = dir.appendingPathComponent("mine")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try Data("mine".utf8).write(to: out.appendingPathComponent("p.txt"))
        try Data("x".utf8).write(to: dir.appendingPathComponent("elsewhere"))
        try FileManager.default.createSymbolicLink(atPath: out.appendingPathComponent(".cellaudit-output").path,
                                                   withDestinationPath: dir.appendingPathComponent("elsewhere").path)
        let r = try CLI.run(["characterize", Fixtures.path("digits_lstm8.safetensors"), "--out", out.path, "--force", "--backend", "cpu",
                             "--step-amplitudes", "1", "--frequencies", "none", "--quiet"])
        #expect(r.exitCode == 1 && r.stderr.contains("did not write"), "\(r.stderr)")
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("p.txt").path))
    }

    @Test func messagesNameTheFileAndTheFix() throws {
        let dir = try Fixtures.scratch("newuser")
        let model = Fixtures.path("digits_lstm8.safetensors")
        let empty = dir.appendingPathComponent("empty.json"), badWindow = dir.appendingPathComponent("window.json")
        try Data("{}".utf8).write(to: empty)
        try Data(#"{"window": -3, "step_amplitudes": [1]}"#.utf8).write(to: badWindow)
        try BadInputKindsTests.expectRefusal(["characterize", model, "--stimuli", empty.path, "--out", dir.appendingPathComponent("o").path],
                                             naming: ["empty.json", "lists no stimulus"])
        try BadInputKindsTests.expectRefusal(["characterize", model, "--stimuli", badWindow.path, "--out", dir.appendingPathComponent("o").path],
                                             naming: ["window.json", "window"])
        try BadInputKindsTests.expectRefusal(["characterize", model, "--out", model + "/x"], naming: ["digits_lstm8.safetensors is a file"])
        try BadInputKindsTests.expectRefusal(["eval", model, "--data", model, "--backend", "cpu"], naming: ["digits_lstm8.safetensors", "not a dataset"])
    }
}

/// A classifier with one output is a single-logit binary classifier: scored as such (class 1
/// where the logit is above 0, labels 0 and 1, binary cross-entropy as the ablation's loss), and
/// the output says so.
@Suite struct BinaryClassifierTests {
    @Test func aSingleLogitClassifierIsScoredAsBinary() throws {
        let model = Fixtures.path("cases/2026-12-07/binary_logit.safetensors"), data = Fixtures.path("cases/2026-12-07/binary_data.npz")
        let dir = try Fixtures.scratch("binary")
        let outputs = dir.appendingPathComponent("outputs.safetensors").path
        let r = try CLI.run(["eval", model, "--data", data, "--backend", "cpu", "--out", outputs])
        #expect(r.exitCode == 0 && r.stdout.contains("single-logit binary classifier"), "\(r.stdout) \(r.stderr)")
        // The accuracy printed is the share of logits on the side of 0 their label says.
        let logits = try SafeTensorsFile(path: outputs).floats("outputs")
        let labels = try NumPyArchive.load(data)["labels"]!.values.map { Int($0) }
        let expected = Double(zip(logits, labels).filter { ($0.0 > 0 ? 1 : 0) == $0.1 }.count) / Double(labels.count)
        let printed = try #require(r.stdout.firstMatch(of: /accuracy: ([0-9.]+)/).map { Double($0.1)! })
        #expect(abs(printed - expected) < 1e-4 && expected > 0.9, "\(printed) vs \(expected)")
        let ablate = try CLI.run(["ablate", model, "--data", data, "--backend", "cpu", "--step-amplitudes", "1", "--frequencies", "none",
                                  "--window", "40", "--out", dir.appendingPathComponent("a").path, "--quiet", "--json"])
        #expect(ablate.exitCode == 0, "\(ablate.stderr)")
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(ablate.stdout.utf8)) as? [String: Any])
        #expect(abs((summary["baseline"] as? Double ?? -1) - expected) < 1e-9)
        #expect((summary["baseline_loss"] as? Double ?? -1) > 0)
    }
}
