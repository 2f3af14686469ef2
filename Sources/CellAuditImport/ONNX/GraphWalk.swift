import CellAuditCore
import Foundation

/// The recurrent op types and their CellAudit names.
private let recurrentOps: Set<String> = ["LSTM", "GRU", "RNN"]
/// Ops that move data without computing on it, followed on the data path with their axes.
private let layoutOps: Set<String> = ["Transpose", "Squeeze", "Unsqueeze", "Identity", "Cast", "Reshape", "Flatten", "Gather", "Slice"]

extension GraphReader {
    /// Walks the graph and returns the weights in ONNX's layouts (tensor names and metadata of the
    /// onnx convention of CellAudit model files).
    mutating func read(task: ModelTask?) throws -> (tensors: [String: FloatTensor], metadata: [String: String]) {
        for (i, node) in graph.node.enumerated() where !node.domain.isEmpty && node.domain != "ai.onnx" {
            throw fail("\(label(i)) is from the operator domain '\(node.domain)'; CellAudit reads standard ONNX ops")
        }
        let recurrent = graph.node.indices.filter { recurrentOps.contains(graph.node[$0].opType) }
        guard !recurrent.isEmpty else {
            // A recurrence unrolled over a fixed number of steps: one weight matrix multiplied in
            // step after step, through an activation (torch.onnx.export with dynamo=True writes
            // nn.RNN so).
            var uses: [String: Int] = [:]
            for node in graph.node where node.opType == "MatMul" && node.input.count > 1 { uses[node.input[1], default: 0] += 1 }
            let activations = graph.node.filter { ["Tanh", "Relu", "Sigmoid"].contains($0.opType) }.count
            if let repeated = uses.first(where: { $0.value > 1 }), activations > 1 {
                throw fail("the graph has no LSTM, GRU or RNN node: it multiplies '\(repeated.key)' in \(repeated.value) times through \(activations) activations, a recurrence unrolled over a fixed number of steps that is not one RNN layer step for step (every step the same weights, consecutive slices, a zero start); CellAudit reads LSTM, GRU and RNN nodes and such unrolled RNNs: export with dynamo=False, or save the state dict")
            }
            throw fail("the graph has no LSTM, GRU or RNN node")
        }
        // The graph's inputs that carry data (a sequence_lens input stands for the dataset's lengths).
        let lengthsNames = Set(recurrent.compactMap { r in graph.node[r].input.count > 4 && !graph.node[r].input[4].isEmpty ? lengthsSource(graph.node[r].input[4])?.input : nil })
        let dataInputs = graph.input.filter { initializers[$0.name] == nil && consumers[$0.name] != nil && (core || !lengthsNames.contains($0.name)) }
        // A graph input that feeds a recurrent node's weights (W, R, B or P) makes them a run-time
        // value: no reading of the graph (with or without --core) has them.
        for r in recurrent {
            let node = graph.node[r]
            for (k, name) in [(1, "W"), (2, "R"), (3, "B"), (7, "P")] where node.input.count > k && !node.input[k].isEmpty {
                if let input = graph.input.first(where: { $0.name == node.input[k] && initializers[$0.name] == nil }) {
                    throw fail("graph input '\(input.name)' feeds \(label(r))'s input '\(name)'; CellAudit reads recurrent weights that are constants of the graph")
                }
            }
        }
        let start0: (tensor: String, axes: [Axis])
        if core {
            start0 = try coreStart(recurrent)
        } else {
            guard dataInputs.count == 1 else {
                throw fail(dataInputs.isEmpty ? "the graph has no input that reaches a node"
                           : "the graph has \(dataInputs.count) inputs (\(dataInputs.map { "'\($0.name)'" }.joined(separator: ", "))); CellAudit reads one sequence input" + coreHint)
            }
            let input = dataInputs[0]
            if let start = try embeddingStart(input) {
                start0 = start
            } else {
                guard input.type.tensorType.shape.dim.count == 3 else {
                    let rank = input.type.tensorType.shape.dim.count
                    throw fail("input '\(input.name)' has \(rank == 0 ? "no declared" : "\(rank)-dimensional") shape; CellAudit reads [batch, time, features] or [time, batch, features]" + coreHint)
                }
                start0 = (input.name, inputAxes(input))
            }
        }

        // From the input to the first recurrent node, and from each to the next.
        var layers: [(node: Int, kind: CellKind, hidden: Int, inputs: Int, directions: Int)] = []
        var start = start0
        var readoutInput: (node: Int, axes: [Axis], last: Bool)?
        // Whether the readout reads a last state Y_h (each layer's state after its last processing
        // step) rather than Y at the last time step: different for a reverse layer.
        var readsLastState = false
        // The sizes of the time and batch axes, taken from the input axes the first node reads as
        // such (a known number, or the input's own symbol), and carried through every layer.
        var timeSize = AxisSize.symbol("?time"), batchSize = AxisSize.symbol("?batch")
        // Under --core: the first node that computes on the stack's output (a head left out).
        var head: Int?
        while true {
            let reached = try walk(from: start.tensor, axes: start.axes, last: false, before: layers.isEmpty)
            if let next = reached.recurrent {
                guard layers.count < recurrent.count, !layers.contains(where: { $0.node == next.node }) else { throw fail("\(label(next.node)) is reached twice") }
                let layer = try checkRecurrent(next.node, inputAxes: next.axes, first: layers.isEmpty,
                                               previousWidth: layers.last.map { $0.hidden * $0.directions })
                if layers.isEmpty {
                    let major = int(graph.node[next.node], "layout") ?? 0 == 1
                    timeSize = next.axes[major ? 1 : 0].size
                    batchSize = next.axes[major ? 0 : 1].size
                }
                if let first = layers.first {
                    let a = graph.node[first.node], b = graph.node[next.node]
                    guard a.opType == b.opType, layer.kind == first.kind else {
                        throw fail("\(label(next.node)) is a \(layer.kind.rawValue) after a \(first.kind.rawValue); CellAudit reads stacks of one cell kind")
                    }
                    guard int(a, "linear_before_reset") ?? 0 == int(b, "linear_before_reset") ?? 0 else {
                        throw fail("\(label(next.node)) sets linear_before_reset differently from the layer below; CellAudit reads stacks of one GRU cell")
                    }
                }
                layers.append((next.node, layer.kind, layer.hidden, layer.inputs, layer.directions))
                explained.insert(next.node)
                // The next walk starts at Y; Y_h (the last step) may feed the readout, Y_c may not.
                let node = graph.node[next.node]
                let batchMajor = int(node, "layout") ?? 0 == 1
                let H = layer.hidden
                // Y's and Y_h's direction axis: size 1 for a forward or reverse node, 2 (forward,
                // then reverse) for a bidirectional one.
                let d = layer.directions == 2 ? Axis(role: .direction, size: .known(2)) : Axis(role: .unit, size: .known(1))
                let yAxes = batchMajor ? [Axis(role: .batch, size: batchSize), Axis(role: .time, size: timeSize), d, Axis(role: .feature, size: .known(H))]
                    : [Axis(role: .time, size: timeSize), d, Axis(role: .batch, size: batchSize), Axis(role: .feature, size: .known(H))]
                if node.output.count > 2, !node.output[2].isEmpty, consumers[node.output[2]] != nil || graph.output.contains(where: { $0.name == node.output[2] }) {
                    guard core else { throw fail("\(label(next.node))'s memory output Y_c is used by the graph; CellAudit's readout reads h" + coreHint) }
                    ignored.append("output Y_c '\(node.output[2])' of \(label(next.node)) (the memory, read by nodes --core leaves out or returned by the graph)")
                }
                if node.output.count > 1, !node.output[1].isEmpty, consumers[node.output[1]] != nil {
                    let hAxes = batchMajor ? [Axis(role: .batch, size: batchSize), d, Axis(role: .feature, size: .known(H))]
                        : [d, Axis(role: .batch, size: batchSize), Axis(role: .feature, size: .known(H))]
                    let fromLast = try walk(from: node.output[1], axes: hAxes, last: true, before: false)
                    if let r = fromLast.recurrent { throw fail("\(label(r.node)) reads \(label(next.node))'s last state Y_h; CellAudit stacks layers on the whole sequence Y") }
                    if let r = fromLast.readout { readoutInput = r; readsLastState = true }
                    if let h = fromLast.head { head = head ?? h }
                }
                guard !node.output.isEmpty, !node.output[0].isEmpty else { break }
                start = (node.output[0], yAxes)
                if consumers[node.output[0]] == nil { break }
                if readoutInput != nil {
                    // Y_h fed the readout: nothing but layout branches may follow from Y.
                    let rest = try walk(from: node.output[0], axes: yAxes, last: false, before: false)
                    if let r = rest.recurrent ?? rest.readout.map({ ($0.node, $0.axes) }) {
                        throw fail("\(label(r.0)) follows a layer whose last state already feeds the readout; CellAudit reads the readout on the top layer only")
                    }
                    break
                }
                continue
            }
            if let h = reached.head { head = head ?? h }
            if let r = reached.readout {
                guard readoutInput == nil else { throw fail("\(label(r.node)) is a second linear map besides the readout; CellAudit reads one readout and will not leave another out") }
                readoutInput = r
            }
            break
        }
        if let missed = recurrent.first(where: { r in !layers.contains { $0.node == r } }) {
            throw fail("\(label(missed)) is not on the path from the input through the recurrent stack; CellAudit reads one stack")
        }
        // The readout, if any, and nothing after it but layout ops to the graph's outputs.
        var tensors: [String: FloatTensor] = [:]
        let kind = layers[0].kind
        let prefix = kind == .lstm ? "lstm_" : kind == .gru ? "gru_" : "rnn_"
        var metadata: [String: String] = [
            "convention": "onnx", "cell": kind.rawValue, "layers": "\(layers.count)", "input_size": "\(layers[0].inputs)",
            "hidden_sizes": layers.map { "\($0.hidden)" }.joined(separator: ","), "prefix": prefix,
            "task": (task ?? .classification).rawValue, "source": "onnx graph, read natively",
        ]
        if kind == .gru { metadata["linear_before_reset"] = "\(int(graph.node[layers[0].node], "linear_before_reset") ?? 0)" }
        if !sequenceLengths.isEmpty {
            // Every layer must stop at the same step: the first layer's padding would otherwise feed a later one.
            let lengths = Set(layers.map { sequenceLengths[$0.node] })
            guard lengths.count == 1, let length = lengths.first! else {
                throw fail("the recurrent nodes take different sequence_lens (\(layers.map { sequenceLengths[$0.node].map(String.init) ?? "none" }.joined(separator: ", "))); CellAudit reads one length for the whole stack")
            }
            metadata["sequence_length"] = "\(length)"
        }
        let directions = layers.map { strings(graph.node[$0.node], "direction")?.first ?? "forward" }
        if directions.contains(where: { $0 != "forward" }) {
            metadata["directions"] = directions.joined(separator: ",")
            metadata["reading"] = readsLastState ? "final-states" : "last-step"
        }
        for (k, layer) in layers.enumerated() {
            let node = graph.node[layer.node]
            let G = kind.gateCount, H = layer.hidden, D = layer.directions
            let W = try weight(node.input[1], layer.node, "W", shape: [D, G * H, layer.inputs])
            let R = try weight(node.input[2], layer.node, "R", shape: [D, G * H, H])
            let B = node.input.count > 3 && !node.input[3].isEmpty
                ? try weight(node.input[3], layer.node, "B", shape: [D, 2 * G * H])
                : FloatTensor(shape: [D, 2 * G * H], values: [Float](repeating: 0, count: D * 2 * G * H))
            // Peepholes P [D, 3·H] (i, o, f), LSTM only; an all-zero P is the plain cell.
            var P: FloatTensor?
            if kind == .lstm, node.input.count > 7, !node.input[7].isEmpty, try !isZero(node.input[7]) {
                P = try weight(node.input[7], layer.node, "P", shape: [D, 3 * H])
            }
            // A bidirectional node's weights hold the forward direction, then the reverse one.
            for (direction, suffix) in zip(0..<D, ["", "_reverse"]) {
                for (name, t) in [("W", W), ("R", R), ("B", B)] + (P.map { [("P", $0)] } ?? []) {
                    let n = t.values.count / D
                    tensors["\(prefix)\(k).\(name)\(suffix)"] = FloatTensor(shape: [1] + t.shape.dropFirst(), values: Array(t.values[(direction * n)..<((direction + 1) * n)]))
                }
            }
        }
        if let lengths = lengthsInput, let r = readoutInput, r.last, !readsLastState {
            // ONNX zeroes Y past each sequence's length, so Y at the last step is not a sequence's
            // own last output; Y_h (each direction's state at its last real step) is.
            throw fail("\(label(r.node)) reads Y at the last step of nodes whose 'sequence_lens' come from graph input '\(lengths)'; ONNX zeroes Y past each sequence's length, so that is not the sequence's own output; CellAudit reads a readout of Y_h (the final states) with per-sequence lengths")
        }
        if let h = head {
            // A head computes on the stack's output: whatever linear map the walk met is not the
            // model's output, so the core has none.
            readoutNote = "\(label(h)) computes on the top recurrent node's output (a head --core leaves out), so the core has no readout"
            if let r = readoutInput { readoutNote! += "; the linear map \(label(r.node)) is left out with it" }
            readoutInput = nil
        }
        if let readout = readoutInput, let read = try coreReadout(readout, hidden: layers.last!.hidden * layers.last!.directions) {
            let (V, a, last) = read
            tensors["readout.weight"] = V
            metadata["readout_weight"] = "readout.weight"
            if let a { tensors["readout.bias"] = a; metadata["readout_bias"] = "readout.bias" }
            metadata["output"] = last ? "last" : "sequence"
        } else {
            metadata["output"] = "last"
        }
        if core {
            // Everything the walk did not account for is left out and listed (constants apart).
            for i in graph.node.indices where !explained.contains(i) && graph.node[i].opType != "Constant" {
                ignored.append(label(i))
            }
            let used = Set(graph.node.indices.filter { explained.contains($0) }.flatMap { graph.node[$0].input })
            for input in dataInputs where !used.contains(input.name) || stateInputs.contains(input.name) {
                ignored.append("graph input '\(input.name)'" + (stateInputs.contains(input.name) ? " (an initial state: the core starts from the zero state)" : ""))
            }
            return (tensors, metadata)
        }
        // Every MatMul or Gemm is the readout; every node is accounted for.
        if let other = graph.node.indices.first(where: { ["MatMul", "Gemm"].contains(graph.node[$0].opType) && !explained.contains($0) }) {
            throw fail("\(label(other)) is a second linear map besides the readout of the recurrent output; CellAudit reads one readout and will not leave another out")
        }
        for i in graph.node.indices where !explained.contains(i) && !isDead(i) {
            throw fail("\(label(i)) is not part of the input path, the recurrent stack or the readout that CellAudit reads; CellAudit will not leave it out" + coreHint)
        }
        return (tensors, metadata)
    }

