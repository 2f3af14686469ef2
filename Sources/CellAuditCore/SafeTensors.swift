import Foundation

/// Element types of the safetensors format.
public enum DType: String, Sendable, CaseIterable {
    case F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL

    public var byteSize: Int {
        switch self {
        case .F64, .I64, .U64: 8
        case .F32, .I32, .U32: 4
        case .F16, .BF16, .I16, .U16: 2
        case .I8, .U8, .BOOL: 1
        }
    }

    public var isFloatingPoint: Bool { [.F64, .F32, .F16, .BF16].contains(self) }
}

/// A problem with a file CellAudit reads; the description is one line naming the file.
public struct FormatError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let problem: String
    public init(file: String, _ problem: String) { self.file = file; self.problem = problem }
    public var description: String { "\(file): \(problem)" }
}

/// One tensor's entry in a safetensors header.
public struct TensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    /// Byte range inside the data section.
    public let range: Range<Int>
    public var elementCount: Int { shape.reduce(1, *) }
}

/// A safetensors file (8-byte little-endian header length, JSON header, raw little-endian
/// data), memory-mapped and validated strictly on open.
public final class SafeTensorsFile: @unchecked Sendable {
    // Immutable after init: the mapped bytes are only read.
    public let path: String
    public let metadata: [String: String]
    public let tensors: [String: TensorInfo]
    private let dataStart: Int

    /// The largest header accepted (the format's own reference reader uses 100 MB).
    public static let maxHeaderBytes = 100_000_000

    public convenience init(path: String) throws {
        try self.init(path: path, streaming: false)
    }

