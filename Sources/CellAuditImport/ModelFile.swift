import CellAuditCore
import Foundation

/// Reads CellAudit model files: one safetensors file per network, whose `__metadata__` says the
/// convention, cell kind, sizes, readout and task, and whose tensors keep the framework's own
/// names and layouts (see README, "Model files"). Everything is converted once, here, into the
/// canonical layout.
public enum ModelFile {
    /// Reads a CellAudit model file, or a plain PyTorch state dict (no CellAudit metadata), whose
    /// architecture is inferred with `hints` (`StateDict`).
    /// - Throws: `FormatError` naming the file and the problem: unreadable or malformed, a
    ///   feature CellAudit cannot represent, an ambiguity the hints do not settle, a tensor the
    ///   model would not use, hints given for a file that describes itself.
    public static func load(_ path: String, hints: ModelHints = ModelHints()) throws -> LoadedModel {
        try load(file: try SafeTensorsFile(path: path), path: path, hints: hints)
    }

    /// Reads a model from an opened safetensors file (from disk, or built in memory by another
    /// reader such as the ONNX one, which hands its weights over in the onnx convention).
    public static func load(file: SafeTensorsFile, path: String, hints: ModelHints = ModelHints()) throws -> LoadedModel {
        let name = file.fileName
        func fail(_ problem: String) -> FormatError { FormatError(file: name, problem) }
        let meta = file.metadata
        // No CellAudit metadata at all: a plain state dict. (Metadata that says a cell kind but no
        // convention is a damaged CellAudit file, and is reported as one below.)
        guard meta["convention"] != nil || meta["cell"] != nil else { return try StateDict.load(file, path: path, hints: hints) }
        if hints.anyFlag {
            throw fail("a CellAudit model file states its own architecture; --rnn-prefix, --readout-prefix, --task, --output and --nonlinearity apply to plain state dicts")
        }
        func required(_ key: String) throws -> String {
            guard let value = meta[key] else { throw fail("metadata has no '\(key)' (is this a CellAudit model file?)") }
            return value
        }
        guard let convention = Convention(rawValue: try required("convention")) else {
            throw fail("unknown convention '\(meta["convention"]!)' (expected pytorch, keras or onnx)")
        }
        let cellName = try required("cell")
        guard let kind = CellKind(rawValue: cellName) else {
            throw fail("unknown cell kind '\(cellName)' (supported: \(CellKind.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard let layerCount = Int(try required("layers")), layerCount >= 1 else { throw fail("'layers' must be a positive integer") }
        guard layerCount <= NetworkLimits.maxLayers else { throw fail("'layers' is \(layerCount), more than the \(NetworkLimits.maxLayers) CellAudit represents") }
        guard let inputSize = Int(try required("input_size")), inputSize >= 1 else { throw fail("'input_size' must be a positive integer") }
        if let problem = NetworkLimits.problem(width: inputSize, "'input_size'") { throw fail(problem) }
        let hidden = try required("hidden_sizes").split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard hidden.count == layerCount, hidden.allSatisfy({ ($0 ?? 0) >= 1 }) else {
            throw fail("'hidden_sizes' must list \(layerCount) positive integers, got '\(meta["hidden_sizes"]!)'")
        }
        for size in hidden.compactMap({ $0 }) {
            if let problem = NetworkLimits.problem(width: size, "a hidden size in 'hidden_sizes'") { throw fail(problem) }
        }
        let output = try meta["output"].map { value in
            guard let mode = OutputMode(rawValue: value) else { throw fail("unknown output mode '\(value)' (last or sequence)") }
            return mode
        } ?? .last
        let task = try meta["task"].map { value in
            guard let task = ModelTask(rawValue: value) else { throw fail("unknown task '\(value)' (classification or regression)") }
            return task
        } ?? .classification

        let resetAfter = try gruResetAfter(file, kind: kind, convention: convention, hidden: hidden.first!!, fail)
        // Optional: each level's time direction, comma-separated: "forward", "reverse" (the layer
        // reads steps T−1…0; its tensors keep their plain names) or "bidirectional" (a forward
        // layer and a reverse one, whose tensors carry the suffix `_reverse` in the onnx
        // convention, `…_l{k}_reverse` in PyTorch's; the next level reads both outputs
        // concatenated, forward first). ONNX reverse and bidirectional nodes arrive so.
        var levelDirections = [[TimeDirection]](repeating: [.forward], count: layerCount)
        if let text = meta["directions"] {
            let words = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            let parsed: [[TimeDirection]?] = words.map { $0 == "bidirectional" ? [.forward, .reverse] : TimeDirection(rawValue: $0).map { [$0] } }
            guard parsed.count == layerCount, parsed.allSatisfy({ $0 != nil }) else {
                throw fail("'directions' must list \(layerCount) of forward, reverse and bidirectional, got '\(text)'")
            }
            levelDirections = parsed.map { $0! }
        }
        var levels: [[RecurrentLayer]] = []
        var read = Set<String>()
        var width = inputSize
        for (k, h) in hidden.map({ $0! }).enumerated() {
            var level: [RecurrentLayer] = []
            for direction in levelDirections[k] {
                // A lone reverse layer keeps the plain names; the second direction of a level the suffixed ones.
                let named: TimeDirection = level.isEmpty ? .forward : .reverse
                let weights = try canonicalWeights(file, kind: kind, convention: convention, prefix: meta["prefix"], layer: k,
                                                   direction: named, input: width, hidden: h, resetAfter: resetAfter)
                let names = tensorNames(convention, kind: kind, prefix: meta["prefix"], layer: k, direction: named)
                read.formUnion(names)
                if let p = peepholeName(convention, kind: kind, prefix: meta["prefix"], layer: k, direction: named) { read.insert(p) }
                let biases = names.dropFirst(2).joined(separator: ", ")
                let canonical = { (e: Int) in "canonical element \(e)" }
                // Peepholes are named by gate and cell (their file order i, o, f differs from the canonical one).
                let byGate = { (e: Int) in "gate \(["i", "f", "o"][e / h]) of cell \(e % h)" }
                for (tensor, values, at) in [("input weights (\(names[0]))", weights.W, canonical), ("recurrent weights (\(names[1]))", weights.R, canonical),
                                             ("bias (\(biases))", weights.b, canonical), ("recurrent bias of n (\(biases))", weights.bhn ?? [], canonical),
                                             ("peephole weights (P)", weights.peephole ?? [], byGate)] {
                    if let bad = values.firstIndex(where: { !$0.isFinite }) {
                        throw fail("layer \(k)\(direction == .reverse ? " (reverse)" : "") \(tensor) contain \(values[bad]) (NaN or Inf), \(at(bad))")
                    }
                }
                var layer = try RecurrentLayer(kind: kind, inputSize: width, hiddenSize: h, W: weights.W, R: weights.R, b: weights.b,
                                               hiddenBiasN: weights.bhn, resetAfter: resetAfter, peephole: weights.peephole)
                layer.direction = direction
                level.append(layer)
            }
            levels.append(level)
            width = h * level.count
        }
        // Every tensor under the layers' prefix must be one the loader read: anything else (a
        // bidirectional layer's `_reverse` tensors the metadata does not describe, a projection, a
        // layer beyond `layers`) is a part of the network CellAudit would otherwise leave out silently.
        let prefix = meta["prefix"] ?? defaultPrefix(kind, convention)
        let notRead = file.tensors.keys.filter { !read.contains($0) }
        let unread = notRead.filter { $0.hasPrefix(prefix) }.sorted()
        if !unread.isEmpty {
            let reverse = unread.contains { $0.hasSuffix("_reverse") }
            throw fail("tensors \(unread.joined(separator: ", ")) are not part of the \(layerCount)-layer \(kind.rawValue) its metadata describes"
                       + (reverse ? " (a bidirectional network's reverse direction, which this CellAudit model file's metadata does not describe; CellAudit will not audit half of it: give the plain state dict, without CellAudit metadata, and both directions are read)" : ""))
        }
        var readout: RecurrentNetwork.Readout?
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
            readout = RecurrentNetwork.Readout(V: V, a: a)
        }
        // Every other tensor must be one the file's metadata names (or a golden value for
        // --verify): an unused tensor is refused here as a plain state dict refuses it.
        let readoutNames = Set([meta["readout_weight"], meta["readout_bias"]].compactMap { $0 })
        let unused = notRead.filter { !readoutNames.contains($0) && !$0.hasPrefix("golden.") }.sorted()
        if !unused.isEmpty {
            throw fail("tensor\(unused.count == 1 ? "" : "s") \(unused.map { "'\($0)'" }.joined(separator: ", ")) \(unused.count == 1 ? "is" : "are") not part of the \(layerCount)-layer \(kind.rawValue) and readout its metadata describes; CellAudit refuses a file with parts it would leave out (a plain state dict is refused the same way)")
        }
        // Optional: what a last-step readout of a network with a reverse layer reads
        // ("final-states": each layer's state after its last processing step; "last-step": its
        // output at time T−1).
        if let text = meta["reading"] {
            guard let reading = FinalStateReading(rawValue: text) else { throw fail("unknown reading '\(text)' (final-states or last-step)") }
            readout?.reading = reading
        }
        var model = LoadedModel(network: try RecurrentNetwork(levels: levels, readout: readout), convention: convention,
                                output: output, task: task, metadata: meta, path: path)
        if let text = meta["sequence_length"] {
            guard let length = Int(text), length >= 1 else { throw fail("'sequence_length' must be a positive integer, got '\(text)'") }
            model.sequenceLength = length
        }
        return model
    }

    static func checkFinite(_ values: [Float], _ what: String, _ fail: (String) -> FormatError) throws {
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw fail("\(what) contains \(values[bad]) (NaN or Inf) at element \(bad)")
        }
    }

