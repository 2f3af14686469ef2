import ArgumentParser
import CellAuditAnalysis
import CellAuditCore
import Foundation

/// `--shard K/N` and `--shards N`: shared by `characterize`, `audit` and `ablate`.
struct ShardOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Run shard K of N (K counted from 0) and write DIR/shard-K-of-N/ for `cellaudit merge` (default: from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX; --shard 0/1 runs whole).", valueName: "K/N"))
    var shard: String?

    @Option(help: "The number of shards, for a Kubernetes Indexed Job (JOB_COMPLETION_INDEX gives K).")
    var shards: Int?

    /// A malformed --shard or --shards is refused on its own (exit 2); whether the shard fits
    /// the environment's job array is checked when it is resolved (exit 1).
    func validate() throws {
        if let shard {
            do { _ = try ShardAssignment.parse(shard) } catch let error as ShardError { throw ValidationError("\(error)") }
        }
        if let shards, shards < 1 { throw ValidationError("--shards must be at least 1, got \(shards)") }
    }

    /// This process's shard, or nil for a whole run (`--shard 0/1` included).
    func resolve() throws -> ShardAssignment? {
        let shard: ShardAssignment?
        do {
            shard = try ShardAssignment.resolve(flag: self.shard, shards: shards, environment: ProcessInfo.processInfo.environment)
        } catch let error as ShardError {
            throw CleanFailure(description: "\(error)")
        }
        guard let shard, shard.count > 1 else { return nil }
        return shard
    }
}

/// What a shard directory's `shard.json` records (docs/METHOD.md §9): enough for `merge` to
/// prove that the shards belong to one run and tile its work exactly once, and to finish it.
struct ShardManifest: Codable, Equatable {
    static let formatName = "cellaudit-shard/1"
    static let fileName = "shard.json"

    struct Work: Codable, Equatable {
        /// Items of the whole run: (row, column) pairs, or single-cell ablation configurations.
        var total: Int
        var start: Int
        var end: Int
        var range: Range<Int> { start..<end }
    }

    struct Subject: Codable, Equatable {
        /// As the run names it (file name, "… (bundled)", "random lstm (…)").
        var name: String
        /// The path given, made absolute; empty for the bundled and random networks.
        var path: String
        /// `RecurrentNetwork.contentHash()`: every weight, bit for bit.
        var sha256: String
        var task: String
        var output: String
    }

    struct DataFile: Codable, Equatable {
        var path: String
        /// SHA-256 of the file's bytes.
        var sha256: String
    }

    var format = ShardManifest.formatName
    var cellauditVersion: String
    /// characterize, audit or ablate.
    var command: String
    /// The command's arguments without the shard and output options: `merge` parses them again.
    var arguments: [String]
    /// Where they were given: relative paths among them are relative to it.
    var workingDirectory: String
    /// The resolved options that decide the numbers; all shards must agree on every one.
    var options: [String: String]
    var model: Subject
    var data: DataFile?
    /// SHA-256 of the stimulus bank and directions as stimuli.csv lists them, and the clock.
    var bankSha256: String
    var backend: String
    var index: Int
    var count: Int
    /// How K and N were found (the flag or the engine's variables).
    var source: String
    var rows: Int
    var columns: Int
    var pairs: Work
    /// Rows the pairs touch (their at_rest, layer and cell values are stored).
    var rowStart: Int
    var rowEnd: Int
    /// The single-cell ablation configurations this shard ran (audit with data, ablate).
    var ablation: Work?
    /// The responses file's metadata as a whole run writes it.
    var metadata: [String: String]
    /// SHA-256 of each file of the shard.
    var files: [String: String]
    /// Seconds of the characterization, and of the single-cell ablations.
    var seconds: Double
    var ablationSeconds: Double
    var simulatedSteps: Int
    var responded: Int
    var host: String

    /// What makes the manifest impossible, if anything: blocks out of order or outside the work,
    /// a grid whose size is not its pair count, rows that the pairs do not touch.
    var inconsistency: String? {
        let (grid, overflow) = rows.multipliedReportingOverflow(by: columns)
        guard rows > 0, columns > 0, !overflow, grid == pairs.total else {
            return "the grid \(rows) × \(columns) does not hold its \(pairs.total) pairs"
        }
        guard (1...ShardAssignment.maxCount).contains(count), (0..<count).contains(index) else { return "shard \(index) of \(count) cannot exist" }
        for (name, work) in [("pairs", pairs), ("ablation", ablation)] {
            guard let work else { continue }
            guard work.total >= 0, work.start >= 0, work.start <= work.end, work.end <= work.total else {
                return "its \(name) block \(work.start)..<\(work.end) does not lie in 0..<\(work.total)"
            }
        }
        let span = rowsTouched(by: pairs.range, columns: columns)
        guard rowStart == span.lowerBound, rowEnd == span.upperBound else {
            return "its rows \(rowStart)..<\(rowEnd) are not the rows its pairs touch"
        }
        return nil
    }

