import Foundation
import OpenCLKit

/// The kernel sources of `Kernels/`, embedded in the binary at build time.
public enum KernelLibrary {
    /// File names of every embedded kernel source.
    public static var fileNames: [String] { EmbeddedKernels.files.keys.sorted() }

    /// The kernel files proper (headers excluded).
    public static var kernelFiles: [String] { fileNames.filter { $0.hasSuffix(".cl") } }

    /// The source of `Kernels/<name>`, with each `#include "file"` of another embedded file
    /// expanded in place between `#line` markers, so compiler messages name the right file
    /// and line. (OpenCL compilers cannot see the embedded files themselves.)
    public static func source(_ name: String) throws -> String {
        try expanded(name, including: [])
    }

    private static func expanded(_ name: String, including stack: [String]) throws -> String {
        guard let text = EmbeddedKernels.files[name] else {
            throw CLError(status: .invalidValue, call: "KernelLibrary.source",
                          detail: "no kernel file '\(name)' was embedded (have: \(fileNames.joined(separator: ", ")))")
        }
        guard !stack.contains(name) else {
            throw CLError(status: .invalidValue, call: "KernelLibrary.source", detail: "'\(name)' includes itself")
        }
        var out: [String] = []
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("#include \""), trimmed.hasSuffix("\""), trimmed.count > 11 {
                let included = String(trimmed.dropFirst(10).dropLast())
                out.append("#line 1 \"\(included)\"")
                out.append(try expanded(included, including: stack + [name]))
                out.append("#line \(number + 2) \"\(name)\"")
            } else {
                out.append(String(line))
            }
        }
        return out.joined(separator: "\n")
    }

    /// Builds (or takes from the context's cache) the program of `Kernels/<name>` with `defines`
    /// passed as `-D` options.
    public static func program(_ name: String, in context: Context, defines: [String] = []) throws -> Program {
        try context.program(name: name, source: try source(name), options: defines.sorted().map { "-D\($0)" })
    }
}
