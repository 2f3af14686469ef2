import CellAuditCore
import Foundation

extension GraphReader {
    /// Checks one LSTM/GRU/RNN node: attributes, optional inputs, and the axes its X arrives
    /// with. Returns the cell kind and sizes.
    /// `previousWidth`: the output width of the level below (both directions of a bidirectional
    /// one). `directions`: 1, or 2 for a bidirectional node.
    mutating func checkRecurrent(_ c: Int, inputAxes: [Axis], first: Bool, previousWidth: Int?) throws -> (kind: CellKind, hidden: Int, inputs: Int, directions: Int) {
        let node = graph.node[c]
        let op = node.opType
        // ONNX's inputs of each op, in order: anything past them is not part of the op (onnxruntime
        // and onnx.checker refuse it), so a weight there would be left out silently.
        let operands = op == "LSTM" ? ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"]
                                    : ["X", "W", "R", "B", "sequence_lens", "initial_h"]
        guard node.input.count <= operands.count else {
            throw fail("\(label(c)) has \(node.input.count) inputs; ONNX's \(op) takes at most \(operands.count) (\(operands.joined(separator: ", ")))")
        }
        guard let hidden = int(node, "hidden_size"), hidden > 0 else { throw fail("\(label(c)) has no positive hidden_size") }
        if let problem = NetworkLimits.problem(width: hidden, "hidden_size") { throw fail("\(label(c)): \(problem)") }
        let direction = strings(node, "direction")?.first ?? "forward"
        guard ["forward", "reverse", "bidirectional"].contains(direction) else {
            throw fail("\(label(c)) has direction '\(direction)'; ONNX defines forward, reverse and bidirectional")
        }
        let directions = direction == "bidirectional" ? 2 : 1
        if attribute(node, "clip") != nil { throw fail("\(label(c)) sets attribute 'clip' (cell clipping), which CellAudit does not represent") }
        if op == "LSTM", let v = int(node, "input_forget"), v != 0 {
            throw fail("\(label(c)) sets attribute 'input_forget' (coupled input and forget gates), which CellAudit does not represent")
        }
        for name in ["activation_alpha", "activation_beta"] where attribute(node, name) != nil {
            throw fail("\(label(c)) sets attribute '\(name)'; CellAudit reads the default activations only")
        }
        let defaults = ["LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]][op]!
        var activations = strings(node, "activations") ?? []
        // A bidirectional node lists the forward direction's activations, then the reverse one's.
        if directions == 2, !activations.isEmpty {
            let perDirection = ["LSTM": 3, "GRU": 2, "RNN": 1][op]!
            guard activations.count == 2 * perDirection else {
                throw fail("\(label(c)) has \(activations.count) activations; a bidirectional \(op) node lists \(2 * perDirection) (\(perDirection) per direction, forward first)")
            }
            let half = activations.count / 2
            guard Array(activations[..<half]) == Array(activations[half...]) else {
                throw fail("\(label(c)) has attribute 'activations' \(activations), different for its two directions; CellAudit reads one cell kind per stack")
            }
            activations = Array(activations[..<half])
        }
        let kind: CellKind
        if op == "RNN" && (activations.isEmpty || activations == ["Tanh"] || activations == ["Relu"]) {
            kind = activations == ["Relu"] ? .rnnReLU : .rnnTanh
        } else if activations.isEmpty || activations == defaults {
            kind = op == "LSTM" ? .lstm : .gru
        } else {
            throw fail("\(label(c)) has attribute 'activations' \(activations); CellAudit reads \(defaults)\(op == "RNN" ? " or [Relu]" : "")")
        }
        let layout = int(node, "layout") ?? 0
        if let steps = int(node, "cellaudit_unrolled_steps") {
            let time = inputAxes[layout == 0 ? 0 : 1].size
            guard time == .known(steps) else {
                throw fail("\(label(c)) is a recurrence unrolled over \(steps) steps, but the input has \(time.description) steps; CellAudit reads it only when the unrolled steps are all of them")
            }
        }
        guard layout == 0 || layout == 1 else { throw fail("\(label(c)) has attribute 'layout' \(layout); ONNX defines 0 and 1") }
        if op == "GRU", let lbr = int(node, "linear_before_reset"), lbr != 0 && lbr != 1 {
            throw fail("\(label(c)) has attribute 'linear_before_reset' \(lbr); ONNX defines 0 and 1")
        }
        // Optional inputs: sequence_lens (4) read as described below; initial_h (5) and initial_c (6)
        // only when provably zero; P (7) when constant.
        func given(_ k: Int) -> String? { node.input.count > k && !node.input[k].isEmpty ? node.input[k] : nil }
        if let lens = given(4), let source = lengthsSource(lens) {
            // Lengths fed from a graph input (directly or through Cast): each sequence's own
            // length, which the dataset's `lengths` [N] supplies (a dataset without them runs
            // every sequence in full).
            explained.formUnion(source.path)
            guard lengthsInput == nil || lengthsInput == source.input else {
                throw fail("\(label(c)) takes 'sequence_lens' from graph input '\(source.input)', another layer from '\(lengthsInput!)'; CellAudit reads one length per sequence for the whole stack")
            }
            lengthsInput = source.input
        } else if let lens = given(4) {
            // A constant sequence_lens that gives every sequence the same length L is a property of
            // the model (each sequence runs its first L steps): honoured through the lengths of the
            // data. Lengths that differ by batch position, or that are computed, are not.
            guard let values = try constantIntegers(lens, "\(label(c)) sequence_lens") else {
                throw fail("\(label(c)) takes input 'sequence_lens' computed by the graph; CellAudit reads a constant sequence_lens or one fed from a graph input (the dataset's 'lengths')")
            }
            guard let length = values.first, length >= 1, values.allSatisfy({ $0 == length }) else {
                throw fail("\(label(c)) takes input 'sequence_lens' \(values.prefix(8))\(values.count > 8 ? "…" : ""), lengths that depend on a sequence's position in the batch; CellAudit reads one length for every sequence (give the dataset 'lengths' instead)")
            }
            sequenceLengths[c] = length
        }
        for (k, name) in [(5, "initial_h"), (6, "initial_c")] {
            guard let tensor = given(k) else { continue }
            guard try isZero(tensor) else {
                // Under --core a state carried in from outside (a streaming model's graph input) is
                // not part of the core: the core starts from zero, as every CellAudit network does.
                let fromInput = graph.input.contains(where: { $0.name == tensor })
                if core && fromInput { continue }
                // --core helps only with a state fed from a graph input; a constant state is the model's own.
                throw fail("\(label(c)) takes input '\(name)' that is not zero; CellAudit starts every sequence from the zero state"
                           + (fromInput ? coreHint : ""))
            }
        }
        // P (7), the peepholes, is read with the weights (an all-zero P is the plain cell).
        if let p = given(7), try !isZero(p), try constant(p) == nil {
            throw fail("\(label(c)) has an input 'P' (peephole weights) that is not a constant")
        }
        // X arrives as [time, batch, features] (layout 0) or [batch, time, features] (layout 1).
        guard inputAxes.count == 3 else {
            throw fail("\(label(c)) receives a \(inputAxes.count)-dimensional input; CellAudit follows [time, batch, features] into it")
        }
        let (t, b, f) = layout == 0 ? (inputAxes[0], inputAxes[1], inputAxes[2]) : (inputAxes[1], inputAxes[0], inputAxes[2])
        if first {
            guard f.role == .input(2), [t.role, b.role] == [.input(0), .input(1)] || [t.role, b.role] == [.input(1), .input(0)] else {
                throw fail("\(label(c)) reads the network input with its axes rearranged (features are not the input's last axis); CellAudit cannot follow it")
            }
        } else {
            guard t.role == .time, b.role == .batch, f.role == .feature, f.size == .known(previousWidth ?? -1) else {
                throw fail("\(label(c)) reads the layer below with its axes rearranged; CellAudit cannot follow it")
            }
        }
        guard node.input.count > 2, let W = try constant(node.input[1]) else { throw fail("\(label(c)) has an input 'W' that is not a constant") }
        guard W.dims.count == 3 else { throw fail("\(label(c)) input 'W' has shape \(W.dims); expected [\(directions), G·H, I]") }
        let inputs = Int(W.dims[2])
        if let problem = NetworkLimits.problem(width: inputs, "the input width (W's last dimension)") { throw fail("\(label(c)): \(problem)") }
        if case .known(let n) = f.size, n != inputs { throw fail("\(label(c)) reads \(n) features but its W has \(inputs) columns") }
        return (kind, hidden, inputs, directions)
    }

    /// A constant weight of `shape` named by a node input.
    mutating func weight(_ name: String, _ c: Int, _ what: String, shape: [Int]) throws -> FloatTensor {
        guard let t = try constant(name) else { throw fail("\(label(c)) has an input '\(what)' that is not a constant") }
        let tensor = try floats(t, "\(label(c)) input '\(what)'")
        guard tensor.shape == shape else { throw fail("\(label(c)) input '\(what)' has shape \(tensor.shape); expected \(shape)") }
        return tensor
    }

    /// Whether a tensor is provably zero: a constant of zeros, ConstantOfShape of 0, or layout
    /// and broadcast ops (Expand, Slice, Tile…) of such. Marks what it reads as accounted for.
    mutating func isZero(_ name: String) throws -> Bool {
        if let t = try constant(name) {
            return try floats(t, "constant '\(name)'").values.allSatisfy { $0 == 0 }
        }
        guard let p = producer[name] else { return false }
        let node = graph.node[p]
        switch node.opType {
        case "ConstantOfShape":
            if let a = attribute(node, "value"), a.hasT, try !floats(a.t, "\(label(p)) value").values.allSatisfy({ $0 == 0 }) { return false }
            explained.insert(p)
            markShapeAncestry(node.input.first ?? "")
            return true
        case "Expand", "Slice", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Cast", "Tile", "Transpose":
            guard try isZero(node.input[0]) else { return false }
            explained.insert(p)
            for other in node.input.dropFirst() where !other.isEmpty { markShapeAncestry(other) }
            return true
        default:
            return false
        }
    }

    /// Marks the nodes that compute a shape or index (up to Shape ops, which read only the shape
    /// of the data) as accounted for.
    mutating func markShapeAncestry(_ name: String) {
        var stack = [name]
        while let n = stack.popLast() {
            guard let p = producer[n], !explained.contains(p) else { continue }
            explained.insert(p)
            if graph.node[p].opType == "Shape" { continue }
            stack += graph.node[p].input.filter { !$0.isEmpty }
        }
    }

    /// The readout's V [K, H] and a [K] from a MatMul (+ Add) or Gemm fed by the recurrent
    /// output, honouring Gemm's transA, transB, alpha and beta; and whether it reads the last step.
    mutating func readoutWeights(_ r: (node: Int, axes: [Axis], last: Bool), hidden H: Int) throws -> (FloatTensor, FloatTensor?, Bool) {
        let c = r.node, node = graph.node[c]
        let big = r.axes.filter { !$0.size.isOne }
        guard !big.contains(where: { $0.role == .direction }) else {
            throw fail("\(label(c)) reads a bidirectional node's output with its directions on an axis of their own; CellAudit reads a readout of both directions concatenated (reshaped into one feature axis, forward first)")
        }
        let hasTime = big.contains { $0.role == .time }
        guard hasTime || r.last else { throw fail("\(label(c)) reads the recurrent output without a step selection CellAudit can follow") }
        guard node.input.count >= 2, let bt = try constant(node.input[1]) else {
            throw fail("\(label(c)) does not multiply the recurrent output by a constant weight matrix as its second input")
        }
        let B = try floats(bt, "\(label(c)) weight")
        var V: [Float], K: Int
        var bias: [Float]?
        var output = node.output.first ?? ""
        if node.opType == "Gemm" {
            let transA = int(node, "transA") ?? 0, transB = int(node, "transB") ?? 0
            let alpha = attribute(node, "alpha").map { $0.f } ?? 1, beta = attribute(node, "beta").map { $0.f } ?? 1
            guard r.axes.count == 2 else { throw fail("\(label(c)) (Gemm) receives a \(r.axes.count)-dimensional input") }
            let feature = transA == 0 ? r.axes[1] : r.axes[0], other = transA == 0 ? r.axes[0] : r.axes[1]
            guard feature.role == .feature, other.role == .batch else { throw fail("\(label(c)) (Gemm, transA \(transA)) does not contract the features of the recurrent output") }
            guard B.shape.count == 2, (transB == 1 ? B.shape[1] : B.shape[0]) == H else {
                throw fail("\(label(c)) weight has shape \(B.shape), which does not read \(H) cells (transB \(transB))")
            }
            K = transB == 1 ? B.shape[0] : B.shape[1]
            V = [Float](repeating: 0, count: K * H)
            for k in 0..<K { for h in 0..<H { V[k * H + h] = alpha * (transB == 1 ? B.values[k * H + h] : B.values[h * K + k]) } }
            if node.input.count > 2, !node.input[2].isEmpty {
                guard let ct = try constant(node.input[2]) else { throw fail("\(label(c)) has a bias C that is not a constant") }
                let C = try floats(ct, "\(label(c)) bias C")
                // C broadcasts over [batch, K]: [K], [1, K], [1] or a scalar; [K, 1] would add one value per sequence.
                guard C.shape == [K] || C.shape == [1, K] || C.values.count == 1 && C.shape.allSatisfy({ $0 == 1 }) else {
                    throw fail("\(label(c)) bias C has shape \(C.shape); CellAudit reads a bias of [\(K)] or [1, \(K)] (one value per output)")
                }
                bias = (0..<K).map { beta * C.values[C.values.count == 1 ? 0 : $0] }
            }
        } else {
            guard r.axes.last?.role == .feature else { throw fail("\(label(c)) (MatMul) does not contract the features of the recurrent output") }
            guard (B.shape.count == 2 && B.shape[0] == H) || (B.shape.count == 1 && B.shape[0] == H) else {
                throw fail("\(label(c)) weight has shape \(B.shape), which does not read \(H) cells")
            }
            K = B.shape.count == 2 ? B.shape[1] : 1
            V = [Float](repeating: 0, count: K * H)
            for k in 0..<K { for h in 0..<H { V[k * H + h] = B.values[h * K + k] } }
            // A bias Add right after it, with a constant of K values.
            if let adds = consumers[output], adds.count == 1, graph.node[adds[0]].opType == "Add" {
                let add = graph.node[adds[0]]
                if let other = add.input.first(where: { $0 != output }), let at = try constant(other) {
                    let a = try floats(at, "\(label(adds[0])) bias")
                    // Broadcast over [..., K]: every axis but the last of size 1, the last K (or 1).
                    guard a.shape.dropLast().allSatisfy({ $0 == 1 }) && (a.shape.last == K || a.shape.last == 1 || a.shape.isEmpty) else {
                        throw fail("\(label(adds[0])) adds a bias of shape \(a.shape) to \(K) outputs; CellAudit reads one value per output ([\(K)])")
                    }
                    if let mo = consumers[output], mo.count > 1 || graph.output.contains(where: { $0.name == output }) {
                        throw fail("\(label(c))'s product before the bias is also used elsewhere; CellAudit reads one readout output")
                    }
                    bias = (0..<K).map { a.values[a.values.count == 1 ? 0 : $0] }
                    explained.insert(adds[0])
                    output = add.output.first ?? ""
                }
            }
        }
        // After the readout: layout ops to graph outputs only.
        var stack = [output]
        while let name = stack.popLast() {
            for k in consumers[name] ?? [] {
                let n = graph.node[k]
                guard ["Identity", "Squeeze", "Unsqueeze", "Reshape", "Transpose", "Flatten", "Shape"].contains(n.opType) else {
                    throw fail(core ? "\(label(k)) computes on its outputs (a head --core leaves out)"
                               : "\(label(k)) follows the readout; CellAudit reports the readout's own values and will not leave it out" + coreHint)
                }
                explained.insert(k)
                for other in n.input.dropFirst() where !other.isEmpty { markShapeAncestry(other) }
                if n.opType != "Shape" { stack += n.output.filter { !$0.isEmpty } }
            }
        }
        guard V.allSatisfy(\.isFinite), bias?.allSatisfy(\.isFinite) ?? true else { throw fail("\(label(c)) readout weights contain NaN or Inf") }
        return (FloatTensor(shape: [K, H], values: V), bias.map { FloatTensor(shape: [K], values: $0) }, !hasTime)
    }
}
