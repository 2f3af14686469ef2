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
                    throw RunFailure(description: "--out \(out) would overwrite the shard \(path) or the directory holding it; merge into another directory")
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
                throw RunFailure(description: "\(shards.paths[0]): shard of an unknown command '\(first.command)'")
            }
        }
    }

    /// The shards' command, parsed again from the arguments they recorded.
    func parse<C: ParsableCommand>(_ type: C.Type, _ manifest: ShardManifest) throws -> C {
        do { return try C.parse(manifest.arguments) } catch {
            throw RunFailure(description: "the shards' arguments (\(manifest.arguments.joined(separator: " "))) no longer parse: \(C.message(for: error))")
        }
    }

    func makeBackend(_ options: BackendOptions) throws -> any ComputeBackend {
        var options = options
        if let backend { options.backend = backend; if backend == "cpu" { options.deviceOption.device = nil } }
        do { return try options.makeBackend() } catch {
            throw RunFailure(description: "\(error) (the shards' backend; `cellaudit merge --backend cpu` finishes on the CPU)")
        }
    }

    /// Runs `body` in the directory the shards ran in, where their relative paths point.
    func inWorkingDirectory<R>(_ manifest: ShardManifest, _ body: () throws -> R) throws -> R {
        let fm = FileManager.default
        let here = fm.currentDirectoryPath
        guard fm.changeCurrentDirectoryPath(manifest.workingDirectory) else {
            throw RunFailure(description: "the shards ran in \(manifest.workingDirectory), which does not exist here; their model and data paths are relative to it")
        }
        defer { _ = fm.changeCurrentDirectoryPath(here) }
        return try body()
    }
}

