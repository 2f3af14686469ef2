/// The Elman RNN update of METHOD.md §1 (PyTorch `nn.RNN`): h' = act(pre), act tanh or ReLU.
/// Written once for every Swift path; the kernels' twin is `Kernels/cell_rnn.h`.
public enum RNNCell {
    @_transparent
    public static func update(_ a: Float32x16, relu: Bool) -> Float32x16 {
        relu ? a.replacing(with: 0, where: a .< 0) : vtanh(a)
    }
}

/// Eight decoupled RNN cells side by side under two stimuli (layout as `LSTMLanes`): h' =
/// act(w·u + r·h + b). `Activation` fixes tanh or ReLU at compile time.
struct RNNLanes<Activation: RNNActivation>: DecoupledLanes {
    var w: Float32x16, r: Float32x16, b: Float32x16

    init(_ cells: DecoupledCells, group: Int) {
        let p = cells.laneLoader(group: group)
        w = p(0); r = p(1); b = p(2)
    }

    @_transparent
    func step(u: Float32x16, h: inout Float32x16, c: inout Float32x16) {
        h = RNNCell.update(fmadd(w, u, fmadd(r, h, b)), relu: Activation.relu)
    }
}

protocol RNNActivation { static var relu: Bool { get } }
enum TanhActivation: RNNActivation { static var relu: Bool { false } }
enum ReLUActivation: RNNActivation { static var relu: Bool { true } }

/// Eight decoupled cells of one kind side by side under two stimuli, for the CPU response engine.
protocol DecoupledLanes {
    init(_ cells: DecoupledCells, group: Int)
    /// One time step under input u (per lane); c is the LSTM's memory, untouched by other kinds.
    func step(u: Float32x16, h: inout Float32x16, c: inout Float32x16)
}

extension DecoupledCells {
    /// A loader of parameter plane q for cells 8·group … 8·group + 7, in both halves of 16 lanes.
    func laneLoader(group: Int) -> (Int) -> Float32x16 {
        let n = cellCount, first = group * 8, lanes = min(8, n - first)
        return { plane in
            var v = Float32x8()
            for l in 0..<lanes { v[l] = self.parameters[plane * n + first + l] }
            return Float32x16(lowHalf: v, highHalf: v)
        }
    }
}