    /// A node none of whose outputs is used or is a graph output.
    func isDead(_ i: Int) -> Bool {
        graph.node[i].output.allSatisfy { o in o.isEmpty || (consumers[o] == nil && !graph.output.contains { $0.name == o }) }
    }

    struct Reached {
        var recurrent: (node: Int, axes: [Axis])?
        var readout: (node: Int, axes: [Axis], last: Bool)?
        /// Under --core: the first node that computes on the data (a head).
        var head: Int?
    }

    /// A token embedding before the first recurrent node: the graph's input holds integer ids
    /// [N, T] and is read only by Shape ops and one Gather (axis 0) of rows of a constant [V, E]
    /// table. Returns the Gather's output as the walk's start ([N, T, E], the input's axes), and
    /// keeps the table in `embedding`; nil for an input that is not integer ids.
    mutating func embeddingStart(_ input: Onnx_ValueInfoProto) throws -> (tensor: String, axes: [Axis])? {
        guard [6, 7].contains(input.type.tensorType.elemType) else { return nil }
        let readers = (consumers[input.name] ?? []).filter { graph.node[$0].opType != "Shape" }
        guard readers.count == 1, graph.node[readers[0]].opType == "Gather", graph.node[readers[0]].input.count == 2,
              graph.node[readers[0]].input[1] == input.name, int(graph.node[readers[0]], "axis") ?? 0 == 0,
              let t = try constant(graph.node[readers[0]].input[0]) else {
            throw fail("input '\(input.name)' holds integers but is not read by one Gather of rows of a constant table (a token embedding); CellAudit reads float sequences or token ids")
        }
        let g = readers[0]
        let table = try floats(t, "\(label(g)) table")
        guard table.shape.count == 2 else { throw fail("\(label(g)) gathers from a table of shape \(table.shape); a token embedding is [V, E]") }
        for problem in [NetworkLimits.problem(width: table.shape[1], "the embedding width")].compactMap({ $0 }) { throw fail("\(label(g)): \(problem)") }
        do {
            embedding = try TokenEmbedding(vocabularySize: table.shape[0], width: table.shape[1], table: table.values,
                                           source: graph.node[g].input[0])
        } catch { throw fail("\(label(g)): \(error)") }
        let rank = input.type.tensorType.shape.dim.count
        guard rank == 2 else {
            throw fail("input '\(input.name)' (token ids) has \(rank == 0 ? "no declared" : "\(rank)-dimensional") shape; CellAudit reads ids [batch, time] or [time, batch]")
        }
        for k in (consumers[input.name] ?? []) where graph.node[k].opType == "Shape" { explained.insert(k) }
        explained.insert(g)
        return (graph.node[g].output[0], inputAxes(input) + [Axis(role: .input(2), size: .known(table.shape[1]))])
    }

