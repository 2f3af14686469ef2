import CellAuditCore
import CellAuditOpenCL
import Foundation
import OpenCLKit
import Testing
import TestSupport

@Test func includesExpandWithLineMarkersThatPointBackToTheKernelFile() throws {
    #expect(Set(KernelLibrary.kernelFiles) == ["response.cl", "forward.cl", "forward_tiled.cl", "relevance.cl", "dynamics.cl"])
    #expect(KernelLibrary.fileNames.contains("cell_gru.h"))
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

/// Every kernel file builds for every cell kind (and both GRU variants) in every variant; PROBE_C
/// only where the kind has a memory c, and a kernel asked for PROBE_C on another kind refuses to build.
@Test(.enabled(if: OpenCLTestSupport.enabled, "no OpenCL device"), arguments: [[], ["NATIVE_MATH"], ["PROBE_C"], ["RECORD_TAPE=1"]])
func everyKernelFileBuildsInEveryVariant(defines: [String]) throws {
    let device = try OpenCLTestSupport.device()
    let context = try Context(device: device)
    var built = 0
    for kind in CellKind.allCases where !defines.contains("PROBE_C") || kind.hasCellState {
        for resetAfter in kind == .gru ? [true, false] : [true] {
            // dynamics.cl is in double precision: only devices with cl_khr_fp64 are asked to build it.
            for name in KernelLibrary.kernelFiles where name != "dynamics.cl" || device.info.supportsFP64 {
                _ = try KernelLibrary.program(name, in: context, defines: defines + OpenCLBackend.contractDefines
                                                  + OpenCLBackend.cellDefines(kind, resetAfter: resetAfter))
                built += 1
            }
        }
    }
    #expect(context.cachedProgramCount == built)
    if defines.contains("PROBE_C") {
        #expect(throws: CLError.self) {
            try KernelLibrary.program("response.cl", in: context, defines: defines + OpenCLBackend.contractDefines + OpenCLBackend.cellDefines(.gru))
        }
    }
    // The metric contract is the host's: the kernel does not build without it.
    #expect(throws: CLError.self) { try KernelLibrary.program("response.cl", in: context, defines: OpenCLBackend.cellDefines(.lstm)) }
}
