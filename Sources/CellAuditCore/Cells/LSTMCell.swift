/// The LSTM update of METHOD.md §1 (PyTorch `nn.LSTM`) and its peephole variant (§8, ONNX `P`),
/// written once for every Swift path: the batched forward, the decoupled response engine, rest
/// states and data means all call `update`. The kernels' twin is `Kernels/cell_lstm.h`.
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

    /// The peephole update (METHOD.md §8): a_i += p_i⊙c, a_f += p_f⊙c on the memory c_{t−1},
    /// then c' as `update`, then a_o += p_o⊙c'; returns h' = σ(a_o)⊙tanh(c'). The pre-activations
    /// are left as the gates saw them (the relevance tape records them).
    @_transparent
    public static func update(i ai: inout Float32x16, f af: inout Float32x16, g ag: Float32x16, o ao: inout Float32x16,
                              c: inout Float32x16, peephole p: (Float32x16, Float32x16, Float32x16)) -> Float32x16 {
        ai = fmadd(p.0, c, ai)
        af = fmadd(p.1, c, af)
        let i = vsigmoid(ai), f = vsigmoid(af), g = vtanh(ag)
        c = fmadd(f, c, i * g)
        ao = fmadd(p.2, c, ao)
        return vsigmoid(ao) * vtanh(c)
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

/// Eight decoupled peephole LSTM cells (layout as `LSTMLanes`, with the planes p_i, p_f, p_o
/// after the biases): each cell's peepholes see its own c, so decoupling leaves them whole.
struct PeepholeLSTMLanes: DecoupledLanes {
    var lanes: LSTMLanes
    var p: (Float32x16, Float32x16, Float32x16)

    init(_ cells: DecoupledCells, group: Int) {
        lanes = LSTMLanes(cells, group: group)
        let load = cells.laneLoader(group: group)
        p = (load(12), load(13), load(14))
    }

    @_transparent
    func step(u: Float32x16, h: inout Float32x16, c: inout Float32x16) {
        let w = lanes.w, r = lanes.r, b = lanes.b
        var ai = fmadd(w.0, u, fmadd(r.0, h, b.0)), af = fmadd(w.1, u, fmadd(r.1, h, b.1)), ao = fmadd(w.3, u, fmadd(r.3, h, b.3))
        h = LSTMCell.update(i: &ai, f: &af, g: fmadd(w.2, u, fmadd(r.2, h, b.2)), o: &ao, c: &c, peephole: p)
    }
}
