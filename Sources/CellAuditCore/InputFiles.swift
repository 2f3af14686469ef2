import Foundation
import Synchronization

/// The files and directories this process has read as input: models, their external data,
/// datasets, stimulus, threshold and ranking files, shards. Every reader records the path it
/// opens, so a writer can refuse to write over any of them (an output directory that is, holds or
/// lies inside an input) without each command listing its inputs by hand.
///
/// Paths are stored absolute with every symbolic link resolved (`realpath(3)`), so two spellings
/// of one file compare equal.
public enum InputFiles {
    private static let paths = Mutex<[String]>([])

    /// Records `path` (a file or a directory) as an input of this run. Relative paths resolve
    /// against the working directory.
    public static func record(_ path: String) {
        let resolved = resolve(path)
        paths.withLock { if !$0.contains(resolved) { $0.append(resolved) } }
    }

    /// Every input recorded so far, resolved, in the order first read.
    public static var all: [String] { paths.withLock { $0 } }

    /// `path` made absolute with every symbolic link resolved. A path that does not exist (yet)
    /// resolves its longest existing prefix and keeps the rest as written (without `.`/`..`).
    public static func resolve(_ path: String) -> String {
        let absolute = URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath, isDirectory: true))
            .standardizedFileURL.path
        if let real = realpath(absolute, nil) {
            defer { free(real) }
            return String(cString: real)
        }
        let parent = (absolute as NSString).deletingLastPathComponent
        guard parent != absolute, !parent.isEmpty else { return absolute }
        return (resolve(parent) as NSString).appendingPathComponent((absolute as NSString).lastPathComponent)
    }

    /// Whether resolved path `inner` is `outer` or lies below it.
    public static func path(_ inner: String, isWithin outer: String) -> Bool {
        inner == outer || inner.hasPrefix(outer.hasSuffix("/") ? outer : outer + "/")
    }

    /// The first recorded input that an output at `output` would overwrite or sit inside: an
    /// input that is the output or lies below it (so the output is the input's folder or one
    /// above), or an input directory the output lies inside. Nil when none.
    public static func conflict(withOutput output: String) -> String? {
        let target = resolve(output)
        return all.first { input in
            if path(input, isWithin: target) { return true }
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: input, isDirectory: &isDirectory) && isDirectory.boolValue
                && path(target, isWithin: input)
        }
    }
}