    /// Opens `path`. `streaming: false` maps the file (model weights, read whole); `streaming:
    /// true` reads only the header now and each tensor's bytes when asked (`withBytes`), so a
    /// dataset of any size takes neither memory nor address space beyond what is read.
    /// - Throws: `FormatError` naming the file: missing, a directory, unreadable, or not valid.
    public convenience init(path: String, streaming: Bool) throws {
        let name = (path as NSString).lastPathComponent
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw FormatError(file: name, "no such file") }
        guard !isDirectory.boolValue else { throw FormatError(file: name, "is a directory, not a safetensors file") }
        InputFiles.record(path)
        if streaming {
            let descriptor = open(path, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else { throw FormatError(file: name, "cannot read: \(String(cString: strerror(errno)))") }
            let file = PositionalFile(descriptor: descriptor, name: name)
            var status = stat()
            guard fstat(descriptor, &status) == 0 else { throw FormatError(file: name, "cannot read: \(String(cString: strerror(errno)))") }
            let size = Int(status.st_size)
            let prefix = try file.read(at: 0, count: min(8, size))
            var header = prefix
            if size >= 8 {
                let length = prefix.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
                if length <= UInt64(Self.maxHeaderBytes) && length <= UInt64(size - 8) {
                    header += try file.read(at: 8, count: Int(length))
                }
            }
            try self.init(header: header, fileSize: size, storage: .file(file), path: path)
            return
        }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) } catch {
            throw FormatError(file: name, "cannot read: \(fileErrorReason(error))")
        }
        try self.init(data: data, path: path)
    }

    public convenience init(data: Data, path: String = "<memory>") throws {
        try self.init(header: data.prefix(data.count >= 8 ? 8 + Int(min(UInt64(data.count - 8), data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })) : data.count),
                      fileSize: data.count, storage: .memory(data), path: path)
    }

    /// Where the tensors' bytes are: in memory (mapped) or read from the file on demand.
    private enum Storage { case memory(Data), file(PositionalFile) }
    private let storage: Storage

    /// `header`: the file's first bytes, through the end of its JSON header (or all of a file
    /// too short to hold one); `fileSize`: the whole file's size.
    private init(header data: Data, fileSize: Int, storage: Storage, path: String) throws {
        let name = (path as NSString).lastPathComponent
        func fail(_ problem: String) -> FormatError { FormatError(file: name, "not a valid safetensors file: \(problem)") }
        self.path = path
        self.storage = storage
        guard fileSize >= 8 else { throw fail("\(fileSize) bytes, shorter than the 8-byte header length") }
        let headerLength = data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard headerLength <= UInt64(Self.maxHeaderBytes) else { throw fail("header length \(headerLength) exceeds \(Self.maxHeaderBytes) bytes") }
        guard headerLength <= UInt64(fileSize - 8) else {
            throw fail("header length \(headerLength) is larger than the \(fileSize - 8) bytes after it (truncated file?)")
        }
        dataStart = 8 + Int(headerLength)
        let dataLength = fileSize - dataStart
        let json: Any
        let headerBytes = Data(data[(data.startIndex + 8)..<(data.startIndex + dataStart)])
        do { json = try JSONSerialization.jsonObject(with: headerBytes) } catch {
            throw fail("the header is not JSON")
        }
        // A JSON parser keeps one of two equal keys silently; a header that lists a tensor twice
        // is ambiguous, so it is refused by name.
        if let duplicate = Self.duplicateTopLevelKey(headerBytes) {
            throw fail("the header lists '\(duplicate)' more than once")
        }
        guard let header = json as? [String: Any] else { throw fail("the header is not a JSON object") }

        var metadata: [String: String] = [:]
        if let raw = header["__metadata__"] {
            guard let map = raw as? [String: Any] else { throw fail("__metadata__ is not an object") }
            for (key, value) in map {
                guard let text = value as? String else { throw fail("__metadata__ value '\(key)' is not a string") }
                metadata[key] = text
            }
        }
        var tensors: [String: TensorInfo] = [:]
        for (tensorName, raw) in header where tensorName != "__metadata__" {
            guard let entry = raw as? [String: Any] else { throw fail("entry '\(tensorName)' is not an object") }
            guard let dtypeName = entry["dtype"] as? String else { throw fail("tensor '\(tensorName)' has no dtype") }
            guard let dtype = DType(rawValue: dtypeName) else { throw fail("tensor '\(tensorName)' has unknown dtype '\(dtypeName)'") }
            guard let shapeValues = entry["shape"] as? [Any],
                  let shape = Self.integers(shapeValues), shape.allSatisfy({ $0 >= 0 }) else {
                throw fail("tensor '\(tensorName)' has no valid shape (a list of JSON integers ≥ 0; 10.0, 1e1 and true are not integers)")
            }
            guard let offsetValues = entry["data_offsets"] as? [Any], let offsets = Self.integers(offsetValues),
                  offsets.count == 2 else {
                throw fail("tensor '\(tensorName)' has no valid data_offsets (two JSON integers)")
            }
            guard offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= dataLength else {
                throw fail("tensor '\(tensorName)' data_offsets \(offsets) fall outside the \(dataLength) data bytes")
            }
            var count = 1
            for dim in shape {
                let (product, overflow) = count.multipliedReportingOverflow(by: dim)
                guard !overflow else { throw fail("tensor '\(tensorName)' shape \(shape) overflows") }
                count = product
            }
            let (bytes, overflow) = count.multipliedReportingOverflow(by: dtype.byteSize)
            guard !overflow, bytes == offsets[1] - offsets[0] else {
                throw fail("tensor '\(tensorName)' has \(offsets[1] - offsets[0]) bytes but shape \(shape) of \(dtype) needs \(count * dtype.byteSize)")
            }
            tensors[tensorName] = TensorInfo(name: tensorName, dtype: dtype, shape: shape, range: offsets[0]..<offsets[1])
        }
        // The tensors must tile the data section exactly: no overlap, no gap, nothing after.
        var cursor = 0
        for info in tensors.values.sorted(by: { ($0.range.lowerBound, $0.range.upperBound) < ($1.range.lowerBound, $1.range.upperBound) }) {
            if info.range.lowerBound < cursor { throw fail("tensor '\(info.name)' overlaps another tensor") }
            if info.range.lowerBound > cursor { throw fail("bytes \(cursor)..<\(info.range.lowerBound) of the data belong to no tensor") }
            cursor = info.range.upperBound
        }
        guard cursor == dataLength else { throw fail("the last \(dataLength - cursor) data bytes belong to no tensor") }
        self.metadata = metadata
        self.tensors = tensors
    }

    private static func integers(_ values: [Any]) -> [Int]? {
        var out: [Int] = []
        for value in values {
            // JSON integers only, as the format's reference reader requires: 10.0, 1e1 and true
            // parse to numbers too, and are refused (the parser marks them double and bool).
            guard let number = value as? NSNumber, !["d", "f", "c", "B"].contains(String(cString: number.objCType)) else { return nil }
            let d = number.doubleValue
            guard d == d.rounded(), d >= -9.0e15, d <= 9.0e15 else { return nil }
            out.append(number.intValue)
        }
        return out
    }

    public var fileName: String { (path as NSString).lastPathComponent }

    /// The first key that appears twice at the top level of a JSON object's text, if any.
    public static func duplicateTopLevelKey(_ json: Data) -> String? {
        var seen = Set<String>()
        var depth = 0, inString = false, escaped = false
        var current: [UInt8] = [], expectingKey = false, pendingKey: String?
        for byte in json {
            if inString {
                if escaped { escaped = false; current.append(byte); continue }
                if byte == UInt8(ascii: "\\") { escaped = true; current.append(byte); continue }
                if byte == UInt8(ascii: "\"") {
                    inString = false
                    if depth == 1 && expectingKey { pendingKey = String(decoding: current, as: UTF8.self) }
                    continue
                }
                current.append(byte)
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true; current = []
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
                expectingKey = depth == 1 && byte == UInt8(ascii: "{")
            case UInt8(ascii: "}"), UInt8(ascii: "]"): depth -= 1
            case UInt8(ascii: ":"):
                if depth == 1, let key = pendingKey {
                    if !seen.insert(key).inserted { return key }
                    pendingKey = nil
                    expectingKey = false
                }
            case UInt8(ascii: ","): if depth == 1 { expectingKey = true }
            default: break
            }
        }
        return nil
    }

    public func info(_ name: String) throws -> TensorInfo {
        guard let info = tensors[name] else {
            throw FormatError(file: fileName, "missing tensor '\(name)' (has: \(tensors.keys.sorted().joined(separator: ", ")))")
        }
        return info
    }

    /// Calls `body` with the raw bytes of a tensor: in place in the mapped file, or read from
    /// the file (streaming).
    public func withBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let info = try info(name)
        return try withBytes(at: info.range, body)
    }

    /// Calls `body` with bytes `range` of the data section.
    private func withBytes<R>(at range: Range<Int>, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        switch storage {
        case .memory(let data):
            return try data.withUnsafeBytes { all in
                try body(UnsafeRawBufferPointer(rebasing: all[(dataStart + range.lowerBound)..<(dataStart + range.upperBound)]))
            }
        case .file(let file):
            return try file.read(at: dataStart + range.lowerBound, count: range.count).withUnsafeBytes(body)
        }
    }

    /// Elements `range` (flat, row-major) of a floating-point or U8 tensor as Float, reading only
    /// their bytes: how datasets and large outputs are read a piece at a time.
    /// - Throws: `FormatError` for a range outside the tensor, another dtype, or an F64 value
    ///   beyond Float's range (never silently made infinite).
    public func floats(_ name: String, elements range: Range<Int>) throws -> [Float] {
        let info = try info(name)
        guard range.lowerBound >= 0, range.upperBound <= info.elementCount else {
            throw FormatError(file: fileName, "elements \(range) are outside tensor '\(name)' of \(info.elementCount)")
        }
        guard info.dtype.isFloatingPoint || info.dtype == .U8 else {
            throw FormatError(file: fileName, "tensor '\(name)' is \(info.dtype), expected a floating-point type")
        }
        let size = info.dtype.byteSize, n = range.count
        let bytes = (info.range.lowerBound + range.lowerBound * size)..<(info.range.lowerBound + range.upperBound * size)
        return try withBytes(at: bytes) { raw in
            switch info.dtype {
            case .F32:
                if Int(bitPattern: raw.baseAddress) % 4 == 0, let base = raw.baseAddress {
                    return Array(UnsafeBufferPointer(start: base.assumingMemoryBound(to: Float.self), count: n))
                }
                return (0..<n).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
            case .F64:
                return try (0..<n).map { i -> Float in
                    let d = Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))
                    let f = Float(d)
                    // A finite F64 beyond Float32's range is not silently made infinite.
                    if d.isFinite && !f.isFinite {
                        throw FormatError(file: fileName, "tensor '\(name)' holds \(d) at element \(range.lowerBound + i), which does not fit a 32-bit float")
                    }
                    return f
                }
            case .F16:
                // Float16 → Float is exact (F16C's conversion where the build targets it), written
                // straight into uninitialised storage.
                return [Float](unsafeUninitializedCapacity: n) { out, initialized in
                    for i in 0..<n {
                        out[i] = Float(Float16(bitPattern: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))))
                    }
                    initialized = n
                }
            case .BF16:
                return (0..<n).map { Float(bitPattern: UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))) << 16) }
            default:
                return (0..<n).map { Float(raw[$0]) }
            }
        }
    }

    /// A floating-point tensor as Float, converting F64, F16 and BF16. With `shape`, the
    /// tensor must have exactly that shape.
    public func floats(_ name: String, shape expected: [Int]? = nil) throws -> [Float] {
        let info = try info(name)
        if let expected, info.shape != expected {
            throw FormatError(file: fileName, "tensor '\(name)' has shape \(info.shape), expected \(expected)")
        }
        guard info.dtype.isFloatingPoint else {
            throw FormatError(file: fileName, "tensor '\(name)' is \(info.dtype), expected a floating-point type")
        }
        return try floats(name, elements: 0..<info.elementCount)
    }

    /// An integer tensor (any signed or unsigned width, or BOOL) as Int.
    public func integers(_ name: String) throws -> [Int] {
        try integers(name, elements: 0..<(try info(name)).elementCount)
    }

    /// Elements `range` of an integer tensor (any signed or unsigned width, or BOOL) as Int,
    /// reading only their bytes.
    /// - Throws: `FormatError` for a floating-point tensor, a range outside it, or a U64 value
    ///   beyond Int (never trapped on).
    public func integers(_ name: String, elements range: Range<Int>) throws -> [Int] {
        let info = try info(name)
        guard !info.dtype.isFloatingPoint else {
            throw FormatError(file: fileName, "tensor '\(name)' is \(info.dtype), expected an integer type")
        }
        guard range.lowerBound >= 0, range.upperBound <= info.elementCount else {
            throw FormatError(file: fileName, "elements \(range) are outside tensor '\(name)' of \(info.elementCount)")
        }
        let size = info.dtype.byteSize
        let bytes = (info.range.lowerBound + range.lowerBound * size)..<(info.range.lowerBound + range.upperBound * size)
        return try withBytes(at: bytes) { raw in
            try (0..<range.count).map { i throws -> Int in
                let o = i * size
                switch info.dtype {
                case .I64: return Int(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: Int64.self)))
                case .U64:
                    let value = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: UInt64.self))
                    guard let exact = Int(exactly: value) else {
                        throw FormatError(file: fileName, "tensor '\(name)' holds \(value) at index \(range.lowerBound + i), larger than any label or id CellAudit reads")
                    }
                    return exact
                case .I32: return Int(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: Int32.self)))
                case .U32: return Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: UInt32.self)))
                case .I16: return Int(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: Int16.self)))
                case .U16: return Int(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: UInt16.self)))
                case .I8: return Int(raw.load(fromByteOffset: o, as: Int8.self))
                default: return Int(raw.load(fromByteOffset: o, as: UInt8.self))
                }
            }
        }
    }
}