    /// The directory name of shard K of N: shard-K-of-N, K zero-padded to N's digits so that they sort.
    static func directoryName(index: Int, count: Int) -> String {
        let width = String(count - 1).count
        let k = String(index)
        return "shard-" + String(repeating: "0", count: max(0, width - k.count)) + k + "-of-\(count)"
    }
}

/// A command's identity for its shards: what `merge` compares and how it runs the rest.
struct ShardContext {
    var command: String
    var options: [String: String]
    var model: ShardManifest.Subject
    var data: ShardManifest.DataFile?

    /// The running command's arguments after its name, without --shard, --shards, --out,
    /// --force, --quiet and --json.
    static func arguments(command: String) -> [String] {
        let all = Array(CommandLine.arguments.dropFirst())
        guard let at = all.firstIndex(of: command) else { return [] }
        var out: [String] = []
        var i = at + 1
        let valued: Set<String> = ["--shard", "--shards", "--out"], flags: Set<String> = ["--force", "--quiet", "--json"]
        while i < all.count {
            let a = all[i]
            if a == "--" { out += all[i...]; break }
            if valued.contains(a) { i += 2; continue }
            if flags.contains(a) || valued.contains(where: { a.hasPrefix($0 + "=") }) { i += 1; continue }
            out.append(a)
            i += 1
        }
        return out
    }

    /// The resolved plan options every shard must share.
    static func planOptions(_ plan: CharacterizationPlan, backend: any ComputeBackend) -> [String: String] {
        [
            "layers": plan.layers.map(String.init).joined(separator: ","), "mode": plan.mode.rawValue,
            "directions": plan.directionLabels.joined(separator: " "), "probe": plan.probe.rawValue,
            "settling_band": "\(plan.settlingBand)", "rest_tolerance": "\(plan.restTolerance)",
            // Mode network's numbers depend on its chunking, which follows the backend's budget.
            "chunk_bytes": "\(plan.chunkBytes ?? backend.chunkBytes)",
            // Backends agree within tolerances, not bit for bit: shards of one run share one kind.
            "backend": backend.identity.kind == .cpu ? "cpu" : "\(backend.identity)".replacing(/Swift on [0-9]+ threads?/, with: "Swift"),
        ]
    }

    static func subject(_ loaded: LoadedModel, name: String, path: String?) throws -> ShardManifest.Subject {
        ShardManifest.Subject(name: name, path: path.map(absolutePath) ?? "", sha256: try loaded.contentHash(),
                              task: loaded.task.rawValue, output: loaded.output.rawValue)
    }

    static func dataFile(_ path: String) throws -> ShardManifest.DataFile {
        do { return ShardManifest.DataFile(path: absolutePath(path), sha256: try ContentHash.file(path)) } catch let error as FormatError {
            throw CleanFailure(description: "\(error)")
        }
    }

    /// SHA-256 of a file given as an option (class thresholds, a ranking CSV), or "" when none.
    static func fileHash(_ path: String?) throws -> String {
        guard let path else { return "" }
        return (try? ContentHash.file(path)) ?? "unreadable \(absolutePath(path))"
    }
}

func absolutePath(_ path: String) -> String {
    URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath, isDirectory: true))
        .standardizedFileURL.path
}

/// SHA-256 of the bank: every column as stimuli.csv lists it, and the clock.
func bankHash(_ plan: CharacterizationPlan) throws -> String {
    try ContentHash.of("pre_steps \(plan.bank.preSteps) starts_at_rest \(plan.bank.startsAtRest) steps \(plan.bank.steps)\n" + stimuliCSV(plan))
}

/// The rows that the row-major pairs `pairs` of a grid `columns` wide touch.
func rowsTouched(by pairs: Range<Int>, columns: Int) -> Range<Int> {
    pairs.isEmpty ? 0..<0 : (pairs.lowerBound / columns)..<((pairs.upperBound - 1) / columns + 1)
}

