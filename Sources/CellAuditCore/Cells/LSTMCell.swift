/// The LSTM update of METHOD.md §1 (PyTorch `nn.LSTM`, no peepholes), written once for every
/// Swift path: the batched forward, the decoupled response engine, rest states and data means
/// all call `update`. The kernels' twin is `Kernels/cell_lstm.h`.
public enum LSTMCell {
    /// From gate pre-activations (i, f, g, o), each 16 lanes: c' = σ(f)⊙c + σ(i)⊙tanh(g) (in place),
    /// returns h' = σ(o)⊙tanh(c').
    @_transparent
    public static func update(i ai: Float32x16, f af: Float32x16, g ag: Float32x16, o ao: Float32x16,
                              c: inout Float32x16) -> Float32x16 {
        let i = vsigmoid(ai), f = vsigmoid(af), g = vtanh(ag), o = vsigmoid(ao)
        c = fmadd(f, c, i * g)
        return o * vtanh(c)
    }
}

/// Eight decoupled LSTM cells side by side under two stimuli: cell l of the group in lanes l and
/// 8 + l (missing cells have all-zero parameters). Pre-activations are w·u + (r·h + b).
struct LSTMLanes: DecoupledLanes {
    var w: (Float32x16, Float32x16, Float32x16, Float32x16), r: (Float32x16, Float32x16, Float32x16, Float32x16)
    var b: (Float32x16, Float32x16, Float32x16, Float32x16)

    init(_ cells: DecoupledCells, group: Int) {
        let p = cells.laneLoader(group: group)
        w = (p(0), p(1), p(2), p(3))
        r = (p(4), p(5), p(6), p(7))
        b = (p(8), p(9), p(10), p(11))
    }

    @_transparent
    func step(u: Float32x16, h: inout Float32x16, c: inout Float32x16) {
        h = LSTMCell.update(i: fmadd(w.0, u, fmadd(r.0, h, b.0)), f: fmadd(w.1, u, fmadd(r.1, h, b.1)),
                            g: fmadd(w.2, u, fmadd(r.2, h, b.2)), o: fmadd(w.3, u, fmadd(r.3, h, b.3)), c: &c)
    }
}
