import CellAuditAnalysis
import CellAuditCore
import Foundation
import Testing

/// Sharded runs (docs/METHOD.md §9): which shard a process is, and that N shards together do
/// exactly the work of one run.
@Suite struct ShardTests {
    @Test func blocksTileTheWorkExactlyOnce() throws {
        for total in [0, 1, 2, 5, 13, 97, 1000, 12_288 * 4_480] {
            for n in [1, 2, 3, 7, 64, 1001] {
                var at = 0
                var sizes = Set<Int>()
                for k in 0..<n {
                    let block = ShardAssignment.block(total: total, index: k, count: n)
                    #expect(block.lowerBound == at)
                    at = block.upperBound
                    sizes.insert(block.count)
                }
                #expect(at == total)
                #expect((sizes.max() ?? 0) - (sizes.min() ?? 0) <= 1)
            }
        }
    }

    @Test func theFlagGivesKAndN() throws {
        let s = try #require(try ShardAssignment.resolve(flag: "2/7", shards: nil, environment: [:]))
        #expect(s.index == 2 && s.count == 7)
        #expect(try ShardAssignment.resolve(flag: nil, shards: nil, environment: [:]) == nil)
        for bad in ["7/7", "-1/3", "1/0", "a/b", "3", "1/2/3", ""] {
            #expect(throws: ShardError.self, "\(bad)") { try ShardAssignment.resolve(flag: bad, shards: nil, environment: [:]) }
        }
        #expect(throws: ShardError.self) { try ShardAssignment.resolve(flag: "1/4", shards: 5, environment: [:]) }
        // The flag wins over the engine's variables.
        let both = try #require(try ShardAssignment.resolve(flag: "0/2", shards: nil, environment: ["SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "9"]))
        #expect(both.index == 0 && both.count == 2)
    }

