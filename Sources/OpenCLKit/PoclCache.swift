import Foundation

extension OpenCL {
    /// PoCL reports no device when it cannot write its kernel cache. Where the user set no
    /// `POCL_CACHE_DIR`, point it at a per-user folder under the temporary directory. Call
    /// before the first OpenCL call; harmless for other implementations.
    public static func preparePoclCache() {
        guard ProcessInfo.processInfo.environment["POCL_CACHE_DIR"] == nil else { return }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cellaudit-pocl-\(getuid())").path
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        setenv("POCL_CACHE_DIR", dir, 0)
    }
}
