import CellAuditCore
import Foundation

/// Reads Keras files natively: Keras 3 `.keras` files (`model.save("model.keras")`: a ZIP archive
/// of `config.json`, the model's architecture, and `model.weights.h5`, its variables in HDF5, read
/// through HDF5's C library) and legacy `.h5` files (Keras 2's `model.save("model.h5")`: the
/// architecture in the `model_config` attribute, the variables under `model_weights`). A Sequential model, or a Functional one whose layers form one chain,
/// of: an optional `InputLayer`; an optional `Embedding` first (a token embedding, `mask_zero`
/// refused); `LSTM`, `GRU` (either `reset_after`) and `SimpleRNN` (tanh or relu) layers, each
/// optionally inside `Bidirectional` (merge modes concat, sum and ave: sum and ave are exact as the
/// next reader's weights applied to both directions); `Dropout` (inactive at inference); and at most
/// one `Dense` readout last (linear, or softmax/sigmoid, whose logits CellAudit reads). Every config
/// field CellAudit cannot represent (another activation, `go_backwards` outside `Bidirectional`,
/// `stateful`, `return_state`, merge mode mul, any other layer) is refused by name, and every
/// variable in the weights file must be one the model uses.
public struct KerasModelReader: ModelReader {
    public init() {}
    public var formats: [FileFormat] { [.keras3] }

    /// Refuses the flags only a plain state dict reads, and records the file as an input.
    static func begin(_ path: String, hints: ModelHints) throws -> String {
        let name = (path as NSString).lastPathComponent
        if let flag = hints.stateDictFlagsGiven.first {
            throw ModelRefusal("\(name): \(flag) applies to plain state dicts; a Keras file states its architecture")
        }
        InputFiles.record(path)
        return name
    }

    public func load(_ path: String, hints: ModelHints) throws -> LoadedModel {
        let name = try Self.begin(path, hints: hints)
        let archive = try ZipArchive(path: path)
        guard let configMember = archive["config.json"], let weightsMember = archive["model.weights.h5"] else {
            throw FormatError(file: name, "a Keras 3 archive holds config.json and model.weights.h5; this one lacks \(archive["config.json"] == nil ? "config.json" : "model.weights.h5")")
        }
        let configData = try archive.read(configMember, limit: 64 << 20)
        guard let config = (try? JSONSerialization.jsonObject(with: configData)) as? [String: Any] else {
            throw FormatError(file: name, "config.json is not a JSON object")
        }
        let weights = try HDF5File(image: try archive.read(weightsMember, limit: 1 << 34), fileName: "\(name): the Keras 3 archive's model.weights.h5")
        let reader = KerasGraph(fileName: name, weights: weights, layout: .keras3, hints: hints)
        return try reader.model(config: config, path: path)
    }

}

/// Legacy Keras `.h5` model files (Keras 2's `model.save("model.h5")`, and Keras 3's legacy save):
/// the architecture in the root attribute `model_config`, each layer's variables under
/// `model_weights/<layer name>` in the order its `weight_names` attribute lists them; read as
/// `KerasModelReader` reads `.keras` archives (`KerasGraph`).
public struct KerasLegacyModelReader: ModelReader {
    public init() {}
    public var formats: [FileFormat] { [.hdf5] }

    public func load(_ path: String, hints: ModelHints) throws -> LoadedModel {
        let name = try KerasModelReader.begin(path, hints: hints)
        let file = try HDF5File(path: path)
        let attribute: [String]?
        do { attribute = try file.attributeStrings("", "model_config") } catch {
            throw FormatError(file: name, "its 'model_config' attribute is there but cannot be read as text (a damaged file?)")
        }
        guard let text = attribute?.first else {
            throw FormatError(file: name, "an HDF5 file without a Keras 'model_config' attribute (a weights-only file from save_weights?): CellAudit needs the whole model, model.save(\"model.keras\")")
        }
        guard let config = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else {
            throw FormatError(file: name, "its 'model_config' attribute is not a JSON object")
        }
        guard (try? file.attributeStrings("model_weights", "layer_names")) != nil else {
            throw FormatError(file: name, "a Keras .h5 file without its 'model_weights' group")
        }
        let reader = KerasGraph(fileName: name, weights: file, layout: .legacy, hints: hints)
        return try reader.model(config: config, path: path)
    }
}

