import CellAuditCore
import Foundation

/// What a file is, told from its content (magic bytes), not its name: the one door through which
/// every command's model and dataset arguments pass, so that a file of a format CellAudit does not
/// read is named for what it is ("a torch.save file") with the way forward, instead of failing
/// inside another format's parser ("header length 578712552184433488 exceeds …").
///
/// Magic bytes: safetensors, an 8-byte little-endian header length then `{`; ZIP, `PK\x03\x04`
/// (then told apart by its members: `data.pkl` for torch.save, `config.json` with
/// `model.weights.h5` for Keras 3, only `.npy` members for NumPy `.npz`); HDF5,
/// `\x89HDF\r\n\x1a\n`; NumPy `.npy`, `\x93NUMPY`; a raw pickle (torch.save before 1.6),
/// `\x80` and a protocol 2–5; ONNX, a protobuf `ModelProto` whose first field is `ir_version`
/// (byte 0x08), or the `.onnx` extension.
public enum FileFormat: Equatable, Sendable {
    case missing, directory, empty
    case safetensors, onnx, npz
    case npy, torchSave, keras3, hdf5, pickle, zip
    case unknown(firstBytes: String)
    /// A ZIP archive that libzip cannot open (truncated, or its directory damaged), with why.
    case damagedZip(reason: String)

    /// Sniffs the file at `path`; never throws (an unreadable file is `.missing`).
    public static func sniff(_ path: String) -> FileFormat {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return .missing }
        if isDirectory.boolValue { return .directory }
        guard let handle = FileHandle(forReadingAtPath: path) else { return .missing }
        defer { try? handle.close() }
        let head = [UInt8]((try? handle.read(upToCount: 16)) ?? Data())
        if head.isEmpty { return .empty }
        if head.starts(with: [0x50, 0x4B, 0x03, 0x04]) || head.starts(with: [0x50, 0x4B, 0x05, 0x06]) { return zipKind(path) }
        if head.starts(with: [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]) { return .hdf5 }
        if head.starts(with: [0x93] + Array("NUMPY".utf8)) { return .npy }
        if head.count >= 9 {
            let length = head.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
            // A header longer than the file is a truncated safetensors file: its reader says so.
            if length >= 2, length <= UInt64(SafeTensorsFile.maxHeaderBytes), head[8] == UInt8(ascii: "{") {
                return .safetensors
            }
        }
        if path.lowercased().hasSuffix(".onnx") || head[0] == 0x08 { return .onnx }
        if head.count >= 2, head[0] == 0x80, (2...5).contains(head[1]) { return .pickle }
        return .unknown(firstBytes: head.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " "))
    }

    private static func zipKind(_ path: String) -> FileFormat {
        let archive: ZipArchive
        do { archive = try ZipArchive(path: path) } catch let error as FormatError {
            let prefix = "not a readable ZIP archive: "
            let reason = error.problem.hasPrefix(prefix) ? String(error.problem.dropFirst(prefix.count)) : error.problem
            return .damagedZip(reason: "libzip: " + reason.prefix(1).lowercased() + reason.dropFirst())
        } catch { return .zip }
        let names = archive.members.map(\.name)
        if names.contains(where: { $0 == "data.pkl" || $0.hasSuffix("/data.pkl") }) { return .torchSave }
        if names.contains("config.json") && (names.contains("metadata.json") || names.contains(where: { $0.hasSuffix(".weights.h5") })) { return .keras3 }
        let files = names
        if !files.isEmpty && files.allSatisfy({ $0.hasSuffix(".npy") }) { return .npz }
        return .zip
    }

    /// What the file is, in words.
    public var description: String {
        switch self {
        case .missing: "no such file"
        case .directory: "a directory"
        case .empty: "an empty file"
        case .safetensors: "a safetensors file"
        case .onnx: "an ONNX graph"
        case .npz: "a NumPy .npz archive"
        case .npy: "a single NumPy .npy array"
        case .torchSave: "a torch.save file (a ZIP archive holding data.pkl: .pt, .pth or .bin)"
        case .keras3: "a Keras 3 .keras file (a ZIP archive with config.json and model weights)"
        case .hdf5: "an HDF5 file (a Keras .h5 model?)"
        case .pickle: "a Python pickle (torch.save before torch 1.6 wrote these)"
        case .zip: "a ZIP archive that is not a NumPy .npz, a torch.save file or a Keras file"
        case .damagedZip(let reason): "a damaged or truncated ZIP archive (\(reason))"
        case .unknown(let bytes): "not a format CellAudit knows (it starts with bytes \(bytes))"
        }
    }

    /// Why a file of this format is not a model CellAudit reads, and what to do; nil for the
    /// formats read as models (safetensors, ONNX, torch.save, Keras 3) and for a missing file (the reader says so).
    public var modelRefusal: String? {
        switch self {
        case .safetensors, .onnx, .torchSave, .keras3, .hdf5, .missing, .unknown: nil
        case .directory: "is a directory; give the model file"
        case .empty: "is an empty file"
        case .pickle:
            "is \(description), which CellAudit does not unpickle: re-save it with a current torch (`torch.save(torch.load(path, weights_only=True), \"model.pt\")`) and pass that file"
        case .npz, .npy:
            "is \(description), which holds data, not a model: give a dataset as --data, and the model as a .safetensors, .pt or .onnx file"
        case .damagedZip:
            "is \(description), whose members cannot be read; save the file again"
        case .zip:
            "is \(description); CellAudit reads models from safetensors, torch.save, ONNX and Keras .keras files"
        }
    }

    /// Why a file of this format is not a dataset CellAudit reads; nil for safetensors and `.npz`
    /// (and a missing file, which the reader names).
    public var datasetRefusal: String? {
        switch self {
        case .safetensors, .npz, .missing: nil
        case .directory: "is a directory; give the dataset file"
        case .empty: "is an empty file"
        case .npy:
            "is \(description); a dataset holds named arrays: save them together with numpy.savez(\"data.npz\", inputs=…, labels=…)"
        case .onnx, .torchSave, .keras3, .hdf5, .pickle:
            "is \(description), a model, not a dataset: a dataset is a .safetensors or .npz file with 'inputs' and 'labels' or 'targets'"
        case .damagedZip:
            "is \(description), whose arrays cannot be read; save the dataset again"
        case .zip, .unknown:
            "is \(description); a dataset is a .safetensors or NumPy .npz file with 'inputs' and 'labels' or 'targets'"
        }
    }
}
