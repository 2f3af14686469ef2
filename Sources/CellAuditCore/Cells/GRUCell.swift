/// The GRU update of METHOD.md §1 (PyTorch `nn.GRU`), written once for every Swift path. The
/// caller forms the n pre-activation, because the two GRU variants differ only there:
/// reset-after (PyTorch): n_pre = W_n x + b_in + r⊙(R_n h + b_hn);
/// reset-before (Keras `reset_after=False`, ONNX `linear_before_reset=0`): n_pre = W_n x + b_n + R_n (r⊙h).
/// The kernels' twin is `Kernels/cell_gru.h`.
public enum GRUCell {
    /// r = σ(r_pre), the reset gate.
    @_transparent
    public static func reset(_ ar: Float32x16) -> Float32x16 { vsigmoid(ar) }

    /// h' = (1 − z)⊙n + z⊙h with z = σ(z_pre), n = tanh(n_pre); written n + z⊙(h − n).
    @_transparent
    public static func update(z az: Float32x16, n an: Float32x16, h: Float32x16) -> Float32x16 {
        let z = vsigmoid(az), n = vtanh(an)
        return fmadd(z, h - n, n)
    }
}

/// Eight decoupled GRU cells side by side under two stimuli (layout as `LSTMLanes`). Each keeps
/// its own diagonal recurrent weights in r, z and n; n's recurrent part r_n·h + b_hn sits inside
/// the reset gate. For one decoupled cell r_n·(r·h) = r·(r_n·h), so both variants share this
/// step: a reset-before cell has b_hn = 0 (METHOD.md §2; the clamped mode puts the other cells'
/// constant where each variant has it, see `DecoupledCells`).
struct GRULanes: DecoupledLanes {
    var w: (Float32x16, Float32x16, Float32x16), r: (Float32x16, Float32x16, Float32x16)
    var b: (Float32x16, Float32x16, Float32x16), bhn: Float32x16

    init(_ cells: DecoupledCells, group: Int) {
        let p = cells.laneLoader(group: group)
        w = (p(0), p(1), p(2))
        r = (p(3), p(4), p(5))
        b = (p(6), p(7), p(8))
        bhn = p(9)
    }

    @_transparent
    func step(u: Float32x16, h: inout Float32x16, c: inout Float32x16) {
        let reset = GRUCell.reset(fmadd(w.0, u, fmadd(r.0, h, b.0)))
        let n = fmadd(w.2, u, fmadd(reset, fmadd(r.2, h, bhn), b.2))
        h = GRUCell.update(z: fmadd(w.1, u, fmadd(r.1, h, b.1)), n: n, h: h)
    }
}
