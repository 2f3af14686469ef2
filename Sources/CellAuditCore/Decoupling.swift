/// The direction d in a layer's input space along which a scalar stimulus enters (METHOD.md §2).
public enum StimulusDirection: Sendable, Equatable {
    /// d = 1/√I · ones (the default).
    case all
    /// The unit vector of input channel K.
    case channel(Int)
    /// A user-given vector (used as given, not normalised).
    case vector([Float])

    func vector(inputSize: Int) throws -> [Float] {
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
/// b_k, per gate k.
///
/// Layout (the one the kernels read): `parameters[(q * 4 + k) * cellCount + j]` with q = 0 for
/// w, 1 for r, 2 for b and k the gate index: gate-major, so neighbouring cells are neighbours
/// in memory.
public struct DecoupledCells: Sendable, Equatable {
    public let cellCount: Int
    public var parameters: [Float]

    public static let valuesPerCell = 12

    public init(cellCount: Int, parameters: [Float]) {
        precondition(parameters.count == cellCount * Self.valuesPerCell)
        self.cellCount = cellCount
        self.parameters = parameters
    }

    public init(layer: LSTMLayer, direction: StimulusDirection = .all) throws {
        let d = try direction.vector(inputSize: layer.inputSize)
        let n = layer.hiddenSize
        var p = Array(repeating: Float(0), count: n * Self.valuesPerCell)
        for gate in Gate.allCases {
            let k = gate.rawValue
            for j in 0..<n {
                let row = layer.row(gate, j)
                var w: Float = 0
                for i in 0..<layer.inputSize { w += layer.W[row * layer.inputSize + i] * d[i] }
                p[(0 * 4 + k) * n + j] = w
                p[(1 * 4 + k) * n + j] = layer.R[row * n + j]
                p[(2 * 4 + k) * n + j] = layer.b[row]
            }
        }
        self.init(cellCount: n, parameters: p)
    }

    public func w(_ gate: Gate, _ j: Int) -> Float { parameters[(0 * 4 + gate.rawValue) * cellCount + j] }
    public func r(_ gate: Gate, _ j: Int) -> Float { parameters[(1 * 4 + gate.rawValue) * cellCount + j] }
    public func b(_ gate: Gate, _ j: Int) -> Float { parameters[(2 * 4 + gate.rawValue) * cellCount + j] }
}
