import Foundation

extension OpenCL {
    /// Where a program should point `POCL_CACHE_DIR` when the user set none: a per-user folder
    /// under the temporary directory (created here). PoCL reports no device when it cannot
    /// write its kernel cache. OpenCLKit never sets the variable itself: the program does, before
    /// its first OpenCL call (the CLI's `main.swift`, the tests' support).
    public static func defaultPoclCacheDirectory() -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cellaudit-pocl-\(getuid())").path
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Why PoCL would find no device here, if its cache directory `directory` (the value of
    /// `POCL_CACHE_DIR`, which the caller reads) is the reason: nil when unset or a writable
    /// directory (one that can be created counts).
    public static func poclCacheProblem(directory: String?) -> String? {
        guard let dir = directory, !dir.isEmpty else { return nil }
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory) {
            if (try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)) != nil { return nil }
        } else if isDirectory.boolValue && access(dir, W_OK) == 0 {
            return nil
        }
        return "POCL_CACHE_DIR=\(dir) is not a writable directory, and PoCL shows no OpenCL device without one"
    }
}