    /// A graph input's axes, by position, with the sizes its declared shape gives (a number, or
    /// its named dimension).
    func inputAxes(_ input: Onnx_ValueInfoProto) -> [Axis] {
        input.type.tensorType.shape.dim.enumerated().map { k, d in
            Axis(role: .input(k), size: d.dimValue > 0 ? .known(Int(d.dimValue)) : .symbol(d.dimParam.isEmpty ? "\(input.name)[\(k)]" : d.dimParam))
        }
    }

    /// The graph input that a `sequence_lens` comes from, directly or through Cast and Identity
    /// ops (an int64 `lengths` input cast to int32, as exporters write it), and those ops. Nil for
    /// a constant or anything computed. (The graph is in topological order, so the chain ends.)
    func lengthsSource(_ name: String) -> (input: String, path: [Int])? {
        var current = name, path: [Int] = []
        while true {
            if initializers[current] == nil, producer[current] == nil, graph.input.contains(where: { $0.name == current }) { return (current, path) }
            guard let p = producer[current], ["Cast", "Identity"].contains(graph.node[p].opType), let next = graph.node[p].input.first else { return nil }
            path.append(p); current = next
        }
    }

    /// The end of a refusal that --core would settle: a graph with more than the recurrent stack.
    var coreHint: String { core ? "" : StateDict.coreHint }

