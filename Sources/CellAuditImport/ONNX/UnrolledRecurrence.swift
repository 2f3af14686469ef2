import CellAuditCore
import Foundation

/// The dynamo exporter of `torch.onnx.export` writes `nn.RNN` without an RNN node: the input
/// projection of all steps, then per step t a slice x_t of it, and h_t = act(h_{t−1}·Rᵀ + b_hh + x_t)
/// (act Tanh or Relu), the steps joined by a Concat. This pass recognises exactly that recurrence,
/// checks every step uses the same weights, the steps are consecutive from 0 and the first state
/// is provably zero, and replaces it by the RNN node it is (W = Wᵀ of the projection, R, B =
/// [b_ih, b_hh]) followed by a Squeeze to the Concat's [T, N, H], so the ordinary walk reads it.
/// Anything that only partly matches is left alone (and then refused by the walk).
extension GraphReader {
    static func liftUnrolledRecurrences(_ graph: Onnx_GraphProto, file: String, directory: String) throws -> Onnx_GraphProto {
        var reader = GraphReader(graph: graph, file: file, directory: directory)
        var remove = Set<Int>()
        var newNodes: [(at: Int, nodes: [Onnx_NodeProto])] = []
        var newInitializers: [Onnx_TensorProto] = []
        var lifted = 0
        for (ci, concat) in graph.node.enumerated() where concat.opType == "Concat" && concat.input.count >= 2 {
            guard reader.int(concat, "axis") == 0, let match = try reader.matchUnrolled(concat, at: ci) else { continue }
            let name = "cellaudit_unrolled_rnn_\(lifted)"
            lifted += 1
            remove.formUnion(match.nodes)
            remove.insert(ci)
            func tensor(_ suffix: String, _ dims: [Int], _ values: [Float]) -> String {
                var t = Onnx_TensorProto()
                t.name = "\(name).\(suffix)"; t.dims = dims.map(Int64.init); t.dataType = 1; t.floatData = values
                newInitializers.append(t)
                return t.name
            }
            var axes = Onnx_TensorProto()
            axes.name = "\(name).dir_axis"; axes.dims = [1]; axes.dataType = 7; axes.int64Data = [1]
            newInitializers.append(axes)
            var rnn = Onnx_NodeProto()
            rnn.opType = "RNN"; rnn.name = "\(name) (\(match.steps) unrolled steps)"
            rnn.input = [match.input, tensor("W", [1, match.hidden, match.inputs], match.W), tensor("R", [1, match.hidden, match.hidden], match.R),
                         tensor("B", [1, 2 * match.hidden], match.B)]
            rnn.output = ["\(name).Y"]
            var hidden = Onnx_AttributeProto(); hidden.name = "hidden_size"; hidden.type = .int; hidden.i = Int64(match.hidden)
            var act = Onnx_AttributeProto(); act.name = "activations"; act.type = .strings; act.strings = [Data(match.activation.utf8)]
            // The walk checks this against the input's time axis: the lift holds only for all steps.
            var steps = Onnx_AttributeProto(); steps.name = "cellaudit_unrolled_steps"; steps.type = .int; steps.i = Int64(match.steps)
            rnn.attribute = [hidden, act, steps]
            var squeeze = Onnx_NodeProto()
            squeeze.opType = "Squeeze"; squeeze.name = "\(name) squeeze"
            squeeze.input = ["\(name).Y", axes.name]; squeeze.output = [concat.output[0]]
            newNodes.append((ci, [rnn, squeeze]))
        }
        guard lifted > 0 else { return graph }
        var out = graph
        out.node = []
        for (i, node) in graph.node.enumerated() {
            if let added = newNodes.first(where: { $0.at == i }) { out.node += added.nodes }
            if !remove.contains(i) { out.node.append(node) }
        }
        out.initializer += newInitializers
        // Drop what fed only the removed steps (the zero state's construction, slice bounds).
        while true {
            var used = Set(out.output.map(\.name))
            for node in out.node { used.formUnion(node.input) }
            let before = out.node.count
            out.node.removeAll { node in node.output.allSatisfy { !used.contains($0) } }
            if out.node.count == before { break }
        }
        return out
    }

