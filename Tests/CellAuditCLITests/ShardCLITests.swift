import CellAuditCore
import Foundation
import Testing
import TestSupport

/// `--shard`, the engines' variables and `cellaudit merge`, through the binary.
@Suite struct ShardCLITests {
    static let bank = ["--step-amplitudes", "0.5,1,2", "--frequencies", "0.05,0.2", "--sine-amplitudes", "1", "--window", "50",
                       "--backend", "cpu", "--quiet"]

    /// Runs `characterize MODEL` for shards 0…n−1 into `dir`/shards; returns the shard directories.
    @discardableResult
    func characterizeShards(_ model: String, n: Int, into dir: URL, extra: [String] = [], only: [Int]? = nil) throws -> [String] {
        try (only ?? Array(0..<n)).map { k in
            let r = try CLI.run(["characterize", model, "--shard", "\(k)/\(n)", "--out", dir.appendingPathComponent("shards").path] + Self.bank + extra)
            #expect(r.exitCode == 0, "\(r.stderr)")
            let width = String(n - 1).count
            let name = "shard-" + String(repeating: "0", count: width - String(k).count) + "\(k)-of-\(n)"
            return dir.appendingPathComponent("shards").appendingPathComponent(name).path
        }
    }

    func tensorsEqual(_ a: String, _ b: String) throws {
        let x = try SafeTensorsFile(path: a), y = try SafeTensorsFile(path: b)
        #expect(x.tensors == y.tensors)
        for name in x.tensors.keys {
            let same = try x.withBytes(name) { p in try y.withBytes(name) { q in p.elementsEqual(q) } }
            #expect(same, "\(name)")
        }
    }

    /// N in {1, 2, 3, 7}: the merged responses equal a single run's, tensor for tensor and byte for byte.
    @Test func mergedCharacterizeEqualsTheSingleRun() throws {
        let dir = try Fixtures.scratch("shard-characterize")
        defer { try? FileManager.default.removeItem(at: dir) }
        let single = dir.appendingPathComponent("single").path
        for model in ["digits_gru16.safetensors", "digits_lstm32x2.safetensors"] {
            let r = try CLI.run(["characterize", Fixtures.path(model), "--out", single, "--force", "--mode", "clamped"] + Self.bank)
            #expect(r.exitCode == 0, "\(r.stderr)")
            for n in [2, 3, 7] {
                let run = dir.appendingPathComponent("\(model)-\(n)")
                let shards = try characterizeShards(Fixtures.path(model), n: n, into: run, extra: ["--mode", "clamped"])
                // Listed one by one in a shuffled order, or as their parent.
                for (label, args) in [("list", Array(shards.reversed())), ("parent", [run.appendingPathComponent("shards").path])] {
                    let merged = run.appendingPathComponent("merged-\(label)").path
                    let m = try CLI.run(["merge"] + args + ["--out", merged, "--quiet"])
                    #expect(m.exitCode == 0, "\(m.stderr)")
                    try tensorsEqual("\(single)/responses.safetensors", "\(merged)/responses.safetensors")
                    #expect(FileManager.default.contentsEqual(atPath: "\(single)/responses.safetensors", andPath: "\(merged)/responses.safetensors"))
                    #expect(FileManager.default.contentsEqual(atPath: "\(single)/stimuli.csv", andPath: "\(merged)/stimuli.csv"))
                }
            }
            // N = 1 is a whole run: no shard directory, the ordinary output.
            let one = dir.appendingPathComponent("one-\(model)").path
            let w = try CLI.run(["characterize", Fixtures.path(model), "--shard", "0/1", "--out", one, "--mode", "clamped"] + Self.bank)
            #expect(w.exitCode == 0, "\(w.stderr)")
            #expect(FileManager.default.contentsEqual(atPath: "\(single)/responses.safetensors", andPath: "\(one)/responses.safetensors"))
        }
    }

