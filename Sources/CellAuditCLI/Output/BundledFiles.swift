import ArgumentParser
import CellAuditAnalysis
import CellAuditCore
import Foundation
import Synchronization

/// Files compiled into the binary (the bundled models and test split), unpacked into a fresh
/// temporary folder for one run; `remove()` deletes it.
struct BundledFiles {
    let directory: URL

    init(_ names: [String]) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("cellaudit-bundled-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        SignalCleanup.removeOnInterrupt(directory)
        do {
            for name in names {
                guard let base64 = EmbeddedDefaultModel.files[name], let bytes = Data(base64Encoded: base64) else {
                    throw RunFailure(description: "the bundled \(name) is missing or corrupt")
                }
                try bytes.write(to: directory.appendingPathComponent(name))
            }
        } catch {
            remove()
            throw error
        }
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
    func remove() {
        try? FileManager.default.removeItem(at: directory)
        SignalCleanup.keepOnInterrupt(directory)
    }
}