/// Runs shard `shard` of a command into DIR/shard-K-of-N/ (whole or not at all): its block of
/// the characterization pairs and, with `ablation`, its block of the single-cell ablation
/// configurations; `shard.json` is written last. Returns the shard directory's path.
func runShard(_ shard: ShardAssignment, context: ShardContext, plan: CharacterizationPlan, backend: any ComputeBackend,
              out: String, force: Bool, progress: ProgressReporter,
              ablation: ((Range<Int>) throws -> SingleAblation, Int)?) throws -> (path: String, manifest: ShardManifest) {
    let name = ShardManifest.directoryName(index: shard.index, count: shard.count)
    let path = URL(fileURLWithPath: out).appendingPathComponent(name).path
    let output = try OutputDirectory(path, force: force)
    let rows = plan.rows.count, columns = plan.columnCount
    let pairs = shard.range(of: rows * columns)
    let rowSpan = rowsTouched(by: pairs, columns: columns)
    let manifest = try output.build { dir -> ShardManifest in
        let metadata = responsesMetadata(plan, backend: backend, model: context.model.name)
        let responses = dir.appendingPathComponent("responses.safetensors")
        var shardMetadata = metadata
        shardMetadata["shard"] = "\(shard.index)/\(shard.count)"
        shardMetadata["pairs"] = "\(pairs.lowerBound)..<\(pairs.upperBound) of \(rows * columns), row-major over [\(rows), \(columns)]"
        let writer = try SafeTensorsStreamWriter(path: responses.path, tensors: responsesDeclarations(pairShape: [pairs.count], rows: rowSpan.count,
                                                                                                                        directions: !plan.network.isForwardOnly),
                                                 metadata: shardMetadata)
        let spanRows = Array(plan.rows[rowSpan])
        let atRest = try Characterizer.atRest(plan, on: backend)
        let (seconds, responded) = try streamResponses(plan, on: backend, pairs: pairs, to: writer, columns: columns,
                                                       firstPair: pairs.lowerBound, progress: progress)
        try writeRowIdentity(spanRows[...], atRest: atRest[rowSpan], directions: !plan.network.isForwardOnly, to: writer)
        try writer.finish()
        let csv = dir.appendingPathComponent("stimuli.csv")
        try stimuliCSV(plan).write(to: csv, atomically: false, encoding: .utf8)
        var files = ["responses.safetensors": try ContentHash.file(responses.path), "stimuli.csv": try ContentHash.file(csv.path)]
        var ablationWork: ShardManifest.Work?
        var abSeconds = 0.0
        if let (evaluate, total) = ablation {
            let block = shard.range(of: total)
            let clock = DispatchTime.now().uptimeNanoseconds
            let single = try evaluate(block)
            abSeconds = Double(DispatchTime.now().uptimeNanoseconds - clock) * 1e-9
            var w = SafeTensorsWriter(metadata: ["configurations": "\(block.lowerBound)..<\(block.upperBound) of \(total): 0 none, 1 all, 2 + j cell j alone"])
            try w.add("score", dtype: .F64, shape: [block.count], bytes: single.scores.withUnsafeBytes { Data($0) })
            try w.add("loss", dtype: .F64, shape: [block.count], bytes: single.losses.withUnsafeBytes { Data($0) })
            let file = dir.appendingPathComponent("ablation.safetensors")
            try w.write(to: file.path)
            files["ablation.safetensors"] = try ContentHash.file(file.path)
            ablationWork = .init(total: total, start: block.lowerBound, end: block.upperBound)
        }
        let manifest = ShardManifest(
            cellauditVersion: CellAudit.version, command: context.command, arguments: ShardContext.arguments(command: context.command),
            workingDirectory: FileManager.default.currentDirectoryPath, options: context.options, model: context.model, data: context.data,
            bankSha256: try bankHash(plan), backend: "\(backend.identity)", index: shard.index, count: shard.count, source: shard.source,
            rows: rows, columns: columns, pairs: .init(total: rows * columns, start: pairs.lowerBound, end: pairs.upperBound),
            rowStart: rowSpan.lowerBound, rowEnd: rowSpan.upperBound, ablation: ablationWork, metadata: metadata, files: files,
            seconds: seconds, ablationSeconds: abSeconds, simulatedSteps: Characterizer.simulatedSteps(plan, pairs: pairs), responded: responded,
            host: ProcessInfo.processInfo.hostName)
        // Last: a directory with shard.json is a finished shard.
        try encodeSummary(manifest).write(to: dir.appendingPathComponent(ShardManifest.fileName))
        return manifest
    }
    return (path, manifest)
}

/// What a shard run prints.
struct ShardSummary: Codable {
    var shard: String
    var source: String
    var out: String
    var pairs: String
    var ablationConfigurations: String?
    var backend: String
    var seconds: Double
    var cellStimulusSteps: Int

    init(_ m: ShardManifest, path: String) {
        shard = "\(m.index)/\(m.count)"; source = m.source; out = path
        pairs = "\(m.pairs.start)..<\(m.pairs.end) of \(m.pairs.total)"
        ablationConfigurations = m.ablation.map { "\($0.start)..<\($0.end) of \($0.total)" }
        backend = m.backend; seconds = m.seconds + m.ablationSeconds; cellStimulusSteps = m.simulatedSteps
    }

    func print(json: Bool) throws {
        if json { try printJSON(self); return }
        Swift.print("shard \(shard) (\(source)): cell-stimulus pairs \(pairs)" + (ablationConfigurations.map { ", single-cell ablations \($0)" } ?? ""))
        Swift.print("backend: \(backend)")
        Swift.print(String(format: "%.3g cell-stimulus-steps in %.3f s", Double(cellStimulusSteps), seconds))
        Swift.print("wrote \(out)/ (merge the shards with `cellaudit merge`)")
    }
}
