import CellAuditCore
import Foundation
import SwiftProtobuf

/// Reads an `.onnx` file with LSTM, GRU or RNN nodes natively (apple/swift-protobuf on the code
/// `Tools/generate_onnx_swift.sh` generates from ONNX's own `onnx.proto`).
///
/// The graph is walked from the network input: through layout ops (Transpose, Squeeze,
/// Unsqueeze, Identity, Cast, and Reshape/Flatten where they only add or drop size-1 axes) into
/// the first recurrent node, from each recurrent node's output Y into the next, and from the last
/// one's Y (or Y_h) to the readout: the one MatMul (+ Add) or Gemm fed by the recurrent output,
/// honouring `transA`, `transB`, `alpha` and `beta`, after a step selection (Gather or Slice of the
/// last step) or none (a readout at every step). Axes are tracked through every op, so a layout
/// op that would mix time, batch and features is refused, not trusted. What CellAudit cannot
/// represent exactly is refused, naming the node and the attribute or input: peepholes `P` that are
/// not constants (constant peepholes are read: METHOD.md §8), `clip`, `input_forget`, non-default `activations` (the RNN's Relu is read as `rnn_relu`),
/// `activation_alpha`/`beta`, initial states that are not provably zero, a `sequence_lens` that
/// is not one constant length, a node of another domain, a readout that reads the memory
/// c or a step other than the last, a second linear map, and any node the walk does not account
/// for. `layout` = 1 (batch-major) is honoured, and so is `direction`: a reverse node is one
/// reverse layer, a bidirectional node a level of a forward and a reverse layer whose outputs the
/// next node or the readout reads concatenated (the direction axis merged into the features by
/// a Reshape, as torch's exporter writes it). External data is read from the files the tensors
/// name, relative to the model's directory.
///
/// The weights are then handed, in ONNX's own layouts and gate orders, to the same loader that
/// reads CellAudit model files of the onnx convention (`ModelFile.load(file:path:hints:)`).
public enum ONNXModel {
    /// Whether `path` names an ONNX file: the `.onnx` extension.
    public static func isONNX(_ path: String) -> Bool { path.lowercased().hasSuffix(".onnx") }

    /// - Parameter hints: only `task` and `core` apply (ONNX graphs say everything else).
    /// - Throws: `FormatError` naming the file and the problem.
    public static func load(_ path: String, hints: ModelHints = ModelHints()) throws -> LoadedModel {
        let name = (path as NSString).lastPathComponent
        let data: Data
        InputFiles.record(path)
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw FormatError(file: name, "cannot read: \(fileErrorReason(error))")
        }
        return try load(data: data, path: path, hints: hints)
    }

    /// Reads ONNX bytes; `path` names the file in messages and anchors external data.
    public static func load(data: Data, path: String, hints: ModelHints = ModelHints()) throws -> LoadedModel {
        let name = (path as NSString).lastPathComponent
        let model: Onnx_ModelProto
        do {
            var options = BinaryDecodingOptions()
            options.messageDepthLimit = 64
            model = try Onnx_ModelProto(serializedBytes: data, options: options)
        } catch {
            throw FormatError(file: name, "is not an ONNX model: it does not parse as ONNX's protobuf (\(error))")
        }
        guard model.hasGraph else { throw FormatError(file: name, "the ONNX model has no graph") }
        if hints.rnnPrefix != nil || hints.readoutPrefix != nil || hints.output != nil || hints.nonlinearity != nil {
            throw FormatError(file: name, "an ONNX graph states its own architecture; of the state-dict flags only --task applies")
        }
        let directory = (path as NSString).deletingLastPathComponent
        try GraphReader.checkTopologicalOrder(model.graph, file: name)
        let lifted = try GraphReader.liftUnrolledRecurrences(model.graph, file: name, directory: directory)
        let selected = try GraphReader.selectTopLastState(lifted, file: name, directory: directory)
        let graph = try GraphReader.mergeTopBidirectionalStates(selected, file: name, directory: directory)
        var reader = GraphReader(graph: graph, file: name, directory: directory)
        reader.core = hints.core
        var (tensors, metadata) = try reader.read(task: hints.task)
        if hints.core { metadata["core"] = "true" }
        if let lengths = reader.lengthsInput { metadata["lengths_input"] = lengths }
        var writer = SafeTensorsWriter(metadata: metadata)
        for (tensorName, tensor) in tensors.sorted(by: { $0.key < $1.key }) {
            try writer.add(tensorName, floats: tensor.values, shape: tensor.shape)
        }
        let file = try SafeTensorsFile(data: try writer.serialized(), path: path)
        var loaded = try ModelFile.load(file: file, path: path)
        loaded.embedding = reader.embedding
        if hints.core {
            loaded.ignored = reader.ignored
            loaded.readoutNote = loaded.network.readout == nil ? reader.readoutNote ?? "no linear map reads the top recurrent node's output, so the core has no readout" : nil
        }
        return loaded
    }
}