/// A file read at given offsets (`pread`), shared by the readers of a streaming
/// `SafeTensorsFile`; closed when the last reader goes.
final class PositionalFile: @unchecked Sendable {
    // Immutable after init; pread keeps no file position, so concurrent reads are safe.
    let descriptor: Int32
    let name: String
    init(descriptor: Int32, name: String) { self.descriptor = descriptor; self.name = name }
    deinit { close(descriptor) }

    /// `count` bytes from `offset`.
    /// - Throws: `FormatError` naming the file when the bytes cannot be read or the file ends
    ///   first (it shrank since it was opened).
    func read(at offset: Int, count: Int) throws -> Data {
        var data = Data(count: count)
        var filled = 0
        try data.withUnsafeMutableBytes { raw in
            while filled < count {
                let got = pread(descriptor, raw.baseAddress! + filled, count - filled, off_t(offset + filled))
                if got < 0 {
                    if errno == EINTR { continue }
                    throw FormatError(file: name, "cannot read: \(String(cString: strerror(errno)))")
                }
                if got == 0 { throw FormatError(file: name, "ends at byte \(offset + filled), before the \(count) bytes its header promises at \(offset) (the file changed or is truncated)") }
                filled += got
            }
        }
        return data
    }
}

extension Float {
    /// IEEE 754 binary16 to binary32.
    public init(halfBits h: UInt16) {
        let sign = UInt32(h >> 15) << 31
        let exponent = Int((h >> 10) & 0x1F)
        let mantissa = UInt32(h & 0x3FF)
        if exponent == 0 {
            // zero or subnormal: mantissa · 2^-24
            let magnitude = Float(mantissa) * 0x1p-24
            self = sign != 0 ? -magnitude : magnitude
        } else if exponent == 31 {
            self = Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        } else {
            self = Float(bitPattern: sign | UInt32(exponent - 15 + 127) << 23 | (mantissa << 13))
        }
    }
}