    /// Under --core: the bottom recurrent node (the one whose X no other recurrent node computes
    /// through layout ops) and the axes of its X, as if X were the network input: [time, batch,
    /// features] (layout 0) or [batch, time, features] (layout 1), features from W.
    mutating func coreStart(_ recurrent: [Int]) throws -> (tensor: String, axes: [Axis]) {
        func fedByRecurrent(_ r: Int) -> Bool {
            var name = graph.node[r].input.first ?? ""
            var seen = Set<String>()
            while seen.insert(name).inserted, let p = producer[name] {
                if recurrentOps.contains(graph.node[p].opType) { return true }
                guard layoutOps.contains(graph.node[p].opType), let first = graph.node[p].input.first else { return false }
                name = first
            }
            return false
        }
        let bottoms = recurrent.filter { !fedByRecurrent($0) }
        guard bottoms.count == 1, let bottom = bottoms.first else {
            throw fail("the graph has \(bottoms.count) recurrent nodes that no other one feeds (\(bottoms.map(label).joined(separator: ", "))); --core reads one stack")
        }
        let node = graph.node[bottom]
        guard node.input.count > 2, !node.input[0].isEmpty, let W = try constant(node.input[1]), W.dims.count == 3 else {
            throw fail("\(label(bottom)) has no constant input 'W' of shape [directions, G·H, I]")
        }
        let time = Axis(role: .input(1), size: .symbol("time")), batch = Axis(role: .input(0), size: .symbol("batch"))
        let features = Axis(role: .input(2), size: .known(Int(W.dims[2])))
        return (node.input[0], int(node, "layout") ?? 0 == 1 ? [batch, time, features] : [time, batch, features])
    }