/// A float tensor read from the graph, in its ONNX shape.
struct FloatTensor { var shape: [Int]; var values: [Float] }

/// The size of one axis on the data path: known, or a named symbol (a dynamic dimension).
enum AxisSize: Equatable {
    case known(Int)
    case symbol(String)
    var isOne: Bool { self == .known(1) }
    var description: String {
        switch self {
        case .known(let n): "\(n)"
        case .symbol: "a variable number of"
        }
    }
}

/// What an axis of a tensor on the data path means.
struct Axis: Equatable {
    /// `input(k)`: axis k of the graph input, whose meaning the first recurrent node settles.
    /// `direction`: the axis of size 2 by which a bidirectional node's Y and Y_h hold the forward
    /// direction, then the reverse one; merged with the feature axis after it, it is PyTorch's
    /// concatenation of both directions' outputs.
    enum Role: Equatable { case time, batch, feature, unit, direction, input(Int) }
    var role: Role
    var size: AxisSize
}

struct GraphReader {
    let graph: Onnx_GraphProto
    let file: String
    let directory: String
    var producer: [String: Int] = [:]
    var consumers: [String: [Int]] = [:]
    var initializers: [String: Onnx_TensorProto] = [:]
    /// Nodes the walk has accounted for.
    var explained = Set<Int>()
    /// Recurrent nodes with a constant, uniform `sequence_lens`: node → the length every sequence runs.
    var sequenceLengths: [Int: Int] = [:]
    /// The axes of every tensor on the data path the walk has reached (for Shape ops).
    var knownAxes: [String: [Axis]] = [:]
    /// `--core`: the walk starts at the bottom recurrent node's X (whatever computes it is a front
    /// end, left out), stops where the top node's output meets anything but layout ops and one
    /// linear map (a head, left out: the core then has no readout), takes initial states from
    /// graph inputs as the zero state CellAudit starts from, and lists what it left out.
    var core = false
    /// The graph input that feeds the recurrent nodes' `sequence_lens`, if one does: the
    /// dataset's `lengths` stand for it.
    var lengthsInput: String?
    /// A token embedding before the first recurrent node: a Gather of rows of a constant [V, E]
    /// table by the graph's integer input (torch's export of `nn.Embedding`).
    var embedding: TokenEmbedding?
    /// Under `--core`: what the walk left out, for `LoadedModel.ignored`.
    var ignored: [String] = []
    /// Under `--core`: why the core has no readout, for `LoadedModel.readoutNote`.
    var readoutNote: String?

    init(graph: Onnx_GraphProto, file: String, directory: String) {
        self.graph = graph; self.file = file; self.directory = directory
        for (i, node) in graph.node.enumerated() {
            for output in node.output where !output.isEmpty { producer[output] = i }
            for input in node.input where !input.isEmpty { consumers[input, default: []].append(i) }
        }
        for tensor in graph.initializer { initializers[tensor.name] = tensor }
    }

    func fail(_ problem: String) -> FormatError { FormatError(file: file, problem) }

