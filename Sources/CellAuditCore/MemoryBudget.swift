import Foundation

/// The memory a command may still take, and the check it makes before a large allocation: a run
/// that cannot fit is refused in one line that says how much it needs, how much there is and
/// which option lowers it, instead of dying in the allocator (SIGABRT) or to the OOM killer.
public enum MemoryBudget {
    /// Bytes this process can still allocate: the smaller of the system's available memory
    /// (`MemAvailable` in /proc/meminfo) and what the address-space limit (`ulimit -v`,
    /// RLIMIT_AS) leaves above the process's current size (`VmSize`). Nil when neither is known.
    public static func available() -> Int? {
        var candidates: [Int] = []
        if let meminfo = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8), let kb = field(meminfo, "MemAvailable:") {
            candidates.append(kb * 1024)
        }
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_AS.rawValue), &limit) == 0, limit.rlim_cur < UInt64(Int.max) {
            let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)).flatMap { field($0, "VmSize:") } ?? 0
            candidates.append(max(0, Int(limit.rlim_cur) - status * 1024))
        }
        return candidates.min()
    }

    private static func field(_ text: String, _ key: String) -> Int? {
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(key) }) else { return nil }
        return Int(line.dropFirst(key.count).trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? "")
    }

    /// Throws when `bytes` (the estimated peak of what is about to be allocated) exceeds 90 % of
    /// `available` (default: `available()`; nothing is checked when that is unknown).
    /// - Parameters:
    ///   - what: the work, for the message ("the fixed-point search of layer 0").
    ///   - fix: what lowers it ("use fewer --seeds").
    /// - Throws: `ResourceError` naming both sizes and the fix.
    public static func check(_ bytes: Int, what: String, fix: String, available: Int? = MemoryBudget.available()) throws {
        guard let available, Double(bytes) > 0.9 * Double(available) else { return }
        throw ResourceError(description: "\(what) needs ~\(format(bytes)) of memory, and this process has \(format(available)) available; \(fix)")
    }

    /// `bytes` as "20.5 GB", "310 MB" or "12 kB".
    public static func format(_ bytes: Int) -> String {
        let b = Double(bytes)
        if b >= 1e9 { return String(format: "%.1f GB", b / 1e9) }
        if b >= 1e6 { return String(format: "%.0f MB", b / 1e6) }
        return String(format: "%.0f kB", b / 1e3)
    }

    /// a × b × … in bytes, saturating at `Int.max` instead of trapping on overflow.
    public static func product(_ factors: Int...) -> Int {
        factors.reduce(1) { acc, f in
            let (p, overflow) = acc.multipliedReportingOverflow(by: max(0, f))
            return overflow ? Int.max : p
        }
    }
}

/// A run that would not fit in memory, refused before it starts.
public struct ResourceError: Error, CustomStringConvertible {
    public let description: String
    public init(description: String) { self.description = description }
}
