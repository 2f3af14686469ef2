import ArgumentParser
import CellAuditAnalysis
import CellAuditCore
import Foundation
import OpenCLKit

#if canImport(Glibc)
import Glibc
// Buffers of a few MiB come and go for every ablation configuration: glibc's mallopt keeps them
// in the heap (M_MMAP_THRESHOLD = -3) instead of fresh mappings, each of which costs a round of
// page faults and zeroing. (malloc.h is not part of Swift's Glibc module: found at run time.)
if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") {
    typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
    // 32 MiB is the largest threshold glibc accepts on 64-bit; M_TRIM_THRESHOLD (-1) keeps freed
    // memory for the next configuration instead of returning it at once.
    _ = unsafeBitCast(symbol, to: Mallopt.self)(-3, 32 << 20)
    _ = unsafeBitCast(symbol, to: Mallopt.self)(-1, 256 << 20)
}
#endif

// OpenBLAS single-threaded, its load-time threads stopped before they spin (MatrixProduct.swift).
useSingleThreadedBLAS()

// A file-size limit (ulimit -f, a quota) raises SIGXFSZ, which would kill the run without a word:
// ignored, the write fails with EFBIG and the run ends with a one-line error like a full disk's.
signal(SIGXFSZ, SIG_IGN)

installSignalSelfFromEnvironment()

// PoCL finds no device without a writable cache directory: provide one before any OpenCL call.
if ProcessInfo.processInfo.environment["POCL_CACHE_DIR"] == nil { setenv("POCL_CACHE_DIR", OpenCL.defaultPoclCacheDirectory(), 0) }

/// The address space a run needs before any work: its threads' stacks and OpenBLAS's and the
/// OpenCL runtime's buffers are reserved as the work starts (a 2-layer bidirectional `ablate` of a
/// few cells peaks at 655 MB of VmPeak). Under a smaller `ulimit -v` those reservations fail
/// inside the libraries, which retry for ever (libdispatch waiting for a thread, OpenBLAS for a
/// buffer) instead of failing: so a limit below this is refused before anything starts.
let minimumAddressSpace = 1 << 30

/// Refuses an address-space limit (RLIMIT_AS) below `minimumAddressSpace`.
func checkAddressSpaceLimit() throws {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_AS.rawValue), &limit) == 0, limit.rlim_cur < UInt64(minimumAddressSpace) else { return }
    throw RunFailure(description: "the address-space limit (ulimit -v \(limit.rlim_cur / 1024)) allows \(MemoryBudget.format(Int(limit.rlim_cur))), "
                       + "less than the 1 GiB CellAudit needs before any work (thread stacks and the buffers OpenBLAS and the OpenCL "
                       + "runtime reserve, about 650 MB); raise it to ulimit -v \(minimumAddressSpace / 1024) or more")
}

// Every failure is one line on stderr: usage errors from the parser too (help and --version
// print as usual).
do {
    var command = try CellAudit.parseAsRoot()
    try checkAddressSpaceLimit()
    try command.run()
} catch {
    let code = CellAudit.exitCode(for: error)
    let message = fileFailure(error) ?? CellAudit.message(for: error)
    if code == .success || message.isEmpty {
        CellAudit.exit(withError: error)
    }
    var line = message.split(separator: "\n").first.map(String.init) ?? message
    if line.hasPrefix("Error: ") { line.removeFirst("Error: ".count) }
    Terminal.warn("error: \(line) (see cellaudit help)")
    // One scheme everywhere (README, "Exit status"): 2 for a usage error, whether the parser or
    // a command's own validation found it; 1 for a run that failed.
    Foundation.exit(code == .validationFailure ? 2 : code.rawValue)
}