    /// An audit of a random network with data: shards carry the characterization and the single-cell
    /// ablations; merge computes the rest, and writes what one audit writes.
    @Test func mergedAuditAndAblateEqualTheSingleRun() throws {
        let dir = try Fixtures.scratch("shard-audit")
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = Fixtures.path("digits_test.safetensors")
        let audit = ["audit", Fixtures.path("digits_rnn16.safetensors"), "--data", data, "--attractor-seeds", "8"] + Self.bank
        let single = dir.appendingPathComponent("single").path
        #expect(try CLI.run(audit + ["--out", single]).exitCode == 0)
        for k in 0..<3 {
            let r = try CLI.run(audit + ["--out", dir.appendingPathComponent("shards").path], environment: ["JOB_COMPLETION_INDEX": "\(k)"])
            // JOB_COMPLETION_INDEX needs --shards.
            #expect(r.exitCode != 0 && r.stderr.contains("--shards"))
            let s = try CLI.run(audit + ["--out", dir.appendingPathComponent("shards").path, "--shards", "3"], environment: ["JOB_COMPLETION_INDEX": "\(k)"])
            #expect(s.exitCode == 0, "\(s.stderr)")
            #expect(s.stdout.contains("JOB_COMPLETION_INDEX=\(k)"))
        }
        let merged = dir.appendingPathComponent("merged").path
        let m = try CLI.run(["merge", dir.appendingPathComponent("shards").path, "--out", merged, "--quiet"])
        #expect(m.exitCode == 0, "\(m.stderr)")
        #expect(m.stdout.contains("top cells"))
        for file in ["responses.safetensors", "cells.csv", "ablation.csv", "curves.csv", "stimuli.csv", "attractors/fixed_points.csv"] {
            #expect(FileManager.default.contentsEqual(atPath: "\(single)/\(file)", andPath: "\(merged)/\(file)"), "\(file)")
        }
        for file in ["report.html", "summary.json"] { #expect(FileManager.default.fileExists(atPath: "\(merged)/\(file)")) }

        // ablate, its shards from a Slurm array with ids 1, 3, 5, 7.
        let ablate = ["ablate", Fixtures.path("digits_lstm8.safetensors"), "--data", data, "--clamp", "mean"] + Self.bank
        let singleAblate = dir.appendingPathComponent("single-ablate").path
        #expect(try CLI.run(ablate + ["--out", singleAblate]).exitCode == 0)
        for id in [1, 3, 5, 7] {
            let s = try CLI.run(ablate + ["--out", dir.appendingPathComponent("ablate-shards").path],
                                environment: ["SLURM_ARRAY_TASK_ID": "\(id)", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "7",
                                              "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_STEP": "2"])
            #expect(s.exitCode == 0, "\(s.stderr)")
            #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("ablate-shards/shard-\((id - 1) / 2)-of-4/shard.json").path))
        }
        // A ranking file the shards hashed, changed before the merge: refused.
        let ranking = dir.appendingPathComponent("ranking.csv").path
        try "layer,cell,score\n" .appending((0..<8).map { "0,\($0),\($0)" }.joined(separator: "\n")).write(toFile: ranking, atomically: true, encoding: .utf8)
        for k in 0..<2 {
            #expect(try CLI.run(ablate + ["--ranking", ranking, "random", "--shard", "\(k)/2", "--out", dir.appendingPathComponent("ranked").path]).exitCode == 0)
        }
        try "layer,cell,score\n" .appending((0..<8).map { "0,\($0),\(8 - $0)" }.joined(separator: "\n")).write(toFile: ranking, atomically: true, encoding: .utf8)
        let changed = try CLI.run(["merge", dir.appendingPathComponent("ranked").path, "--out", dir.appendingPathComponent("ranked-merged").path, "--quiet"])
        #expect(changed.exitCode != 0 && changed.stderr.contains("option ranking") && changed.stderr.contains("changed"), "\(changed.stderr)")
        let mergedAblate = dir.appendingPathComponent("merged-ablate").path
        let a = try CLI.run(["merge", dir.appendingPathComponent("ablate-shards").path, "--out", mergedAblate, "--quiet"])
        #expect(a.exitCode == 0, "\(a.stderr)")
        for file in ["responses.safetensors", "ablation.csv", "curves.csv", "summary.json", "rankers.svg"] {
            #expect(FileManager.default.contentsEqual(atPath: "\(singleAblate)/\(file)", andPath: "\(mergedAblate)/\(file)"), "\(file)")
        }
    }

    func expectRefused(_ args: [String], naming words: [String], _ comment: Comment) throws {
        let r = try CLI.run(["merge"] + args + ["--quiet"])
        #expect(r.exitCode != 0, comment)
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1, "\(comment): \(r.stderr)")
        for word in words { #expect(r.stderr.contains(word), "\(comment): \(r.stderr) lacks \(word)") }
    }

    /// One refusal per way shards can fail to make one run.
    @Test func mergeRefusesShardsThatDoNotMakeOneRun() throws {
        let dir = try Fixtures.scratch("shard-refusals")
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = Fixtures.path("digits_lstm8.safetensors")
        let shards = try characterizeShards(model, n: 3, into: dir)
        let out = dir.appendingPathComponent("merged").path
        // Missing.
        try expectRefused([shards[0], shards[2], "--out", out], naming: ["missing shard 1 of 3"], "missing")
        // Duplicated: the same directory twice, and a copy of it.
        // The same directory named twice (or through its parent) is one shard; a copy is a duplicate.
        let twice = try CLI.run(["merge", shards[0], shards[1], shards[1], shards[2], dir.appendingPathComponent("shards").path,
                                 "--out", dir.appendingPathComponent("merged-twice").path, "--quiet"])
        #expect(twice.exitCode == 0, "\(twice.stderr)")
        let copy = dir.appendingPathComponent("copy-of-1").path
        try FileManager.default.copyItem(atPath: shards[1], toPath: copy)
        try expectRefused(shards + [copy, "--out", out], naming: ["given twice", copy], "copied duplicate")
        // Another model (same sizes: the weights differ).
        let other = dir.appendingPathComponent("other")
        let otherShards = try characterizeShards(Fixtures.path("digits_lstm16.safetensors"), n: 3, into: other, only: [1])
        try expectRefused([shards[0], otherShards[0], shards[2], "--out", out], naming: [otherShards[0], "model differs"], "another model")
        // Another bank.
        let bank = try characterizeShards(model, n: 3, into: dir.appendingPathComponent("bank"), extra: ["--window", "51"], only: [1])
        try expectRefused([shards[0], bank[0], shards[2], "--out", out], naming: [bank[0], "stimulus bank differs"], "another bank")
        // Other options.
        let mode = try characterizeShards(model, n: 3, into: dir.appendingPathComponent("mode"), extra: ["--mode", "clamped"], only: [1])
        try expectRefused([shards[0], mode[0], shards[2], "--out", out], naming: [mode[0], "option mode differs"], "other options")
        // Another shard count.
        let four = try characterizeShards(model, n: 4, into: dir.appendingPathComponent("four"), only: [1])
        try expectRefused([shards[0], four[0], shards[2], "--out", out], naming: [four[0], "shard count"], "another count")
        // Another version.
        let old = dir.appendingPathComponent("old-version").path
        try FileManager.default.copyItem(atPath: shards[1], toPath: old)
        let manifest = "\(old)/shard.json"
        let text = try String(contentsOfFile: manifest, encoding: .utf8)
        try text.replacingOccurrences(of: "\"cellaudit_version\" : \"", with: "\"cellaudit_version\" : \"0.0.0-old").write(toFile: manifest, atomically: true, encoding: .utf8)
        try expectRefused([shards[0], old, shards[2], "--out", out], naming: [old, "written by CellAudit 0.0.0-old"], "another version")
        // A file changed after the shard finished.
        let tampered = dir.appendingPathComponent("tampered").path
        try FileManager.default.copyItem(atPath: shards[1], toPath: tampered)
        let handle = try #require(FileHandle(forUpdatingAtPath: "\(tampered)/responses.safetensors"))
        try handle.seek(toOffset: try handle.seekToEnd() - 2)
        try handle.write(contentsOf: Data([0x7f, 0x7f]))
        try handle.close()
        try expectRefused([shards[0], tampered, shards[2], "--out", out], naming: ["\(tampered)/responses.safetensors", "changed since shard 1 wrote it"], "tampered")
        // An edited manifest: an inverted block, a grid that does not hold its pairs.
        for (label, from, to) in [("inverted", "\"end\" : ", "\"end\" : -5, \"was\" : "), ("rows", "\"rows\" : 8", "\"rows\" : 9")] {
            let edited = dir.appendingPathComponent("edited-\(label)").path
            try FileManager.default.copyItem(atPath: shards[1], toPath: edited)
            let text = try String(contentsOfFile: "\(edited)/shard.json", encoding: .utf8)
            #expect(text.contains(from))
            try text.replacingOccurrences(of: from, with: to).write(toFile: "\(edited)/shard.json", atomically: true, encoding: .utf8)
            try expectRefused([shards[0], edited, shards[2], "--out", out], naming: ["\(edited)/shard.json", "edited or damaged"], "manifest \(label)")
        }
        // The output may not be, hold or lie in a shard directory, even with --force.
        for target in [shards[1], dir.appendingPathComponent("shards").path, shards[1] + "/inside"] {
            try expectRefused(shards + ["--out", target, "--force"], naming: ["would overwrite the shard"], "out \(target)")
        }
        #expect(FileManager.default.fileExists(atPath: "\(shards[1])/shard.json"))
        // A whole run never replaces a directory of shards, even with --force.
        let whole = try CLI.run(["characterize", model, "--shard", "0/1", "--force", "--out", dir.appendingPathComponent("shards").path] + Self.bank)
        #expect(whole.exitCode != 0 && whole.stderr.contains("holds shards of a sharded run"), "\(whole.stderr)")
        #expect(FileManager.default.fileExists(atPath: "\(shards[0])/shard.json"))
        // Not a shard at all.
        try expectRefused([dir.appendingPathComponent("other").path.appending("/nowhere"), "--out", out], naming: ["no such shard directory"], "no directory")
        #expect(!FileManager.default.fileExists(atPath: out))
        // The good set merges.
        #expect(try CLI.run(["merge"] + shards + ["--out", out, "--quiet"]).exitCode == 0)
    }

    /// A shard killed mid-run leaves nothing merge takes as finished: only a hidden staging
    /// directory, which merge of the parent ignores (and reports the shard missing).
    @Test func anInterruptedShardIsNeverTakenAsComplete() throws {
        let dir = try Fixtures.scratch("shard-interrupted")
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = Fixtures.path("digits_lstm128.safetensors")
        let slow = ["--window", "20000", "--frequencies", "none", "--step-amplitudes", "0.5,1,2,4", "--backend", "cpu", "--quiet"]
        let parent = dir.appendingPathComponent("shards")
        for k in [0, 2] {
            let r = try CLI.run(["characterize", model, "--shard", "\(k)/3", "--out", parent.path, "--window", "50", "--frequencies", "none",
                                 "--step-amplitudes", "0.5,1,2,4", "--backend", "cpu", "--quiet"])
            #expect(r.exitCode == 0, "\(r.stderr)")
        }
        for signal in [SIGKILL, SIGTERM] {
            let process = Process()
            process.executableURL = CLI.binary
            process.arguments = ["characterize", model, "--shard", "1/3", "--out", parent.path] + slow
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            // Wait until its staging directory holds the responses file, then kill it.
            let staging = parent.appendingPathComponent(".shard-1-of-3.partial-\(process.processIdentifier)/responses.safetensors").path
            var started = false
            for _ in 0..<600 where !started {
                started = FileManager.default.fileExists(atPath: staging)
                usleep(10_000)
            }
            #expect(started)
            kill(process.processIdentifier, signal)
            process.waitUntilExit()
            #expect(!FileManager.default.fileExists(atPath: parent.appendingPathComponent("shard-1-of-3").path))
            let r = try CLI.run(["merge", parent.path, "--out", dir.appendingPathComponent("merged").path, "--quiet"])
            #expect(r.exitCode != 0)
            #expect(r.stderr.contains("missing shard 1 of 3"), "\(r.stderr)")
            // Named directly, the staging directory is not a shard either.
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: parent.path).filter { $0.contains(".partial-") }
            for entry in leftovers {
                let s = try CLI.run(["merge", parent.appendingPathComponent(entry).path, "--out", dir.appendingPathComponent("merged").path, "--quiet"])
                #expect(s.exitCode != 0 && s.stderr.contains("not a finished shard"), "\(s.stderr)")
            }
            #expect(signal == SIGKILL || leftovers.isEmpty, "SIGTERM removes the staging directory")
        }
    }

