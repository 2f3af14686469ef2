import CellAuditCore
import Foundation
import Testing
import TestSupport

/// `--ablate-cells SPEC` (issue 31, item 2): single-cell ablation on a subset of the cells, for
/// networks where one masked pass per cell is too costly; and the work-ahead line before the
/// ablation starts.
@Suite struct AblationSubsetTests {
    static let model = Fixtures.path("digits_lstm8.safetensors"), data = Fixtures.path("digits_test.safetensors")

    /// ablation.csv's damage column per cell (nil where blank).
    static func damage(_ dir: URL) throws -> [Double?] {
        let rows = try String(contentsOf: dir.appendingPathComponent("ablation.csv"), encoding: .utf8)
            .split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        let column = try #require(rows[0].firstIndex(of: "damage"))
        return rows.dropFirst().map { Double($0[column]) }
    }

    /// The checked cells are the union of the items; their damage equals the full check's exactly
    /// (every configuration is computed on its own); the others are blank, the summary says how
    /// many were checked, and the work ahead is announced with the subset.
    @Test func aSubsetChecksTheChosenCellsExactly() throws {
        let dir = try Fixtures.scratch("ablate-subset")
        let full = dir.appendingPathComponent("full"), part = dir.appendingPathComponent("part")
        let a = try CLI.run(["ablate", Self.model, "--data", Self.data, "--out", full.path, "--backend", "cpu", "--ranking", "response", "random"])
        #expect(a.exitCode == 0, "\(a.stderr)")
        #expect(a.stderr.contains("ablation ahead: ") && a.stderr.contains("10 single-cell"), "\(a.stderr)")
        let b = try CLI.run(["ablate", Self.model, "--data", Self.data, "--out", part.path, "--backend", "cpu", "--ranking", "response", "random",
                             "--ablate-cells", "top:2,bottom:1,random:2"])
        #expect(b.exitCode == 0, "\(b.stderr)")
        #expect(b.stderr.contains("--ablate-cells: ") && b.stdout.contains("single-cell ablation checked"), "\(b.stderr)\(b.stdout)")
        let whole = try Self.damage(full), subset = try Self.damage(part)
        #expect(whole.allSatisfy { $0 != nil } && whole.count == 8)
        let checked = subset.indices.filter { subset[$0] != nil }
        #expect((3...5).contains(checked.count), "\(subset)")
        for j in checked { #expect(subset[j] == whole[j], "cell \(j)") }
        // top:2 are the two cells the response ranking scores highest.
        let cells = try String(contentsOf: part.appendingPathComponent("ablation.csv"), encoding: .utf8).split(separator: "\n")
        let header = cells[0].split(separator: ",").map(String.init)
        let responseRank = try #require(header.firstIndex(of: "response_rank"))
        let topTwo = cells.dropFirst().enumerated().filter { ["1", "2"].contains($0.element.split(separator: ",", omittingEmptySubsequences: false)[responseRank]) }.map(\.offset)
        #expect(topTwo.count == 2 && topTwo.allSatisfy { subset[$0] != nil })
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: part.appendingPathComponent("summary.json"))) as? [String: Any]
        #expect(summary?["checked_cells"] as? Int == checked.count, "\(summary ?? [:])")
    }

    /// layer:L checks every cell of a level; a malformed spec is a usage error (exit 2); a layer
    /// the network lacks, or a sharded run, is refused in one line.
    @Test func specsAreCheckedAndSubsetsDoNotShard() throws {
        let dir = try Fixtures.scratch("ablate-subset-specs")
        let layer = try CLI.run(["ablate", Self.model, "--data", Self.data, "--out", dir.appendingPathComponent("l").path, "--backend", "cpu",
                                 "--ranking", "random", "--ablate-cells", "layer:0", "--quiet"])
        #expect(layer.exitCode == 0, "\(layer.stderr)")
        let layerDamage = try Self.damage(dir.appendingPathComponent("l"))
        #expect(layerDamage.allSatisfy { $0 != nil })
        for spec in ["top:x", "top:0", "middle:3", "top:2,,"] {
            let r = try CLI.run(["ablate", Self.model, "--data", Self.data, "--out", dir.appendingPathComponent("x").path, "--ablate-cells", spec])
            #expect(r.exitCode == 2 && r.stderr.contains("--ablate-cells"), "\(spec): \(r.stderr)")
        }
        let few = try CLI.run(["ablate", Self.model, "--data", Self.data, "--out", dir.appendingPathComponent("w").path, "--ablate-cells", "top:2"])
        #expect(few.exitCode == 1 && few.stderr.contains("needs at least 3"), "\(few.stderr)")
        let missing = try CLI.run(["ablate", Self.model, "--data", Self.data, "--out", dir.appendingPathComponent("y").path, "--ablate-cells", "layer:3"])
        #expect(missing.exitCode == 1 && missing.stderr.contains("has 1 layer"), "\(missing.stderr)")
        let sharded = try CLI.run(["ablate", Self.model, "--data", Self.data, "--out", dir.appendingPathComponent("z").path,
                                   "--ablate-cells", "top:2", "--shard", "0/2"])
        #expect(sharded.exitCode == 1 && sharded.stderr.contains("does not combine with a sharded run"), "\(sharded.stderr)")
    }
}
