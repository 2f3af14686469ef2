import CHDF5
import CellAuditCore
import Foundation

/// An HDF5 file opened read-only through HDF5's own C library (the Keras weight files). Only what
/// CellAudit reads: groups, their children, and floating-point datasets as float32.
///
/// HDF5's library (Debian's serial build) is not thread-safe, and it identifies an in-memory file
/// by its name: every call holds one process-wide lock, and every in-memory file gets its own name.
final class HDF5File: @unchecked Sendable {
    private static let lock = NSRecursiveLock()
    nonisolated(unsafe) private static var opened = 0   // guarded by `lock`
    /// The file's name for messages (for a file inside an archive, "archive.keras: member").
    let fileName: String
    private let id: hid_t

    /// Opens HDF5 bytes held in memory (a member of a `.keras` archive).
    /// - Throws: `FormatError` naming the file when the bytes are not a readable HDF5 file.
    init(image: Data, fileName: String) throws {
        self.fileName = fileName
        let file: hid_t = Self.lock.withLock {
            cellaudit_h5_quiet()
            Self.opened += 1
            return image.withUnsafeBytes { cellaudit_h5_open_image($0.baseAddress, $0.count, "cellaudit-image-\(Self.opened).h5") }
        }
        guard file >= 0 else { throw FormatError(file: fileName, "not a readable HDF5 file") }
        id = file
    }

    /// Opens the HDF5 file at `path`.
    /// - Throws: `FormatError` naming the file when it is not a readable HDF5 file.
    init(path: String) throws {
        fileName = (path as NSString).lastPathComponent
        let file: hid_t = Self.lock.withLock {
            cellaudit_h5_quiet()
            return cellaudit_h5_open_path(path)
        }
        guard file >= 0 else { throw FormatError(file: fileName, "not a readable HDF5 file") }
        id = file
    }

    deinit { Self.lock.withLock { cellaudit_h5_close_file(id) } }

    /// 1 for a group, 2 for a dataset, nil when `path` names nothing.
    private func kind(_ path: String) -> Int32? {
        Self.lock.lock(); defer { Self.lock.unlock() }
        let object = cellaudit_h5_open_object(id, path)
        guard object >= 0 else { return nil }
        defer { cellaudit_h5_close_object(object) }
        return cellaudit_h5_kind(object)
    }

    func isDataset(_ path: String) -> Bool { kind(path) == 2 }

    /// The names of a group's members, in name order (empty for a missing group).
    func children(_ path: String) -> [String] {
        Self.lock.lock(); defer { Self.lock.unlock() }
        let group = path.isEmpty ? id : cellaudit_h5_open_object(id, path)
        guard group >= 0 else { return [] }
        defer { if !path.isEmpty { cellaudit_h5_close_object(group) } }
        let count = cellaudit_h5_child_count(group)
        guard count > 0 else { return [] }
        return (0..<UInt64(count)).compactMap { index in
            var buffer = [CChar](repeating: 0, count: 512)
            let length = cellaudit_h5_child_name(group, index, &buffer, buffer.count)
            guard length > 0, length < buffer.count else { return nil }
            return String(cString: buffer)
        }
    }

    /// The path of every dataset under `path`, depth first.
    func datasets(under path: String = "") -> [String] {
        children(path).flatMap { child -> [String] in
            let full = path.isEmpty ? child : path + "/" + child
            switch kind(full) {
            case 2: return [full]
            case 1: return datasets(under: full)
            default: return []
            }
        }
    }

    /// An attribute that is there but holds no text CellAudit reads.
    struct UnreadableAttribute: Error {}

    /// The strings of attribute `name` of the object at `path` ("" for the file's root): a scalar
    /// string, or an array of them (ASCII or UTF-8); nil when there is no such attribute.
    /// - Throws: `UnreadableAttribute` when it exists but holds something else or cannot be read.
    func attributeStrings(_ path: String, _ name: String) throws -> [String]? {
        Self.lock.lock(); defer { Self.lock.unlock() }
        var capacity = 4096
        while true {
            var buffer = [CChar](repeating: 0, count: capacity)
            let needed = cellaudit_h5_attribute_strings(id, path, name, &buffer, capacity)
            if needed == -1 { return nil }
            guard needed >= 0 else { throw UnreadableAttribute() }
            guard needed <= capacity else {
                guard needed <= 256 << 20 else { throw UnreadableAttribute() }
                capacity = Int(needed); continue
            }
            var strings: [String] = [], start = 0
            for i in 0..<Int(needed) where buffer[i] == 0 {
                strings.append(String(decoding: buffer[start..<i].map { UInt8(bitPattern: $0) }, as: UTF8.self))
                start = i + 1
            }
            return strings
        }
    }

    /// A floating-point dataset's shape and values (float64 and float16 converted to float32).
    /// - Throws: `FormatError` naming the file and the dataset: missing, not floating point, too
    ///   large, or unreadable.
    func floats(_ path: String) throws -> (shape: [Int], values: [Float]) {
        func fail(_ problem: String) -> FormatError { FormatError(file: fileName, "'\(path)' \(problem)") }
        Self.lock.lock(); defer { Self.lock.unlock() }
        let object = cellaudit_h5_open_object(id, path)
        guard object >= 0 else { throw fail("is missing") }
        defer { cellaudit_h5_close_object(object) }
        guard cellaudit_h5_kind(object) == 2 else { throw fail("is not a dataset") }
        guard cellaudit_h5_is_float(object) != 0 else { throw fail("does not hold floating-point numbers") }
        var dims = [UInt64](repeating: 0, count: 8)
        let rank = cellaudit_h5_dims(object, &dims, 8)
        guard rank >= 0, rank <= 8 else { throw fail("has an unreadable shape") }
        let shape = dims.prefix(Int(rank)).map { Int(clamping: $0) }
        var count = 1
        for d in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow, product <= 1 << 31 else { throw fail("has shape \(shape), more than CellAudit reads") }
            count = product
        }
        var values = [Float](repeating: 0, count: max(1, count))
        guard values.withUnsafeMutableBufferPointer({ cellaudit_h5_read_floats(object, $0.baseAddress!) }) == 0 else {
            throw fail("cannot be read (damaged file?)")
        }
        return (shape, Array(values.prefix(count)))
    }
}
