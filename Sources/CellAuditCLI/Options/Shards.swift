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
            throw RunFailure(description: "\(error)")
        }
        guard let shard, shard.count > 1 else { return nil }
        return shard
    }
}


/// Runs shard `shard` of the running command into OUT/shard-K-of-N/, which appears whole or not
/// at all (`OutputDirectory`); the command's arguments and working directory are recorded for
/// `merge`. Returns the shard directory's path and its manifest.
func runShard(_ shard: ShardAssignment, context: ShardContext, plan: CharacterizationPlan, backend: any ComputeBackend,
              out: String, force: Bool, progress: ProgressReporter,
              ablation: ((Range<Int>) throws -> SingleAblation, Int)?) throws -> (path: String, manifest: ShardManifest) {
    let path = URL(fileURLWithPath: out).appendingPathComponent(ShardManifest.directoryName(index: shard.index, count: shard.count)).path
    var context = context
    context.arguments = ShardContext.arguments(command: context.command, commandLine: Array(CommandLine.arguments.dropFirst()))
    let manifest = try OutputDirectory(path, force: force).build { dir in
        try writeShard(shard, context: context, plan: plan, backend: backend, workingDirectory: FileManager.default.currentDirectoryPath,
                       into: dir, progress: progress, ablation: ablation)
    }
    return (path, manifest)
}
