/// The recurrent cell kinds CellAudit reads, named as PyTorch names them (`nn.LSTM`, `nn.GRU`,
/// `nn.RNN` with `nonlinearity` tanh or relu). METHOD.md §1 gives each update; the canonical
/// weight layout of every kind is PyTorch's.
public enum CellKind: String, Sendable, CaseIterable, Codable {
    /// i, f, g, o gates and a memory c: c' = f⊙c + i⊙g, h' = o⊙tanh(c').
    case lstm
    /// r, z, n gates: n = tanh(W_n x + b_in + r⊙(R_n h + b_hn)), h' = (1 − z)⊙n + z⊙h
    /// (Cho et al. 2014 as PyTorch implements it; see `RecurrentLayer.resetAfter` for the variant).
    case gru
    /// Elman RNN: h' = tanh(W x + b_ih + R h + b_hh).
    case rnnTanh = "rnn_tanh"
    /// Elman RNN: h' = max(0, W x + b_ih + R h + b_hh).
    case rnnReLU = "rnn_relu"

    /// The gate names in canonical order (the row blocks of W, R and b).
    public var gateNames: [String] {
        switch self {
        case .lstm: ["i", "f", "g", "o"]
        case .gru: ["r", "z", "n"]
        case .rnnTanh, .rnnReLU: ["h"]
        }
    }

    /// Row blocks of H rows in W, R and b.
    public var gateCount: Int { gateNames.count }

    /// Whether the cell has a memory c beside h (LSTM only).
    public var hasCellState: Bool { self == .lstm }

    /// The signals a decoupled cell can be probed on.
    public var probes: [Probe] { hasCellState ? [.h, .c] : [.h] }

    /// The kind's number in the kernels (`-D CELL_KIND=`): its place in `allCases`. The kernels
    /// never spell the number: they compare with `kernelDefineName`, which the host defines too.
    public var kernelCode: Int { Self.allCases.firstIndex(of: self)! }

    /// The kind's name in the kernels: `CELL_KIND_LSTM`, `CELL_KIND_GRU`, `CELL_KIND_RNN_TANH`, `CELL_KIND_RNN_RELU`.
    public var kernelDefineName: String { "CELL_KIND_" + rawValue.uppercased() }
}

/// One gate block of a layer: `kind.gateNames[index]`.
public struct Gate: Sendable, Hashable, CustomStringConvertible {
    public let index: Int
    public let name: String
    public init(index: Int, name: String) { self.index = index; self.name = name }
    public var description: String { name }
}

extension Gate {
    /// LSTM gates: input, forget, cell candidate (g), output.
    public static let input = Gate(index: 0, name: "i"), forget = Gate(index: 1, name: "f")
    public static let cell = Gate(index: 2, name: "g"), output = Gate(index: 3, name: "o")
    /// GRU gates: reset (r), update (z), new (candidate) state (n).
    public static let reset = Gate(index: 0, name: "r"), update = Gate(index: 1, name: "z"), newState = Gate(index: 2, name: "n")
    /// The RNN's one block.
    public static let hidden = Gate(index: 0, name: "h")
}

extension CellKind {
    /// The gate blocks of this kind, in canonical order.
    public var gates: [Gate] { gateNames.enumerated().map { Gate(index: $0.offset, name: $0.element) } }
}

/// One recurrent layer in the canonical layout of METHOD.md §1: `W` is [G·H × I], `R` is
/// [G·H × H], both row-major with G gate blocks of H rows in the kind's canonical order (LSTM
/// i, f, g, o; GRU r, z, n; RNN one block), and `b` [G·H] is the fused bias b_ih + b_hh, except
/// for the GRU's n block, which holds b_in only: its recurrent bias b_hn [H] sits inside the
/// reset gate and is kept apart in `hiddenBiasN`.
///
/// A layer runs in one `direction`: a reverse layer reads its input from the last step to the
/// first (the second half of a bidirectional level, METHOD.md §1), with the same update.
public struct RecurrentLayer: Sendable, Equatable {
    public let kind: CellKind
    public let inputSize: Int
    public let hiddenSize: Int
    /// Which way the layer runs through time.
    public var direction: TimeDirection = .forward
    public var W: [Float]
    public var R: [Float]
    public var b: [Float]
    /// GRU only: b_hn [H], multiplied by the reset gate; empty for other kinds, and all zeros
    /// when `resetAfter` is false (that cell has no bias inside the reset gate).
    public var hiddenBiasN: [Float]
    /// GRU only. true (PyTorch; Keras `reset_after=True`; ONNX `linear_before_reset=1`): the
    /// reset gate multiplies R_n h + b_hn. false (Keras `reset_after=False`; ONNX
    /// `linear_before_reset=0`): n = tanh(W_n x + R_n (r⊙h) + b_n), a different cell.
    public let resetAfter: Bool
    /// LSTM only: peephole weights [3·H], the planes p_i, p_f, p_o (METHOD.md §8; ONNX `P`, which
    /// stores them i, o, f): i and f add p ⊙ c_{t−1} to their pre-activation, o adds p_o ⊙ c_t.
    /// Empty for a layer without peepholes (every other kind, and PyTorch's and Keras's LSTMs).
    public let peephole: [Float]
    /// Whether the layer has peephole connections (`peephole` is not empty).
    public var hasPeephole: Bool { !peephole.isEmpty }
    /// The per-cell parameters a kind has beside W, R and b, as the kernels take them in one
    /// argument: the GRU's b_hn [H], a peephole LSTM's p [3·H]; empty for the others.
    public var cellExtra: [Float] { hasPeephole ? peephole : hiddenBiasN }

