import CellAuditCore
import CellAuditOpenCL
import Foundation

/// What a shard directory's `shard.json` records (docs/METHOD.md §9): enough for `merge` to
/// prove that the shards belong to one run and tile its work exactly once, and to finish it.
public struct ShardManifest: Codable, Equatable {
    public static let formatName = "cellaudit-shard/1"
    public static let fileName = "shard.json"

    public struct Work: Codable, Equatable {
        /// Items of the whole run: (row, column) pairs, or single-cell ablation configurations.
        public var total: Int
        public var start: Int
        public var end: Int
        public var range: Range<Int> { start..<end }
    }

    public struct Subject: Codable, Equatable {
        /// As the run names it (file name, "… (bundled)", "random lstm (…)").
        public var name: String
        /// The path given, made absolute; empty for the bundled and random networks.
        public var path: String
        /// `RecurrentNetwork.contentHash()`: every weight, bit for bit.
        public var sha256: String
        public var task: String
        public var output: String
    }

    public struct DataFile: Codable, Equatable {
        public var path: String
        /// SHA-256 of the file's bytes.
        public var sha256: String
    }

    public var format = ShardManifest.formatName
    public var cellauditVersion: String
    /// characterize, audit or ablate.
    public var command: String
    /// The command's arguments without the shard and output options: `merge` parses them again.
    public var arguments: [String]
    /// Where they were given: relative paths among them are relative to it.
    public var workingDirectory: String
    /// The resolved options that decide the numbers; all shards must agree on every one.
    public var options: [String: String]
    public var model: Subject
    public var data: DataFile?
    /// SHA-256 of the stimulus bank and directions as stimuli.csv lists them, and the clock.
    public var bankSha256: String
    public var backend: String
    public var index: Int
    public var count: Int
    /// How K and N were found (the flag or the engine's variables).
    public var source: String
    public var rows: Int
    public var columns: Int
    public var pairs: Work
    /// Rows the pairs touch (their at_rest, layer and cell values are stored).
    public var rowStart: Int
    public var rowEnd: Int
    /// The single-cell ablation configurations this shard ran (audit with data, ablate).
    public var ablation: Work?
    /// The responses file's metadata as a whole run writes it.
    public var metadata: [String: String]
    /// SHA-256 of each file of the shard.
    public var files: [String: String]
    /// Seconds of the characterization, and of the single-cell ablations.
    public var seconds: Double
    public var ablationSeconds: Double
    public var simulatedSteps: Int
    public var responded: Int
    public var host: String

    /// What makes the manifest impossible, if anything: blocks out of order or outside the work,
    /// a grid whose size is not its pair count, rows that the pairs do not touch.
    public var inconsistency: String? {
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
    public static func directoryName(index: Int, count: Int) -> String {
        let width = String(count - 1).count
        let k = String(index)
        return "shard-" + String(repeating: "0", count: max(0, width - k.count)) + k + "-of-\(count)"
    }
}

/// A command's identity for its shards: what `merge` compares and how it runs the rest.
public struct ShardContext {
    public var command: String
    public var options: [String: String]
    public var model: ShardManifest.Subject
    public var data: ShardManifest.DataFile?
    /// The command's arguments as `arguments(command:commandLine:)` keeps them (recorded for `merge`).
    public var arguments: [String] = []

    public init(command: String, options: [String: String], model: ShardManifest.Subject, data: ShardManifest.DataFile?, arguments: [String] = []) {
        self.command = command; self.options = options; self.model = model; self.data = data; self.arguments = arguments
    }

