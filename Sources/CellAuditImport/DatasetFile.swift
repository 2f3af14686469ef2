import CellAuditCore
import Foundation

/// A dataset file, read a range of sequences at a time: a safetensors file, or a NumPy `.npz`
/// archive (`numpy.savez`, stored or deflated) holding arrays of the same names: `inputs`
/// [N, T, I] floats, or [N, T] integer token ids for a model with a token embedding; optional
/// `lengths` [N]; `labels` [N] or `targets` [N, K] / [N, T, K].
///
/// Opening reads the headers only (shapes, dtypes, which arrays there are); `read` reads the
/// bytes of the sequences asked for and checks them (finite floats, integer labels and ids that
/// fit an Int, lengths 1…T), naming the file, the array and the element by its index in the file.
/// A safetensors file is read at offsets (`pread`), never mapped whole; an `.npz` member is read
/// forward (a deflated member cannot be entered in the middle), so chunks read in order cost
/// one pass. A Fortran-ordered array of more than one dimension is not stored sequence by
/// sequence, and is read whole (with a memory check) the first time it is needed.
public final class DatasetFile: DatasetReader, @unchecked Sendable {
    // Immutable after init, apart from the arrays' read positions, which `lock` guards.
    public let fileName: String
    public let shape: DatasetShape
    private let inputs: DatasetArray
    private let lengths: DatasetArray?, labels: DatasetArray?, targets: DatasetArray?
    private let lock = NSLock()

    /// Opens the dataset at `path` and checks its arrays' names, shapes and dtypes.
    /// `requireAnswers: false` accepts inputs alone (explaining a model's own predictions needs
    /// no labels).
    /// - Throws: `FormatError` naming the file and what is missing or misshapen.
    public init(_ path: String, requireAnswers: Bool = true) throws {
        let name = (path as NSString).lastPathComponent
        fileName = name
        let arrays = try Self.arrays(path)
        func array(_ key: String) -> DatasetArray? { arrays.arrays.first { $0.key == key }?.array }
        guard let inputs = array("inputs") else {
            if arrays.looksLikeModel {
                throw FormatError(file: name, "holds a model's weights, not a dataset: a dataset is a .safetensors or .npz file with 'inputs' and 'labels' or 'targets'")
            }
            throw FormatError(file: name, "missing tensor 'inputs'")
        }
        let shape = inputs.shape
        guard shape.allSatisfy({ $0 >= 1 }) else { throw FormatError(file: name, "the dataset is empty (inputs \(shape))") }
        let tokens = shape.count == 2 && inputs.isInteger
        guard tokens || shape.count == 3 else {
            throw FormatError(file: name, "'inputs' has shape \(shape), expected float vectors [N, T, I] (or integer token ids [N, T] for a model with a token embedding)")
        }
        if let lengths = array("lengths") {
            guard lengths.shape == [shape[0]], lengths.isInteger, !lengths.isBoolean else {
                throw FormatError(file: name, "'lengths' has shape \(lengths.shape)\(lengths.isInteger && !lengths.isBoolean ? "" : " and is not integer"): expected integers [\(shape[0])], each sequence's length")
            }
        }
        if let labels = array("labels"), labels.shape != [shape[0]] {
            throw FormatError(file: name, "'labels' has shape \(labels.shape), expected [\(shape[0])]")
        }
        if let t = array("targets")?.shape {
            guard (t.count == 2 || t.count == 3), t[0] == shape[0], t.count == 2 || t[1] == shape[1] else {
                throw FormatError(file: name, "'targets' has shape \(t), expected [\(shape[0]), K] or [\(shape[0]), \(shape[1]), K]")
            }
        }
        // Both answers: which one a model is scored on would be a guess, so neither is used.
        guard array("labels") == nil || array("targets") == nil else {
            throw FormatError(file: name, "holds both 'labels' (classification) and 'targets' (regression); CellAudit will not guess which the model is scored on: save the dataset with only the one that fits the model")
        }
        guard !requireAnswers || array("labels") != nil || array("targets") != nil else {
            throw FormatError(file: name, "the dataset has neither 'labels' nor 'targets'")
        }
        self.inputs = inputs
        lengths = array("lengths"); labels = array("labels"); targets = array("targets")
        self.shape = DatasetShape(count: shape[0], steps: shape[1], width: tokens ? 1 : shape[2], holdsTokens: tokens,
                                  hasLengths: lengths != nil, hasLabels: labels != nil, targetShape: targets?.shape)
    }

