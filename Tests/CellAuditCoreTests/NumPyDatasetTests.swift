import CellAuditCore
import CellAuditImport
import Foundation
import Testing
import TestSupport

/// Datasets as NumPy users keep them (Tools/make_npz_fixtures.py): the same values as the
/// safetensors files they were cut from, or a refusal naming the file and the array.
@Suite struct NumPyDatasetTests {
    static func path(_ name: String) -> String { Fixtures.path("npz/\(name).npz") }

    @Test(arguments: ["digits20", "digits20_compressed"])
    func classificationArchivesReadExactly(_ name: String) throws {
        let npz = try Dataset.load(Self.path(name))
        let full = try Dataset.load(Fixtures.path("digits_test.safetensors"))
        #expect(npz.inputs.count == 20 && npz.inputs.steps == 8 && npz.inputs.width == 8)
        // float32 stored as float32, or float64 in Fortran order: the same values in C order.
        #expect(npz.inputs.values == Array(full.inputs.values[0..<(20 * 64)]))
        #expect(npz.labels == Array(full.labels![0..<20]))
        #expect(npz.fileName == "\(name).npz")
    }

    @Test func regressionTargetsAtEveryStep() throws {
        let npz = try Dataset.load(Self.path("flipflop20"))
        let full = try Dataset.load(Fixtures.path("flipflop_test.safetensors"))
        #expect(npz.targetShape == [20, 100, 3] && npz.targets == Array(full.targets![0..<(20 * 300)]))
        // A state dict used with it would follow: regression at every step.
        var hints = ModelHints()
        hints.follow(npz)
        #expect(hints.fromData?.task == .regression && hints.fromData?.output == .sequence)
    }

    @Test(arguments: [("labels_float", "labels"), ("object_inputs", "inputs.npy"), ("truncated", "truncated.npz")])
    func brokenArchivesAreRefused(_ name: String, _ named: String) throws {
        do {
            _ = try Dataset.load(Self.path(name))
            Issue.record("\(name) was read")
        } catch let error as FormatError {
            #expect("\(error)".contains("\(name).npz") && "\(error)".contains(named), "\(error)")
        }
    }

    @Test func fortranOrderIsTransposed() {
        // [[1, 2, 3], [4, 5, 6]] stored column by column.
        #expect(NumPyArchive.cOrder([1, 4, 2, 5, 3, 6], shape: [2, 3]) == [1, 2, 3, 4, 5, 6])
    }
}