    /// The arguments after the command's name in `all` (a command line without the program's
    /// name), without --shard, --shards, --out, --force, --quiet and --json.
    public static func arguments(command: String, commandLine all: [String]) -> [String] {
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
    public static func planOptions(_ plan: CharacterizationPlan, backend: any ComputeBackend) -> [String: String] {
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

    public static func subject(_ loaded: LoadedModel, name: String, path: String?) throws -> ShardManifest.Subject {
        ShardManifest.Subject(name: name, path: path.map(absolutePath) ?? "", sha256: try loaded.contentHash(),
                              task: loaded.task.rawValue, output: loaded.output.rawValue)
    }

    public static func dataFile(_ path: String) throws -> ShardManifest.DataFile {
        do { return ShardManifest.DataFile(path: absolutePath(path), sha256: try ContentHash.file(path)) } catch let error as FormatError {
            throw RunFailure(description: "\(error)")
        }
    }

    /// SHA-256 of a file given as an option (class thresholds, a ranking CSV), or "" when none.
    public static func fileHash(_ path: String?) throws -> String {
        guard let path else { return "" }
        return (try? ContentHash.file(path)) ?? "unreadable \(absolutePath(path))"
    }
}

/// SHA-256 of the bank: every column as stimuli.csv lists it, and the clock.
public func bankHash(_ plan: CharacterizationPlan) throws -> String {
    try ContentHash.of("pre_steps \(plan.bank.preSteps) starts_at_rest \(plan.bank.startsAtRest) steps \(plan.bank.steps)\n" + stimuliCSV(plan))
}

/// The rows that the row-major pairs `pairs` of a grid `columns` wide touch.
public func rowsTouched(by pairs: Range<Int>, columns: Int) -> Range<Int> {
    pairs.isEmpty ? 0..<0 : (pairs.lowerBound / columns)..<((pairs.upperBound - 1) / columns + 1)
}

/// Runs shard `shard` of a command into `dir` (the caller's staging directory for
/// DIR/shard-K-of-N/, which it publishes whole or not at all): its block of the characterization
/// pairs and, with `ablation`, its block of the single-cell ablation configurations;
/// `shard.json` is written last. `workingDirectory` is recorded for `merge` (relative paths in
/// the context's arguments are relative to it). Returns the manifest written.
/// - Throws: the backend's errors and file-system errors while writing.
public func writeShard(_ shard: ShardAssignment, context: ShardContext, plan: CharacterizationPlan, backend: any ComputeBackend,
                workingDirectory: String, into dir: URL, progress: any ChunkProgressSink,
                ablation: ((Range<Int>) throws -> SingleAblation, Int)?) throws -> ShardManifest {
    let rows = plan.rows.count, columns = plan.columnCount
    let pairs = shard.range(of: rows * columns)
    let rowSpan = rowsTouched(by: pairs, columns: columns)
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
        cellauditVersion: CellAuditVersion.current, command: context.command, arguments: context.arguments,
        workingDirectory: workingDirectory, options: context.options, model: context.model, data: context.data,
        bankSha256: try bankHash(plan), backend: "\(backend.identity)", index: shard.index, count: shard.count, source: shard.source,
        rows: rows, columns: columns, pairs: .init(total: rows * columns, start: pairs.lowerBound, end: pairs.upperBound),
        rowStart: rowSpan.lowerBound, rowEnd: rowSpan.upperBound, ablation: ablationWork, metadata: metadata, files: files,
        seconds: seconds, ablationSeconds: abSeconds, simulatedSteps: Characterizer.simulatedSteps(plan, pairs: pairs), responded: responded,
        host: ProcessInfo.processInfo.hostName)
    // Last: a directory with shard.json is a finished shard.
    try encodeSummary(manifest).write(to: dir.appendingPathComponent(ShardManifest.fileName))
    return manifest
}

/// What a shard run prints.
public struct ShardSummary: Codable {
    public var shard: String
    public var source: String
    public var out: String
    public var pairs: String
    public var ablationConfigurations: String?
    public var backend: String
    public var seconds: Double
    public var cellStimulusSteps: Int

    public init(_ m: ShardManifest, path: String) {
        shard = "\(m.index)/\(m.count)"; source = m.source; out = path
        pairs = "\(m.pairs.start)..<\(m.pairs.end) of \(m.pairs.total)"
        ablationConfigurations = m.ablation.map { "\($0.start)..<\($0.end) of \($0.total)" }
        backend = m.backend; seconds = m.seconds + m.ablationSeconds; cellStimulusSteps = m.simulatedSteps
    }

    public func print(json: Bool) throws {
        if json { try printJSON(self); return }
        Swift.print("shard \(shard) (\(source)): cell-stimulus pairs \(pairs)" + (ablationConfigurations.map { ", single-cell ablations \($0)" } ?? ""))
        Swift.print("backend: \(backend)")
        Swift.print(String(format: "%.3g cell-stimulus-steps in %.3f s", Double(cellStimulusSteps), seconds))
        Swift.print("wrote \(out)/ (merge the shards with `cellaudit merge`)")
    }
}

/// A checked set of shards: one run's shards 0…N−1, each once, tiling its work.
public struct ShardSet {
    public var paths: [String]
    public var manifests: [ShardManifest]

