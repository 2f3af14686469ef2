import Foundation

/// The direction d in a layer's input space along which a scalar stimulus enters (METHOD.md §2).
public enum StimulusDirection: Sendable, Equatable {
    /// d = 1/√I · ones (the default).
    case all
    /// The unit vector of input channel K.
    case channel(Int)
    /// A user-given vector (used as given, not normalised).
    case vector([Float])

    public func vector(inputSize: Int) throws -> [Float] {
        switch self {
        case .all:
            return Array(repeating: 1 / Float(inputSize).squareRoot(), count: inputSize)
        case .channel(let k):
            guard (0..<inputSize).contains(k) else {
                throw ModelError.shape("channel \(k) does not exist in an input of \(inputSize) channels")
            }
            var d = Array(repeating: Float(0), count: inputSize)
            d[k] = 1
            return d
        case .vector(let d):
            guard d.count == inputSize else {
                throw ModelError.shape("direction vector has \(d.count) values, the layer takes \(inputSize)")
            }
            return d
        }
    }
}

/// Every cell of one layer cut loose from the others (recurrence mode `self`): each keeps its
/// scalar input weight w_k = W_k[j,:]·d, its self-recurrent weight r_k = R_k[j,j] and its bias
/// b_k, per gate k of its kind (METHOD.md §2); a GRU cell also keeps b_hn, inside its reset gate.
///
/// Layout (the one the kernels read): `parameters[(q * G + k) * cellCount + j]` with G the
/// kind's gate count, q = 0 for w, 1 for r, 2 for b and k the gate index, then for a GRU one
/// more plane, b_hn, at `(3 * G) * cellCount + j`, and for a peephole LSTM three more, p_i, p_f,
/// p_o, at `(12 + k) * cellCount + j` (a cell's peepholes read its own c, so they decouple
/// whole): gate-major, so neighbouring cells are neighbours in memory.
public struct DecoupledCells: Sendable, Equatable {
    public let kind: CellKind
    /// Whether the cells are peephole LSTM cells (three more parameter planes).
    public let peephole: Bool
    public let cellCount: Int
    public var parameters: [Float]

    /// Parameters per cell: 3·G, plus b_hn for a GRU, plus 3 peepholes (LSTM 12, peephole LSTM 15,
    /// GRU 10, RNN 3).
    public static func valuesPerCell(_ kind: CellKind, peephole: Bool = false) -> Int {
        3 * kind.gateCount + (kind == .gru ? 1 : 0) + (peephole ? 3 : 0)
    }
    public var valuesPerCell: Int { Self.valuesPerCell(kind, peephole: peephole) }

    public init(kind: CellKind, cellCount: Int, parameters: [Float], peephole: Bool = false) {
        precondition(parameters.count == cellCount * Self.valuesPerCell(kind, peephole: peephole) && (!peephole || kind == .lstm))
        self.kind = kind
        self.peephole = peephole
        self.cellCount = cellCount
        self.parameters = parameters
    }

    public init(layer: RecurrentLayer, direction: StimulusDirection = .all) throws {
        let d = try direction.vector(inputSize: layer.inputSize)
        let n = layer.hiddenSize, gates = layer.kind.gateCount
        var p = Array(repeating: Float(0), count: n * Self.valuesPerCell(layer.kind, peephole: layer.hasPeephole))
        for gate in layer.kind.gates {
            let k = gate.index
            for j in 0..<n {
                let row = layer.row(gate, j)
                var w: Float = 0
                for i in 0..<layer.inputSize { w += layer.W[row * layer.inputSize + i] * d[i] }
                p[(0 * gates + k) * n + j] = w
                p[(1 * gates + k) * n + j] = layer.R[row * n + j]
                p[(2 * gates + k) * n + j] = layer.b[row]
            }
        }
        if layer.kind == .gru { p.replaceSubrange((3 * gates * n)..<(3 * gates * n + n), with: layer.hiddenBiasN) }
        if layer.hasPeephole { p.replaceSubrange((3 * gates * n)..<(3 * gates * n + 3 * n), with: layer.peephole) }
        self.init(kind: layer.kind, cellCount: n, parameters: p, peephole: layer.hasPeephole)
    }

    /// The given cells, renumbered from 0 in the order given.
    public func subset(_ cells: some Collection<Int>) -> DecoupledCells {
        var p = [Float]()
        p.reserveCapacity(cells.count * valuesPerCell)
        for plane in 0..<valuesPerCell {
            for j in cells { p.append(parameters[plane * cellCount + j]) }
        }
        return DecoupledCells(kind: kind, cellCount: cells.count, parameters: p, peephole: peephole)
    }

    public func w(_ gate: Gate, _ j: Int) -> Float { parameters[(0 * kind.gateCount + gate.index) * cellCount + j] }
    public func r(_ gate: Gate, _ j: Int) -> Float { parameters[(1 * kind.gateCount + gate.index) * cellCount + j] }
    public func b(_ gate: Gate, _ j: Int) -> Float { parameters[(2 * kind.gateCount + gate.index) * cellCount + j] }
    /// GRU only: b_hn of cell j.
    public func hiddenBiasN(_ j: Int) -> Float { parameters[3 * kind.gateCount * cellCount + j] }
    /// Peephole LSTM only: cell j's peephole weight on gate `gate` (i, f or o).
    public func peephole(_ gate: Gate, _ j: Int) -> Float {
        precondition(peephole && [Gate.input, .forget, .output].contains(gate))
        return parameters[(12 + (gate == .output ? 2 : gate.index)) * cellCount + j]
    }
}

