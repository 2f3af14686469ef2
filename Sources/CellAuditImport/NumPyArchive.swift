import CellAuditCore
import Foundation

/// One array of a NumPy `.npy` file (format versions 1–3, NEP 1): its shape and its values
/// widened to Double, in C order.
public struct NumPyArray: Sendable, Equatable {
    public var shape: [Int]
    public var values: [Double]
    /// The dtype as NumPy writes it (`<f4`, `<i8`, `|b1`, …).
    public var descr: String
    public var isInteger: Bool { descr.dropFirst().first.map { "iub".contains($0) } ?? false }
}

/// Reads `.npz` archives (`numpy.savez` and `savez_compressed`: a ZIP of `.npy` files, stored or
/// deflated) through `ZipArchive`, and the `.npy` arrays in them. Little-endian floats (f2, f4, f8),
/// integers (i1–i8, u1–u8) and booleans are read; Fortran order is honoured by transposing;
/// object arrays, big-endian data and anything truncated are refused.
public enum NumPyArchive {
    /// Every array of the archive at `path`, by name without `.npy`.
    /// - Throws: `FormatError` naming the file (and the member) for an unreadable archive or array.
    public static func load(_ path: String) throws -> [String: NumPyArray] {
        InputFiles.record(path)
        let archive = try ZipArchive(path: path)
        let name = archive.fileName
        var arrays: [String: NumPyArray] = [:]
        for entry in archive.members {
            guard entry.name.hasSuffix(".npy") else { continue }
            let data = try archive.read(entry, limit: 1 << 34)
            let key = String(entry.name.dropLast(4))
            do { arrays[key] = try parse(data) } catch let problem as NPYProblem {
                throw FormatError(file: name, "\(entry.name): \(problem.text)")
            }
        }
        return arrays
    }

    struct NPYProblem: Error { let text: String }

    /// What a `.npy` header says: dtype, order, shape, and where the data starts.
    struct Header {
        var descr: String, fortran: Bool, shape: [Int], count: Int
        /// The dtype's kind letter (f, i, u, b) and element size in bytes.
        var kind: Character, size: Int
        /// The offset of the first data byte.
        var body: Int
    }