    /// Reads and checks the shards. A directory without shard.json that holds shard-K-of-N
    /// directories stands for them.
    /// - Throws: `RunFailure` naming the shard and the problem: not a finished shard, another
    ///   version, another model, data, bank or options, a duplicate, a missing shard, a block
    ///   that is not its own, a file changed since the shard wrote it.
    public static func read(_ directories: [String]) throws -> ShardSet {
        let fm = FileManager.default
        var paths: [String] = []
        for given in directories {
            // A shard's shard.json stands for its directory.
            let dir = (given as NSString).lastPathComponent == ShardManifest.fileName ? (given as NSString).deletingLastPathComponent : given
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: dir, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw RunFailure(description: "\(dir): no such shard directory")
            }
            if fm.fileExists(atPath: (dir as NSString).appendingPathComponent(ShardManifest.fileName)) { paths.append(dir); continue }
            let children = ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.wholeMatch(of: /shard-[0-9]+-of-[0-9]+/) != nil }.sorted()
            let finished = children.filter { fm.fileExists(atPath: (dir as NSString).appendingPathComponent($0 + "/" + ShardManifest.fileName)) }
            guard !finished.isEmpty else {
                throw RunFailure(description: "\(dir): not a finished shard (no \(ShardManifest.fileName); an interrupted shard leaves none) and holds no shard-K-of-N directories")
            }
            for child in children where !finished.contains(child) {
                throw RunFailure(description: "\((dir as NSString).appendingPathComponent(child)): not a finished shard (no \(ShardManifest.fileName)); run that shard again")
            }
            paths += finished.map { (dir as NSString).appendingPathComponent($0) }
        }
        // The same directory named twice (directly and through its parent) is one shard.
        var seenPaths = Set<String>()
        paths = paths.filter { seenPaths.insert(URL(fileURLWithPath: $0).standardizedFileURL.resolvingSymlinksInPath().path).inserted }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        var manifests: [ShardManifest] = []
        for path in paths {
            let file = (path as NSString).appendingPathComponent(ShardManifest.fileName)
            guard let data = fm.contents(atPath: file) else { throw RunFailure(description: "\(file): cannot read") }
            let m: ShardManifest
            do { m = try decoder.decode(ShardManifest.self, from: data) } catch let DecodingError.keyNotFound(key, _) {
                throw RunFailure(description: "\(file): not a CellAudit shard manifest (\(ShardManifest.formatName)): no '\(key.stringValue)'")
            } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
                throw RunFailure(description: "\(file): not a CellAudit shard manifest (\(ShardManifest.formatName)): '\(context.codingPath.map(\.stringValue).joined(separator: "."))' has the wrong type")
            } catch {
                throw RunFailure(description: "\(file): not a CellAudit shard manifest (\(ShardManifest.formatName))")
            }
            if let problem = m.inconsistency {
                throw RunFailure(description: "\(file): \(problem); the manifest was edited or damaged, run that shard again")
            }
            guard m.format == ShardManifest.formatName else {
                throw RunFailure(description: "\(file): format '\(m.format)', this CellAudit reads \(ShardManifest.formatName)")
            }
            manifests.append(m)
        }
        var set = ShardSet(paths: paths, manifests: manifests)
        try set.checkAgreement()
        try set.checkTiling()
        try set.checkFiles()
        return set
    }

    private func name(_ i: Int) -> String { paths[i] }

    /// Every shard from one run, and this CellAudit able to finish it.
    private func checkAgreement() throws {
        let a = manifests[0]
        for (i, m) in manifests.enumerated() {
            guard m.cellauditVersion == CellAuditVersion.current else {
                throw RunFailure(description: "\(name(i)): written by CellAudit \(m.cellauditVersion), this is \(CellAuditVersion.current); merge with the version that ran the shards, or run them again")
            }
            guard i > 0 else { continue }
            func refuse(_ what: String, _ mine: String, _ theirs: String) -> RunFailure {
                RunFailure(description: "\(name(i)): \(what) differs from \(name(0))'s (\(mine) vs \(theirs)); shards of different runs cannot be merged")
            }
            if m.command != a.command { throw refuse("command", m.command, a.command) }
            if m.model.sha256 != a.model.sha256 { throw refuse("model", "\(m.model.name) sha256 \(m.model.sha256.prefix(12))", "\(a.model.name) sha256 \(a.model.sha256.prefix(12))") }
            if m.model.task != a.model.task || m.model.output != a.model.output {
                throw refuse("model task/output", "\(m.model.task)/\(m.model.output)", "\(a.model.task)/\(a.model.output)")
            }
            if m.data?.sha256 != a.data?.sha256 {
                throw refuse("dataset", m.data.map { "sha256 \($0.sha256.prefix(12))" } ?? "none", a.data.map { "sha256 \($0.sha256.prefix(12))" } ?? "none")
            }
            if m.bankSha256 != a.bankSha256 { throw refuse("stimulus bank", "sha256 \(m.bankSha256.prefix(12))", "sha256 \(a.bankSha256.prefix(12))") }
            if m.options != a.options {
                let key = Set(m.options.keys).union(a.options.keys).sorted().first { m.options[$0] != a.options[$0] }!
                throw refuse("option \(key)", m.options[key] ?? "unset", a.options[key] ?? "unset")
            }
            if m.count != a.count { throw refuse("shard count", "\(m.count)", "\(a.count)") }
            if m.pairs.total != a.pairs.total || m.rows != a.rows || m.columns != a.columns {
                throw refuse("grid", "\(m.rows) × \(m.columns), \(m.pairs.total) pairs", "\(a.rows) × \(a.columns), \(a.pairs.total) pairs")
            }
            if m.ablation?.total != a.ablation?.total {
                throw refuse("single-cell ablations", m.ablation.map { "\($0.total)" } ?? "none", a.ablation.map { "\($0.total)" } ?? "none")
            }
        }
    }

    /// Shards 0…N−1 each exactly once, each holding its own block, the blocks tiling the work.
    private mutating func checkTiling() throws {
        let n = manifests[0].count
        var seen: [Int: Int] = [:]
        for (i, m) in manifests.enumerated() {
            guard (0..<n).contains(m.index) else { throw RunFailure(description: "\(name(i)): shard \(m.index) of \(n) does not exist") }
            if let j = seen[m.index] {
                throw RunFailure(description: "shard \(m.index) of \(n) is given twice: \(name(j)) and \(name(i))")
            }
            seen[m.index] = i
            let pairs = ShardAssignment.block(total: m.pairs.total, index: m.index, count: n)
            guard m.pairs.range == pairs else {
                throw RunFailure(description: "\(name(i)): holds pairs \(m.pairs.start)..<\(m.pairs.end), but shard \(m.index) of \(n) is \(pairs.lowerBound)..<\(pairs.upperBound)")
            }
            if let ablation = m.ablation {
                let block = ShardAssignment.block(total: ablation.total, index: m.index, count: n)
                guard ablation.range == block else {
                    throw RunFailure(description: "\(name(i)): holds ablations \(ablation.start)..<\(ablation.end), but shard \(m.index) of \(n) is \(block.lowerBound)..<\(block.upperBound)")
                }
            }
        }
        let missing = (0..<n).filter { seen[$0] == nil }
        guard missing.isEmpty else {
            let list = missing.prefix(10).map(String.init).joined(separator: ", ") + (missing.count > 10 ? ", … (\(missing.count) in all)" : "")
            let parents = Set(paths.map { ($0 as NSString).deletingLastPathComponent })
            let partial = parents.flatMap { parent in
                ((try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? []).filter { entry in
                    missing.contains { entry.hasPrefix("." + ShardManifest.directoryName(index: $0, count: n) + ".partial-") }
                }.map { (parent as NSString).appendingPathComponent($0) }
            }
            throw RunFailure(description: "missing shard\(missing.count > 1 ? "s" : "") \(list) of \(n); every shard 0…\(n - 1) must be given once"
                               + (partial.isEmpty ? "" : " (\(partial.sorted()[0]) is an interrupted attempt: run that shard again)"))
        }
        // In index order from here on; consecutive blocks must meet end to start.
        let order = (0..<n).map { seen[$0]! }
        paths = order.map { paths[$0] }
        manifests = order.map { manifests[$0] }
        var at = 0
        for (i, m) in manifests.enumerated() {
            guard m.pairs.start == at else { throw RunFailure(description: "\(name(i)): starts at pair \(m.pairs.start), not \(at)") }
            at = m.pairs.end
        }
        guard at == manifests[0].pairs.total else { throw RunFailure(description: "the shards cover \(at) of \(manifests[0].pairs.total) pairs") }
    }

    /// Every file as the shard's manifest hashed it.
    private func checkFiles() throws {
        for (i, m) in manifests.enumerated() {
            for (file, hash) in m.files.sorted(by: { $0.key < $1.key }) {
                let path = (paths[i] as NSString).appendingPathComponent(file)
                let actual: String
                do { actual = try ContentHash.file(path) } catch {
                    throw RunFailure(description: "\(path): missing or unreadable; run shard \(m.index) again")
                }
                guard actual == hash else {
                    throw RunFailure(description: "\(path): changed since shard \(m.index) wrote it (sha256 \(actual.prefix(12)), manifest \(hash.prefix(12))); run that shard again")
                }
            }
            let expected = m.ablation == nil ? 2 : 3
            guard m.files.count == expected else {
                throw RunFailure(description: "\(paths[i])/\(ShardManifest.fileName): lists \(m.files.count) files, a \(m.command) shard writes \(expected)")
            }
        }
    }

    /// The shards' dataset file still holds what they ran on (checked before it is read).
    public func checkDataFile() throws {
        guard let data = manifests[0].data else { return }
        guard FileManager.default.fileExists(atPath: data.path) else {
            throw RunFailure(description: "\(data.path): the shards' dataset is gone; merge needs it to finish the run")
        }
        let now = try ShardContext.dataFile(data.path)
        guard now.sha256 == data.sha256 else {
            throw RunFailure(description: "\(data.path): the dataset has changed since the shards ran (sha256 \(now.sha256.prefix(12)), shards \(data.sha256.prefix(12)))")
        }
        if !manifests[0].model.path.isEmpty, !FileManager.default.fileExists(atPath: manifests[0].model.path) {
            throw RunFailure(description: "\(manifests[0].model.path): the shards' model is gone; merge needs it to finish the run")
        }
    }

    /// The options read now (files named by options included) are the shards'; the backend
    /// and its budget, which only decide how merge computes, aside.
    public func check(options now: [String: String]) throws {
        let recorded = manifests[0].options
        for key in Set(now.keys).union(recorded.keys).sorted() where !["backend", "chunk_bytes"].contains(key) && now[key] != recorded[key] {
            throw RunFailure(description: "option \(key) now reads \(now[key] ?? "unset"), the shards ran with \(recorded[key] ?? "unset") (a file it names changed since?); run the shards again or restore it")
        }
    }

    /// The model, data and bank of the command that `merge` is about to finish are the shards'.
    public func check(model: LoadedModel, data: String?, plan: CharacterizationPlan) throws {
        let m = manifests[0]
        let hash = try model.contentHash()
        guard hash == m.model.sha256 else {
            throw RunFailure(description: "\(m.model.path.isEmpty ? m.model.name : m.model.path): the model has changed since the shards ran (sha256 \(hash.prefix(12)), shards \(m.model.sha256.prefix(12)))")
        }
        if let data, let recorded = m.data {
            let now = try ShardContext.dataFile(data)
            guard now.sha256 == recorded.sha256 else {
                throw RunFailure(description: "\(now.path): the dataset has changed since the shards ran (sha256 \(now.sha256.prefix(12)), shards \(recorded.sha256.prefix(12)))")
            }
        }
        guard try bankHash(plan) == m.bankSha256, plan.rows.count == m.rows, plan.columnCount == m.columns else {
            throw RunFailure(description: "the stimulus bank read now differs from the shards' (a --stimuli file changed?)")
        }
    }

    /// Tiles the shards' responses into DIR/responses.safetensors (tensor for tensor what one run
    /// writes, its metadata included) and writes DIR/stimuli.csv.
    @discardableResult
    public func writeResponses(to dir: URL) throws -> CharacterizationResult {
        let first = manifests[0]
        let rows = first.rows, columns = first.columns
        // Shards of a network with reverse layers carry each row's direction.
        let directions = try SafeTensorsFile(path: (paths[0] as NSString).appendingPathComponent("responses.safetensors")).tensors["direction"] != nil
        let writer = try SafeTensorsStreamWriter(path: dir.appendingPathComponent("responses.safetensors").path,
                                                 tensors: responsesDeclarations(pairShape: [rows, columns], rows: rows, directions: directions),
                                                 metadata: first.metadata)
        let perPair = Metric.allCases.map(\.name)
        var rowValues: [String: [Int: [UInt8]]] = [:]
        var seconds = 0.0, responded = 0
        for (i, m) in manifests.enumerated() {
            let file = try SafeTensorsFile(path: (paths[i] as NSString).appendingPathComponent("responses.safetensors"))
            for name in perPair {
                let info = try file.info(name)
                guard info.shape == [m.pairs.end - m.pairs.start] else {
                    throw RunFailure(description: "\(file.path): tensor \(name) has shape \(info.shape), the shard holds \(m.pairs.end - m.pairs.start) pairs")
                }
                try file.withBytes(name) { try writer.write(name, at: m.pairs.start, bytes: $0) }
            }
            // Per-row tensors: a row split between shards must read the same in both.
            for name in ["at_rest", "layer", "cell"] + (directions ? ["direction"] : []) {
                let info = try file.info(name)
                guard info.shape == [m.rowEnd - m.rowStart] else {
                    throw RunFailure(description: "\(file.path): tensor \(name) has shape \(info.shape), the shard touches \(m.rowEnd - m.rowStart) rows")
                }
                let width = info.dtype.byteSize
                try file.withBytes(name) { bytes in
                    for r in m.rowStart..<m.rowEnd {
                        let value = Array(bytes[((r - m.rowStart) * width)..<((r - m.rowStart + 1) * width)])
                        if let earlier = rowValues[name]?[r] {
                            guard earlier == value else {
                                throw RunFailure(description: "\(paths[i]): \(name) of row \(r) differs from the previous shard's; the shards did not run alike")
                            }
                            continue
                        }
                        rowValues[name, default: [:]][r] = value
                        try value.withUnsafeBytes { try writer.write(name, at: r, bytes: $0) }
                    }
                }
            }
            seconds += m.seconds
            responded += m.responded
        }
        try writer.finish()
        // stimuli.csv is the same in every shard (its hash is the bank's).
        let csv = dir.appendingPathComponent("stimuli.csv")
        try FileManager.default.copyItem(atPath: (paths[0] as NSString).appendingPathComponent("stimuli.csv"), toPath: csv.path)
        return CharacterizationResult(seconds: seconds, respondedShare: Double(responded) / Double(max(rows * columns, 1)))
    }

    /// The single-cell ablations of all shards, in configuration order; nil when the shards ran none.
    public func singleAblation() throws -> SingleAblation? {
        guard manifests[0].ablation != nil else { return nil }
        var scores: [Double] = [], losses: [Double] = []
        for (i, m) in manifests.enumerated() {
            let file = try SafeTensorsFile(path: (paths[i] as NSString).appendingPathComponent("ablation.safetensors"))
            func doubles(_ name: String) throws -> [Double] {
                let info = try file.info(name)
                guard info.dtype == .F64, info.shape == [m.ablation!.end - m.ablation!.start] else {
                    throw RunFailure(description: "\(file.path): tensor \(name) is not F64 [\(m.ablation!.end - m.ablation!.start)]")
                }
                return try file.withBytes(name) { Array($0.bindMemory(to: Double.self)) }
            }
            scores += try doubles("score")
            losses += try doubles("loss")
        }
        return SingleAblation(scores: scores, losses: losses)
    }
}

/// What `merge` of characterize shards prints.
public struct MergeSummary: Codable {
    public var out: String
    public var command: String
    public var shards: Int
    public var cells: Int
    public var stimuli: Int
    public var shardSeconds: Double
    public var respondedShare: Double

    public init(_ set: ShardSet, out: String) {
        let m = set.manifests[0]
        self.out = out; command = m.command; shards = m.count; cells = m.rows; stimuli = m.columns
        shardSeconds = set.manifests.reduce(0) { $0 + $1.seconds }
        respondedShare = Double(set.manifests.reduce(0) { $0 + $1.responded }) / Double(max(m.rows * m.columns, 1))
    }

    public func print(json: Bool) throws {
        if json { try printJSON(self); return }
        Swift.print("merged \(shards) \(command) shards: \(cells) cells × \(stimuli) stimuli")
        Swift.print(String(format: "shards ran %.3f s in all; responded: %.1f%% of pairs", shardSeconds, 100 * respondedShare))
        Swift.print("wrote \(out)/responses.safetensors, \(out)/stimuli.csv")
    }
}