/// How a decoupled cell sees the rest of its layer (METHOD.md §2).
public enum RecurrenceMode: String, Sendable, CaseIterable {
    /// Only the self-recurrent weight R_k[j,j] remains (default).
    case `self`
    /// The other cells sit at the layer's resting state h*, adding Σ_{m≠j} R_k[j,m]·h*_m to each bias.
    case clamped
    /// No decoupling: the whole layer runs with the stimulus and every cell is recorded.
    case network
}

/// A direction request: one direction, or `each` input channel in turn.
public enum DirectionSpec: Sendable, Equatable {
    case single(StimulusDirection)
    case each

    /// Parses `all`, `each`, `channel:K` or a comma-separated vector.
    public static func parse(_ text: String) throws -> DirectionSpec {
        let t = text.trimmingCharacters(in: .whitespaces)
        if t == "all" { return .single(.all) }
        if t == "each" { return .each }
        if t.hasPrefix("channel:") {
            guard let k = Int(t.dropFirst("channel:".count)), k >= 0 else {
                throw StimulusError.invalid("direction '\(text)': channel:K needs a channel number K ≥ 0")
            }
            return .single(.channel(k))
        }
        let parts = t.split(separator: ",").map { Float($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ $0?.isFinite == true }) else {
            throw StimulusError.invalid("direction '\(text)' is not all, each, channel:K or a comma-separated vector")
        }
        let v = parts.map { $0! }
        guard v.contains(where: { $0 != 0 }) else { throw StimulusError.invalid("the direction vector is all zeros") }
        return .single(.vector(v))
    }

    /// The directions to run for a layer with `inputSize` inputs, with a label for each.
    public func directions(inputSize: Int) -> [(StimulusDirection, String)] {
        switch self {
        case .each: return (0..<inputSize).map { (.channel($0), "channel:\($0)") }
        case .single(let d):
            switch d {
            case .all: return [(d, "all")]
            case .channel(let k): return [(d, "channel:\(k)")]
            case .vector: return [(d, "vector")]
            }
        }
    }
}

extension RecurrentLayer {
    /// The state the layer settles to under constant input `x` (zeros by default), from
    /// h = c = 0, running at most `steps` steps and stopping once h moves less than 1e-7;
    /// `steps` in the result is how many it ran.
    public func restState(input x: [Float]? = nil, steps limit: Int = 1000) -> (h: [Float], c: [Float], converged: Bool, steps: Int) {
        let x = x ?? [Float](repeating: 0, count: inputSize)
        var h = [Float](repeating: 0, count: hiddenSize), c = h
        for k in 0..<limit {
            let previous = h
            step(x[...], h: &h, c: &c)
            if zip(h, previous).allSatisfy({ abs($0 - $1) < 1e-7 }) { return (h, c, true, k + 1) }
        }
        return (h, c, false, limit)
    }
}

extension DecoupledCells {
    /// Cells of `layer` decoupled in `mode` (`self` or `clamped`; `network` does not decouple).
    public init(layer: RecurrentLayer, direction: StimulusDirection, mode: RecurrenceMode, restState: [Float]? = nil) throws {
        try self.init(layer: layer, direction: direction)
        switch mode {
        case .self: return
        case .network: throw StimulusError.invalid("mode network runs the whole layer; it has no decoupled cells")
        case .clamped:
            let n = layer.hiddenSize, gates = layer.kind.gateCount
            let rest = restState ?? layer.restState().h
            guard rest.count == n else { throw ModelError.shape("the rest state has \(rest.count) values, the layer \(n) cells") }
            // What the other cells, held at h*, add to a gate's pre-activation: Σ_{m≠j} R_k[j,m]·v_m.
            func others(_ gate: Gate, _ j: Int, _ v: [Float]) -> Float {
                let row = layer.row(gate, j)
                var extra: Float = 0
                for m in 0..<n where m != j { extra += layer.R[row * n + m] * v[m] }
                return extra
            }
            for gate in layer.kind.gates {
                let newGate = layer.kind == .gru && gate.index == 2
                // The GRU's n block: reset-after, the constant sits inside the reset gate (with
                // b_hn); reset-before, the other cells enter as r*_m·h*_m outside it.
                let v = newGate && !layer.resetAfter ? zip(layer.restResetGate(rest), rest).map(*) : rest
                let plane = newGate && layer.resetAfter ? 3 * gates : 2 * gates + gate.index
                for j in 0..<n { parameters[plane * n + j] += others(gate, j, v) }
            }
        }
    }
}

extension RecurrentLayer {
    /// GRU: the reset gate r = σ(R_r h + b_r) of every cell at state h under rest input 0.
    func restResetGate(_ h: [Float]) -> [Float] {
        (0..<hiddenSize).map { m in
            var a = b[m]
            for k in 0..<hiddenSize { a += R[m * hiddenSize + k] * h[k] }
            return 1 / (1 + exp(-a))
        }
    }
}