    /// The default tensor-name prefix of a kind in a convention (the exporters' names).
    public static func defaultPrefix(_ kind: CellKind, _ convention: Convention) -> String {
        let stem = kind == .lstm ? "lstm" : kind == .gru ? "gru" : "rnn"
        switch convention {
        case .pytorch: return stem + "."
        case .keras: return (kind == .rnnTanh || kind == .rnnReLU ? "simple_rnn" : stem) + "_"
        case .onnx: return stem + "_"
        }
    }

    /// The tensor names of layer `k` in a convention, as (input, recurrent, bias…); `direction`
    /// `.reverse` names PyTorch's second direction (`…_l{k}_reverse`).
    public static func tensorNames(_ convention: Convention, kind: CellKind = .lstm, prefix: String?, layer k: Int,
                                   direction: TimeDirection = .forward) -> [String] {
        let p = prefix ?? defaultPrefix(kind, convention), s = direction == .reverse ? "_reverse" : ""
        switch convention {
        case .pytorch: return ["\(p)weight_ih_l\(k)\(s)", "\(p)weight_hh_l\(k)\(s)", "\(p)bias_ih_l\(k)\(s)", "\(p)bias_hh_l\(k)\(s)"]
        case .keras: return ["\(p)\(k).kernel\(s)", "\(p)\(k).recurrent_kernel\(s)", "\(p)\(k).bias\(s)"]
        case .onnx: return ["\(p)\(k).W\(s)", "\(p)\(k).R\(s)", "\(p)\(k).B\(s)"]
        }
    }