    struct UnrolledMatch {
        var nodes: Set<Int>
        var input: String
        var steps: Int, inputs: Int, hidden: Int
        var W: [Float], R: [Float], B: [Float]
        var activation: String
    }

    /// Matches the unrolled recurrence whose steps `concat` joins; nil when it is not one.
    mutating func matchUnrolled(_ concat: Onnx_NodeProto, at concatIndex: Int) throws -> UnrolledMatch? {
        var nodes = Set<Int>()
        var recurrent: String?, hiddenBias: String?, projection: String?, activation: String?
        var previous: String?
        // Step 0 without its recurrent product: the constant it adds instead (nil: none).
        var foldedFirstBias: String?? = nil
        for (t, stepName) in concat.input.enumerated() {
            guard let a = producer[stepName], ["Tanh", "Relu"].contains(graph.node[a].opType) else { return nil }
            guard activation == nil || activation == graph.node[a].opType else { return nil }
            activation = graph.node[a].opType
            nodes.insert(a)
            // The activation's argument: a sum of the recurrent product, the bias b_hh and x_t.
            var leaves: [String] = [], stack = [graph.node[a].input[0]]
            while let n = stack.popLast() {
                if let p = producer[n], graph.node[p].opType == "Add", leaves.count + stack.count < 4 {
                    nodes.insert(p); stack += graph.node[p].input
                } else { leaves.append(n) }
            }
            // Three leaves; at step 0 the exporter may have folded h0·Rᵀ = 0 away (and b_hh with it).
            guard leaves.count == 3 || (t == 0 && (1...2).contains(leaves.count)) else { return nil }
            var product: String?, bias: String?, slice: String?
            for leaf in leaves {
                if let p = producer[leaf], graph.node[p].opType == "MatMul" { product = leaf }
                else if initializers[leaf] != nil { bias = leaf }
                else { slice = leaf }
            }
            guard let slice else { return nil }
            if let product {
                guard let bias, let mp = producer[product] else { return nil }
                let matmul = graph.node[mp]
                guard initializers[matmul.input[1]] != nil, recurrent == nil || recurrent == matmul.input[1], hiddenBias == nil || hiddenBias == bias else { return nil }
                recurrent = matmul.input[1]; hiddenBias = bias
                nodes.insert(mp)
                // h_{t−1}: the previous step's output, or a provable zero at t = 0.
                if t == 0 {
                    guard try isZero(matmul.input[0]) else { return nil }
                } else {
                    guard matmul.input[0] == previous else { return nil }
                }
            } else {
                guard leaves.count == (bias == nil ? 1 : 2) else { return nil }
                foldedFirstBias = .some(bias)
            }
            previous = stepName
            // x_t = Squeeze(Slice(P, [t], [t + 1], axes [0])) or Gather(P, t, axis 0).
            guard let sp = producer[slice] else { return nil }
            var source: String
            if graph.node[sp].opType == "Squeeze", let inner = producer[graph.node[sp].input[0]], graph.node[inner].opType == "Slice" {
                let s = graph.node[inner]
                guard s.input.count >= 3, try constantIntegers(s.input[1], "slice start") == [t], try constantIntegers(s.input[2], "slice end") == [t + 1] else { return nil }
                if s.input.count > 3, !s.input[3].isEmpty, try constantIntegers(s.input[3], "slice axes") != [0] { return nil }
                if s.input.count > 4, !s.input[4].isEmpty, try constantIntegers(s.input[4], "slice steps") != [1] { return nil }
                nodes.insert(sp); nodes.insert(inner)
                source = s.input[0]
            } else if graph.node[sp].opType == "Gather", int(graph.node[sp], "axis") ?? 0 == 0,
                      try constantIntegers(graph.node[sp].input[1], "gather index") == [t] {
                nodes.insert(sp)
                source = graph.node[sp].input[0]
            } else { return nil }
            guard projection == nil || projection == source else { return nil }
            projection = source
        }
        // P = layer input · Wᵀ + b_ih.
        guard let projection, let recurrent, let hiddenBias, let activation, let add = producer[projection], graph.node[add].opType == "Add" else { return nil }
        let addNode = graph.node[add]
        guard let inputBias = addNode.input.first(where: { initializers[$0] != nil }),
              let productName = addNode.input.first(where: { initializers[$0] == nil }),
              let mp = producer[productName], graph.node[mp].opType == "MatMul", let wt = initializers[graph.node[mp].input[1]] else { return nil }
        // The projection and the steps must be used by nothing else.
        let owned = nodes.union([add, mp])
        for n in owned {
            for o in graph.node[n].output where !o.isEmpty {
                let users = (consumers[o] ?? []).filter { !owned.contains($0) && $0 != concatIndex }
                if !users.isEmpty || graph.output.contains(where: { $0.name == o }) { return nil }
            }
        }
        let Wt = try floats(wt, "projection weight"), Rt = try floats(initializers[recurrent]!, "recurrent weight")
        let bih = try floats(initializers[inputBias]!, "input bias"), bhh = try floats(initializers[hiddenBias]!, "recurrent bias")
        // A folded step 0 must add exactly b_hh, possibly broadcast over the batch ([1, N, H]), or
        // nothing when b_hh is zero.
        if case .some(let folded) = foldedFirstBias {
            if let folded {
                let added = try floats(initializers[folded]!, "step 0 bias")
                let H = bhh.values.count
                guard H > 0, added.values.count % H == 0, added.shape.last == H,
                      stride(from: 0, to: added.values.count, by: H).allSatisfy({ Array(added.values[$0..<($0 + H)]) == bhh.values }) else { return nil }
            } else {
                guard bhh.values.allSatisfy({ $0 == 0 }) else { return nil }
            }
        }
        guard Wt.shape.count == 2, Rt.shape.count == 2 else { return nil }
        let I = Wt.shape[0], H = Wt.shape[1]
        guard Rt.shape == [H, H], bih.values.count == H, bhh.values.count == H else { return nil }
        // ONNX RNN weights: W [H × I] = Wtᵀ, R [H × H] = Rtᵀ (the steps multiply h·Rt).
        var W = [Float](repeating: 0, count: H * I), R = [Float](repeating: 0, count: H * H)
        for i in 0..<I { for h in 0..<H { W[h * I + i] = Wt.values[i * H + h] } }
        for k in 0..<H { for h in 0..<H { R[h * H + k] = Rt.values[k * H + h] } }
        return UnrolledMatch(nodes: owned, input: graph.node[mp].input[0], steps: concat.input.count, inputs: I, hidden: H,
                             W: W, R: R, B: bih.values + bhh.values, activation: activation)
    }
}