/// Writes safetensors files. Every array CellAudit outputs goes through here.
public struct SafeTensorsWriter {
    struct Entry { let name: String; let dtype: DType; let shape: [Int]; let bytes: Data }
    private var entries: [Entry] = []
    public var metadata: [String: String] = [:]

    public init(metadata: [String: String] = [:]) { self.metadata = metadata }

    public mutating func add(_ name: String, floats: [Float], shape: [Int]) throws {
        try add(name, dtype: .F32, shape: shape, count: floats.count) {
            var d = Data(capacity: floats.count * 4)
            for f in floats { withUnsafeBytes(of: f.bitPattern.littleEndian) { d.append(contentsOf: $0) } }
            return d
        }
    }

    public mutating func add(_ name: String, int64s: [Int], shape: [Int]) throws {
        try add(name, dtype: .I64, shape: shape, count: int64s.count) {
            var d = Data(capacity: int64s.count * 8)
            for v in int64s { withUnsafeBytes(of: Int64(v).littleEndian) { d.append(contentsOf: $0) } }
            return d
        }
    }

    public mutating func add(_ name: String, int32s: [Int32], shape: [Int]) throws {
        try add(name, dtype: .I32, shape: shape, count: int32s.count) {
            var d = Data(capacity: int32s.count * 4)
            for v in int32s { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
            return d
        }
    }

    /// Raw little-endian bytes of any dtype (used by tests to write unusual files).
    public mutating func add(_ name: String, dtype: DType, shape: [Int], bytes: Data) throws {
        try add(name, dtype: dtype, shape: shape, count: bytes.count / dtype.byteSize) { bytes }
    }

    private mutating func add(_ name: String, dtype: DType, shape: [Int], count: Int, _ bytes: () -> Data) throws {
        guard name != "__metadata__", !entries.contains(where: { $0.name == name }) else {
            throw FormatError(file: name, "duplicate or reserved tensor name")
        }
        guard shape.allSatisfy({ $0 >= 0 }), shape.reduce(1, *) == count else {
            throw FormatError(file: name, "shape \(shape) does not hold \(count) values")
        }
        entries.append(Entry(name: name, dtype: dtype, shape: shape, bytes: bytes()))
    }

    /// The complete file contents. The header is padded with spaces to a multiple of 8 bytes so
    /// that the data section is aligned.
    public func serialized() throws -> Data {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for e in entries {
            header[e.name] = ["dtype": e.dtype.rawValue, "shape": e.shape, "data_offsets": [offset, offset + e.bytes.count]]
            offset += e.bytes.count
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while (8 + json.count) % 8 != 0 { json.append(0x20) }
        var out = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        for e in entries { out.append(e.bytes) }
        return out
    }

    /// Writes atomically: a failure leaves no partial file at `path`.
    public func write(to path: String) throws {
        let data = try serialized()
        do { try data.write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw FormatError(file: (path as NSString).lastPathComponent, "cannot write: \(fileErrorReason(error))")
        }
    }
}

/// A safetensors file whose tensors are declared up front and filled in pieces, for outputs too
/// large to hold in memory. The file is laid out (header, zero-filled data) at `open`, pieces are
/// written in place at their offsets, and the caller decides where the finished file goes (the
/// engine writes into a staging directory that is renamed whole).
public final class SafeTensorsStreamWriter {
    public struct Declaration { public var name: String; public var dtype: DType; public var shape: [Int]
        public init(_ name: String, _ dtype: DType, _ shape: [Int]) { self.name = name; self.dtype = dtype; self.shape = shape }
    }
    private let handle: FileHandle
    private let path: String
    private var offsets: [String: (start: Int, dtype: DType, count: Int)] = [:]
    /// Header plus every tensor: the size `finish` gives the file (the writes fill it in any order;
    /// space is not reserved up front, so a full disk or a file-size limit fails the write that
    /// meets it).
    private let fileSize: Int

    public init(path: String, tensors: [Declaration], metadata: [String: String]) throws {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for t in tensors {
            guard t.name != "__metadata__", offsets[t.name] == nil, t.shape.allSatisfy({ $0 >= 0 }) else {
                throw FormatError(file: t.name, "duplicate or reserved tensor name, or a negative dimension")
            }
            let count = t.shape.reduce(1, *), bytes = count * t.dtype.byteSize
            header[t.name] = ["dtype": t.dtype.rawValue, "shape": t.shape, "data_offsets": [offset, offset + bytes]]
            offsets[t.name] = (offset, t.dtype, count)
            offset += bytes
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while (8 + json.count) % 8 != 0 { json.append(0x20) }
        let dataStart = 8 + json.count
        for (k, v) in offsets { offsets[k] = (dataStart + v.start, v.dtype, v.count) }
        self.path = path
        guard FileManager.default.createFile(atPath: path, contents: nil),
              let handle = FileHandle(forWritingAtPath: path) else {
            throw FormatError(file: (path as NSString).lastPathComponent, "cannot create the file")
        }
        self.handle = handle
        fileSize = dataStart + offset
        do {
            var prefix = Data()
            withUnsafeBytes(of: UInt64(json.count).littleEndian) { prefix.append(contentsOf: $0) }
            prefix.append(json)
            try handle.write(contentsOf: prefix)
        } catch {
            throw FormatError(file: (path as NSString).lastPathComponent, "cannot write: \(fileErrorReason(error))")
        }
    }

    /// Writes `values` into tensor `name` from element `element` on (row-major flat index).
    public func write<T: BitwiseCopyable>(_ name: String, at element: Int, _ values: UnsafeBufferPointer<T>) throws {
        guard let (start, dtype, count) = offsets[name], MemoryLayout<T>.stride == dtype.byteSize,
              element >= 0, element + values.count <= count else {
            throw FormatError(file: (path as NSString).lastPathComponent, "write outside tensor \(name)")
        }
        do {
            try handle.seek(toOffset: UInt64(start + element * dtype.byteSize))
            try handle.write(contentsOf: UnsafeRawBufferPointer(values))
        } catch {
            throw FormatError(file: (path as NSString).lastPathComponent, "cannot write: \(fileErrorReason(error))")
        }
    }

    /// Writes raw bytes (whole elements of the tensor's dtype, little-endian as stored) into
    /// tensor `name` from element `element` on: copying a tensor from another file unchanged.
    /// - Throws: `FormatError` when the bytes are not whole elements or fall outside the tensor.
    public func write(_ name: String, at element: Int, bytes: UnsafeRawBufferPointer) throws {
        guard let (start, dtype, count) = offsets[name], bytes.count % dtype.byteSize == 0, element >= 0,
              element + bytes.count / dtype.byteSize <= count else {
            throw FormatError(file: (path as NSString).lastPathComponent, "write outside tensor \(name)")
        }
        do {
            try handle.seek(toOffset: UInt64(start + element * dtype.byteSize))
            try handle.write(contentsOf: bytes)
        } catch {
            throw FormatError(file: (path as NSString).lastPathComponent, "cannot write: \(fileErrorReason(error))")
        }
    }

    /// Sets the file to its full size, flushes to disk and closes.
    public func finish() throws {
        do { try handle.truncate(atOffset: UInt64(fileSize)); try handle.synchronize(); try handle.close() } catch {
            throw FormatError(file: (path as NSString).lastPathComponent, "cannot finish: \(error.localizedDescription)")
        }
    }
}

/// The reason a file operation failed, in the system's words ("No space left on device",
/// "Permission denied"), never a Foundation error domain and code.
public func fileErrorReason(_ error: Error) -> String {
    let ns = error as NSError
    // Foundation on Linux stores the system's error as a Swift POSIXError, which only bridges
    // through `Error` (a cast straight to NSError misses it: "file system error 512").
    if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? Error {
        let system = underlying as NSError
        if system.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(system.code))) }
    }
    if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
    if ns.domain == NSCocoaErrorDomain {
        switch ns.code {
        case NSFileWriteOutOfSpaceError: return "no space left on the device"
        case NSFileWriteNoPermissionError, NSFileReadNoPermissionError: return "permission denied"
        case NSFileNoSuchFileError, NSFileReadNoSuchFileError: return "no such file or directory"
        case NSFileWriteFileExistsError: return "a file is in the way"
        case NSFileWriteVolumeReadOnlyError: return "the file system is read-only"
        default: return "file system error \(ns.code)"
        }
    }
    return "\(error)"
}