    /// The name of layer k's optional peephole tensor `P` [1, 3·H] (ONNX order i, o, f): ONNX
    /// convention LSTMs only (PyTorch and Keras LSTMs have no peepholes), else nil.
    public static func peepholeName(_ convention: Convention, kind: CellKind, prefix: String?, layer k: Int,
                                    direction: TimeDirection = .forward) -> String? {
        guard convention == .onnx, kind == .lstm else { return nil }
        return "\(prefix ?? defaultPrefix(kind, convention))\(k).P\(direction == .reverse ? "_reverse" : "")"
    }

    /// Whether a GRU file holds the reset-after cell (PyTorch's) or the reset-before one:
    /// PyTorch is always reset-after; Keras says it by the bias shape ([2, 3H] `reset_after=True`,
    /// [3H] `reset_after=False`), and a `reset_after` metadata key must agree; ONNX by the
    /// metadata `linear_before_reset` (0 or 1; absent means 0, the ONNX default).
    static func gruResetAfter(_ file: SafeTensorsFile, kind: CellKind, convention: Convention, hidden: Int,
                              _ fail: (String) -> FormatError) throws -> Bool {
        let meta = file.metadata
        guard kind == .gru else {
            for key in ["reset_after", "linear_before_reset"] where meta[key] != nil {
                throw fail("metadata '\(key)' applies to GRUs only, but the cell kind is \(kind.rawValue)")
            }
            return true
        }
        func flag(_ key: String) throws -> Bool? {
            guard let value = meta[key] else { return nil }
            switch value.lowercased() {
            case "1", "true": return true
            case "0", "false": return false
            default: throw fail("metadata '\(key)' must be 0 or 1, got '\(value)'")
            }
        }
        switch convention {
        case .pytorch:
            if try flag("reset_after") == false || flag("linear_before_reset") == false {
                throw fail("a PyTorch nn.GRU always applies the reset gate after R_n h + b_hn; the metadata says otherwise")
            }
            return true
        case .keras:
            let name = tensorNames(.keras, kind: kind, prefix: meta["prefix"], layer: 0)[2]
            let shape = try file.info(name).shape
            let byShape: Bool
            if shape == [2, 3 * hidden] { byShape = true } else if shape == [3 * hidden] { byShape = false } else {
                throw fail("Keras GRU bias '\(name)' has shape \(shape), expected [2, \(3 * hidden)] (reset_after=True) or [\(3 * hidden)] (reset_after=False)")
            }
            if let said = try flag("reset_after"), said != byShape {
                throw fail("metadata reset_after=\(said) but bias '\(name)' has the shape of reset_after=\(byShape)")
            }
            return byShape
        case .onnx:
            return try flag("linear_before_reset") ?? false
        }
    }

    /// A layer's weights in the canonical layout; `peephole` [3·H] (p_i, p_f, p_o) where the file
    /// has peepholes (ONNX convention, tensor `P`).
    struct CanonicalWeights { var W: [Float], R: [Float], b: [Float], bhn: [Float]?, peephole: [Float]? = nil }