    public func read(_ range: Range<Int>) throws -> Dataset {
        guard range.lowerBound >= 0, range.upperBound <= shape.count, !range.isEmpty else {
            throw FormatError(file: fileName, "sequences \(range) are outside the file's \(shape.count)")
        }
        lock.lock(); defer { lock.unlock() }
        let name = fileName, T = shape.steps
        /// The elements of one sequence in `array`, and those of the range's sequences.
        func rowSize(_ array: DatasetArray) -> Int { array.shape.dropFirst().reduce(1, *) }
        func rows(_ array: DatasetArray) -> Range<Int> { (range.lowerBound * rowSize(array))..<(range.upperBound * rowSize(array)) }
        func finite(_ key: String, _ array: DatasetArray) throws -> [Float] {
            let elements = rows(array)
            let values = try array.floats(elements)
            if let bad = values.firstIndex(where: { !$0.isFinite }) {
                // Named by sequence (and step, where the array has steps) as well as by flat element.
                let row = rowSize(array), element = elements.lowerBound + bad
                let perStep = array.shape.count == 3 ? array.shape[2] : nil
                let position = perStep.map { "sequence \(element / row), step \(element % row / $0)" } ?? "sequence \(element / row)"
                throw FormatError(file: name, "'\(key)' contains \(values[bad]) at element \(element) (\(position))")
            }
            return values
        }
        var data: Dataset
        if shape.holdsTokens {
            // Token ids [N, T], for a model with a token embedding (embedded by Dataset.prepare).
            data = try Dataset(tokens: try TokenBatch(count: range.count, steps: T, ids: try inputs.integers(rows(inputs))))
        } else {
            data = Dataset(inputs: try SequenceBatch(count: range.count, steps: T, width: shape.width, values: try finite("inputs", inputs)))
        }
        data.fileName = name
        data.firstSequence = range.lowerBound
        if let lengths {
            // Each sequence's own length (a padded batch): integers 1…T.
            do { try data.inputs.setLengths(try lengths.integers(range), firstSequence: range.lowerBound) } catch DataError.mismatch(let problem) {
                throw FormatError(file: name, "'lengths': \(problem)")
            }
        }
        if let labels { data.labels = try labels.integers(range) }
        if let targets {
            data.targets = try finite("targets", targets)
            data.targetShape = [range.count] + targets.shape.dropFirst()
        }
        return data
    }

    /// Every sequence, in memory: for small datasets and tests (commands stream a
    /// `DatasetStream` instead).
    public func readAll() throws -> Dataset { try read(0..<shape.count) }

    /// The file's arrays by name (headers read, no data), and whether a safetensors file looks
    /// like a model's weights rather than a dataset.
    private static func arrays(_ path: String) throws -> (arrays: [(key: String, array: DatasetArray)], looksLikeModel: Bool) {
        let name = (path as NSString).lastPathComponent
        let format = FileFormat.sniff(path)
        if format == .missing { throw FormatError(file: name, "no such file") }
        if let refusal = format.datasetRefusal { throw FormatError(file: name, refusal.hasPrefix("is ") ? String(refusal.dropFirst(3)) : refusal) }
        if format == .npz || (format == .zip && path.lowercased().hasSuffix(".npz")) {
            InputFiles.record(path)
            let archive = try ZipArchive(path: path)
            return (try archive.members.filter { $0.name.hasSuffix(".npy") }.map {
                (String($0.name.dropLast(4)), try NPYArray(archive: archive, member: $0))
            }, false)
        }
        let file = try SafeTensorsFile(path: path, streaming: true)
        let looksLikeModel = file.metadata["cell"] != nil || file.tensors.keys.contains { $0.contains("weight_ih") || $0.contains("weight_hh") || $0.hasSuffix("kernel") }
        return (file.tensors.keys.sorted().map { ($0, SafeTensorsArray(file: file, name: $0)) }, looksLikeModel)
    }
}

extension Dataset {
    /// Reads a whole dataset file into memory (`DatasetFile`): for small datasets and tests;
    /// the commands stream theirs (`DatasetStream`).
    /// - Throws: `FormatError` naming the file and what is missing, misshapen or not finite.
    public static func load(_ path: String, requireAnswers: Bool = true) throws -> Dataset {
        try DatasetFile(path, requireAnswers: requireAnswers).readAll()
    }
}

/// One named array of a dataset file, read by element ranges (row-major).
private protocol DatasetArray: AnyObject {
    var shape: [Int] { get }
    /// Integers or booleans (token ids, labels, lengths).
    var isInteger: Bool { get }
    var isBoolean: Bool { get }
    func floats(_ elements: Range<Int>) throws -> [Float]
    func integers(_ elements: Range<Int>) throws -> [Int]
}