/// One Keras model's config walked layer by layer into CellAudit's network.
struct KerasGraph {
    let fileName: String
    let weights: HDF5File
    let hints: ModelHints
    /// Every weights dataset read, to refuse the ones nothing reads.
    final class Read { var paths = Set<String>() }
    let read = Read()

    /// Where the variables are: Keras 3's `layers/<class key>/…/vars/<i>`, or the legacy
    /// `model_weights/<layer name>/<weight name>`.
    enum Layout { case keras3, legacy }
    let layout: Layout

    init(fileName: String, weights: HDF5File, layout: Layout, hints: ModelHints) {
        self.fileName = fileName; self.weights = weights; self.layout = layout; self.hints = hints
    }

    /// The paths of a layer's variables in the weights file, in Keras's order (a recurrent
    /// layer's kernel, recurrent kernel and bias; a Bidirectional layer's forward ones, then
    /// its backward ones; an embedding's table; a Dense kernel and bias).
    func layerVariables(key: String, name: String, className: String) -> [String] {
        switch layout {
        case .keras3:
            func vars(_ group: String) -> [String] { weights.children(group).compactMap { Int($0) }.sorted().map { "\(group)/\($0)" } }
            let group = "layers/\(key)"
            switch className {
            case "Bidirectional": return vars("\(group)/forward_layer/cell/vars") + vars("\(group)/backward_layer/cell/vars")
            case "TimeDistributed": return vars("\(group)/layer/vars")
            case "LSTM", "GRU", "SimpleRNN": return vars("\(group)/cell/vars")
            default: return vars("\(group)/vars")
            }
        case .legacy:
            return ((try? weights.attributeStrings("model_weights/\(name)", "weight_names")) ?? nil ?? []).map { "model_weights/\(name)/\($0)" }
        }
    }

    func fail(_ problem: String) -> FormatError { FormatError(file: fileName, problem) }

    /// How the next reader takes a bidirectional level's output when Keras merged its directions
    /// (sum or average): the same weights applied to each direction (halved for ave).
    enum Merge { case concat, sum, ave }