    static func canonicalWeights(_ file: SafeTensorsFile, kind: CellKind, convention: Convention, prefix: String?, layer k: Int,
                                 direction: TimeDirection = .forward, input: Int, hidden h: Int, resetAfter: Bool) throws -> CanonicalWeights {
        let names = tensorNames(convention, kind: kind, prefix: prefix, layer: k, direction: direction)
        let g = kind.gateCount, rows = g * h
        // The framework's gate block holding canonical gate k: LSTM i,f,g,o from Keras i,f,c,o
        // and ONNX i,o,f,c; GRU r,z,n from Keras and ONNX z,r,h.
        let blocks: [Int] = switch (kind, convention) {
        case (.lstm, .onnx): [0, 2, 3, 1]
        case (.gru, .keras), (.gru, .onnx): [1, 0, 2]
        default: Array(0..<g)
        }
        func reorder(_ m: ArraySlice<Float>, cols: Int) -> [Float] {
            var out = [Float](); out.reserveCapacity(m.count)
            let base = m.startIndex
            for block in blocks { out += m[(base + block * h * cols)..<(base + (block + 1) * h * cols)] }
            return out
        }
        // Input-side and recurrent-side biases, canonical order, folded as the kind needs: the
        // GRU's reset-after n block keeps its recurrent bias apart (it sits inside the reset gate).
        func fold(_ input: [Float], _ recurrent: [Float]) -> CanonicalWeights.Biases {
            guard kind == .gru, resetAfter else { return .init(b: zip(input, recurrent).map(+), bhn: kind == .gru ? [Float](repeating: 0, count: h) : nil) }
            return .init(b: zip(input[..<(2 * h)], recurrent[..<(2 * h)]).map(+) + input[(2 * h)...], bhn: Array(recurrent[(2 * h)...]))
        }
        switch convention {
        case .pytorch:
            let W = try file.floats(names[0], shape: [rows, input])
            let R = try file.floats(names[1], shape: [rows, h])
            let biases = fold(try file.floats(names[2], shape: [rows]), try file.floats(names[3], shape: [rows]))
            return CanonicalWeights(W: W, R: R, b: biases.b, bhn: biases.bhn)
        case .keras:
            // kernel [I × G·H], recurrent_kernel [H × G·H]; bias [G·H], or [2, 3H] for a reset-after GRU.
            let kernel = try file.floats(names[0], shape: [input, rows])
            let recurrent = try file.floats(names[1], shape: [h, rows])
            let W = reorder(transpose(kernel, rows: input, cols: rows)[...], cols: input)
            let R = reorder(transpose(recurrent, rows: h, cols: rows)[...], cols: h)
            if kind == .gru && resetAfter {
                let both = try file.floats(names[2], shape: [2, rows])
                let biases = fold(reorder(both[..<rows], cols: 1), reorder(both[rows...], cols: 1))
                return CanonicalWeights(W: W, R: R, b: biases.b, bhn: biases.bhn)
            }
            let b = reorder(try file.floats(names[2], shape: [rows])[...], cols: 1)
            return CanonicalWeights(W: W, R: R, b: b, bhn: kind == .gru ? [Float](repeating: 0, count: h) : nil)
        case .onnx:
            // W [1, G·H, I], R [1, G·H, H], B [1, 2·G·H] (input biases, then recurrent biases).
            let W = try file.floats(names[0], shape: [1, rows, input])
            let R = try file.floats(names[1], shape: [1, rows, h])
            let B = try file.floats(names[2], shape: [1, 2 * rows])
            let biases = fold(reorder(B[..<rows], cols: 1), reorder(B[rows...], cols: 1))
            // Optional peepholes P [1, 3·H] in ONNX's order i, o, f (LSTM only).
            var peephole: [Float]?
            if let pName = peepholeName(convention, kind: kind, prefix: prefix, layer: k, direction: direction), file.tensors[pName] != nil {
                let P = try file.floats(pName, shape: [1, 3 * h])
                peephole = Array(P[0..<h]) + Array(P[(2 * h)..<(3 * h)]) + Array(P[h..<(2 * h)])
            }
            return CanonicalWeights(W: reorder(W[...], cols: input), R: reorder(R[...], cols: h), b: biases.b, bhn: biases.bhn,
                                    peephole: peephole)
        }
    }
}

extension ModelFile.CanonicalWeights {
    struct Biases { var b: [Float], bhn: [Float]? }
}

func transpose(_ m: [Float], rows: Int, cols: Int) -> [Float] {
    var out = [Float](repeating: 0, count: m.count)
    for r in 0..<rows { for c in 0..<cols { out[c * rows + r] = m[r * cols + c] } }
    return out
}
