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
public struct RecurrentLayer: Sendable, Equatable {
    public let kind: CellKind
    public let inputSize: Int
    public let hiddenSize: Int
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

    /// - Throws: `ModelError.shape` when a size is not positive or a tensor has the wrong count,
    ///   `ModelError.nonFinite` when a weight is NaN or ±Inf.
    public init(kind: CellKind = .lstm, inputSize: Int, hiddenSize: Int, W: [Float], R: [Float], b: [Float],
                hiddenBiasN: [Float]? = nil, resetAfter: Bool = true) throws {
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
        for (name, values) in [("W", W), ("R", R), ("b", b), ("b_hn", bhn)] where !values.allSatisfy(\.isFinite) {
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
    }

    /// Row of gate `gate` for cell `j` in W/R/b.
    @inline(__always) public func row(_ gate: Gate, _ j: Int) -> Int { gate.index * hiddenSize + j }

    /// Rows of W, R and b: G·H.
    public var gateRows: Int { kind.gateCount * hiddenSize }

    /// Weights and biases, biases fused as stored.
    public var parameterCount: Int { W.count + R.count + b.count + hiddenBiasN.count }

    /// A layer with weights drawn from U(-k, k), k = scale/√H (PyTorch's default initialisation
    /// at scale 1); the GRU's b_hn likewise, zero in the reset-before variant.
    public static func random(kind: CellKind = .lstm, inputSize: Int, hiddenSize: Int, using rng: inout SeededGenerator,
                              scale: Float = 1, resetAfter: Bool = true) throws -> RecurrentLayer {
        let k = scale / Float(hiddenSize).squareRoot()
        let rows = kind.gateCount * hiddenSize
        let W = (0..<rows * inputSize).map { _ in rng.uniform(-k, k) }
        let R = (0..<rows * hiddenSize).map { _ in rng.uniform(-k, k) }
        let b = (0..<rows).map { _ in rng.uniform(-k, k) + rng.uniform(-k, k) }
        let bhn: [Float]? = kind == .gru ? (0..<hiddenSize).map { _ in resetAfter ? rng.uniform(-k, k) : 0 } : nil
        return try RecurrentLayer(kind: kind, inputSize: inputSize, hiddenSize: hiddenSize, W: W, R: R, b: b,
                                  hiddenBiasN: bhn, resetAfter: resetAfter)
    }
}

/// A stack of recurrent layers of one kind, optionally followed by a linear readout y = V h + a.
public struct RecurrentNetwork: Sendable, Equatable {
    public var layers: [RecurrentLayer]
    public var readout: Readout?

    public struct Readout: Sendable, Equatable {
        public var V: [Float]   // [K × H_last], row-major
        public var a: [Float]   // [K]
        public var outputs: Int { a.count }
        public init(V: [Float], a: [Float]) { self.V = V; self.a = a }
    }

    /// - Throws: `ModelError.shape` when there is no layer, the layers mix kinds, a layer does not
    ///   read the one below, or the readout does not read the last layer.
    public init(layers: [RecurrentLayer], readout: Readout? = nil) throws {
        guard !layers.isEmpty else { throw ModelError.shape("a network needs at least one layer") }
        guard layers.allSatisfy({ $0.kind == layers[0].kind && $0.resetAfter == layers[0].resetAfter }) else {
            throw ModelError.shape("every layer of a network must be of one cell kind")
        }
        for (l, pair) in zip(layers.indices.dropFirst(), zip(layers, layers.dropFirst())) {
            guard pair.1.inputSize == pair.0.hiddenSize else {
                throw ModelError.shape("layer \(l) takes \(pair.1.inputSize) inputs but layer \(l - 1) has \(pair.0.hiddenSize) cells")
            }
        }
        if let readout {
            guard readout.outputs > 0, readout.V.count == readout.outputs * layers.last!.hiddenSize else {
                throw ModelError.shape("readout V has \(readout.V.count) values, expected \(readout.outputs)×\(layers.last!.hiddenSize)")
            }
        }
        self.layers = layers
        self.readout = readout
    }

    public var kind: CellKind { layers[0].kind }
    public var inputSize: Int { layers[0].inputSize }
    public var cellCount: Int { layout.count }


    /// A seeded random network, for demos, tests and benchmarks.
    public static func random(kind: CellKind = .lstm, seed: UInt64, inputSize: Int, hiddenSizes: [Int], outputs: Int = 0,
                              scale: Float = 1, resetAfter: Bool = true) throws -> RecurrentNetwork {
        var rng = SeededGenerator(seed: seed)
        var layers: [RecurrentLayer] = []
        var width = inputSize
        for h in hiddenSizes {
            layers.append(try .random(kind: kind, inputSize: width, hiddenSize: h, using: &rng, scale: scale, resetAfter: resetAfter))
            width = h
        }
        var readout: Readout?
        if outputs > 0 {
            let k = 1 / Float(width).squareRoot()
            readout = Readout(V: (0..<outputs * width).map { _ in rng.uniform(-k, k) },
                              a: (0..<outputs).map { _ in rng.uniform(-k, k) })
        }
        return try RecurrentNetwork(layers: layers, readout: readout)
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
