import ArgumentParser
import CellAuditAnalysis
import CellAuditCore
import CellAuditImport
import CellAuditOpenCL
import Foundation
import OpenCLKit

struct CellAudit: ParsableCommand {
    static let version = CellAuditVersion.current
    static let configuration = CommandConfiguration(
        commandName: "cellaudit",
        abstract: "Audit what the cells of a trained recurrent network do.",
        version: version,
        subcommands: [Audit.self, Characterize.self, Explain.self, Attractors.self, Ablate.self, Merge.self, Capacity.self, Inspect.self, Eval.self, Bench.self, Devices.self, CheckKernels.self, ReadInIsolation.self]
    )
}

enum Terminal {
    static func warn(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}

/// A file-system error from Foundation (writing a report, a figure, a bundled file) as one line:
/// the file's name and the system's reason instead of the NSError dump; nil for other errors.
func fileFailure(_ error: any Error) -> String? {
    let ns = error as NSError
    guard ns.domain == NSCocoaErrorDomain || ns.domain == NSPOSIXErrorDomain else { return nil }
    let file = (ns.userInfo[NSFilePathErrorKey] as? String).map { ($0 as NSString).lastPathComponent }
    return (file.map { "\($0): " } ?? "") + "cannot read or write: \(fileErrorReason(error))"
}

/// One line for a failure: `fileFailure`'s for a file-system error, the error's own otherwise.
func describeFailure(_ error: any Error) -> String { fileFailure(error) ?? "\(error)" }

extension ParsableCommand {
    func failing<R>(_ body: () throws -> R) throws -> R {
        do { return try body() } catch let error as ValidationError {
            // An impossible parameter: one line, like every other error, and the usage exit status.
            Terminal.warn("error: \(error.message)")
            throw ExitCode(2)
        } catch let error as CleanExit {
            throw error
        } catch {
            // A write that failed because a signal is removing the output: the handler reports
            // the interrupt and exits.
            SignalCleanup.awaitExitIfInterrupted()
            Terminal.warn("error: \(describeFailure(error))")
            throw ExitCode(1)
        }
    }
}