    func model(config: [String: Any], path: String) throws -> LoadedModel {
        let className = config["class_name"] as? String ?? "?"
        guard ["Sequential", "Functional", "Model"].contains(className), let body = config["config"] as? [String: Any],
              let layers = body["layers"] as? [[String: Any]] else {
            throw fail("config.json describes a '\(className)', not a Sequential or Functional model of layers")
        }
        if className != "Sequential" { try checkChain(layers, body) }
        var embedding: TokenEmbedding?
        var levels: [[RecurrentLayer]] = []
        var width: Int?          // the current output width (nil before the first layer that fixes it)
        var merge = Merge.concat
        var readout: RecurrentNetwork.Readout?
        var output = OutputMode.last
        var lastReturnsSequences = true
        var reading = FinalStateReading.finalStates
        var activation = "linear"
        // The weights file keys each layer by its class in snake case, numbered within the model
        // in layer order ('lstm', 'lstm_1', …; Keras's saving_lib), not by the layer's name.
        var used: [String: Int] = [:]
        // --core: layers outside the recurrent stack and the Dense layer that reads it, listed.
        var ignored: [String] = [], readoutNote: String?, readoutLabel = "", headCut = false
        func ignore(_ kind: String, _ name: String, _ key: String) {
            for path in weights.datasets(under: layout == .legacy ? "model_weights/\(name)" : "layers/\(key)") { read.paths.insert(path) }
            ignored.append("\(name) (\(kind))")
        }
        let coreHint = "; --core audits the recurrent stack alone (and the Dense layer that reads it), listing the rest as ignored"
        for layer in layers {
            let kind = layer["class_name"] as? String ?? "?"
            let outer = layer["config"] as? [String: Any] ?? [:]
            let layerName = outer["name"] as? String ?? "?"
            // TimeDistributed(Dense) is the Dense layer applied at every step, as a Dense layer on a
            // sequence is: read as one (its variables sit under the wrapper).
            let wrapped = (outer["layer"] as? [String: Any]).flatMap { kind == "TimeDistributed" ? $0 : nil }
            let c = wrapped?["config"] as? [String: Any] ?? outer
            let readsAsDense = kind == "Dense" || (kind == "TimeDistributed" && wrapped?["class_name"] as? String == "Dense")
            func refuse(_ problem: String) -> FormatError { fail("layer '\(layerName)' (\(kind)) \(problem)") }
            let stem = Self.snakeCase(kind)
            let key: String
            if let n = used[stem] { used[stem] = n + 1; key = "\(stem)_\(n + 1)" } else { used[stem] = 0; key = stem }
            if headCut { ignore(kind, layerName, key); continue }
            if readout != nil {
                if kind == "Dropout" { continue }
                guard hints.core else { throw refuse("follows the Dense readout; CellAudit reads one linear readout last" + coreHint) }
                // Another layer reads the Dense layer's outputs: they are not the model's.
                readoutNote = "the Dense layer \(readoutLabel) reads the last recurrent layer, but '\(layerName)' (\(kind)) reads its outputs (a deeper head, which --core leaves out), so the core has no readout"
                readout = nil; ignored.append(readoutLabel); headCut = true
                ignore(kind, layerName, key)
                continue
            }
            if hints.core, !["InputLayer", "Dropout", "SpatialDropout1D", "Embedding", "LSTM", "GRU", "SimpleRNN", "Bidirectional"].contains(kind) && !readsAsDense
                || (readsAsDense && (levels.isEmpty || !["linear", "softmax", "sigmoid"].contains(c["activation"] as? String ?? "linear"))) {
                ignore(kind, layerName, key)
                if levels.isEmpty {
                    width = nil   // a front end: the first recurrent layer reads what it makes
                } else {
                    readoutNote = "'\(layerName)' (\(kind)\(kind == "Dense" ? ", activation \(c["activation"] as? String ?? "?")" : "")) follows the recurrent stack as the first layer of a head CellAudit does not read, so the core has no readout"
                    headCut = true
                }
                continue
            }
            switch readsAsDense ? "Dense" : kind {
            case "InputLayer":
                continue
            case "Dropout", "SpatialDropout1D":
                continue   // inactive at inference
            case "Embedding":
                guard levels.isEmpty, embedding == nil else { throw refuse("comes after a recurrent layer; a token embedding must come first") }
                if c["mask_zero"] as? Bool == true {
                    throw refuse("has mask_zero=True, whose masking CellAudit does not represent; give the dataset 'lengths' instead and save the model without mask_zero")
                }
                let paths = layerVariables(key: key, name: layerName, className: kind)
                guard paths.count == 1 else { throw refuse("has \(paths.count) variables in the weights file, expected its embeddings alone") }
                let table = try variable(paths[0])
                guard table.shape.count == 2 else { throw refuse("has embeddings of shape \(table.shape)") }
                try ModelFile.checkFinite(table.values, "the embedding of '\(layerName)'", fail)
                embedding = try TokenEmbedding(vocabularySize: table.shape[0], width: table.shape[1], table: table.values, source: layerName)
                width = table.shape[1]
            case "LSTM", "GRU", "SimpleRNN":
                guard lastReturnsSequences else { throw refuse("reads a recurrent layer that returns its last step only (return_sequences=False)") }
                if c["go_backwards"] as? Bool == true {
                    throw refuse("has go_backwards=True outside Bidirectional: it would read the sequence backwards and return its output reversed, which CellAudit does not represent")
                }
                let layer = try recurrentLayer(kind: kind, config: c, paths: layerVariables(key: key, name: layerName, className: kind),
                                               input: width, merge: merge, direction: .forward, refuse)
                levels.append([layer])
                width = layer.hiddenSize
                merge = .concat
                lastReturnsSequences = c["return_sequences"] as? Bool ?? false
                reading = .lastStep
            case "Bidirectional":
                guard lastReturnsSequences else { throw refuse("reads a recurrent layer that returns its last step only (return_sequences=False)") }
                let mode = c["merge_mode"] as? String
                let nextMerge: Merge
                switch mode {
                case "concat": nextMerge = .concat
                case "sum": nextMerge = .sum
                case "ave": nextMerge = .ave
                default: throw refuse("has merge_mode \(mode.map { "'\($0)'" } ?? "None"), which is not linear in the directions; CellAudit reads concat, sum and ave")
                }
                guard let inner = c["layer"] as? [String: Any], let innerKind = inner["class_name"] as? String,
                      let innerConfig = inner["config"] as? [String: Any] else { throw refuse("has no wrapped layer") }
                let backward = c["backward_layer"] as? [String: Any]
                let backwardKind = backward?["class_name"] as? String ?? innerKind
                let backwardConfig = backward?["config"] as? [String: Any] ?? innerConfig
                guard ["LSTM", "GRU", "SimpleRNN"].contains(innerKind), backwardKind == innerKind else {
                    throw refuse("wraps \(innerKind)\(backwardKind == innerKind ? "" : " and \(backwardKind)"); CellAudit reads LSTM, GRU and SimpleRNN layers of one kind")
                }
                let paths = layerVariables(key: key, name: layerName, className: kind)
                guard paths.count % 2 == 0 else { throw refuse("has \(paths.count) variables in the weights file, not two directions' worth") }
                let forward = try recurrentLayer(kind: innerKind, config: innerConfig, paths: Array(paths[..<(paths.count / 2)]), input: width,
                                                 merge: merge, direction: .forward, refuse)
                let reverse = try recurrentLayer(kind: innerKind, config: backwardConfig, paths: Array(paths[(paths.count / 2)...]), input: width,
                                                 merge: merge, direction: .reverse, refuse)
                guard forward.hiddenSize == reverse.hiddenSize || nextMerge == .concat else {
                    throw refuse("merges directions of \(forward.hiddenSize) and \(reverse.hiddenSize) units by \(mode!)")
                }
                levels.append([forward, reverse])
                width = nextMerge == .concat ? forward.hiddenSize + reverse.hiddenSize : forward.hiddenSize
                merge = nextMerge
                lastReturnsSequences = innerConfig["return_sequences"] as? Bool ?? false
                reading = .finalStates
            case "Dense":
                guard !levels.isEmpty, let h = width else { throw refuse("comes before any recurrent layer; CellAudit reads a Dense readout after the recurrent stack" + coreHint) }
                activation = c["activation"] as? String ?? "linear"
                guard ["linear", "softmax", "sigmoid"].contains(activation) else {
                    throw refuse("has activation '\(activation)'; CellAudit reads a linear readout (softmax and sigmoid are read as their logits)" + coreHint)
                }
                let paths = layerVariables(key: key, name: layerName, className: kind)
                let useBias = c["use_bias"] as? Bool ?? true
                guard paths.count == (useBias ? 2 : 1) else { throw refuse("has \(paths.count) variables in the weights file, expected \(useBias ? "a kernel and a bias" : "a kernel")") }
                let kernel = try variable(paths[0])
                guard kernel.shape.count == 2, kernel.shape[0] == h else {
                    throw refuse("has a kernel of shape \(kernel.shape), which does not read the \(h) values before it")
                }
                let k = kernel.shape[1]
                var V = transpose(kernel.values, rows: h, cols: k)
                var a = [Float](repeating: 0, count: k)
                if useBias { a = try variable(paths[1], shape: [k]).values }
                try ModelFile.checkFinite(V, "the kernel of '\(layerName)'", fail)
                try ModelFile.checkFinite(a, "the bias of '\(layerName)'", fail)
                V = Self.spread(V, rows: k, cols: h, merge: merge)
                readout = RecurrentNetwork.Readout(V: V, a: a)
                readoutLabel = "'\(layerName)'"
                output = lastReturnsSequences ? .sequence : .last
            default:
                throw refuse("is not a layer CellAudit reads (InputLayer, Embedding, LSTM, GRU, SimpleRNN, Bidirectional, Dropout, Dense, TimeDistributed(Dense))" + coreHint)
            }
        }
        guard !levels.isEmpty else { throw fail("the model has no LSTM, GRU or SimpleRNN layer") }
        guard readout != nil || merge == .concat else {
            throw fail("the model ends in a Bidirectional layer that merges its directions without a readout after it, which CellAudit does not represent")
        }
        if var r = readout, levels.last!.count == 2 { r.reading = lastReturnsSequences ? .lastStep : reading; readout = r }
        // Every variable of the weights file belongs to the model.
        let unused = weights.datasets(under: layout == .legacy ? "model_weights" : "").filter { !read.paths.contains($0) }
        if !unused.isEmpty {
            throw fail("the weights file holds \(unused.prefix(6).map { "'\($0)'" }.joined(separator: ", "))\(unused.count > 6 ? " and \(unused.count - 6) more" : ""), which no layer CellAudit read uses; it will not audit a model with parts left out")
        }
        let kind = levels[0][0].kind
        guard levels.allSatisfy({ $0.allSatisfy { $0.kind == kind && $0.resetAfter == levels[0][0].resetAfter } }) else {
            throw fail("the model mixes recurrent layer kinds (\(Set(levels.flatMap { $0.map(\.kind.rawValue) }).sorted().joined(separator: ", "))); CellAudit reads stacks of one kind")
        }
        let task: ModelTask = hints.task ?? hints.fromData?.task ?? .classification
        var metadata = ["convention": "keras", "cell": kind.rawValue, "layers": "\(levels.count)", "inferred_from": "keras config"]
        if activation != "linear" { metadata["readout_activation"] = "\(activation) (CellAudit reads the logits before it)" }
        var model = LoadedModel(network: try RecurrentNetwork(levels: levels, readout: readout), convention: .keras, output: output,
                                task: task, metadata: metadata, path: path)
        model.embedding = embedding
        if hints.core {
            model.ignored = ignored
            model.readoutNote = readout == nil ? readoutNote ?? "no Dense layer reads the last recurrent layer, so the core has no readout" : nil
            model.metadata["core"] = "true"
        }
        return model
    }

