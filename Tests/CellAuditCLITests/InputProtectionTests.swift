import Foundation
import Testing
import TestSupport

/// No command writes over its inputs: an output directory that is, holds or lies inside the
/// folder of an input (after symbolic links) is refused with one line naming both paths, with or
/// without --force, and every file there is left as it was.
@Suite struct InputProtectionTests {
    /// A folder `w` holding a model, its dataset and an unrelated file, and a snapshot of it.
    struct Workspace {
        let root: URL, folder: URL, model: String, data: String
        let before: [String: Data]

        init(_ label: String) throws {
            root = try Fixtures.scratch(label)
            folder = root.appendingPathComponent("w")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            model = folder.appendingPathComponent("model.safetensors").path
            data = folder.appendingPathComponent("data.safetensors").path
            try FileManager.default.copyItem(atPath: Fixtures.path("digits_lstm8.safetensors"), toPath: model)
            try FileManager.default.copyItem(atPath: Fixtures.path("digits_test.safetensors"), toPath: data)
            try Data("my notes".utf8).write(to: folder.appendingPathComponent("notes.txt"))
            try FileManager.default.createSymbolicLink(atPath: root.appendingPathComponent("link").path, withDestinationPath: folder.path)
            before = try Self.snapshot(folder)
        }

        static func snapshot(_ dir: URL) throws -> [String: Data] {
            var files: [String: Data] = [:]
            for name in try FileManager.default.contentsOfDirectory(atPath: dir.path) {
                files[name] = try Data(contentsOf: dir.appendingPathComponent(name))
            }
            return files
        }

        /// --out spellings that would replace the inputs: the folder, through a link, the folder above.
        var dangerousOuts: [String] {
            [folder.path, root.appendingPathComponent("link").path, folder.path + "/.", root.path]
        }

        func expectUntouched(_ context: String) throws {
            #expect(try Self.snapshot(folder) == before, "\(context)")
        }
    }

    static let bank = ["--step-amplitudes", "1", "--frequencies", "none", "--window", "40", "--backend", "cpu", "--quiet"]

    /// Every command that writes an output directory, on the workspace's inputs.
    static func commands(_ w: Workspace) -> [(String, [String])] {
        [("characterize", ["characterize", w.model] + bank),
         ("audit", ["audit", w.model, "--data", w.data, "--skip-ablation"] + bank),
         ("ablate", ["ablate", w.model, "--data", w.data] + bank),
         ("explain", ["explain", w.model, "--data", w.data, "--backend", "cpu", "--quiet"]),
         ("attractors", ["attractors", w.model, "--data", w.data, "--backend", "cpu", "--quiet"]),
         ("capacity", ["capacity", w.model, Fixtures.path("digits_lstm16.safetensors")] + bank)]
    }

