import CellAuditCore
import Foundation

/// Reads state dicts saved with `torch.save(model.state_dict(), "model.pt")` (torch ≥ 1.6's ZIP
/// format: `<archive>/data.pkl`, the pickled dict; `<archive>/data/<key>`, one member per tensor
/// storage, raw little-endian elements; `<archive>/byteorder`). The pickle is read by
/// `PickleReader`, which accepts what `torch.load(weights_only=True)` accepts for tensors and
/// refuses everything else by name; each tensor is copied out of its storage through its offset and
/// strides (so non-contiguous views and storages shared between tensors read exactly), and the
/// tensors then go through the same state-dict inference as a safetensors file (`StateDict`).
/// A dict that holds the state dict one level down under "state_dict" or "model" (a training
/// checkpoint) is read from there; the checkpoint's other entries are not used.
public struct TorchSaveReader: ModelReader {
    public init() {}
    public var formats: [FileFormat] { [.torchSave] }

    /// The largest `data.pkl` read: a state dict's pickle is a few bytes per tensor.
    static let maxPickleBytes = 256 << 20

    public func load(_ path: String, hints: ModelHints) throws -> LoadedModel {
        let file = try Self.tensors(path)
        return try ModelFile.load(file: file, path: path, hints: hints)
    }

    /// The state dict's tensors as an in-memory safetensors file (names and dtypes kept; elements
    /// copied in row-major order).
    /// - Throws: `FormatError` naming the file and the problem: not a torch.save archive, a global
    ///   outside the allow-list, a tensor view outside its storage, a storage of the wrong size.
    public static func tensors(_ path: String) throws -> SafeTensorsFile {
        let name = (path as NSString).lastPathComponent
        func fail(_ problem: String) -> FormatError { FormatError(file: name, problem) }
        InputFiles.record(path)
        return try tensors(try ZipArchive(path: path), path: path)
    }

