import OpenCLKit

/// The kernel sources of `Kernels/`, embedded in the binary at build time.
public enum KernelLibrary {
    /// File names of every embedded kernel source.
    public static var fileNames: [String] { EmbeddedKernels.files.keys.sorted() }

    /// The source of `Kernels/<name>`.
    public static func source(_ name: String) throws -> String {
        guard let text = EmbeddedKernels.files[name] else {
            throw CLError(status: .invalidValue, call: "KernelLibrary.source",
                          detail: "no kernel file '\(name)' was embedded (have: \(fileNames.joined(separator: ", ")))")
        }
        return text
    }

    /// Builds (or takes from the context's cache) the program of `Kernels/<name>` with `defines`
    /// passed as `-D` options.
    public static func program(_ name: String, in context: Context, defines: [String] = []) throws -> Program {
        try context.program(name: name, source: try source(name), options: defines.sorted().map { "-D\($0)" })
    }
}