    /// Keras's `naming.to_snake_case` of a class name ("SimpleRNN" → "simple_rnn", "Conv1D" →
    /// "conv1d"), which keys a layer in a `.keras` weights file: non-word characters dropped, "_"
    /// before a capital that starts a lowercase run, and between a lowercase letter and a capital.
    static func snakeCase(_ name: String) -> String {
        var s = name.filter { $0.isLetter || $0.isNumber || $0 == "_" }
        func sub(_ pattern: String, _ template: String) {
            let regex = try! NSRegularExpression(pattern: pattern)
            s = regex.stringByReplacingMatches(in: s, range: NSRange(s.startIndex..., in: s), withTemplate: template)
        }
        sub("(.)([A-Z][a-z]+)", "$1_$2")
        sub("([a-z])([A-Z])", "$1_$2")
        return s.lowercased()
    }

    /// Functional models: the layers must form one chain, each reading the one before it.
    func checkChain(_ layers: [[String: Any]], _ body: [String: Any]) throws {
        var previous: String?
        for layer in layers {
            let c = layer["config"] as? [String: Any] ?? [:]
            let name = c["name"] as? String ?? "?"
            // Keras 3: [{"args": [{"config": {"keras_history": [name, 0, 0]}}]}]; Keras 2: [[[name, 0, 0, {}]]].
            let nodes = layer["inbound_nodes"] as? [Any] ?? []
            let sources = nodes.flatMap { node -> [String] in
                if let node = node as? [String: Any] {
                    return (node["args"] as? [Any] ?? []).compactMap { arg in
                        ((arg as? [String: Any])?["config"] as? [String: Any])?["keras_history"].flatMap { ($0 as? [Any])?.first as? String }
                    }
                }
                return (node as? [Any] ?? []).compactMap { ($0 as? [Any])?.first as? String }
            }
            if let previous {
                guard sources == [previous] else {
                    throw fail("layer '\(name)' reads \(sources.isEmpty ? "nothing" : sources.map { "'\($0)'" }.joined(separator: ", ")), not the layer before it ('\(previous)'): CellAudit reads functional models whose layers form one chain")
                }
            }
            previous = name
        }
        let outputs = (body["output_layers"] as? [Any]).map { ($0.first as? [Any])?.first as? String ?? $0.first as? String }
        if let last = previous, let out = outputs ?? nil, out != last {
            throw fail("the model's output is '\(out)', not its last layer '\(last)'")
        }
    }