    /// The readout's weights; under --core nil, with a note, when a head follows the linear map
    /// (its outputs are then not the model's).
    mutating func coreReadout(_ r: (node: Int, axes: [Axis], last: Bool), hidden: Int) throws -> (FloatTensor, FloatTensor?, Bool)? {
        guard core else { return try readoutWeights(r, hidden: hidden) }
        let before = explained
        do { return try readoutWeights(r, hidden: hidden) } catch let error as FormatError {
            explained = before
            explained.remove(r.node)
            readoutNote = "the linear map \(label(r.node)) reads the top recurrent node's output, but \(error.problem), so the core has no readout"
            return nil
        }
    }

    /// Graph inputs that a recurrent node takes as its initial state (under --core only).
    var stateInputs: Set<String> {
        Set(graph.node.filter { recurrentOps.contains($0.opType) }.flatMap { n in [5, 6].compactMap { n.input.count > $0 && !n.input[$0].isEmpty ? n.input[$0] : nil } }
            .filter { name in graph.input.contains { $0.name == name } })
    }

    /// Follows data from `tensor` (with `axes`) through layout ops. Returns the recurrent node or
    /// the linear map it reaches; side branches may end in graph outputs or Shape ops. `before`:
    /// this is the path from the network input (no step selection allowed).
    mutating func walk(from tensor: String, axes: [Axis], last: Bool, before: Bool) throws -> Reached {
        var result = Reached()
        knownAxes[tensor] = axes
        var frontier = [(tensor, axes, last)]
        while let (name, axes, last) = frontier.popLast() {
            for c in consumers[name] ?? [] {
                let node = graph.node[c]
                if node.opType == "Shape" { explained.insert(c); continue }
                // Under --core the bottom node's X may feed the front end's other nodes: left out.
                if core && before && !recurrentOps.contains(node.opType) { continue }
                if recurrentOps.contains(node.opType) {
                    guard node.input.first == name else {
                        throw fail("\(label(c)) reads the data as its \(inputName(node.input.firstIndex(of: name) ?? 0)); CellAudit reads recurrent nodes driven by the sequence alone")
                    }
                    guard !last else { throw fail("\(label(c)) runs on a single step; CellAudit reads stacks on the whole sequence") }
                    guard result.recurrent == nil && result.readout == nil else { throw fail("\(label(c)) is a second branch of the network; CellAudit reads one stack") }
                    result.recurrent = (c, axes)
                    continue
                }
                if node.opType == "MatMul" || node.opType == "Gemm" {
                    guard !before else {
                        throw fail("\(label(c)) comes before the first recurrent node; CellAudit reads networks whose input goes straight into the recurrent layer" + coreHint)
                    }
                    guard result.readout == nil && result.recurrent == nil else {
                        throw fail("\(label(c)) is a second linear map besides the readout; CellAudit reads one readout and will not leave another out")
                    }
                    result.readout = (c, axes, last)
                    explained.insert(c)
                    continue
                }
                guard layoutOps.contains(node.opType) else {
                    if core && !before { result.head = result.head ?? c; continue }
                    throw fail((before ? "\(label(c)) comes before the first recurrent node; CellAudit reads networks whose input goes straight into the recurrent layer"
                                : "\(label(c)) computes on the recurrent output; CellAudit reads a stack of recurrent layers and one linear readout") + coreHint)
                }
                guard node.input.first == name else { throw fail("\(label(c)) uses the data as a shape or index; CellAudit cannot follow it") }
                let (outAxes, outLast) = try apply(c, axes, last: last, before: before)
                explained.insert(c)
                for o in node.output where !o.isEmpty { knownAxes[o] = outAxes; frontier.append((o, outAxes, outLast)) }
            }
        }
        return result
    }

