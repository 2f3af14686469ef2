import ArgumentParser
import CellAuditAnalysis
import CellAuditCore
import CellAuditOpenCL
import Foundation

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Merge the shards of a characterize, audit or ablate run into what one run writes.",
        discussion: """
        Each SHARD_DIR is a shard's directory (DIR/shard-K-of-N, written by --shard or from \
        SLURM_ARRAY_TASK_ID / JOB_COMPLETION_INDEX), or a directory holding them. The shards must \
        come from one run: the same model, data, stimulus bank, options, backend kind and CellAudit \
        version, shards 0…N−1 each exactly once, their blocks tiling the work, every file as its \
        manifest hashed it; anything else is refused, naming the shard. The merged \
        responses.safetensors equals a single run's tensor for tensor; for audit and ablate, the \
        summaries, rankings, curves and report are computed from the merged data (default DIR \
        cellaudit-merged; it may not be, hold or lie inside a shard directory).
        """
    )

    @Argument(help: "Shard directories, or directories that hold them.")
    var shardDirectories: [String]

    @Option(help: "Backend for what merge computes after tiling (audit and ablate: rankings, curves, dynamics); default: the shards' own choice.")
    var backend: String?

    @OptionGroup var outputOptions: OutputOptions

    func validate() throws {
        guard !shardDirectories.isEmpty else { throw ValidationError("give the shard directories to merge") }
        if let backend { _ = try BackendChoice.resolve(flag: backend, environment: ProcessInfo.processInfo.environment) }
    }

    func run() throws {
        try failing {
            shardDirectories.forEach(InputFiles.record)
            let shards = try ShardSet.read(shardDirectories.map(absolutePath))
            let out = absolutePath(outputOptions.out ?? "cellaudit-merged")
            let target = URL(fileURLWithPath: out).resolvingSymlinksInPath().path
            for path in shards.paths {
                let shard = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
                let parent = (shard as NSString).deletingLastPathComponent
                if target == shard || target == parent || shard.hasPrefix(target + "/") || target.hasPrefix(shard + "/") {
                    throw CleanFailure(description: "--out \(out) would overwrite the shard \(path) or the directory holding it; merge into another directory")
                }
            }
            let quiet = outputOptions.quiet || outputOptions.json
            let first = shards.manifests[0]
            switch first.command {
            case "characterize":
                let output = try OutputDirectory(out, force: outputOptions.force)
                _ = try output.build { dir in try shards.writeResponses(to: dir) }
                let merged = MergeSummary(shards, out: out)
                try merged.print(json: outputOptions.json)
            case "audit":
                var command = try parse(Audit.self, first)
                command.outputOptions.quiet = quiet
                command.outputOptions.json = outputOptions.json
                let summary: AuditSummary = try inWorkingDirectory(first) {
                    try shards.checkDataFile()
                    let subject = try command.prepare()
                    defer { subject.cleanup() }
                    try shards.check(model: subject.loaded, data: subject.dataPath, plan: subject.plan)
                    let backend = try makeBackend(command.backendOptions)
                    try shards.check(options: try command.shardContext(subject, backend: backend).options)
                    let output = try OutputDirectory(out, force: outputOptions.force)
                    return try output.build { dir in
                        let result = try shards.writeResponses(to: dir)
                        return try command.finish(subject, backend: backend, dir: dir, result: result, single: try shards.singleAblation())
                    }
                }
                try command.printOutcome(summary, out: out, json: outputOptions.json)
            case "ablate":
                var command = try parse(Ablate.self, first)
                command.outputOptions.quiet = quiet
                let summary: AblationSummary = try inWorkingDirectory(first) {
                    try shards.checkDataFile()
                    let subject = try command.prepare()
                    try shards.check(model: subject.loaded, data: command.data, plan: subject.plan)
                    let backend = try makeBackend(command.backendOptions)
                    try shards.check(options: try command.shardContext(subject, backend: backend).options)
                    let output = try OutputDirectory(out, force: outputOptions.force)
                    return try output.build { dir in
                        _ = try shards.writeResponses(to: dir)
                        return try command.finish(subject, backend: backend, dir: dir, single: try shards.singleAblation())
                    }
                }
                try command.printOutcome(summary, out: out, json: outputOptions.json)
            default:
                throw CleanFailure(description: "\(shards.paths[0]): shard of an unknown command '\(first.command)'")
            }
        }
    }

    /// The shards' command, parsed again from the arguments they recorded.
    func parse<C: ParsableCommand>(_ type: C.Type, _ manifest: ShardManifest) throws -> C {
        do { return try C.parse(manifest.arguments) } catch {
            throw CleanFailure(description: "the shards' arguments (\(manifest.arguments.joined(separator: " "))) no longer parse: \(C.message(for: error))")
        }
    }

    func makeBackend(_ options: BackendOptions) throws -> any ComputeBackend {
        var options = options
        if let backend { options.backend = backend; if backend == "cpu" { options.deviceOption.device = nil } }
        do { return try options.makeBackend() } catch {
            throw CleanFailure(description: "\(error) (the shards' backend; `cellaudit merge --backend cpu` finishes on the CPU)")
        }
    }

    /// Runs `body` in the directory the shards ran in, where their relative paths point.
    func inWorkingDirectory<R>(_ manifest: ShardManifest, _ body: () throws -> R) throws -> R {
        let fm = FileManager.default
        let here = fm.currentDirectoryPath
        guard fm.changeCurrentDirectoryPath(manifest.workingDirectory) else {
            throw CleanFailure(description: "the shards ran in \(manifest.workingDirectory), which does not exist here; their model and data paths are relative to it")
        }
        defer { _ = fm.changeCurrentDirectoryPath(here) }
        return try body()
    }
}

