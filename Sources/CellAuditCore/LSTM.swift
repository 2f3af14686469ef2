/// The four LSTM gates in CellAudit's canonical order (PyTorch's): input, forget, cell, output.
public enum Gate: Int, CaseIterable, Sendable {
    case input = 0, forget, cell, output
}

/// One LSTM layer in the canonical layout of METHOD.md §1 (PyTorch semantics, no peepholes):
/// `W` is [4H × I], `R` is [4H × H], both row-major with gate blocks in order i, f, g, o, and
/// `b` is the fused bias b_ih + b_hh [4H].
public struct LSTMLayer: Sendable, Equatable {
    public let inputSize: Int
    public let hiddenSize: Int
    public var W: [Float]
    public var R: [Float]
    public var b: [Float]

    public init(inputSize: Int, hiddenSize: Int, W: [Float], R: [Float], b: [Float]) throws {
        guard inputSize > 0, hiddenSize > 0 else {
            throw ModelError.shape("LSTM layer sizes must be positive, got input \(inputSize), hidden \(hiddenSize)")
        }
        let h4 = 4 * hiddenSize
        guard W.count == h4 * inputSize else { throw ModelError.shape("W has \(W.count) values, expected \(h4)×\(inputSize)") }
        guard R.count == h4 * hiddenSize else { throw ModelError.shape("R has \(R.count) values, expected \(h4)×\(hiddenSize)") }
        guard b.count == h4 else { throw ModelError.shape("b has \(b.count) values, expected \(h4)") }
        for (name, values) in [("W", W), ("R", R), ("b", b)] where !values.allSatisfy(\.isFinite) {
            throw ModelError.nonFinite("LSTM weight \(name) contains NaN or Inf")
        }
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        self.W = W
        self.R = R
        self.b = b
    }

    /// Row of gate `gate` for cell `j` in W/R/b.
    @inline(__always) public func row(_ gate: Gate, _ j: Int) -> Int { gate.rawValue * hiddenSize + j }

    /// A layer with weights drawn from U(-k, k), k = 1/√H (PyTorch's default initialisation).
    public static func random(inputSize: Int, hiddenSize: Int, using rng: inout SeededGenerator,
                              scale: Float = 1) throws -> LSTMLayer {
        let k = scale / Float(hiddenSize).squareRoot()
        let h4 = 4 * hiddenSize
        return try LSTMLayer(
            inputSize: inputSize, hiddenSize: hiddenSize,
            W: (0..<h4 * inputSize).map { _ in rng.uniform(-k, k) },
            R: (0..<h4 * hiddenSize).map { _ in rng.uniform(-k, k) },
            b: (0..<h4).map { _ in rng.uniform(-k, k) + rng.uniform(-k, k) })
    }
}

/// A stack of LSTM layers, optionally followed by a linear readout y = V h + a.
public struct LSTMNetwork: Sendable, Equatable {
    public var layers: [LSTMLayer]
    public var readout: Readout?

    public struct Readout: Sendable, Equatable {
        public var V: [Float]   // [K × H_last], row-major
        public var a: [Float]   // [K]
        public var outputs: Int { a.count }
        public init(V: [Float], a: [Float]) { self.V = V; self.a = a }
    }

    public init(layers: [LSTMLayer], readout: Readout? = nil) throws {
        guard !layers.isEmpty else { throw ModelError.shape("a network needs at least one layer") }
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

    public var inputSize: Int { layers[0].inputSize }
    public var cellCount: Int { layers.reduce(0) { $0 + $1.hiddenSize } }

    /// A seeded random network, for demos, tests and benchmarks.
    public static func random(seed: UInt64, inputSize: Int, hiddenSizes: [Int], outputs: Int = 0,
                              scale: Float = 1) throws -> LSTMNetwork {
        var rng = SeededGenerator(seed: seed)
        var layers: [LSTMLayer] = []
        var width = inputSize
        for h in hiddenSizes {
            layers.append(try .random(inputSize: width, hiddenSize: h, using: &rng, scale: scale))
            width = h
        }
        var readout: Readout?
        if outputs > 0 {
            let k = 1 / Float(width).squareRoot()
            readout = Readout(V: (0..<outputs * width).map { _ in rng.uniform(-k, k) },
                              a: (0..<outputs).map { _ in rng.uniform(-k, k) })
        }
        return try LSTMNetwork(layers: layers, readout: readout)
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