    /// - Parameter peephole: an LSTM's p_i, p_f, p_o [3·H] (METHOD.md §8), or nil for none.
    /// - Throws: `ModelError.shape` when a size is not positive, a tensor has the wrong count or a
    ///   kind other than the LSTM is given peepholes, `ModelError.nonFinite` when a weight is NaN or ±Inf.
    public init(kind: CellKind = .lstm, inputSize: Int, hiddenSize: Int, W: [Float], R: [Float], b: [Float],
                hiddenBiasN: [Float]? = nil, resetAfter: Bool = true, peephole: [Float]? = nil) throws {
        guard inputSize > 0, hiddenSize > 0 else {
            throw ModelError.shape("\(kind.rawValue) layer sizes must be positive, got input \(inputSize), hidden \(hiddenSize)")
        }
        let rows = kind.gateCount * hiddenSize
        guard W.count == rows * inputSize else { throw ModelError.shape("W has \(W.count) values, expected \(rows)×\(inputSize)") }
        guard R.count == rows * hiddenSize else { throw ModelError.shape("R has \(R.count) values, expected \(rows)×\(hiddenSize)") }
        guard b.count == rows else { throw ModelError.shape("b has \(b.count) values, expected \(rows)") }
        let bhn = hiddenBiasN ?? (kind == .gru ? [Float](repeating: 0, count: hiddenSize) : [])
        guard bhn.count == (kind == .gru ? hiddenSize : 0) else {
            throw ModelError.shape("b_hn has \(bhn.count) values, expected \(kind == .gru ? hiddenSize : 0) for a \(kind.rawValue) layer")
        }
        guard kind == .gru || resetAfter else { throw ModelError.shape("only a GRU has a reset-before variant") }
        guard resetAfter || bhn.allSatisfy({ $0 == 0 }) else {
            throw ModelError.shape("a reset-before GRU has no bias inside the reset gate; fold b_hn into b")
        }
        let p = peephole ?? []
        guard p.isEmpty || (kind == .lstm && p.count == 3 * hiddenSize) else {
            throw ModelError.shape(kind == .lstm ? "peephole weights have \(p.count) values, expected 3×\(hiddenSize) (p_i, p_f, p_o)"
                                                 : "only an LSTM has peephole weights, not a \(kind.rawValue) layer")
        }
        for (name, values) in [("W", W), ("R", R), ("b", b), ("b_hn", bhn), ("peephole", p)] where !values.allSatisfy(\.isFinite) {
            throw ModelError.nonFinite("\(kind.rawValue) weight \(name) contains NaN or Inf")
        }
        self.kind = kind
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        self.W = W
        self.R = R
        self.b = b
        self.hiddenBiasN = bhn
        self.resetAfter = resetAfter
        self.peephole = p
    }

    /// The same layer with peephole weights `p` [3·H] (p_i, p_f, p_o); nil removes them.
    /// - Throws: `ModelError` as `init` does for a wrong count, a non-LSTM layer or NaN/Inf.
    public func withPeephole(_ p: [Float]?) throws -> RecurrentLayer {
        var layer = try RecurrentLayer(kind: kind, inputSize: inputSize, hiddenSize: hiddenSize, W: W, R: R, b: b,
                                       hiddenBiasN: hiddenBiasN, resetAfter: resetAfter, peephole: p)
        layer.direction = direction
        return layer
    }

    /// Row of gate `gate` for cell `j` in W/R/b.
    @inline(__always) public func row(_ gate: Gate, _ j: Int) -> Int { gate.index * hiddenSize + j }