    /// ONNX requires a graph's nodes in topological order: every input a node reads is a graph
    /// input, an initializer or the output of an earlier node, and no two nodes write one name.
    /// Checked first, so that no walk over producers and consumers can meet a cycle.
    static func checkTopologicalOrder(_ graph: Onnx_GraphProto, file: String) throws {
        var available = Set(graph.input.map(\.name)).union(graph.initializer.map(\.name))
        var written = Set<String>()
        for (i, node) in graph.node.enumerated() {
            let name = "node '\(node.name.isEmpty ? node.output.first ?? node.opType : node.name)' (\(node.opType))"
            if let missing = node.input.first(where: { !$0.isEmpty && !available.contains($0) }) {
                throw FormatError(file: file, "\(name) (node \(i)) reads '\(missing)', which no graph input, initializer or earlier node provides: the graph is not in the topological order ONNX requires (or has a cycle)")
            }
            for output in node.output where !output.isEmpty {
                guard written.insert(output).inserted, !graph.input.contains(where: { $0.name == output }) else {
                    throw FormatError(file: file, "\(name) writes '\(output)', which another node or a graph input already provides; an ONNX graph names each value once")
                }
                available.insert(output)
            }
        }
    }

    func label(_ index: Int) -> String {
        let node = graph.node[index]
        return "node '\(node.name.isEmpty ? node.output.first ?? node.opType : node.name)' (\(node.opType))"
    }

    // MARK: attributes and constants

    func attribute(_ node: Onnx_NodeProto, _ name: String) -> Onnx_AttributeProto? { node.attribute.first { $0.name == name } }

    func int(_ node: Onnx_NodeProto, _ name: String) -> Int? { attribute(node, name).map { Int($0.i) } }

    func strings(_ node: Onnx_NodeProto, _ name: String) -> [String]? {
        attribute(node, name).map { a in a.strings.isEmpty && a.hasS ? [String(decoding: a.s, as: UTF8.self)] : a.strings.map { String(decoding: $0, as: UTF8.self) } }
    }

    /// The tensor behind a name that is an initializer or a Constant node's output (marking the
    /// Constant as accounted for); nil for anything computed.
    mutating func constant(_ name: String) throws -> Onnx_TensorProto? {
        if let t = initializers[name] { return t }
        guard let p = producer[name], graph.node[p].opType == "Constant" else { return nil }
        let node = graph.node[p]
        explained.insert(p)
        if let a = attribute(node, "value"), a.hasT { return a.t }
        var t = Onnx_TensorProto()
        if let a = attribute(node, "value_float") { t.dataType = 1; t.floatData = [a.f] }
        else if let a = attribute(node, "value_floats") { t.dataType = 1; t.floatData = a.floats; t.dims = [Int64(a.floats.count)] }
        else if let a = attribute(node, "value_int") { t.dataType = 7; t.int64Data = [a.i] }
        else if let a = attribute(node, "value_ints") { t.dataType = 7; t.int64Data = a.ints; t.dims = [Int64(a.ints.count)] }
        else { throw fail("\(label(p)) holds a constant of a kind CellAudit does not read (sparse or string)") }
        return t
    }

    /// The raw bytes of a tensor, from the file itself or its external data.
    func rawBytes(_ t: Onnx_TensorProto, _ what: String) throws -> Data? {
        guard t.dataLocation == .external else { return t.hasRawData ? t.rawData : nil }
        var location: String?, offset = 0, length: Int?
        for entry in t.externalData {
            switch entry.key {
            case "location": location = entry.value
            case "offset": offset = Int(entry.value) ?? -1
            case "length": length = Int(entry.value)
            default: break
            }
        }
        guard let location, !location.hasPrefix("/"), !location.split(separator: "/").contains("..") else {
            throw fail("\(what) is stored in external data without a location inside the model's directory")
        }
        let url = URL(fileURLWithPath: directory.isEmpty ? "." : directory).appendingPathComponent(location)
        // As onnxruntime requires: the file, every symbolic link resolved, lies inside the model's
        // directory (a link to /etc/passwd is not LSTM weights).
        let folder = InputFiles.resolve(directory.isEmpty ? "." : directory), resolved = InputFiles.resolve(url.path)
        guard InputFiles.path(resolved, isWithin: folder), resolved != folder else {
            throw fail("\(what) is stored in external data file '\(location)', which resolves to \(resolved), outside the model's directory \(folder)")
        }
        InputFiles.record(url.path)
        guard let handle = try? FileHandle(forReadingFrom: url) else {
            throw fail("\(what) is stored in external data file '\(location)', which cannot be opened beside the model")
        }
        defer { try? handle.close() }
        let count = try byteCount(t.dims, bytes: t.dataType == 11 ? 8 : t.dataType == 10 ? 2 : 4, what)
        guard offset >= 0, (length ?? count) == count else { throw fail("\(what): external data offset or length does not match its shape") }
        try handle.seek(toOffset: UInt64(offset))
        let bytes = handle.readData(ofLength: count)
        guard bytes.count == count else { throw fail("\(what): external data file '\(location)' ends before the tensor does") }
        return bytes
    }