    @Test func shardFlagsAreChecked() throws {
        let dir = try Fixtures.scratch("shard-flags")
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = Fixtures.path("digits_lstm8.safetensors")
        for (args, env, words) in [
            (["--shard", "3/3"], [:], ["shard 3 does not exist"]),
            (["--shard", "1-3"], [:], ["K/N"]),
            (["--shards", "4"], [:], ["needs a shard index"]),
            (["--shard", "0/2", "--trajectories", "0:0"], [:], ["--trajectories is not sharded"]),
            ([], ["SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "9", "SLURM_ARRAY_TASK_COUNT": "4"], ["not evenly spaced"]),
            ([], ["SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "9", "SLURM_ARRAY_TASK_COUNT": "3"], ["not on the array's grid"]),
        ] as [([String], [String: String], [String])] {
            let r = try CLI.run(["characterize", model, "--out", dir.appendingPathComponent("x").path] + Self.bank + args, environment: env)
            #expect(r.exitCode != 0, "\(args)")
            #expect(r.stderr.split(separator: "\n").count == 1 && !r.stderr.contains("stimulus"), "\(r.stderr)")
            for word in words { #expect(r.stderr.contains(word), "\(r.stderr)") }
        }
        // A second run of a finished shard is refused like any output.
        _ = try characterizeShards(model, n: 2, into: dir, only: [0])
        let again = try CLI.run(["characterize", model, "--shard", "0/2", "--out", dir.appendingPathComponent("shards").path] + Self.bank)
        #expect(again.exitCode != 0 && again.stderr.contains("exists and is not empty"), "\(again.stderr)")
    }
}
