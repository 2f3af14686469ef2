import CellAuditCore
import Foundation

/// A shard assignment that cannot be: the message names the flag or variable.
public struct ShardError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Which shard of a split run this process is: shard `index` of `count`, counted from 0 as
/// Kubernetes counts its completion indices (docs/METHOD.md §9).
public struct ShardAssignment: Sendable, Equatable, CustomStringConvertible {
    public var index: Int
    public var count: Int
    /// Where K and N came from: "--shard", "SLURM_ARRAY_TASK_ID=5 (min 1, step 2, count 4)", ….
    public var source: String

    public var description: String { "\(index)/\(count)" }

    /// The largest N accepted: a Slurm array holds at most MaxArraySize (default 1001) tasks,
    /// Kubernetes at most 100,000 completions; one million leaves room and keeps ranges exact.
    public static let maxCount = 1_000_000

    /// - Throws: `ShardError` unless 0 ≤ index < count ≤ `maxCount`.
    public init(index: Int, count: Int, source: String) throws {
        guard (1...Self.maxCount).contains(count) else {
            throw ShardError("\(source): the shard count must lie in 1…\(Self.maxCount), got \(count)")
        }
        guard (0..<count).contains(index) else {
            throw ShardError("\(source): shard \(index) does not exist among \(count) shards (0…\(count - 1))")
        }
        self.index = index; self.count = count; self.source = source
    }

    /// Parses `K/N`.
    /// - Throws: `ShardError` naming the text.
    public static func parse(_ text: String) throws -> ShardAssignment {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let k = Int(parts[0]), let n = Int(parts[1]) else {
            throw ShardError("--shard takes K/N (shard K of N, K counted from 0), got '\(text)'")
        }
        return try ShardAssignment(index: k, count: n, source: "--shard \(text)")
    }

    /// This process's shard: `--shard K/N` when given; otherwise, from the engine's environment,
    /// a Slurm job array's task (K = (SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN) / step, N =
    /// SLURM_ARRAY_TASK_COUNT, the step from SLURM_ARRAY_TASK_STEP or from MIN, MAX and COUNT) or
    /// a Kubernetes Indexed Job's JOB_COMPLETION_INDEX with N from `--shards`. nil: not sharded.
    /// - Throws: `ShardError` when the flags or the environment do not give one
    ///   consistent shard (ids off the array's grid, a missing variable, `--shards` without an
    ///   index, an index without `--shards`).
    public static func resolve(flag: String?, shards: Int?, environment: [String: String]) throws -> ShardAssignment? {
        if let flag {
            let shard = try parse(flag)
            if let shards, shards != shard.count {
                throw ShardError("--shard \(flag) and --shards \(shards) disagree on the number of shards")
            }
            return shard
        }
        func integer(_ name: String) throws -> Int? {
            guard let text = environment[name], !text.isEmpty else { return nil }
            guard let value = Int(text.trimmingCharacters(in: .whitespaces)) else {
                throw ShardError("\(name)=\(text) is not a whole number")
            }
            return value
        }
        if let id = try integer("SLURM_ARRAY_TASK_ID") {
            guard let minimum = try integer("SLURM_ARRAY_TASK_MIN"), let count = try integer("SLURM_ARRAY_TASK_COUNT") else {
                throw ShardError("SLURM_ARRAY_TASK_ID=\(id) is set without SLURM_ARRAY_TASK_MIN and SLURM_ARRAY_TASK_COUNT; give --shard K/N")
            }
            let maximum = try integer("SLURM_ARRAY_TASK_MAX")
            var step = try integer("SLURM_ARRAY_TASK_STEP") ?? 1
            if let maximum, count > 1 {
                // An id list such as 1,4,9 is not evenly spaced: no K can be derived from it.
                guard (maximum - minimum) % (count - 1) == 0 else {
                    throw ShardError("Slurm array ids \(minimum)…\(maximum) (\(count) tasks) are not evenly spaced; give --shard K/N")
                }
                step = (maximum - minimum) / (count - 1)
            }
            guard step >= 1, id >= minimum, (id - minimum) % step == 0 else {
                throw ShardError("SLURM_ARRAY_TASK_ID=\(id) is not on the array's grid (min \(minimum), step \(step)); give --shard K/N")
            }
            if let shards, shards != count {
                throw ShardError("--shards \(shards) disagrees with SLURM_ARRAY_TASK_COUNT=\(count)")
            }
            return try ShardAssignment(index: (id - minimum) / step, count: count,
                                       source: "SLURM_ARRAY_TASK_ID=\(id) (min \(minimum), step \(step), count \(count))")
        }
        if let index = try integer("JOB_COMPLETION_INDEX") {
            guard let shards else {
                throw ShardError("JOB_COMPLETION_INDEX=\(index) is set: give --shards N (the Job's completions) or --shard K/N")
            }
            return try ShardAssignment(index: index, count: shards, source: "JOB_COMPLETION_INDEX=\(index) with --shards \(shards)")
        }
        if let shards {
            throw ShardError("--shards \(shards) needs a shard index: JOB_COMPLETION_INDEX, a Slurm array task, or --shard K/N")
        }
        return nil
    }

    /// The contiguous block [⌊total·K/N⌋, ⌊total·(K+1)/N⌋) of `total` work items: the N blocks
    /// tile 0..<total exactly once, and differ in length by at most one.
    public func range(of total: Int) -> Range<Int> {
        Self.block(total: total, index: index, count: count)
    }

    public static func block(total: Int, index: Int, count: Int) -> Range<Int> {
        let lower = Int((Int64(total) * Int64(index)) / Int64(count))
        let upper = Int((Int64(total) * Int64(index + 1)) / Int64(count))
        return lower..<upper
    }
}

/// A rectangle of the [rows × columns] response grid.
public struct GridRectangle: Sendable, Equatable {
    public var rows: Range<Int>
    public var columns: Range<Int>
    public var count: Int { rows.count * columns.count }

    public init(rows: Range<Int>, columns: Range<Int>) { self.rows = rows; self.columns = columns }

    /// The part of this rectangle whose row-major pair index `row · columnCount + column` lies in
    /// `pairs`, as at most three rectangles (a partial first row, whole rows, a partial last row).
    public func intersection(pairs: Range<Int>, columnCount: Int) -> [GridRectangle] {
        var out: [GridRectangle] = []
        for r in rows {
            let low = max(columns.lowerBound, pairs.lowerBound - r * columnCount)
            let high = min(columns.upperBound, pairs.upperBound - r * columnCount)
            guard low < high else { continue }
            if let last = out.last, last.rows.upperBound == r, last.columns == low..<high {
                out[out.count - 1].rows = last.rows.lowerBound..<(r + 1)
            } else {
                out.append(GridRectangle(rows: r..<(r + 1), columns: low..<high))
            }
        }
        return out
    }
}

extension ResponseBlock {
    /// The sub-block of `cells` × `stimuli` (local indices).
    public func cropped(cells: Range<Int>, stimuli: Range<Int>) -> ResponseBlock {
        if cells == 0..<cellCount && stimuli == 0..<stimulusCount { return self }
        var out = [Float]()
        out.reserveCapacity(Metric.allCases.count * cells.count * stimuli.count)
        for m in 0..<Metric.allCases.count {
            for c in cells {
                let base = (m * cellCount + c) * stimulusCount
                out.append(contentsOf: values[(base + stimuli.lowerBound)..<(base + stimuli.upperBound)])
            }
        }
        return ResponseBlock(cellCount: cells.count, stimulusCount: stimuli.count, values: out)
    }
}