/// A checked set of shards: one run's shards 0…N−1, each once, tiling its work.
struct ShardSet {
    var paths: [String]
    var manifests: [ShardManifest]

    /// Reads and checks the shards. A directory without shard.json that holds shard-K-of-N
    /// directories stands for them.
    /// - Throws: `CleanFailure` naming the shard and the problem: not a finished shard, another
    ///   version, another model, data, bank or options, a duplicate, a missing shard, a block
    ///   that is not its own, a file changed since the shard wrote it.
    static func read(_ directories: [String]) throws -> ShardSet {
        let fm = FileManager.default
        var paths: [String] = []
        for given in directories {
            // A shard's shard.json stands for its directory.
            let dir = (given as NSString).lastPathComponent == ShardManifest.fileName ? (given as NSString).deletingLastPathComponent : given
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: dir, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw CleanFailure(description: "\(dir): no such shard directory")
            }
            if fm.fileExists(atPath: (dir as NSString).appendingPathComponent(ShardManifest.fileName)) { paths.append(dir); continue }
            let children = ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.wholeMatch(of: /shard-[0-9]+-of-[0-9]+/) != nil }.sorted()
            let finished = children.filter { fm.fileExists(atPath: (dir as NSString).appendingPathComponent($0 + "/" + ShardManifest.fileName)) }
            guard !finished.isEmpty else {
                throw CleanFailure(description: "\(dir): not a finished shard (no \(ShardManifest.fileName); an interrupted shard leaves none) and holds no shard-K-of-N directories")
            }
            for child in children where !finished.contains(child) {
                throw CleanFailure(description: "\((dir as NSString).appendingPathComponent(child)): not a finished shard (no \(ShardManifest.fileName)); run that shard again")
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
            guard let data = fm.contents(atPath: file) else { throw CleanFailure(description: "\(file): cannot read") }
            let m: ShardManifest
            do { m = try decoder.decode(ShardManifest.self, from: data) } catch let DecodingError.keyNotFound(key, _) {
                throw CleanFailure(description: "\(file): not a CellAudit shard manifest (\(ShardManifest.formatName)): no '\(key.stringValue)'")
            } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
                throw CleanFailure(description: "\(file): not a CellAudit shard manifest (\(ShardManifest.formatName)): '\(context.codingPath.map(\.stringValue).joined(separator: "."))' has the wrong type")
            } catch {
                throw CleanFailure(description: "\(file): not a CellAudit shard manifest (\(ShardManifest.formatName))")
            }
            if let problem = m.inconsistency {
                throw CleanFailure(description: "\(file): \(problem); the manifest was edited or damaged, run that shard again")
            }
            guard m.format == ShardManifest.formatName else {
                throw CleanFailure(description: "\(file): format '\(m.format)', this CellAudit reads \(ShardManifest.formatName)")
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
            guard m.cellauditVersion == CellAudit.version else {
                throw CleanFailure(description: "\(name(i)): written by CellAudit \(m.cellauditVersion), this is \(CellAudit.version); merge with the version that ran the shards, or run them again")
            }
            guard i > 0 else { continue }
            func refuse(_ what: String, _ mine: String, _ theirs: String) -> CleanFailure {
                CleanFailure(description: "\(name(i)): \(what) differs from \(name(0))'s (\(mine) vs \(theirs)); shards of different runs cannot be merged")
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
            guard (0..<n).contains(m.index) else { throw CleanFailure(description: "\(name(i)): shard \(m.index) of \(n) does not exist") }
            if let j = seen[m.index] {
                throw CleanFailure(description: "shard \(m.index) of \(n) is given twice: \(name(j)) and \(name(i))")
            }
            seen[m.index] = i
            let pairs = ShardAssignment.block(total: m.pairs.total, index: m.index, count: n)
            guard m.pairs.range == pairs else {
                throw CleanFailure(description: "\(name(i)): holds pairs \(m.pairs.start)..<\(m.pairs.end), but shard \(m.index) of \(n) is \(pairs.lowerBound)..<\(pairs.upperBound)")
            }
            if let ablation = m.ablation {
                let block = ShardAssignment.block(total: ablation.total, index: m.index, count: n)
                guard ablation.range == block else {
                    throw CleanFailure(description: "\(name(i)): holds ablations \(ablation.start)..<\(ablation.end), but shard \(m.index) of \(n) is \(block.lowerBound)..<\(block.upperBound)")
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
            throw CleanFailure(description: "missing shard\(missing.count > 1 ? "s" : "") \(list) of \(n); every shard 0…\(n - 1) must be given once"
                               + (partial.isEmpty ? "" : " (\(partial.sorted()[0]) is an interrupted attempt: run that shard again)"))
        }
        // In index order from here on; consecutive blocks must meet end to start.
        let order = (0..<n).map { seen[$0]! }
        paths = order.map { paths[$0] }
        manifests = order.map { manifests[$0] }
        var at = 0
        for (i, m) in manifests.enumerated() {
            guard m.pairs.start == at else { throw CleanFailure(description: "\(name(i)): starts at pair \(m.pairs.start), not \(at)") }
            at = m.pairs.end
        }
        guard at == manifests[0].pairs.total else { throw CleanFailure(description: "the shards cover \(at) of \(manifests[0].pairs.total) pairs") }
    }

    /// Every file as the shard's manifest hashed it.
    private func checkFiles() throws {
        for (i, m) in manifests.enumerated() {
            for (file, hash) in m.files.sorted(by: { $0.key < $1.key }) {
                let path = (paths[i] as NSString).appendingPathComponent(file)
                let actual: String
                do { actual = try ContentHash.file(path) } catch {
                    throw CleanFailure(description: "\(path): missing or unreadable; run shard \(m.index) again")
                }
                guard actual == hash else {
                    throw CleanFailure(description: "\(path): changed since shard \(m.index) wrote it (sha256 \(actual.prefix(12)), manifest \(hash.prefix(12))); run that shard again")
                }
            }
            let expected = m.ablation == nil ? 2 : 3
            guard m.files.count == expected else {
                throw CleanFailure(description: "\(paths[i])/\(ShardManifest.fileName): lists \(m.files.count) files, a \(m.command) shard writes \(expected)")
            }
        }
    }

    /// The shards' dataset file still holds what they ran on (checked before it is read).
    func checkDataFile() throws {
        guard let data = manifests[0].data else { return }
        guard FileManager.default.fileExists(atPath: data.path) else {
            throw CleanFailure(description: "\(data.path): the shards' dataset is gone; merge needs it to finish the run")
        }
        let now = try ShardContext.dataFile(data.path)
        guard now.sha256 == data.sha256 else {
            throw CleanFailure(description: "\(data.path): the dataset has changed since the shards ran (sha256 \(now.sha256.prefix(12)), shards \(data.sha256.prefix(12)))")
        }
        if !manifests[0].model.path.isEmpty, !FileManager.default.fileExists(atPath: manifests[0].model.path) {
            throw CleanFailure(description: "\(manifests[0].model.path): the shards' model is gone; merge needs it to finish the run")
        }
    }

    /// The options read now (files named by options included) are the shards'; the backend
    /// and its budget, which only decide how merge computes, aside.
    func check(options now: [String: String]) throws {
        let recorded = manifests[0].options
        for key in Set(now.keys).union(recorded.keys).sorted() where !["backend", "chunk_bytes"].contains(key) && now[key] != recorded[key] {
            throw CleanFailure(description: "option \(key) now reads \(now[key] ?? "unset"), the shards ran with \(recorded[key] ?? "unset") (a file it names changed since?); run the shards again or restore it")
        }
    }

    /// The model, data and bank of the command that `merge` is about to finish are the shards'.
    func check(model: LoadedModel, data: String?, plan: CharacterizationPlan) throws {
        let m = manifests[0]
        let hash = try model.contentHash()
        guard hash == m.model.sha256 else {
            throw CleanFailure(description: "\(m.model.path.isEmpty ? m.model.name : m.model.path): the model has changed since the shards ran (sha256 \(hash.prefix(12)), shards \(m.model.sha256.prefix(12)))")
        }
        if let data, let recorded = m.data {
            let now = try ShardContext.dataFile(data)
            guard now.sha256 == recorded.sha256 else {
                throw CleanFailure(description: "\(now.path): the dataset has changed since the shards ran (sha256 \(now.sha256.prefix(12)), shards \(recorded.sha256.prefix(12)))")
            }
        }
        guard try bankHash(plan) == m.bankSha256, plan.rows.count == m.rows, plan.columnCount == m.columns else {
            throw CleanFailure(description: "the stimulus bank read now differs from the shards' (a --stimuli file changed?)")
        }
    }

    /// Tiles the shards' responses into DIR/responses.safetensors (tensor for tensor what one run
    /// writes, its metadata included) and writes DIR/stimuli.csv.
    @discardableResult
    func writeResponses(to dir: URL) throws -> CharacterizationResult {
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
                    throw CleanFailure(description: "\(file.path): tensor \(name) has shape \(info.shape), the shard holds \(m.pairs.end - m.pairs.start) pairs")
                }
                try file.withBytes(name) { try writer.write(name, at: m.pairs.start, bytes: $0) }
            }
            // Per-row tensors: a row split between shards must read the same in both.
            for name in ["at_rest", "layer", "cell"] + (directions ? ["direction"] : []) {
                let info = try file.info(name)
                guard info.shape == [m.rowEnd - m.rowStart] else {
                    throw CleanFailure(description: "\(file.path): tensor \(name) has shape \(info.shape), the shard touches \(m.rowEnd - m.rowStart) rows")
                }
                let width = info.dtype.byteSize
                try file.withBytes(name) { bytes in
                    for r in m.rowStart..<m.rowEnd {
                        let value = Array(bytes[((r - m.rowStart) * width)..<((r - m.rowStart + 1) * width)])
                        if let earlier = rowValues[name]?[r] {
                            guard earlier == value else {
                                throw CleanFailure(description: "\(paths[i]): \(name) of row \(r) differs from the previous shard's; the shards did not run alike")
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
    func singleAblation() throws -> SingleAblation? {
        guard manifests[0].ablation != nil else { return nil }
        var scores: [Double] = [], losses: [Double] = []
        for (i, m) in manifests.enumerated() {
            let file = try SafeTensorsFile(path: (paths[i] as NSString).appendingPathComponent("ablation.safetensors"))
            func doubles(_ name: String) throws -> [Double] {
                let info = try file.info(name)
                guard info.dtype == .F64, info.shape == [m.ablation!.end - m.ablation!.start] else {
                    throw CleanFailure(description: "\(file.path): tensor \(name) is not F64 [\(m.ablation!.end - m.ablation!.start)]")
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
struct MergeSummary: Codable {
    var out: String
    var command: String
    var shards: Int
    var cells: Int
    var stimuli: Int
    var shardSeconds: Double
    var respondedShare: Double

    init(_ set: ShardSet, out: String) {
        let m = set.manifests[0]
        self.out = out; command = m.command; shards = m.count; cells = m.rows; stimuli = m.columns
        shardSeconds = set.manifests.reduce(0) { $0 + $1.seconds }
        respondedShare = Double(set.manifests.reduce(0) { $0 + $1.responded }) / Double(max(m.rows * m.columns, 1))
    }

    func print(json: Bool) throws {
        if json { try printJSON(self); return }
        Swift.print("merged \(shards) \(command) shards: \(cells) cells × \(stimuli) stimuli")
        Swift.print(String(format: "shards ran %.3f s in all; responded: %.1f%% of pairs", shardSeconds, 100 * respondedShare))
        Swift.print("wrote \(out)/responses.safetensors, \(out)/stimuli.csv")
    }
}