extension GraphReader {
    /// `fc(h_n[-1])` of a stack: both exporters concatenate every layer's last state Y_h along
    /// axis 0 and Gather the last entry. That is the top layer's Y_h: the pair is replaced by a
    /// Squeeze of it, so the walk reads the readout on the top layer's last step. Any other
    /// selection (a lower layer's state) is left alone, and then refused by the walk.
    static func selectTopLastState(_ graph: Onnx_GraphProto, file: String, directory: String) throws -> Onnx_GraphProto {
        var reader = GraphReader(graph: graph, file: file, directory: directory)
        let recurrent = graph.node.indices.filter { ["LSTM", "GRU", "RNN"].contains(graph.node[$0].opType) }
        guard recurrent.count > 1 else { return graph }
        // The top node: its Y reaches no other recurrent node.
        func reachesRecurrent(from start: String) -> Bool {
            var stack = [start], seen = Set<String>()
            while let name = stack.popLast() {
                guard seen.insert(name).inserted else { continue }
                for c in reader.consumers[name] ?? [] {
                    if recurrent.contains(c) { return true }
                    stack += graph.node[c].output
                }
            }
            return false
        }
        let tops = recurrent.filter { !reachesRecurrent(from: graph.node[$0].output.first ?? "") }
        guard tops.count == 1, let top = tops.first, graph.node[top].output.count > 1 else { return graph }
        let states = Dictionary(uniqueKeysWithValues: recurrent.compactMap { r in
            graph.node[r].output.count > 1 ? (graph.node[r].output[1], r) : nil })
        var out = graph, replaced = false
        for (ci, concat) in graph.node.enumerated() where concat.opType == "Concat" && reader.int(concat, "axis") == 0 {
            guard concat.input.count == recurrent.count, concat.input.allSatisfy({ states[$0] != nil }),
                  Set(concat.input.map { states[$0]! }).count == recurrent.count,
                  let users = reader.consumers[concat.output[0]], users.count == 1,
                  !graph.output.contains(where: { $0.name == concat.output[0] }) else { continue }
            let gather = graph.node[users[0]]
            guard gather.opType == "Gather", reader.int(gather, "axis") ?? 0 == 0, gather.input.count > 1,
                  let t = try reader.constant(gather.input[1]), t.dims.isEmpty,
                  let index = try reader.integers(t, "state index").first else { continue }
            // Entries of the stack: one per direction of each node (a bidirectional node's Y_h has two).
            let slots = concat.input.flatMap { i in
                [Int](repeating: concat.input.firstIndex(of: i)!, count: reader.strings(graph.node[states[i]!], "direction")?.first == "bidirectional" ? 2 : 1)
            }
            let slot = index < 0 ? index + slots.count : index
            guard slots.indices.contains(slot) else { continue }
            let picked = slots[slot]
            if slots.count != concat.input.count {
                // A bidirectional stack: its state pairs are merged by mergeTopBidirectionalStates;
                // a single entry read alone is half a level.
                throw reader.fail("\(reader.label(users[0])) reads entry \(index) of h_n alone, one direction's final state of \(reader.label(states[concat.input[picked]]!)), which is bidirectional; CellAudit reads both directions' final states concatenated (cat(h_n[-2], h_n[-1])) or the output Y")
            }
            guard states[concat.input[picked]] == top else { continue }
            var axes = Onnx_TensorProto()
            axes.name = "cellaudit_top_state_axis_\(ci)"; axes.dims = [1]; axes.dataType = 7; axes.int64Data = [0]
            out.initializer.append(axes)
            var squeeze = Onnx_NodeProto()
            squeeze.opType = "Squeeze"; squeeze.name = "h_n[-1] (the top layer's last state)"
            squeeze.input = [concat.input[picked], axes.name]; squeeze.output = [gather.output[0]]
            out.node = out.node.filter { $0 != concat && $0 != gather }
            out.node.append(squeeze)
            replaced = true
        }
        return replaced ? out : graph
    }
}