private final class SafeTensorsArray: DatasetArray {
    let file: SafeTensorsFile, name: String, info: TensorInfo
    init(file: SafeTensorsFile, name: String) { self.file = file; self.name = name; info = file.tensors[name]! }
    var shape: [Int] { info.shape }
    var isInteger: Bool { !info.dtype.isFloatingPoint }
    var isBoolean: Bool { info.dtype == .BOOL }
    func floats(_ elements: Range<Int>) throws -> [Float] {
        guard info.dtype.isFloatingPoint else {
            throw FormatError(file: file.fileName, "tensor '\(name)' is \(info.dtype), expected a floating-point type")
        }
        return try file.floats(name, elements: elements)
    }
    func integers(_ elements: Range<Int>) throws -> [Int] { try file.integers(name, elements: elements) }
}

/// A `.npy` member of an `.npz` archive, read forward through one open member stream (reopened
/// when a read goes back); a Fortran-ordered array of rank > 1 is read whole once.
private final class NPYArray: DatasetArray {
    let archive: ZipArchive, member: ZipArchive.Member, header: NumPyArchive.Header
    private var stream: ZipArchive.MemberStream?
    private var whole: [Double]?

    init(archive: ZipArchive, member: ZipArchive.Member) throws {
        self.archive = archive; self.member = member
        func fail(_ problem: String) -> FormatError { FormatError(file: archive.fileName, "\(member.name): \(problem)") }
        // The header: its fixed part, then as many bytes as it says it takes.
        let opening = try archive.stream(member)
        var bytes = [UInt8](try opening.read(12)), needed = 0
        do {
            var found = try NumPyArchive.header(bytes, needed: &needed)
            if found == nil, needed <= 1 << 20 {
                bytes += [UInt8](try opening.read(needed - bytes.count))
                found = try NumPyArchive.header(bytes, needed: &needed)
            }
            guard let found else { throw NumPyArchive.NPYProblem(text: "truncated header") }
            header = found
        } catch let problem as NumPyArchive.NPYProblem { throw fail(problem.text) }
        guard member.size - header.body == header.count * header.size else {
            throw fail("holds \(member.size - header.body) bytes of data; shape \(header.shape) of '\(header.descr)' needs \(header.count * header.size)")
        }
        stream = opening
    }

    var shape: [Int] { header.shape }
    var isInteger: Bool { "iub".contains(header.kind) }
    var isBoolean: Bool { header.kind == "b" }

    /// Elements `range` widened to Double, as the whole-array reader gives them.
    private func values(_ range: Range<Int>) throws -> [Double] {
        if header.fortran && header.shape.count > 1 {
            if whole == nil {
                // The member's bytes, twice (read, then as bytes to parse), and the values as
                // Double, twice (read, then put in C order).
                try MemoryBudget.check(MemoryBudget.product(header.count, 2 * header.size + 16), what: "reading \(archive.fileName)'s Fortran-ordered '\(member.name)'",
                                       fix: "save it in C order (numpy.ascontiguousarray), which is read a chunk at a time")
                whole = try NumPyArchive.parse(try archive.read(member, limit: 1 << 34)).values
            }
            return Array(whole![range])
        }
        let start = header.body + range.lowerBound * header.size
        if stream == nil || stream!.position > start { stream = try archive.stream(member) }
        try stream!.skip(start - stream!.position)
        let bytes = try stream!.read(range.count * header.size)
        let values = bytes.withUnsafeBytes { NumPyArchive.decode($0, header: header) }
        // At the member's end: its checksum and declared size are checked once.
        if stream!.position == member.size { try stream!.finish(); stream = nil }
        return values
    }

    func floats(_ elements: Range<Int>) throws -> [Float] {
        try values(elements).enumerated().map { i, d in
            let f = Float(d)
            // A finite float64 beyond Float32's range is refused by name, never made infinite.
            if d.isFinite && !f.isFinite {
                throw FormatError(file: archive.fileName, "'\(member.name.dropLast(4))' holds \(d) at element \(elements.lowerBound + i), which does not fit a 32-bit float")
            }
            return f
        }
    }

    func integers(_ elements: Range<Int>) throws -> [Int] {
        guard isInteger else { throw FormatError(file: archive.fileName, "'\(member.name.dropLast(4))' has dtype \(header.descr); it must hold integers") }
        return try values(elements).enumerated().map { i, value in
            // Exactly representable only: a uint64 label of 2^63 or more is refused, not trapped on.
            guard let exact = Int(exactly: value) else {
                throw FormatError(file: archive.fileName, "'\(member.name.dropLast(4))' holds \(String(format: "%.0f", value)) at index \(elements.lowerBound + i), outside the integers CellAudit reads")
            }
            return exact
        }
    }
}
