import Foundation

/// How many cores this process may use: the CPUs in its
/// affinity mask (taskset, Slurm's task/affinity, cpusets), capped by a cgroup CPU quota
/// (Kubernetes' CPU limit, Slurm's cgroup plugin). A Slurm task with --cpus-per-task=1 or a pod
/// limited to 2 CPUs on a 64-core node gets 1 or 2 workers, not 64. This is only a default: every
/// backend takes its thread count as a parameter (the CLI passes `CELLAUDIT_THREADS` in), and all
/// CPU work of a run uses its backend's count (`ComputeBackend.hostThreads`). The library reads no
/// environment variable.
public enum Parallelism {
    public static let cores: Int = {
        var n = affinityCount() ?? ProcessInfo.processInfo.activeProcessorCount
        if let quota = cgroupQuota() { n = min(n, quota) }
        return max(1, n)
    }()

    /// The CPUs the kernel lets this process run on: /proc/self/status's Cpus_allowed_list
    /// ("0-3,8,10-11"), the same mask sched_getaffinity(2) returns.
    static func affinityCount() -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") }) else { return nil }
        return cpuListCount(String(line.dropFirst("Cpus_allowed_list:".count)))
    }

    /// The number of CPUs in a kernel CPU list such as "0-3,8,10-11"; nil when it does not parse.
    public static func cpuListCount(_ list: String) -> Int? {
        var count = 0
        for part in list.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
            switch bounds.count {
            case 1: guard bounds[0] != nil else { return nil }; count += 1
            case 2: guard let low = bounds[0], let high = bounds[1], high >= low else { return nil }; count += high - low + 1
            default: return nil
            }
        }
        return count > 0 ? count : nil
    }

    /// ⌈quota / period⌉ from cgroup v2's cpu.max or v1's cpu.cfs_quota_us; nil when unlimited.
    static func cgroupQuota() -> Int? {
        func read(_ path: String) -> String? {
            (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        if let max = read("/sys/fs/cgroup/cpu.max") {
            let parts = max.split(separator: " ")
            if parts.count == 2, let quota = Double(parts[0]), let period = Double(parts[1]), quota > 0, period > 0 {
                return Swift.max(1, Int((quota / period).rounded(.up)))
            }
            return nil
        }
        if let q = read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").flatMap(Double.init), q > 0,
           let p = read("/sys/fs/cgroup/cpu/cpu.cfs_period_us").flatMap(Double.init), p > 0 {
            return Swift.max(1, Int((q / p).rounded(.up)))
        }
        return nil
    }
}