    @Test(arguments: ["characterize", "audit", "ablate", "explain", "attractors", "capacity"])
    func outputOverAnInputFolderIsRefused(command: String) throws {
        let w = try Workspace("protect-\(command)")
        let arguments = try #require(Self.commands(w).first { $0.0 == command }).1
        for out in w.dangerousOuts {
            for force in [false, true] {
                let r = try CLI.run(arguments + ["--out", out] + (force ? ["--force"] : []))
                let context = "\(command) --out \(out)\(force ? " --force" : ""): \(r.stderr)"
                #expect(r.exitCode == 1, "\(context)")
                #expect(r.stderr.split(separator: "\n").count == 1 && r.stderr.hasPrefix("error: "), "\(context)")
                #expect(r.stderr.contains("input") && r.stderr.contains(w.folder.lastPathComponent), "\(context)")
                try w.expectUntouched(context)
            }
        }
        // A new directory beside the inputs is fine.
        let fresh = w.folder.appendingPathComponent("results").path
        let r = try CLI.run(arguments + ["--out", fresh])
        #expect(r.exitCode == 0, "\(command): \(r.stderr)")
        #expect(FileManager.default.fileExists(atPath: fresh + "/.cellaudit-output"))
        let expected = w.before.merging(["results": Data()]) { a, _ in a }
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: w.folder.path)) == Set(expected.keys))
    }

    /// Inputs outside the model's folder count too: a stimulus file, a ranking CSV, ONNX external
    /// data; and `eval --out` never writes over an input file.
    @Test func everyKindOfInputIsProtected() throws {
        let w = try Workspace("protect-kinds")
        let other = w.root.appendingPathComponent("stimuli")
        try FileManager.default.createDirectory(at: other, withIntermediateDirectories: true)
        let stimuli = other.appendingPathComponent("bank.json").path
        try Data(#"{"window": 40, "step_amplitudes": [1.0]}"#.utf8).write(to: URL(fileURLWithPath: stimuli))
        var r = try CLI.run(["characterize", Fixtures.path("digits_lstm8.safetensors"), "--stimuli", stimuli, "--backend", "cpu",
                             "--out", other.path, "--force", "--quiet"])
        #expect(r.exitCode == 1 && r.stderr.contains("bank.json"), "\(r.stderr)")
        #expect(FileManager.default.fileExists(atPath: stimuli))

        let rankings = w.root.appendingPathComponent("rankings")
        try FileManager.default.createDirectory(at: rankings, withIntermediateDirectories: true)
        let csv = rankings.appendingPathComponent("mine.csv").path
        try Data(("layer,cell,score\n" + (0..<8).map { "0,\($0),\(Double($0))" }.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: csv))
        r = try CLI.run(["ablate", w.model, "--data", w.data, "--ranking", csv, "--out", rankings.path, "--force"] + Self.bank)
        #expect(r.exitCode == 1 && r.stderr.contains("mine.csv"), "\(r.stderr)")
        #expect(FileManager.default.fileExists(atPath: csv))

        // ONNX: the folder of the external data file, which is not the model's own path.
        let onnx = w.root.appendingPathComponent("onnx")
        try FileManager.default.createDirectory(at: onnx, withIntermediateDirectories: true)
        for name in ["gru1_external.onnx", "gru1_external.data"] {
            try FileManager.default.copyItem(atPath: Fixtures.path("onnx/\(name)"), toPath: onnx.appendingPathComponent(name).path)
        }
        r = try CLI.run(["characterize", onnx.appendingPathComponent("gru1_external.onnx").path, "--out", onnx.path, "--force"] + Self.bank)
        #expect(r.exitCode == 1 && r.stderr.contains("input"), "\(r.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: onnx.path).sorted() == ["gru1_external.data", "gru1_external.onnx"])

        r = try CLI.run(["eval", w.model, "--data", w.data, "--backend", "cpu", "--out", w.root.appendingPathComponent("link/data.safetensors").path, "--force"])
        #expect(r.exitCode == 1 && r.stderr.contains("data.safetensors") && r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
        try w.expectUntouched("eval --out FILE over the dataset")
    }

    /// --force replaces a directory cellaudit wrote, never one that holds anything else.
    @Test func forceReplacesOnlyCellAuditOutput() throws {
        let w = try Workspace("protect-force")
        let out = w.root.appendingPathComponent("out")
        var r = try CLI.run(["characterize", w.model, "--out", out.path] + Self.bank)
        #expect(r.exitCode == 0, "\(r.stderr)")
        try Data("added by hand".utf8).write(to: out.appendingPathComponent("mine.txt"))
        r = try CLI.run(["characterize", w.model, "--out", out.path, "--force"] + Self.bank)
        #expect(r.exitCode == 0, "\(r.stderr)")   // a cellaudit output, even with a file added, is replaced
        #expect(!FileManager.default.fileExists(atPath: out.appendingPathComponent("mine.txt").path))
        try FileManager.default.removeItem(at: out.appendingPathComponent(".cellaudit-output"))
        try Data("kept".utf8).write(to: out.appendingPathComponent("mine.txt"))
        r = try CLI.run(["characterize", w.model, "--out", out.path, "--force"] + Self.bank)
        #expect(r.exitCode == 1 && r.stderr.contains(".cellaudit-output"), "\(r.stderr)")
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("mine.txt").path))
    }
}
