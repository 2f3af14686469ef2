import Foundation

/// The framework whose tensor names and layouts a model file uses (METHOD.md §1).
public enum Convention: String, Sendable, CaseIterable {
    case pytorch, keras, onnx
}

/// How the readout is applied: to the last step (`last`) or to every step (`sequence`).
public enum OutputMode: String, Sendable, CaseIterable { case last, sequence }

public enum Task: String, Sendable, CaseIterable { case classification, regression }

/// A network loaded from a model file, in the canonical layout, with what the file said of it.
public struct LoadedModel: Sendable {
    public var network: LSTMNetwork
    public var convention: Convention
    public var output: OutputMode
    public var task: Task
    public var metadata: [String: String]
    public var path: String

    public init(network: LSTMNetwork, convention: Convention, output: OutputMode, task: Task,
                metadata: [String: String], path: String) {
        self.network = network; self.convention = convention; self.output = output; self.task = task
        self.metadata = metadata; self.path = path
    }

    public var parameterCount: Int {
        network.layers.reduce(0) { $0 + $1.W.count + $1.R.count + $1.b.count }
            + (network.readout.map { $0.V.count + $0.a.count } ?? 0)
    }
}

/// Reads CellAudit model files: one safetensors file per network, whose `__metadata__` says the
/// convention, cell kind, sizes, readout and task, and whose tensors keep the framework's own
/// names and layouts (see README, "Model files"). Everything is converted once, here, into the
/// canonical layout.
public enum ModelFile {
    public static func load(_ path: String) throws -> LoadedModel {
        let file = try SafeTensorsFile(path: path)
        let name = file.fileName
        func fail(_ problem: String) -> FormatError { FormatError(file: name, problem) }
        let meta = file.metadata
        func required(_ key: String) throws -> String {
            guard let value = meta[key] else { throw fail("metadata has no '\(key)' (is this a CellAudit model file?)") }
            return value
        }
        guard let convention = Convention(rawValue: try required("convention")) else {
            throw fail("unknown convention '\(meta["convention"]!)' (expected pytorch, keras or onnx)")
        }
        let cell = try required("cell")
        guard cell == "lstm" else { throw fail("cell kind '\(cell)' is not supported yet (supported: lstm)") }
        guard let layerCount = Int(try required("layers")), layerCount >= 1 else { throw fail("'layers' must be a positive integer") }
        guard let inputSize = Int(try required("input_size")), inputSize >= 1 else { throw fail("'input_size' must be a positive integer") }
        let hidden = try required("hidden_sizes").split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard hidden.count == layerCount, hidden.allSatisfy({ ($0 ?? 0) >= 1 }) else {
            throw fail("'hidden_sizes' must list \(layerCount) positive integers, got '\(meta["hidden_sizes"]!)'")
        }
        let output = try meta["output"].map { value in
            guard let mode = OutputMode(rawValue: value) else { throw fail("unknown output mode '\(value)' (last or sequence)") }
            return mode
        } ?? .last
        let task = try meta["task"].map { value in
            guard let task = Task(rawValue: value) else { throw fail("unknown task '\(value)' (classification or regression)") }
            return task
        } ?? .classification

        var layers: [LSTMLayer] = []
        var width = inputSize
        for (k, h) in hidden.map({ $0! }).enumerated() {
            let (W, R, b) = try canonicalWeights(file, convention: convention, prefix: meta["prefix"], layer: k,
                                                 input: width, hidden: h)
            for (tensor, values) in [("input weights", W), ("recurrent weights", R), ("bias", b)] {
                if let bad = values.firstIndex(where: { !$0.isFinite }) {
                    throw fail("layer \(k) \(tensor) contain \(values[bad]) (NaN or Inf) at element \(bad)")
                }
            }
            layers.append(try LSTMLayer(inputSize: width, hiddenSize: h, W: W, R: R, b: b))
            width = h
        }
        var readout: LSTMNetwork.Readout?
        if let vName = meta["readout_weight"] {
            let info = try file.info(vName)
            guard info.shape.count == 2 else { throw fail("readout '\(vName)' has shape \(info.shape), expected 2 dimensions") }
            // Keras Dense kernels are [H × K]; PyTorch and ONNX readouts are [K × H].
            let kerasLayout = convention == .keras
            let k = kerasLayout ? info.shape[1] : info.shape[0]
            guard (kerasLayout ? info.shape[0] : info.shape[1]) == width else {
                throw fail("readout '\(vName)' has shape \(info.shape), which does not read \(width) cells")
            }
            var V = try file.floats(vName)
            if kerasLayout { V = transpose(V, rows: width, cols: k) }
            var a = [Float](repeating: 0, count: k)
            if let aName = meta["readout_bias"] { a = try file.floats(aName, shape: [k]) }
            try checkFinite(V, "readout '\(vName)'", fail)
            try checkFinite(a, "readout bias", fail)
            readout = LSTMNetwork.Readout(V: V, a: a)
        }
        return LoadedModel(network: try LSTMNetwork(layers: layers, readout: readout), convention: convention,
                           output: output, task: task, metadata: meta, path: path)
    }