    /// The number of values of a tensor of shape `dims` times `bytes` per value, checked: a
    /// negative dimension or a product past 2^40 is a refusal, never an overflow trap.
    func byteCount(_ dims: [Int64], bytes: Int, _ what: String) throws -> Int {
        var count = bytes
        for d in dims {
            guard d >= 0 else { throw fail("\(what) has a negative dimension") }
            let (product, overflow) = count.multipliedReportingOverflow(by: Int(d))
            guard !overflow, product <= 1 << 40 else { throw fail("\(what) has shape \(dims), too large to hold") }
            count = product
        }
        return count
    }

    /// A constant as Float values, with its shape. FLOAT, DOUBLE and FLOAT16 are read.
    func floats(_ t: Onnx_TensorProto, _ what: String) throws -> FloatTensor {
        let count = try byteCount(t.dims, bytes: 1, what)
        let shape = t.dims.map(Int.init)
        var values: [Float]
        switch t.dataType {
        case 1:
            if let raw = try rawBytes(t, what) {
                guard raw.count == count * 4 else { throw fail("\(what) holds \(raw.count) bytes, expected \(count * 4) for shape \(shape)") }
                values = raw.withUnsafeBytes { b in (0..<count).map { Float(bitPattern: UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) } }
            } else { values = t.floatData }
        case 11:
            if let raw = try rawBytes(t, what) {
                guard raw.count == count * 8 else { throw fail("\(what) holds \(raw.count) bytes, expected \(count * 8) for shape \(shape)") }
                values = raw.withUnsafeBytes { b in (0..<count).map { Float(Double(bitPattern: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self)))) } }
            } else { values = t.doubleData.map(Float.init) }
        case 10:
            if let raw = try rawBytes(t, what) {
                guard raw.count == count * 2 else { throw fail("\(what) holds \(raw.count) bytes, expected \(count * 2) for shape \(shape)") }
                values = raw.withUnsafeBytes { b in (0..<count).map { Float(halfBits: UInt16(littleEndian: b.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))) } }
            } else { values = t.int32Data.map { Float(halfBits: UInt16(truncatingIfNeeded: $0)) } }
        default:
            throw fail("\(what) has ONNX data type \(t.dataType); CellAudit reads float, double and float16 weights")
        }
        guard values.count == count else { throw fail("\(what) holds \(values.count) values, expected \(count) for shape \(shape)") }
        return FloatTensor(shape: shape, values: values)
    }

    /// A constant as integers (INT64 or INT32), for axes, indices and shapes.
    func integers(_ t: Onnx_TensorProto, _ what: String) throws -> [Int] {
        let count = try byteCount(t.dims, bytes: 1, what)
        switch t.dataType {
        case 7:
            if let raw = try rawBytes(t, what) {
                guard raw.count == count * 8 else { throw fail("\(what) holds \(raw.count) bytes, expected \(count * 8)") }
                return raw.withUnsafeBytes { b in (0..<count).map { Int(Int64(littleEndian: b.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self))) } }
            }
            return t.int64Data.map(Int.init)
        case 6:
            if let raw = try rawBytes(t, what) {
                guard raw.count == count * 4 else { throw fail("\(what) holds \(raw.count) bytes, expected \(count * 4)") }
                return raw.withUnsafeBytes { b in (0..<count).map { Int(Int32(littleEndian: b.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self))) } }
            }
            return t.int32Data.map(Int.init)
        default:
            throw fail("\(what) has ONNX data type \(t.dataType); expected int64 or int32")
        }
    }

    mutating func constantIntegers(_ name: String, _ what: String) throws -> [Int]? {
        guard let t = try constant(name) else { return nil }
        return try integers(t, what)
    }
}
