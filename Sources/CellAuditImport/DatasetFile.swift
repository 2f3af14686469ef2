import CellAuditCore
import Foundation

extension Dataset {
    /// Reads a dataset: a safetensors file, or a NumPy `.npz` archive (`numpy.savez`) holding
    /// arrays of the same names: `inputs` [N, T, I] floats, or [N, T] integer token ids for a model
    /// with a token embedding; `labels` [N] or `targets` [N, K] / [N, T, K]. `requireAnswers: false` accepts inputs alone (explaining a
    /// model's own predictions needs no labels).
    /// - Throws: `FormatError` naming the file and what is missing, misshapen or not finite.
    public static func load(_ path: String, requireAnswers: Bool = true) throws -> Dataset {
        let source = try ArraySource(path)
        let name = source.name
        guard let shape = source.shape("inputs") else {
            if source.looksLikeModel {
                throw FormatError(file: name, "holds a model's weights, not a dataset: a dataset is a .safetensors or .npz file with 'inputs' and 'labels' or 'targets'")
            }
            throw FormatError(file: name, "missing tensor 'inputs'")
        }
        guard shape.allSatisfy({ $0 >= 1 }) else { throw FormatError(file: name, "the dataset is empty (inputs \(shape))") }
        var data: Dataset
        if shape.count == 2 && source.isInteger("inputs") {
            // Token ids [N, T], for a model with a token embedding (embedded by Dataset.prepare).
            data = try Dataset(tokens: try TokenBatch(count: shape[0], steps: shape[1], ids: try source.integers("inputs")))
        } else {
            guard shape.count == 3 else {
                throw FormatError(file: name, "'inputs' has shape \(shape), expected float vectors [N, T, I] (or integer token ids [N, T] for a model with a token embedding)")
            }
            let values = try source.floats("inputs")
            if let bad = values.firstIndex(where: { !$0.isFinite }) {
                throw FormatError(file: name, "'inputs' contains \(values[bad]) at element \(bad)")
            }
            data = Dataset(inputs: try SequenceBatch(count: shape[0], steps: shape[1], width: shape[2], values: values))
        }
        data.fileName = name
        if let lengthShape = source.shape("lengths") {
            // Each sequence's own length (a padded batch): integers 1…T.
            guard lengthShape == [shape[0]], source.isInteger("lengths"), !source.isBoolean("lengths") else {
                throw FormatError(file: name, "'lengths' has shape \(lengthShape)\(source.isInteger("lengths") && !source.isBoolean("lengths") ? "" : " and is not integer"): expected integers [\(shape[0])], each sequence's length")
            }
            do { try data.inputs.setLengths(try source.integers("lengths")) } catch DataError.mismatch(let problem) {
                throw FormatError(file: name, "'lengths': \(problem)")
            }
        }
        if let labelShape = source.shape("labels") {
            guard labelShape == [shape[0]] else {
                throw FormatError(file: name, "'labels' has shape \(labelShape), expected [\(shape[0])]")
            }
            data.labels = try source.integers("labels")
        }
        if let t = source.shape("targets") {
            guard (t.count == 2 || t.count == 3), t[0] == shape[0], t.count == 2 || t[1] == shape[1] else {
                throw FormatError(file: name, "'targets' has shape \(t), expected [\(shape[0]), K] or [\(shape[0]), \(shape[1]), K]")
            }
            let targets = try source.floats("targets")
            if let bad = targets.firstIndex(where: { !$0.isFinite }) {
                throw FormatError(file: name, "'targets' contains \(targets[bad]) at element \(bad)")
            }
            data.targets = targets
            data.targetShape = t
        }
        // Both answers: which one a model is scored on would be a guess, so neither is used.
        guard data.labels == nil || data.targets == nil else {
            throw FormatError(file: name, "holds both 'labels' (classification) and 'targets' (regression); CellAudit will not guess which the model is scored on: save the dataset with only the one that fits the model")
        }
        guard !requireAnswers || data.labels != nil || data.targets != nil else {
            throw FormatError(file: name, "the dataset has neither 'labels' nor 'targets'")
        }
        return data
    }
}

/// The named arrays of a dataset file, whichever format holds them.
private struct ArraySource {
    let name: String
    let shape: (String) -> [Int]?
    let floats: (String) throws -> [Float]
    let integers: (String) throws -> [Int]
    /// Whether the named array holds integers (token ids, labels).
    let isInteger: (String) -> Bool
    /// Whether the named array holds booleans (which read as integers 0 and 1).
    let isBoolean: (String) -> Bool
    /// A safetensors file of weights (a CellAudit model file or a state dict), not a dataset.
    var looksLikeModel = false

    init(_ path: String) throws {
        let name = (path as NSString).lastPathComponent
        self.name = name
        let format = FileFormat.sniff(path)
        if format == .missing { throw FormatError(file: name, "no such file") }
        if let refusal = format.datasetRefusal { throw FormatError(file: name, refusal.hasPrefix("is ") ? String(refusal.dropFirst(3)) : refusal) }
        if format == .npz || (format == .zip && path.lowercased().hasSuffix(".npz")) {
            let arrays = try NumPyArchive.load(path)
            shape = { arrays[$0]?.shape }
            isInteger = { arrays[$0]?.isInteger ?? false }
            isBoolean = { arrays[$0]?.descr.hasSuffix("b1") ?? false }
            // Values past Float's range become ±Inf, which the finiteness checks then name.
            floats = { key in arrays[key]!.values.map { Float($0) } }
            integers = { key in
                let array = arrays[key]!
                guard array.isInteger else { throw FormatError(file: name, "'\(key)' has dtype \(array.descr); it must hold integers") }
                return try array.values.enumerated().map { i, value in
                    // Exactly representable only: a uint64 label of 2^63 or more is refused, not trapped on.
                    guard let exact = Int(exactly: value) else {
                        throw FormatError(file: name, "'\(key)' holds \(value) at index \(i), outside the integers CellAudit reads")
                    }
                    return exact
                }
            }
        } else {
            let file = try SafeTensorsFile(path: path)
            looksLikeModel = file.metadata["cell"] != nil || file.tensors.keys.contains { $0.contains("weight_ih") || $0.contains("weight_hh") || $0.hasSuffix("kernel") }
            shape = { file.tensors[$0]?.shape }
            isInteger = { file.tensors[$0].map { !$0.dtype.isFloatingPoint } ?? false }
            isBoolean = { file.tensors[$0]?.dtype == .BOOL }
            floats = { try file.floats($0) }
            integers = { try file.integers($0) }
        }
    }
}