    static func checkFinite(_ values: [Float], _ what: String, _ fail: (String) -> FormatError) throws {
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw fail("\(what) contains \(values[bad]) (NaN or Inf) at element \(bad)")
        }
    }

    /// The tensor names of layer `k` in a convention, as (input, recurrent, bias…).
    public static func tensorNames(_ convention: Convention, prefix: String?, layer k: Int) -> [String] {
        switch convention {
        case .pytorch:
            let p = prefix ?? "lstm."
            return ["\(p)weight_ih_l\(k)", "\(p)weight_hh_l\(k)", "\(p)bias_ih_l\(k)", "\(p)bias_hh_l\(k)"]
        case .keras:
            let p = prefix ?? "lstm_"
            return ["\(p)\(k).kernel", "\(p)\(k).recurrent_kernel", "\(p)\(k).bias"]
        case .onnx:
            let p = prefix ?? "lstm_"
            return ["\(p)\(k).W", "\(p)\(k).R", "\(p)\(k).B"]
        }
    }

    static func canonicalWeights(_ file: SafeTensorsFile, convention: Convention, prefix: String?, layer k: Int,
                                 input: Int, hidden h: Int) throws -> ([Float], [Float], [Float]) {
        let names = tensorNames(convention, prefix: prefix, layer: k)
        let h4 = 4 * h
        switch convention {
        case .pytorch:
            let W = try file.floats(names[0], shape: [h4, input])
            let R = try file.floats(names[1], shape: [h4, h])
            let bih = try file.floats(names[2], shape: [h4])
            let bhh = try file.floats(names[3], shape: [h4])
            return (W, R, zip(bih, bhh).map(+))
        case .keras:
            // kernel [I × 4H], recurrent_kernel [H × 4H], gate order i, f, c, o (= canonical).
            let kernel = try file.floats(names[0], shape: [input, h4])
            let recurrent = try file.floats(names[1], shape: [h, h4])
            let b = try file.floats(names[2], shape: [h4])
            return (transpose(kernel, rows: input, cols: h4), transpose(recurrent, rows: h, cols: h4), b)
        case .onnx:
            // W [1, 4H, I], R [1, 4H, H], B [1, 8H]; gate order i, o, f, c.
            let W = try file.floats(names[0], shape: [1, h4, input])
            let R = try file.floats(names[1], shape: [1, h4, h])
            let B = try file.floats(names[2], shape: [1, 2 * h4])
            let b = zip(B[0..<h4], B[h4...]).map(+)
            // canonical gate g (i, f, g, o) sits at ONNX block onnxBlock[g]
            let onnxBlock = [0, 2, 3, 1]
            func reorder(_ m: [Float], cols: Int) -> [Float] {
                var out = [Float](); out.reserveCapacity(m.count)
                for block in onnxBlock { out += m[(block * h * cols)..<((block + 1) * h * cols)] }
                return out
            }
            return (reorder(W, cols: input), reorder(R, cols: h), reorder(b, cols: 1))
        }
    }
}

func transpose(_ m: [Float], rows: Int, cols: Int) -> [Float] {
    var out = [Float](repeating: 0, count: m.count)
    for r in 0..<rows { for c in 0..<cols { out[c * rows + r] = m[r * cols + c] } }
    return out
}