    /// A dataset of the weights file, recorded as read.
    func variable(_ path: String, shape: [Int]? = nil) throws -> (shape: [Int], values: [Float]) {
        let v = try weights.floats(path)
        if let shape, v.shape != shape { throw fail("'\(path)' has shape \(v.shape), expected \(shape)") }
        read.paths.insert(path)
        return v
    }

    /// One recurrent layer from its Keras config and the variables under `group/cell/vars`.
    func recurrentLayer(kind className: String, config c: [String: Any], paths: [String], input: Int?, merge: Merge,
                                 direction: TimeDirection, _ refuse: (String) -> FormatError) throws -> RecurrentLayer {
        let units = c["units"] as? Int ?? 0
        guard units >= 1, NetworkLimits.problem(width: units, "units") == nil else { throw refuse("has \(units) units") }
        if c["stateful"] as? Bool == true { throw refuse("is stateful (its state carries over between batches), which CellAudit does not represent") }
        if c["return_state"] as? Bool == true { throw refuse("returns its state as a second output, which CellAudit does not represent") }
        if c["time_major"] as? Bool == true { throw refuse("is time-major, which CellAudit does not read") }
        let activation = c["activation"] as? String ?? "tanh"
        let kind: CellKind
        switch className {
        case "LSTM": kind = .lstm
        case "GRU": kind = .gru
        default:
            guard activation == "tanh" || activation == "relu" else { throw refuse("has activation '\(activation)'; a SimpleRNN is read with tanh or relu") }
            kind = activation == "relu" ? .rnnReLU : .rnnTanh
        }
        if kind == .lstm || kind == .gru {
            guard activation == "tanh" else { throw refuse("has activation '\(activation)'; CellAudit reads tanh") }
            let recurrent = c["recurrent_activation"] as? String ?? "sigmoid"
            guard recurrent == "sigmoid" else { throw refuse("has recurrent_activation '\(recurrent)'; CellAudit reads sigmoid") }
        }
        let resetAfter = kind == .gru ? (c["reset_after"] as? Bool ?? true) : true
        let useBias = c["use_bias"] as? Bool ?? true
        guard paths.count == (useBias ? 3 : 2) else {
            throw refuse("has \(paths.count) variables in the weights file, expected a kernel, a recurrent kernel\(useBias ? " and a bias" : "")")
        }
        let kernel = try variable(paths[0])
        guard kernel.shape.count == 2 else { throw refuse("has a kernel of shape \(kernel.shape)") }
        let rows = kind.gateCount * units
        let inputWidth = kernel.shape[0]
        let expectedInput = input.map { merge == .concat ? $0 : 2 * $0 }
        if let input, inputWidth != input { throw refuse("has a kernel of shape \(kernel.shape), which does not read the \(input) values before it") }
        let recurrent = try variable(paths[1], shape: [units, rows])
        guard kernel.shape[1] == rows else { throw refuse("has a kernel of shape \(kernel.shape), expected [\(inputWidth), \(rows)]") }
        let biasShape = kind == .gru && resetAfter ? [2, rows] : [rows]
        let bias = useBias ? try variable(paths[2], shape: biasShape).values
            : [Float](repeating: 0, count: biasShape.reduce(1, *))
        // The Keras layout to the canonical one, through the same conversion as CellAudit's
        // Keras-convention model files.
        var writer = SafeTensorsWriter()
        try writer.add("k0.kernel", floats: kernel.values, shape: kernel.shape)
        try writer.add("k0.recurrent_kernel", floats: recurrent.values, shape: recurrent.shape)
        try writer.add("k0.bias", floats: bias, shape: biasShape)
        let file = try SafeTensorsFile(data: try writer.serialized(), path: fileName)
        let w = try ModelFile.canonicalWeights(file, kind: kind, convention: .keras, prefix: "k", layer: 0, input: inputWidth, hidden: units,
                                               resetAfter: resetAfter)
        for values in [w.W, w.R, w.b, w.bhn ?? []] { try ModelFile.checkFinite(values, "the weights of \(paths[0])", fail) }
        var W = w.W
        if let expectedInput, expectedInput != inputWidth { W = Self.spread(W, rows: rows, cols: inputWidth, merge: merge) }
        var layer = try RecurrentLayer(kind: kind, inputSize: expectedInput ?? inputWidth, hiddenSize: units, W: W, R: w.R, b: w.b,
                                       hiddenBiasN: w.bhn, resetAfter: resetAfter)
        layer.direction = direction
        return layer
    }

    /// A map [rows × cols] that read a merged (summed or averaged) bidirectional output, as the map
    /// [rows × 2·cols] reading both directions side by side: its columns once per direction,
    /// halved for the average. Concat: unchanged.
    static func spread(_ m: [Float], rows: Int, cols: Int, merge: Merge) -> [Float] {
        guard merge != .concat else { return m }
        let scale: Float = merge == .ave ? 0.5 : 1
        var out = [Float](repeating: 0, count: rows * 2 * cols)
        for r in 0..<rows {
            for j in 0..<cols {
                out[r * 2 * cols + j] = m[r * cols + j] * scale
                out[r * 2 * cols + cols + j] = m[r * cols + j] * scale
            }
        }
        return out
    }
}