    /// `--array=1-7:2`: ids 1, 3, 5, 7 (Slurm 22.05 sets MIN 1, MAX 7, COUNT 4, STEP 2) are shards 0…3.
    @Test func slurmIdsStartingAtOneSteppedByTwo() throws {
        for (id, k) in [(1, 0), (3, 1), (5, 2), (7, 3)] {
            let full = ["SLURM_ARRAY_TASK_ID": "\(id)", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "7",
                        "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_STEP": "2"]
            var withoutStep = full
            withoutStep["SLURM_ARRAY_TASK_STEP"] = nil
            var withoutMax = full
            withoutMax["SLURM_ARRAY_TASK_MAX"] = nil
            for env in [full, withoutStep, withoutMax] {
                let s = try #require(try ShardAssignment.resolve(flag: nil, shards: nil, environment: env))
                #expect(s.index == k && s.count == 4, "\(env)")
                #expect(s.source.contains("SLURM_ARRAY_TASK_ID=\(id)"))
            }
        }
        // A 0-based array, and one of a single task.
        let zero = try #require(try ShardAssignment.resolve(flag: nil, shards: nil, environment: ["SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "3", "SLURM_ARRAY_TASK_COUNT": "4"]))
        #expect(zero.index == 3 && zero.count == 4)
        // Off the grid, unevenly spaced ids (--array=1,4,9), a missing variable, --shards that disagrees.
        let refused: [[String: String]] = [
            ["SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "7", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_STEP": "2"],
            ["SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "9", "SLURM_ARRAY_TASK_COUNT": "4"],
            ["SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "3"],
            ["SLURM_ARRAY_TASK_ID": "2"],
            ["SLURM_ARRAY_TASK_ID": "two", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "3"],
        ]
        for env in refused {
            #expect(throws: ShardError.self, "\(env)") { try ShardAssignment.resolve(flag: nil, shards: nil, environment: env) }
        }
        #expect(throws: ShardError.self) {
            try ShardAssignment.resolve(flag: nil, shards: 5, environment: ["SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "4"])
        }
    }

    @Test func kubernetesCompletionIndexWithShards() throws {
        let s = try #require(try ShardAssignment.resolve(flag: nil, shards: 7, environment: ["JOB_COMPLETION_INDEX": "6"]))
        #expect(s.index == 6 && s.count == 7 && s.source.contains("JOB_COMPLETION_INDEX=6"))
        #expect(throws: ShardError.self) { try ShardAssignment.resolve(flag: nil, shards: nil, environment: ["JOB_COMPLETION_INDEX": "2"]) }
        #expect(throws: ShardError.self) { try ShardAssignment.resolve(flag: nil, shards: 7, environment: ["JOB_COMPLETION_INDEX": "7"]) }
        #expect(throws: ShardError.self) { try ShardAssignment.resolve(flag: nil, shards: 4, environment: [:]) }
    }

    @Test func rectangleIntersectionKeepsExactlyThePairsOfTheRange() throws {
        var rng = SeededGenerator(seed: 19)
        for _ in 0..<200 {
            let columns = Int.random(in: 1...9, using: &rng), rows = Int.random(in: 1...9, using: &rng)
            let r0 = Int.random(in: 0..<rows, using: &rng), r1 = Int.random(in: (r0 + 1)...rows, using: &rng)
            let c0 = Int.random(in: 0..<columns, using: &rng), c1 = Int.random(in: (c0 + 1)...columns, using: &rng)
            let a = Int.random(in: 0...(rows * columns), using: &rng), b = Int.random(in: a...(rows * columns), using: &rng)
            let rect = GridRectangle(rows: r0..<r1, columns: c0..<c1)
            let pieces = rect.intersection(pairs: a..<b, columnCount: columns)
            #expect(pieces.count <= 3)
            var got = pieces.flatMap { p in p.rows.flatMap { r in p.columns.map { r * columns + $0 } } }
            got.sort()
            let want = (r0..<r1).flatMap { r in (c0..<c1).map { r * columns + $0 } }.filter { (a..<b).contains($0) }
            #expect(got == want)
        }
    }

    /// For random networks of awkward sizes, every mode, and N in {1, 2, 3, 7}: the shards'
    /// blocks put together equal the single run bit for bit (NaN where it is NaN).
    @Test(arguments: RecurrenceMode.allCases)
    func mergedShardsEqualTheSingleRun(mode: RecurrenceMode) throws {
        for (seed, kind, sizes) in [(UInt64(3), CellKind.lstm, [7, 5]), (4, .gru, [11]), (5, .rnnTanh, [3, 6])] {
            let network = try RecurrentNetwork.random(kind: kind, seed: seed, inputSize: 3, hiddenSizes: sizes, scale: 2)
            let bank = try randomBank(seed: seed, steps: 3, sines: 2, window: 40)
            // A small budget splits every layer into several launches, so blocks cut through them.
            for chunkBytes in [nil, 3000] as [Int?] {
                let plan = try CharacterizationPlan(network: network, mode: mode, bank: bank, chunkBytes: chunkBytes)
                let pairs = plan.rows.count * plan.columnCount
                func collect(_ range: Range<Int>?) throws -> [Float] {
                    var out = [Float](repeating: -7, count: Metric.allCases.count * pairs)
                    _ = try Characterizer.run(plan, on: CPUBackend(), pairs: range, sink: { c in
                        for m in Metric.allCases {
                            for r in 0..<c.block.cellCount {
                                for s in 0..<c.block.stimulusCount {
                                    let pair = (c.rowStart + r) * plan.columnCount + c.columnStart + s
                                    if let range { #expect(range.contains(pair)) }
                                    out[m.rawValue * pairs + pair] = c.block[m, r, s]
                                }
                            }
                        }
                    })
                    return out
                }
                let whole = try collect(nil)
                #expect(!whole.contains(-7))
                for n in [1, 2, 3, 7] {
                    var merged = [Float](repeating: -7, count: whole.count)
                    var steps = 0
                    for k in 0..<n {
                        let range = ShardAssignment.block(total: pairs, index: k, count: n)
                        let part = try collect(range)
                        for m in 0..<Metric.allCases.count {
                            for p in range {
                                #expect(merged[m * pairs + p] == -7)   // no pair twice
                                merged[m * pairs + p] = part[m * pairs + p]
                            }
                        }
                        steps += Characterizer.simulatedSteps(plan, pairs: range)
                    }
                    #expect(steps == plan.simulatedSteps)
                    #expect(whole.elementsEqual(merged) { $0.bitPattern == $1.bitPattern }, "\(kind) \(sizes) \(mode) N=\(n) chunk \(String(describing: chunkBytes))")
                }
            }
        }
    }

    /// The single-cell ablations in blocks equal one batched pass (the damage per cell is the same).
    @Test func singleAblationsInBlocksEqualOnePass() throws {
        let network = try RecurrentNetwork.random(kind: .gru, seed: 9, inputSize: 4, hiddenSizes: [6, 5], outputs: 3, scale: 2)
        var rng = SeededGenerator(seed: 2)
        let inputs = try SequenceBatch(count: 11, steps: 9, width: 4, values: (0..<(11 * 9 * 4)).map { _ in Float.random(in: -1...1, using: &rng) })
        let dataset = Dataset(inputs: inputs, labels: (0..<11).map { $0 % 3 })
        let total = AblationStudy.singleConfigurationCount(cells: network.cellCount)
        for clamp in AblationStudy.Clamp.allCases {
            let whole = try AblationStudy.singleAblations(network: network, dataset: dataset, task: .classification, output: .last,
                                                          clamp: clamp, configurations: 0..<total, on: CPUBackend())
            for n in [2, 3, 7] {
                var scores: [Double] = [], losses: [Double] = []
                for k in 0..<n {
                    let part = try AblationStudy.singleAblations(network: network, dataset: dataset, task: .classification, output: .last,
                                                                 clamp: clamp, configurations: ShardAssignment.block(total: total, index: k, count: n),
                                                                 on: CPUBackend())
                    scores += part.scores; losses += part.losses
                }
                #expect(scores == whole.scores)
                // OpenBLAS may pick another kernel for a smaller batch; the damage agrees far below
                // any difference that matters (bit for bit on the machines measured so far).
                for (a, b) in zip(losses, whole.losses) { #expect(abs(a - b) <= 1e-6 * (1 + abs(b)), "\(clamp) N=\(n)") }
            }
            let merged = SingleAblation(scores: whole.scores, losses: whole.losses)
            let a = try AblationStudy.run(network: network, dataset: dataset, task: .classification, output: .last,
                                          rankings: [("r", (0..<11).map(Double.init))], clamp: clamp, on: CPUBackend())
            let b = try AblationStudy.run(network: network, dataset: dataset, task: .classification, output: .last,
                                          rankings: [("r", (0..<11).map(Double.init))], clamp: clamp, single: merged, on: CPUBackend())
            #expect(a.damage == b.damage && a.baseline == b.baseline)
        }
        #expect(throws: ModelError.self) {
            try AblationStudy.singleAblations(network: network, dataset: dataset, task: .classification, output: .last,
                                              configurations: 0..<(total + 1), on: CPUBackend())
        }
    }

    /// A Slurm task or a pinned process uses the cores it was given, not the machine's.
    @Test func cpuListsCount() {
        #expect(Parallelism.cpuListCount("0-3,8,10-11") == 7)
        #expect(Parallelism.cpuListCount("5") == 1)
        #expect(Parallelism.cpuListCount(" 0-63\n") == 64)
        for bad in ["", "3-1", "a", "1-2-3", "1,,2"] { #expect(Parallelism.cpuListCount(bad) == nil, "\(bad)") }
        #expect(Parallelism.cores >= 1)
    }

    @Test func contentHashesChangeWithAnyWeight() throws {
        let a = try RecurrentNetwork.random(kind: .lstm, seed: 1, inputSize: 3, hiddenSizes: [4], outputs: 2, scale: 1)
        var b = a
        b.layers[0].R[5] = b.layers[0].R[5].nextUp
        #expect(try a.contentHash() == a.contentHash())
        #expect(try a.contentHash() != b.contentHash())
        #expect(try a.contentHash().count == 64)
        // FIPS 180-4's test vector.
        #expect(try ContentHash.of("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}