    /// The header at the start of a `.npy` file, from its first bytes (`prefix`, at least 12
    /// bytes or the whole file); nil when `prefix` is too short to hold it, with the length
    /// needed in `needed`.
    static func header(_ bytes: [UInt8], needed: inout Int) throws -> Header? {
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1...5]) == Array("NUMPY".utf8) else {
            throw NPYProblem(text: "not a .npy array (no \\x93NUMPY magic)")
        }
        let major = bytes[6]
        let headerLength: Int, start: Int
        switch major {
        case 1: headerLength = Int(bytes[8]) | Int(bytes[9]) << 8; start = 10
        case 2, 3:
            guard bytes.count >= 12 else { throw NPYProblem(text: "truncated header") }
            headerLength = (0..<4).reduce(0) { $0 | Int(bytes[8 + $1]) << (8 * $1) }; start = 12
        default: throw NPYProblem(text: ".npy format version \(major) is not one CellAudit reads (1–3)")
        }
        guard start + headerLength <= bytes.count else { needed = start + headerLength; return nil }
        guard let header = String(bytes: bytes[start..<(start + headerLength)], encoding: major == 3 ? .utf8 : .isoLatin1) else {
            throw NPYProblem(text: "truncated header")
        }
        func field(_ key: String) throws -> String {
            guard let range = header.range(of: "'\(key)':") else { throw NPYProblem(text: "header has no '\(key)'") }
            return String(header[range.upperBound...]).trimmingCharacters(in: .whitespaces)
        }
        let descrText = try field("descr")
        guard descrText.hasPrefix("'"), let end = descrText.dropFirst().firstIndex(of: "'") else {
            throw NPYProblem(text: "a structured or object dtype, which CellAudit does not read")
        }
        let descr = String(descrText[descrText.index(after: descrText.startIndex)..<end])
        let fortran = try field("fortran_order").hasPrefix("True")
        let shapeText = try field("shape")
        guard shapeText.hasPrefix("("), let close = shapeText.firstIndex(of: ")") else { throw NPYProblem(text: "unreadable shape") }
        let parts = shapeText[shapeText.index(after: shapeText.startIndex)..<close].split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let shape = try parts.map { part -> Int in
            guard let n = Int(part), n >= 0 else { throw NPYProblem(text: "unreadable shape \(shapeText[...close])") }
            return n
        }
        let count = shape.reduce(1) { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 }
        // What the dtype is, before its size is used: text and Python objects are not numbers.
        if let kind = descr.dropFirst().first {
            switch kind {
            case "U", "S", "a": throw NPYProblem(text: "holds text (dtype '\(descr)'), not numbers: store labels as integer class indices and inputs as floats")
            case "O": throw NPYProblem(text: "holds Python objects (dtype '\(descr)'), which CellAudit never unpickles: save a numeric array (np.asarray(x, dtype=np.float32))")
            case "c": throw NPYProblem(text: "holds complex numbers (dtype '\(descr)'); CellAudit reads real floats and integers")
            case "M", "m": throw NPYProblem(text: "holds dates or times (dtype '\(descr)'), not numbers")
            default: break
            }
        }
        guard count < Int.max / 8 else { throw NPYProblem(text: "shape \(shape) is too large: its element count overflows") }
        guard descr.count >= 3, let size = Int(descr.dropFirst(2)), "<|=".contains(descr.first!) || size == 1 else {
            throw NPYProblem(text: "dtype '\(descr)' is not a little-endian number")
        }
        let kind = descr.dropFirst().first!
        guard [("f", 2), ("f", 4), ("f", 8), ("i", 1), ("i", 2), ("i", 4), ("i", 8), ("u", 1), ("u", 2), ("u", 4), ("u", 8), ("b", 1)]
            .contains(where: { $0.0 == kind && $0.1 == size }) else {
            throw NPYProblem(text: "dtype '\(descr)' is not one CellAudit reads (float, int, uint or bool)")
        }
        return Header(descr: descr, fortran: fortran, shape: shape, count: count, kind: kind, size: size, body: start + headerLength)
    }

    /// One `.npy` file's bytes.
    static func parse(_ data: Data) throws -> NumPyArray {
        let bytes = [UInt8](data)
        var needed = 0
        guard let header = try header(bytes, needed: &needed) else { throw NPYProblem(text: "truncated header") }
        let body = header.body, count = header.count, size = header.size
        guard body + count * size == bytes.count else {
            throw NPYProblem(text: "holds \(bytes.count - body) bytes of data; shape \(header.shape) of '\(header.descr)' needs \(count * size)")
        }
        var values = bytes.withUnsafeBytes { raw in decode(UnsafeRawBufferPointer(rebasing: raw[body...]), header: header) }
        if header.fortran && header.shape.count > 1 { values = cOrder(values, shape: header.shape) }
        return NumPyArray(shape: header.shape, values: values, descr: header.descr)
    }

    /// Little-endian elements of the header's dtype, widened to Double.
    static func decode(_ raw: UnsafeRawBufferPointer, header: Header) -> [Double] {
        let size = header.size, count = raw.count / size
        // No elements (a dimension of 0): an empty buffer may have no address at all.
        guard count > 0, let p = raw.baseAddress else { return [] }
        var values = [Double](repeating: 0, count: count)
        for i in 0..<count {
            let q = p + i * size
            switch (header.kind, size) {
            case ("f", 2): values[i] = Double(Float16(bitPattern: q.loadUnaligned(as: UInt16.self).littleEndian))
            case ("f", 4): values[i] = Double(Float(bitPattern: q.loadUnaligned(as: UInt32.self).littleEndian))
            case ("f", 8): values[i] = Double(bitPattern: q.loadUnaligned(as: UInt64.self).littleEndian)
            case ("i", 1): values[i] = Double(q.loadUnaligned(as: Int8.self))
            case ("i", 2): values[i] = Double(Int16(littleEndian: q.loadUnaligned(as: Int16.self)))
            case ("i", 4): values[i] = Double(Int32(littleEndian: q.loadUnaligned(as: Int32.self)))
            case ("i", 8): values[i] = Double(Int64(littleEndian: q.loadUnaligned(as: Int64.self)))
            case ("u", 2): values[i] = Double(UInt16(littleEndian: q.loadUnaligned(as: UInt16.self)))
            case ("u", 4): values[i] = Double(UInt32(littleEndian: q.loadUnaligned(as: UInt32.self)))
            case ("u", 8): values[i] = Double(UInt64(littleEndian: q.loadUnaligned(as: UInt64.self)))
            default: values[i] = Double(q.loadUnaligned(as: UInt8.self))   // u1 and b1 (the header allows no other)
            }
        }
        return values
    }

    /// Column-major (Fortran) values rearranged into row-major (C) order.
    public static func cOrder(_ values: [Double], shape: [Int]) -> [Double] {
        var out = [Double](repeating: 0, count: values.count)
        var index = [Int](repeating: 0, count: shape.count)
        for c in 0..<values.count {
            var f = 0, stride = 1
            for d in 0..<shape.count { f += index[d] * stride; stride *= shape[d] }
            out[c] = values[f]
            var d = shape.count - 1
            while d >= 0 { index[d] += 1; if index[d] < shape[d] { break }; index[d] = 0; d -= 1 }
        }
        return out
    }
}
