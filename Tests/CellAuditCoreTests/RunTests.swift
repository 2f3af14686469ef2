import CellAuditAnalysis
import CellAuditCore
import CellAuditImport
import Foundation
import Synchronization
import Testing
import TestSupport

/// The runs live in the library (issue 28, item 4): a Swift program audits a network with the
/// same entry points the CLI calls, without the CLI, and gets the files and numbers it writes.
@Suite struct RunTests {
    /// Counts what a characterization reports.
    final class Chunks: ChunkProgressSink, @unchecked Sendable {
        let state = Mutex((reports: 0, finishes: 0))
        func report(_ progress: ChunkProgress) { state.withLock { $0.reports += 1 } }
        func finish() { state.withLock { $0.finishes += 1 } }
    }

    @Test func anAuditRunsFromSwiftWithoutTheCLI() throws {
        let loaded = try ModelImport.load(Fixtures.path("digits_lstm8.safetensors"))
        let dataPath = Fixtures.path("digits_test.safetensors")
        let data = try DatasetStream(try DatasetFile(dataPath), preparedFor: loaded)
        let plan = try CharacterizationPlan(network: loaded.network, bank: try StimulusBank.standard())
        let backend = CPUBackend(threads: 1)
        let dir = try Fixtures.scratch("library-audit")
        let chunks = Chunks()
        let result = try writeCharacterization(plan, backend: backend, to: dir, model: "digits_lstm8.safetensors", selection: nil, progress: chunks)
        let lines = Mutex([String]())
        let run = AuditRun(loaded: loaded, name: "digits_lstm8.safetensors", dataPath: dataPath, data: data, thresholds: ClassThresholds(),
                           plan: plan, seed: 7, skipAblation: false, attractorSeeds: 0,
                           ablationCells: try AblationCellSelection(parsing: "top:2,bottom:2"))
        let summary = try run.finish(backend: backend, dir: dir, result: result, single: nil, announce: { line in lines.withLock { $0.append(line) } })

        #expect(chunks.state.withLock { $0.reports } >= 1 && chunks.state.withLock { $0.finishes } == 1)
        // The accuracy reported is the model's score on the data, computed on its own here.
        #expect(summary.accuracy == (try loaded.score(on: data, backend: backend)).value)
        #expect(summary.ablation?.checkedCells == 4)
        #expect(lines.withLock { $0.count } == 1 && lines.withLock { $0[0] }.hasPrefix("audit: ablation ahead: "))
        let csv = try String(contentsOf: dir.appendingPathComponent("cells.csv"), encoding: .utf8).split(separator: "\n")
        #expect(csv.count == 1 + loaded.network.cellCount)
        // Four cells measured, the others blank in ablation.csv.
        let ablation = try String(contentsOf: dir.appendingPathComponent("ablation.csv"), encoding: .utf8).split(separator: "\n").dropFirst()
        #expect(ablation.filter { !$0.split(separator: ",", omittingEmptySubsequences: false)[2].isEmpty }.count == 4)
        for file in ["summary.json", "report.html", "responses.safetensors", "stimuli.csv", "curves.csv"] {
            #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent(file).path), "\(file)")
        }
    }

    @Test func anAblationCellSelectionParsesWhatItPrintsAndRefusesTheRest() throws {
        let selection = try AblationCellSelection(parsing: "top:5,random:3,layer:0,bottom:1")
        #expect(selection.items == [.top(5), .random(3), .layer(0), .bottom(1)])
        #expect(try AblationCellSelection(parsing: selection.description) == selection)
        #expect(try AblationCellSelection(parsing: "all").isAll)
        for bad in ["top:0", "top", "middle:3", "top:-1", "top:3,", "layer:x"] {
            #expect(throws: RunFailure.self, "\(bad)") { _ = try AblationCellSelection(parsing: bad) }
        }
        // A level the network lacks, and fewer than 3 cells, are refused by name.
        let network = try RecurrentNetwork.random(kind: .lstm, seed: 1, inputSize: 3, hiddenSizes: [6], outputs: 2)
        let ranking = (0..<6).map(Double.init)
        #expect(throws: RunFailure.self) { _ = try AblationCellSelection(parsing: "layer:1").cells(network: network, ranking: ranking, seed: 1) }
        #expect(throws: RunFailure.self) { _ = try AblationCellSelection(parsing: "top:2").cells(network: network, ranking: ranking, seed: 1) }
        #expect(try AblationCellSelection(parsing: "top:2,bottom:1").cells(network: network, ranking: ranking, seed: 1) == [0, 4, 5])
    }
}