    /// Rows of W, R and b: G·H.
    public var gateRows: Int { kind.gateCount * hiddenSize }

    /// Weights and biases, biases fused as stored; peepholes where any is non-zero (the zero ones a
    /// stack gives its layers without peepholes, like an all-zero ONNX `P`, are the plain cell).
    public var parameterCount: Int {
        W.count + R.count + b.count + hiddenBiasN.count + (peephole.contains { $0 != 0 } ? peephole.count : 0)
    }

    /// A layer with weights drawn from U(-k, k), k = scale/√H (PyTorch's default initialisation
    /// at scale 1); the GRU's b_hn likewise, zero in the reset-before variant.
    public static func random(kind: CellKind = .lstm, inputSize: Int, hiddenSize: Int, using rng: inout SeededGenerator,
                              scale: Float = 1, resetAfter: Bool = true, peephole: Bool = false) throws -> RecurrentLayer {
        let k = scale / Float(hiddenSize).squareRoot()
        let rows = kind.gateCount * hiddenSize
        let W = (0..<rows * inputSize).map { _ in rng.uniform(-k, k) }
        let R = (0..<rows * hiddenSize).map { _ in rng.uniform(-k, k) }
        let b = (0..<rows).map { _ in rng.uniform(-k, k) + rng.uniform(-k, k) }
        let bhn: [Float]? = kind == .gru ? (0..<hiddenSize).map { _ in resetAfter ? rng.uniform(-k, k) : 0 } : nil
        // A layer's peepholes are drawn after its other weights: a network without them draws as before.
        let p: [Float]? = peephole ? (0..<3 * hiddenSize).map { _ in rng.uniform(-k, k) } : nil
        return try RecurrentLayer(kind: kind, inputSize: inputSize, hiddenSize: hiddenSize, W: W, R: R, b: b,
                                  hiddenBiasN: bhn, resetAfter: resetAfter, peephole: p)
    }
}

/// Which state of a bidirectional last level a readout of the last step reads (METHOD.md §1).
/// PyTorch code reads either, and a state dict does not say which; for a stack without reverse
/// layers the two are the same.
public enum FinalStateReading: String, Sendable, Equatable, CaseIterable {
    /// `output[:, -1]`: every direction's h at the last time step (a reverse direction after one step).
    case lastStep = "last-step"
    /// `cat(h_n[-2], h_n[-1])`: each direction's state after its last step (a reverse direction at time 0).
    case finalStates = "final-states"
}

/// A stack of recurrent levels of one cell kind, optionally followed by a linear readout
/// y = V h + a. Each level holds one or two directed layers (forward, reverse, or both): every
/// directed layer of a level reads the level below's output at each step, and a level's output is
/// its directions' h concatenated, forward first (PyTorch `bidirectional=True`, ONNX
/// `direction="bidirectional"`, Keras `Bidirectional(merge_mode="concat")`).
public struct RecurrentNetwork: Sendable, Equatable {
    /// Every directed layer, level after level, forward before reverse: the flat order of
    /// `layout`'s (layer, direction) blocks. A stack without reverse layers has one per level.
    /// Weights may be changed in place; sizes and directions are checked once, at `init`.
    public var layers: [RecurrentLayer]
    /// Per level, the indices in `layers` of its directed layers.
    public let levels: [[Int]]
    public var readout: Readout?

    public struct Readout: Sendable, Equatable {
        public var V: [Float]   // [K × W_last], row-major; W_last the last level's output width
        public var a: [Float]   // [K]
        /// Which states a last-step readout reads from a bidirectional last level.
        public var reading: FinalStateReading
        public var outputs: Int { a.count }
        public init(V: [Float], a: [Float], reading: FinalStateReading = .lastStep) {
            self.V = V; self.a = a; self.reading = reading
        }
    }

    /// A stack of forward layers, each its own level.
    /// - Throws: `ModelError.shape` when there is no layer, the layers mix kinds, a layer does not
    ///   read the one below, or the readout does not read the last layer.
    public init(layers: [RecurrentLayer], readout: Readout? = nil) throws {
        try self.init(levels: layers.map { [$0] }, readout: readout)
    }

