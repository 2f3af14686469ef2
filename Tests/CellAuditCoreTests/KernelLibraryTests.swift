import CellAuditOpenCL
import Foundation
import OpenCLKit
import Testing
import TestSupport

@Test func includesExpandWithLineMarkersThatPointBackToTheKernelFile() throws {
    #expect(KernelLibrary.kernelFiles.contains("lstm_response.cl"))
    let repoKernels = Fixtures.directory.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Kernels")
    for name in KernelLibrary.kernelFiles {
        let original = try String(contentsOf: repoKernels.appendingPathComponent(name), encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: false)
        let expanded = try KernelLibrary.source(name).split(separator: "\n", omittingEmptySubsequences: false)
        #expect(!expanded.contains { $0.hasPrefix("#include") })
        // After every marker `#line N "name"`, the next line is line N of the original file.
        for (i, line) in expanded.enumerated() where line.hasPrefix("#line ") && line.hasSuffix("\"\(name)\"") {
            let n = Int(line.split(separator: " ")[1])!
            #expect(expanded[i + 1] == original[n - 1], "\(name): marker \(line)")
        }
    }
    #expect(throws: CLError.self) { try KernelLibrary.source("no_such.cl") }
}

@Test(.enabled(if: OpenCLTestSupport.enabled, "no OpenCL device"), arguments: [[], ["NATIVE_MATH"], ["PROBE_C"]])
func everyKernelFileBuildsInEveryVariant(defines: [String]) throws {
    let context = try Context(device: try OpenCLTestSupport.device())
    for name in KernelLibrary.kernelFiles {
        _ = try KernelLibrary.program(name, in: context, defines: defines)
    }
    #expect(context.cachedProgramCount == KernelLibrary.kernelFiles.count)
}