extension GraphReader {
    /// `fc(cat(h_n[-2], h_n[-1]))` of a bidirectional stack, as torch's exporter writes it: every
    /// layer's Y_h concatenated along axis 0 (or the one node's Y_h), the top node's two entries
    /// gathered (forward, then reverse) and concatenated along the features. That is the top
    /// node's Y_h [2, N, H] with its direction axis merged into the features: the nodes are
    /// replaced by a Transpose and a Reshape of it, which the walk follows as any other layout op.
    /// Any other selection (a lower layer's state, the directions swapped) is left alone, and then
    /// refused by the walk.
    static func mergeTopBidirectionalStates(_ graph: Onnx_GraphProto, file: String, directory: String) throws -> Onnx_GraphProto {
        var reader = GraphReader(graph: graph, file: file, directory: directory)
        let recurrent = graph.node.indices.filter { ["LSTM", "GRU", "RNN"].contains(graph.node[$0].opType) }
        func directions(_ r: Int) -> Int { reader.strings(graph.node[r], "direction")?.first == "bidirectional" ? 2 : 1 }
        let states = Dictionary(recurrent.compactMap { r in graph.node[r].output.count > 1 && !graph.node[r].output[1].isEmpty ? (graph.node[r].output[1], r) : nil },
                                uniquingKeysWith: { a, _ in a })
        // Candidate stacks: a Concat along axis 0 of distinct nodes' Y_h, or a bidirectional node's own Y_h.
        var stacks: [(tensor: String, slots: [(node: Int, direction: Int)], removed: [Int])] = []
        for (ci, concat) in graph.node.enumerated() where concat.opType == "Concat" && reader.int(concat, "axis") == 0 {
            guard !concat.input.isEmpty, concat.input.allSatisfy({ states[$0] != nil }),
                  Set(concat.input.map { states[$0]! }).count == concat.input.count else { continue }
            stacks.append((concat.output[0], concat.input.flatMap { i in (0..<directions(states[i]!)).map { (states[i]!, $0) } }, [ci]))
        }
        for r in recurrent where directions(r) == 2 && graph.node[r].output.count > 1 && !graph.node[r].output[1].isEmpty {
            stacks.append((graph.node[r].output[1], [(r, 0), (r, 1)], []))
        }
        var out = graph, removed = Set<Int>(), added: [Onnx_NodeProto] = []
        for (k, stack) in stacks.enumerated() {
            guard let users = reader.consumers[stack.tensor], users.count == 2,
                  !graph.output.contains(where: { $0.name == stack.tensor }) else { continue }
            // Two scalar Gathers on axis 0, each read by one and the same Concat along the features.
            var picked: [(gather: Int, slot: Int)] = []
            for u in users {
                let g = graph.node[u]
                guard g.opType == "Gather", reader.int(g, "axis") ?? 0 == 0, g.input.count > 1, g.input[0] == stack.tensor,
                      let t = try reader.constant(g.input[1]), t.dims.isEmpty, let index = try reader.integers(t, "state index").first else { break }
                let slot = index < 0 ? index + stack.slots.count : index
                guard stack.slots.indices.contains(slot) else { break }
                picked.append((u, slot))
            }
            guard picked.count == 2, let c0 = reader.consumers[graph.node[picked[0].gather].output[0]], c0.count == 1,
                  let c1 = reader.consumers[graph.node[picked[1].gather].output[0]], c1 == c0 else { continue }
            let join = graph.node[c0[0]]
            guard join.opType == "Concat", [1, -1].contains(reader.int(join, "axis") ?? 0), join.input.count == 2 else { continue }
            let bySlot = Dictionary(uniqueKeysWithValues: picked.map { (graph.node[$0.gather].output[0], stack.slots[$0.slot]) })
            guard let first = bySlot[join.input[0]], let second = bySlot[join.input[1]], first.node == second.node,
                  reader.int(graph.node[first.node], "layout") ?? 0 == 0 else { continue }
            guard first.direction == 0, second.direction == 1 else {
                throw reader.fail("\(reader.label(c0[0])) concatenates \(first.direction == second.direction ? "one direction's final state twice" : "the reverse direction's final state before the forward one") of \(reader.label(first.node)); CellAudit reads both directions' final states forward first, cat(h_n[-2], h_n[-1])")
            }
            // Y_h [2, N, H] → [N, 2, H] → [N, 2H].
            let yh = graph.node[first.node].output[1]
            var transpose = Onnx_NodeProto()
            transpose.opType = "Transpose"; transpose.name = "cat(h_n[-2], h_n[-1]) (the top layer's final states)"
            var perm = Onnx_AttributeProto(); perm.name = "perm"; perm.type = .ints; perm.ints = [1, 0, 2]
            transpose.attribute = [perm]
            transpose.input = [yh]; transpose.output = ["cellaudit_top_states_\(k)"]
            var shape = Onnx_TensorProto()
            shape.name = "cellaudit_top_states_shape_\(k)"; shape.dims = [2]; shape.dataType = 7; shape.int64Data = [0, -1]
            out.initializer.append(shape)
            var reshape = Onnx_NodeProto()
            reshape.opType = "Reshape"; reshape.name = "both directions' final states, concatenated"
            reshape.input = [transpose.output[0], shape.name]; reshape.output = [join.output[0]]
            added += [transpose, reshape]
            removed.formUnion(stack.removed + picked.map(\.gather) + c0)
        }
        guard !added.isEmpty else { return graph }
        out.node = graph.node.indices.filter { !removed.contains($0) }.map { graph.node[$0] } + added
        return out
    }
}