    /// A stack of levels of one or two directed layers.
    /// - Throws: `ModelError.shape` when there is no level, a level is empty, repeats a direction
    ///   or has more than two, its layers read different widths, the layers mix kinds, a level does
    ///   not read the one below's output, or the readout does not read the last level's output.
    public init(levels: [[RecurrentLayer]], readout: Readout? = nil) throws {
        guard !levels.isEmpty else { throw ModelError.shape("a network needs at least one layer") }
        let given = levels.flatMap { $0 }
        guard given.allSatisfy({ $0.kind == given[0].kind && $0.resetAfter == given[0].resetAfter }) else {
            throw ModelError.shape("every layer of a network must be of one cell kind")
        }
        // Peepholes are a property of the whole stack (the kernels are built for one cell): where
        // some layers have them, the others get zero peephole weights, which compute the same.
        var levels = levels
        if given.contains(where: \.hasPeephole) {
            levels = try levels.map { try $0.map { $0.hasPeephole ? $0 : try $0.withPeephole([Float](repeating: 0, count: 3 * $0.hiddenSize)) } }
        }
        let layers = levels.flatMap { $0 }
        var width = layers[0].inputSize
        for (l, level) in levels.enumerated() {
            guard !level.isEmpty, level.count <= 2, zip(level, level.dropFirst()).allSatisfy({ $0.direction < $1.direction }) else {
                throw ModelError.shape("layer \(l) must hold a forward layer, a reverse layer, or one of each (forward first)")
            }
            for layer in level where layer.inputSize != width {
                throw ModelError.shape("layer \(l) takes \(layer.inputSize) inputs but " + (l == 0 ? "another direction takes \(width)" : "layer \(l - 1) gives \(width)"))
            }
            width = level.reduce(0) { $0 + $1.hiddenSize }
        }
        if let readout {
            guard readout.outputs > 0, readout.V.count == readout.outputs * width else {
                throw ModelError.shape("readout V has \(readout.V.count) values, expected \(readout.outputs)×\(width)")
            }
        }
        var next = 0
        self.levels = levels.map { level in level.map { _ in defer { next += 1 }; return next } }
        self.layers = layers
        self.readout = readout
    }

    public var kind: CellKind { layers[0].kind }
    /// Whether the stack's LSTM cells have peepholes (every layer, or none: `init` makes it so).
    public var hasPeephole: Bool { layers[0].hasPeephole }
    public var inputSize: Int { layers[0].inputSize }
    public var cellCount: Int { layout.count }

    /// Whether every level is one forward layer (no reverse direction anywhere).
    public var isForwardOnly: Bool { layers.allSatisfy { $0.direction == .forward } && levels.count == layers.count }

    /// The width of level `l`'s output: its directions' cells together.
    public func outputWidth(ofLevel l: Int) -> Int { levels[l].reduce(0) { $0 + layers[$1].hiddenSize } }

    /// The width the readout reads: the last level's output.
    public var outputWidth: Int { outputWidth(ofLevel: levels.count - 1) }

    /// The directed layer a cell belongs to.
    public func layer(of cell: CellID) -> RecurrentLayer { layers[layerIndex(level: cell.layer, direction: cell.direction)] }

    /// The index in `layers` of level `level`'s `direction`.
    public func layerIndex(level: Int, direction: TimeDirection) -> Int {
        levels[level].first { layers[$0].direction == direction }!
    }

    /// A seeded random network, for demos, tests and benchmarks: one level per hidden size, each
    /// with a layer per entry of `directions` (forward only by default; [.forward, .reverse] gives
    /// a bidirectional stack, read at `reading`).
    public static func random(kind: CellKind = .lstm, seed: UInt64, inputSize: Int, hiddenSizes: [Int], outputs: Int = 0,
                              scale: Float = 1, resetAfter: Bool = true, peephole: Bool = false,
                              directions: [TimeDirection] = [.forward], reading: FinalStateReading = .lastStep) throws -> RecurrentNetwork {
        var rng = SeededGenerator(seed: seed)
        var levels: [[RecurrentLayer]] = []
        var width = inputSize
        for h in hiddenSizes {
            levels.append(try directions.map { direction in
                var layer = try RecurrentLayer.random(kind: kind, inputSize: width, hiddenSize: h, using: &rng, scale: scale,
                                                      resetAfter: resetAfter, peephole: peephole)
                layer.direction = direction
                return layer
            })
            width = h * directions.count
        }
        var readout: Readout?
        if outputs > 0 {
            let k = 1 / Float(width).squareRoot()
            readout = Readout(V: (0..<outputs * width).map { _ in rng.uniform(-k, k) },
                              a: (0..<outputs).map { _ in rng.uniform(-k, k) }, reading: reading)
        }
        return try RecurrentNetwork(levels: levels, readout: readout)
    }
}

public enum ModelError: Error, CustomStringConvertible, Equatable {
    case shape(String)
    case nonFinite(String)
    public var description: String {
        switch self {
        case .shape(let s): "bad model shape: \(s)"
        case .nonFinite(let s): "bad model weights: \(s)"
        }
    }
}
