import CellAuditCore
import Foundation

/// One reader of model files. A reader names the sniffed formats it takes (`FileFormat`, told
/// from content, never from the file's name) and turns such a file into a `LoadedModel` in the
/// canonical layout. A new file format is one more reader in `ModelImport.readers`.
public protocol ModelReader: Sendable {
    /// The formats this reader takes; each format has at most one reader.
    var formats: [FileFormat] { get }
    /// Reads the model at `path`, recording the files it opens in `InputFiles`.
    /// - Throws: `FormatError` (or `ModelError`) naming the problem; `ModelImport.load` names the file.
    func load(_ path: String, hints: ModelHints) throws -> LoadedModel
}

/// A model file refused as a whole, in one sentence that starts with the file's name
/// ("model.npz is a NumPy .npz archive, which holds data, not a model: …").
public struct ModelRefusal: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The one door for model files: sniff the content, refuse what no reader takes (naming what the
/// file is and the way forward), hand the rest to the format's reader.
public enum ModelImport {
    /// Every reader, one per family of formats.
    public static let readers: [any ModelReader] = [SafeTensorsModelReader(), ONNXModelReader(), TorchSaveReader(), KerasModelReader(), KerasLegacyModelReader()]

    /// The reader for a sniffed format, if any.
    public static func reader(for format: FileFormat) -> (any ModelReader)? {
        readers.first { $0.formats.contains(format) }
    }

    /// Reads the model at `path`, whatever its format.
    /// - Throws: `ModelRefusal` for a file no reader takes, or for a model that loads but cannot
    ///   be represented (a `ModelError`, prefixed with the file's name); the readers' `FormatError`s.
    public static func load(_ path: String, hints: ModelHints = ModelHints()) throws -> LoadedModel {
        let format = FileFormat.sniff(path)
        let name = (path as NSString).lastPathComponent
        if let refusal = format.modelRefusal { throw ModelRefusal("\(name) \(refusal)") }
        // A missing or unrecognised file goes to the safetensors reader, which names the problem.
        let reader = reader(for: format) ?? readers[0]
        do { return try reader.load(path, hints: hints) } catch let error as ModelError { throw ModelRefusal("\(name): \(error)") }
    }
}

/// CellAudit model files and plain PyTorch state dicts, both safetensors files (`ModelFile`).
public struct SafeTensorsModelReader: ModelReader {
    public init() {}
    public var formats: [FileFormat] { [.safetensors] }
    public func load(_ path: String, hints: ModelHints) throws -> LoadedModel { try ModelFile.load(path, hints: hints) }
}

/// ONNX graphs (`ONNXModel`). A graph states its architecture; only the task may come from the
/// dataset or `--task`.
public struct ONNXModelReader: ModelReader {
    public init() {}
    public var formats: [FileFormat] { [.onnx] }
    public func load(_ path: String, hints: ModelHints) throws -> LoadedModel {
        // (--bidirectional-readout is not refused: an ONNX graph's readout says what it reads.)
        if let flag = hints.stateDictFlagsGiven.first(where: { $0 != "--bidirectional-readout" }) {
            throw ModelRefusal("\((path as NSString).lastPathComponent): \(flag) applies to plain state dicts; an ONNX graph states it")
        }
        var own = ModelHints(task: hints.task ?? hints.fromData?.task)
        own.core = hints.core
        return try ONNXModel.load(path, hints: own)
    }
}
