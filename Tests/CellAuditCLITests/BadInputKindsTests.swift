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

    @Test(arguments: [("model.pt", "torch.save"), ("legacy.pt", "pickle"), ("keras3_like.keras", "Keras 3"), ("hdf5_like.h5", "HDF5"),
                      ("d_plain.npy", ".npy"), ("data.npz", "holds data, not a model"), ("other.zip", "ZIP archive that is not")])
    func aModelOfAnotherFormatIsNamed(file: String, words: String) throws {
        for command in [["inspect"], ["eval", "--data", Self.path("data.npz")]] {
            let arguments = [command[0], Self.path(file)] + command.dropFirst()
            try BadInputKindsTests.expectRefusal(arguments, naming: [file, words])
            let r = try CLI.run(arguments)
            #expect(!r.stderr.contains("header length"), "\(r.stderr)")
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