    func inputName(_ k: Int) -> String {
        let names = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"]
        return k < names.count ? "input \(names[k])" : "input \(k)"
    }

    /// The axes after layout op `c`, and whether a single (last) step has been selected.
    mutating func apply(_ c: Int, _ axes: [Axis], last: Bool, before: Bool) throws -> ([Axis], Bool) {
        let node = graph.node[c]
        let rank = axes.count
        func normalise(_ a: Int, _ r: Int) throws -> Int { try normaliseAxis(a, r, c) }
        func axesList() throws -> [Int]? {
            if node.input.count > 1, !node.input[1].isEmpty {
                guard let v = try constantIntegers(node.input[1], "\(label(c)) axes") else { throw fail("\(label(c)) takes computed axes; CellAudit cannot follow them") }
                return v
            }
            return attribute(node, "axes").map { $0.ints.map(Int.init) }
        }
        switch node.opType {
        case "Identity":
            return (axes, last)
        case "Cast":
            guard let to = int(node, "to"), [1, 11].contains(to) else {
                throw fail("\(label(c)) casts the data to ONNX type \(int(node, "to") ?? -1); CellAudit follows casts to float and double only (a narrower type rounds the data)")
            }
            return (axes, last)
        case "Transpose":
            let perm = attribute(node, "perm").map { $0.ints.map(Int.init) } ?? Array((0..<rank).reversed())
            guard perm.sorted() == Array(0..<rank) else { throw fail("\(label(c)) has perm \(perm) for a \(rank)-dimensional tensor") }
            return (perm.map { axes[$0] }, last)
        case "Squeeze":
            let list = try axesList()
            let drop = try list.map { try Set($0.map { try normalise($0, rank) }) } ?? Set(axes.indices.filter { axes[$0].size.isOne })
            for a in drop where !axes[a].size.isOne { throw fail("\(label(c)) squeezes axis \(a), which is not of size 1") }
            return (axes.indices.filter { !drop.contains($0) }.map { axes[$0] }, last)
        case "Unsqueeze":
            guard let list = try axesList() else { throw fail("\(label(c)) has no axes") }
            let outRank = rank + list.count
            let insert = try Set(list.map { try normalise($0, outRank) })
            var out: [Axis] = [], it = axes.makeIterator()
            for k in 0..<outRank { out.append(insert.contains(k) ? Axis(role: .unit, size: .known(1)) : it.next()!) }
            return (out, last)
        case "Reshape":
            guard node.input.count > 1, let target = try shapeValue(node.input[1]) else {
                throw fail("\(label(c)) reshapes to a shape computed in a way CellAudit cannot follow")
            }
            let allowZero = int(node, "allowzero") ?? 0 == 1
            let resolved: [AxisSize?] = try target.enumerated().map { k, s in
                if s == .known(0) && !allowZero {
                    guard k < rank else { throw fail("\(label(c)) copies axis \(k) of a \(rank)-dimensional tensor") }
                    return axes[k].size
                }
                return s == .known(-1) ? nil : s
            }
            return (try neutralReshape(c, axes, resolved), last)
        case "Flatten":
            let a = try normalise(int(node, "axis") ?? 1, rank + 1)
            var out: [Axis] = []
            for group in [Array(axes[..<a]), Array(axes[a...])] {
                var big = group.filter { !$0.size.isOne }
                // Both directions of a bidirectional node's output, forward first: their concatenation.
                if big.count == 2, big[0].role == .direction, big[1].role == .feature, case .known(let H) = big[1].size {
                    big = [Axis(role: .feature, size: .known(2 * H))]
                }
                guard big.count <= 1 else { throw fail("\(label(c)) merges axes of the data (time, batch or features); CellAudit cannot follow it") }
                out.append(big.first ?? Axis(role: .unit, size: .known(1)))
            }
            return (out, last)
        case "Gather", "Slice":
            guard !before else { throw fail("\(label(c)) selects part of the input before the recurrent node; CellAudit reads whole sequences") }
            return try select(c, axes, last: last, rank: rank)
        default:
            throw fail("\(label(c)) is not a layout op")
        }
    }