    static func tensors(_ archive: ZipArchive, path: String) throws -> SafeTensorsFile {
        let name = (path as NSString).lastPathComponent
        func fail(_ problem: String) -> FormatError { FormatError(file: name, problem) }
        let pickles = archive.members.filter { $0.name == "data.pkl" || $0.name.hasSuffix("/data.pkl") }
        guard pickles.count == 1, let pickleEntry = pickles.first else {
            throw fail(pickles.isEmpty ? "no data.pkl: not a torch.save archive" : "\(pickles.count) data.pkl members: not one torch.save archive")
        }
        let root = String(pickleEntry.name.dropLast("data.pkl".count))
        func member(_ relative: String, size expected: Int?, limit: Int) throws -> Data? {
            guard let entry = archive[root + relative] else { return nil }
            if let expected, entry.size != expected {
                throw fail("'\(root + relative)' holds \(entry.size) bytes, but its tensors declare \(expected)")
            }
            return try archive.read(entry, limit: limit)
        }
        if let order = try member("byteorder", size: nil, limit: 16) {
            let text = String(decoding: order, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard text == "little" else { throw fail("tensors stored \(text)-endian; load and re-save it on a little-endian machine") }
        }
        var reader = PickleReader(try member("data.pkl", size: nil, limit: maxPickleBytes)!)
        let value: PickleValue
        do { value = try reader.read() } catch let error as PickleReader.Failure {
            throw fail("data.pkl: \(error.description); save the weights alone with torch.save(model.state_dict(), …)")
        }
        let dict = try stateDict(value, fail)
        // Storage bytes, read once per key (tensors may share a storage).
        var storages: [String: Data] = [:]
        var writer = SafeTensorsWriter()
        for key in dict.keys {
            guard case .tensor(let t) = dict.values[key]! else {
                throw fail("state dict entry '\(key)' is \(dict.values[key]!.kindName), not a tensor")
            }
            let size = try byteCount(t.storage, fail)
            if storages[t.storage.key] == nil {
                guard let bytes = try member("data/" + t.storage.key, size: size, limit: Int.max) else {
                    throw fail("tensor '\(key)' names storage '\(t.storage.key)', which the archive does not hold")
                }
                storages[t.storage.key] = bytes
            }
            let bytes = try contiguous(t, storage: storages[t.storage.key]!, tensor: key, fail)
            try writer.add(key, dtype: t.storage.dtype, shape: t.shape, bytes: bytes)
        }
        return try SafeTensorsFile(data: try writer.serialized(), path: path)
    }

    /// The dict of tensors: the top-level dict, or its "state_dict" / "model" entry.
    public static func stateDict(_ value: PickleValue, _ fail: (String) -> FormatError) throws -> PickleDict {
        guard case .dict(let top) = value else {
            throw fail("data.pkl holds \(value.kindName), not a state dict; save it with torch.save(model.state_dict(), …)")
        }
        let isTensors = { (d: PickleDict) in d.values.values.allSatisfy { if case .tensor = $0 { true } else { false } } }
        if !top.keys.isEmpty, isTensors(top) { return top }
        let nested = ["state_dict", "model"].filter { key in
            if case .dict(let d) = top.values[key], !d.keys.isEmpty, isTensors(d) { true } else { false }
        }
        guard nested.count == 1, case .dict(let inner) = top.values[nested[0]] else {
            if nested.count == 2 { throw fail("the checkpoint holds both 'state_dict' and 'model'; save the one to audit alone") }
            let keys = top.keys.prefix(8).map { "'\($0)'" }.joined(separator: ", ")
            throw fail(top.keys.isEmpty ? "the saved dict is empty" :
                "the saved dict (keys \(keys)\(top.keys.count > 8 ? ", …" : "")) is not a state dict of tensors, and holds none under 'state_dict' or 'model'")
        }
        return inner
    }

    /// Bytes of a storage: its element count × its element size, checked for overflow.
    static func byteCount(_ s: TorchStorageRef, _ fail: (String) -> FormatError) throws -> Int {
        let (bytes, overflow) = s.count.multipliedReportingOverflow(by: s.dtype.byteSize)
        guard !overflow else { throw fail("storage '\(s.key)' declares \(s.count) elements, more than memory can address") }
        return bytes
    }

    /// The view's elements in row-major order, read through its offset and strides; the view must
    /// lie inside its storage.
    static func contiguous(_ t: TorchTensorRef, storage: Data, tensor: String,
                           _ fail: (String) -> FormatError) throws -> Data {
        guard t.offset >= 0, t.shape.allSatisfy({ $0 >= 0 }), t.strides.allSatisfy({ $0 >= 0 }) else {
            throw fail("tensor '\(tensor)' has a negative offset, size or stride")
        }
        var count = 1, last = t.offset, overflow = false
        for (n, s) in zip(t.shape, t.strides) {
            (count, overflow) = count.multipliedReportingOverflow(by: n)
            guard !overflow else { throw fail("tensor '\(tensor)' has shape \(t.shape), more elements than memory can address") }
            if n > 0 {
                let (step, o1) = (n - 1).multipliedReportingOverflow(by: s)
                let (sum, o2) = last.addingReportingOverflow(step)
                guard !o1, !o2 else { throw fail("tensor '\(tensor)' has strides \(t.strides) that overflow") }
                last = sum
            }
        }
        if count == 0 { return Data() }
        guard last < t.storage.count else {
            throw fail("tensor '\(tensor)' (shape \(t.shape), strides \(t.strides), offset \(t.offset)) reads element \(last) of storage '\(t.storage.key)', which has \(t.storage.count)")
        }
        let size = t.storage.dtype.byteSize
        var out = Data(count: count * size)
        storage.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                var index = [Int](repeating: 0, count: t.shape.count)
                var from = t.offset
                for k in 0..<count {
                    (dst.baseAddress! + k * size).copyMemory(from: src.baseAddress! + from * size, byteCount: size)
                    // Advance the multi-index, last dimension fastest.
                    var d = t.shape.count - 1
                    while d >= 0 {
                        index[d] += 1; from += t.strides[d]
                        if index[d] < t.shape[d] { break }
                        from -= t.strides[d] * t.shape[d]; index[d] = 0; d -= 1
                    }
                }
            }
        }
        return out
    }
}
