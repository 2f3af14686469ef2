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

    /// Why PoCL would find no device here, if its cache directory is the reason: nil when
    /// `POCL_CACHE_DIR` is unset or a writable directory (one that can be created counts).
    public static var poclCacheProblem: String? {
        guard let dir = ProcessInfo.processInfo.environment["POCL_CACHE_DIR"], !dir.isEmpty else { return nil }
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory) {
            if (try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)) != nil { return nil }
        } else if isDirectory.boolValue && access(dir, W_OK) == 0 {
            return nil
        }
        return "POCL_CACHE_DIR=\(dir) is not a writable directory, and PoCL shows no OpenCL device without one"
    }
}