    /// Gather or Slice: a step selection on the time axis (the last step only), or a no-op on a
    /// unit axis.
    func normaliseAxis(_ a: Int, _ r: Int, _ c: Int) throws -> Int {
        let v = a < 0 ? a + r : a
        guard (0..<r).contains(v) else { throw fail("\(label(c)) names axis \(a) of a \(r)-dimensional tensor") }
        return v
    }

    mutating func select(_ c: Int, _ axes: [Axis], last: Bool, rank: Int) throws -> ([Axis], Bool) {
        let node = graph.node[c]
        func normalise(_ a: Int, _ r: Int) throws -> Int { try normaliseAxis(a, r, c) }
        if node.opType == "Gather" {
            let axis = try normalise(int(node, "axis") ?? 0, rank)
            guard node.input.count > 1, let t = try constant(node.input[1]) else { throw fail("\(label(c)) gathers computed indices; CellAudit cannot follow them") }
            let indices = try integers(t, "\(label(c)) indices")
            guard indices.count == 1 else { throw fail("\(label(c)) gathers \(indices.count) entries; CellAudit reads the last step or every step") }
            let scalar = t.dims.isEmpty
            var out = axes
            switch axes[axis].role {
            case .time:
                guard indices[0] == -1 || (indices[0] >= 0 && axes[axis].size == .known(indices[0] &+ 1)) else {
                    throw fail("\(label(c)) reads step \(indices[0]); CellAudit's readouts read the last step or every step")
                }
                if scalar { out.remove(at: axis) } else { out[axis] = Axis(role: .unit, size: .known(1)) }
                return (out, true)
            case .unit:
                guard indices[0] == 0 || indices[0] == -1 else { throw fail("\(label(c)) reads entry \(indices[0]) of an axis of size 1") }
                if scalar { out.remove(at: axis) }
                return (out, last)
            default:
                throw fail("\(label(c)) selects along the \(axes[axis].role) axis; CellAudit reads every sequence and every feature")
            }
        }
        // Slice(data, starts, ends, axes?, steps?)
        func list(_ k: Int) throws -> [Int]? {
            guard node.input.count > k, !node.input[k].isEmpty else { return nil }
            guard let v = try constantIntegers(node.input[k], "\(label(c)) \(["data", "starts", "ends", "axes", "steps"][k])") else {
                throw fail("\(label(c)) slices with computed bounds; CellAudit cannot follow them")
            }
            return v
        }
        guard let starts = try list(1), let ends = try list(2) else { throw fail("\(label(c)) has no starts or ends") }
        let sliced = try (try list(3) ?? Array(0..<starts.count)).map { try normalise($0, rank) }
        let steps = try list(4) ?? [Int](repeating: 1, count: starts.count)
        var out = axes, selected = last
        for (k, a) in sliced.enumerated() {
            let (s, e, step) = (starts[k], ends[k], steps[k])
            let huge = e >= Int(Int32.max)
            let full = step == 1 && s == 0 && (huge || axes[a].size == .known(e))
            if full { continue }
            if axes[a].role == .time, step == 1, s == -1, huge {
                out[a] = Axis(role: .unit, size: .known(1)); selected = true; continue
            }
            if axes[a].role == .time, step == 1, case .known(let T) = axes[a].size, s == T - 1, huge || e >= T {
                out[a] = Axis(role: .unit, size: .known(1)); selected = true; continue
            }
            throw fail("\(label(c)) slices [\(s):\(e):\(step)] along the \(axes[a].role) axis; CellAudit reads the last step or every step of every sequence")
        }
        return (out, selected)
    }

    /// A Reshape that only adds or drops axes of size 1: the non-1 target sizes equal the non-1
    /// axes in order (one nil target, -1, stands for one axis).
    func neutralReshape(_ c: Int, _ axes: [Axis], _ target: [AxisSize?]) throws -> [Axis] {
        var big = axes.filter { !$0.size.isOne }
        // A bidirectional node's direction axis followed by its features: one feature axis of
        // both directions concatenated (forward first), where the target has one axis for both.
        if let d = big.firstIndex(where: { $0.role == .direction }), d + 1 < big.count, big[d + 1].role == .feature,
           case .known(let H) = big[d + 1].size, target.filter({ $0 != .known(1) }).count == big.count - 1 {
            big.replaceSubrange(d...(d + 1), with: [Axis(role: .feature, size: .known(2 * H))])
        }
        var out: [Axis] = [], k = 0
        for t in target {
            if t == .known(1) { out.append(Axis(role: .unit, size: .known(1))); continue }
            guard k < big.count, t == nil || t == big[k].size else {
                throw fail("\(label(c)) reshapes the data in a way that mixes time, batch or features; CellAudit cannot follow it")
            }
            out.append(big[k]); k += 1
        }
        guard k == big.count else { throw fail("\(label(c)) reshapes the data in a way that mixes time, batch or features; CellAudit cannot follow it") }
        return out
    }

    /// The value of a shape tensor: constants, and Shape / Gather / Slice / Concat / Mul /
    /// Unsqueeze / Squeeze / Reshape / Cast / Identity of them, with the data's symbolic sizes.
    /// Marks the nodes it reads as accounted for; nil when it cannot follow.
    mutating func shapeValue(_ name: String) throws -> [AxisSize]? {
        if let values = try constantIntegers(name, "shape '\(name)'") { return values.map { .known($0) } }
        guard let p = producer[name] else { return nil }
        let node = graph.node[p]
        explained.insert(p)
        switch node.opType {
        case "Shape":
            guard let axes = axesOf(node.input[0]) else { return nil }
            let r = axes.count
            var s = int(node, "start") ?? 0, e = int(node, "end") ?? r
            if s < 0 { s += r }; if e < 0 { e += r }
            s = max(0, min(r, s)); e = max(s, min(r, e))
            return axes[s..<e].map(\.size)
        case "Identity", "Cast", "Squeeze", "Unsqueeze", "Reshape":
            return try shapeValue(node.input[0])
        case "Concat":
            var out: [AxisSize] = []
            for i in node.input { guard let v = try shapeValue(i) else { return nil }; out += v }
            return out
        case "Gather":
            guard let v = try shapeValue(node.input[0]), let idx = try constantIntegers(node.input[1], "shape index") else { return nil }
            return try idx.map { i in
                let j = i < 0 ? i + v.count : i
                guard v.indices.contains(j) else { throw fail("\(label(p)) gathers entry \(i) of a \(v.count)-entry shape") }
                return v[j]
            }
        case "Slice":
            guard let v = try shapeValue(node.input[0]), let s0 = try constantIntegers(node.input[1], "slice start"),
                  let e0 = try constantIntegers(node.input[2], "slice end"), s0.count == 1, e0.count == 1 else { return nil }
            if node.input.count > 4, !node.input[4].isEmpty, try constantIntegers(node.input[4], "slice step") != [1] { return nil }
            var s = s0[0], e = e0[0]
            if s < 0 { s += v.count }; if e < 0 { e += v.count }
            s = max(0, min(v.count, s)); e = max(s, min(v.count, e))
            return Array(v[s..<e])
        case "Mul":
            guard let a = try shapeValue(node.input[0]), let b = try shapeValue(node.input[1]), a.count == b.count else { return nil }
            // A product that overflows is no size: the value cannot be followed.
            for case (.known(let p), .known(let q)) in zip(a, b) where p.multipliedReportingOverflow(by: q).overflow { return nil }
            return zip(a, b).map { x, y in
                switch (x, y) {
                case (.known(let p), .known(let q)): .known(p * q)
                case (.known(1), let other), (let other, .known(1)): other
                case (.symbol(let p), .symbol(let q)): .symbol("\(p)*\(q)")
                case (.known(let p), .symbol(let q)), (.symbol(let q), .known(let p)): .symbol("\(p)*\(q)")
                }
            }
        default:
            return nil
        }
    }

    /// The axes of a tensor on the data path (re-walked from the input when asked by a Shape op).
    func axesOf(_ name: String) -> [Axis]? { knownAxes[name] }
}

extension Axis.Role: CustomStringConvertible {
    var description: String {
        switch self {
        case .time: "time"
        case .batch: "batch"
        case .feature: "feature"
        case .unit: "size-1"
        case .direction: "direction"
        case .input(let k): "input axis \(k)"
        }
    }
}
