import Foundation
import COpenBLAS
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

extension GRUCell: CellBackwardRules {
    /// LRP (METHOD.md §7): h' = (1 − z)⊙n + z⊙h is a sum of two signals (N = 2H), z⊙h straight to
    /// h_{t−1}; n = tanh(a) passes. Reset-after: a = W_n x + b_in + m is a map over x and m
    /// (identity), and m = r⊙u sends all to u = R_n h + b_hn, a map over h (N = H).
    @inline(__always) static func lrpMessages(_ row: inout LRPRow) {
        let H = row.H, eps = row.epsilon, bf = row.biasFactor, t = row.t, N = row.tape.rows, resetAfter = row.tape.layer.resetAfter
        let pre = row.pre, b = row.b, bhn = row.bhn, rr = row.atH, mr = row.messages, dr = row.direct
        let ht = row.tape.h.pointer + (t * N + row.r) * H, ax = row.tape.aux.pointer + (t * N + row.r) * H
        let hp = UnsafePointer(row.tape.previousH(t, row.r))
        var least = row.least, sum = Float32x16()
        forEachLaneGroup(H) { j, w in
            let h = Float32x16.load(ht + j, count: w), s = vstabiliser(h, eps), d = h + s
            least = pointwiseMin(least, vabsFirst(d, count: w))
            let msg = Float32x16.load(rr + j, count: w) / d
            msg.store(mr + j, count: w)
            sum += firstLanes(s * msg, count: w)
        }
        let share = bf * sum.sum() / Float(2 * H)
        var sumA = Float32x16()
        forEachLaneGroup(H) { j, w in
            let z = vsigmoid(.load(pre + H + j, count: w)), reset = vsigmoid(.load(pre + j, count: w))
            var a = Float32x16.load(pre + 2 * H + j, count: w)
            if resetAfter { a = fmadd(reset, .load(ax + j, count: w) + .load(bhn + j, count: w), a) }
            let n = vtanh(a), msg = Float32x16.load(mr + j, count: w)
            fmadd(z * load(hp, j, w), msg, share).store(dr + j, count: w)
            let s = vstabiliser(a, eps), d = a + s
            least = pointwiseMin(least, vabsFirst(d, count: w))
            let ma = fmadd((1 - z) * n, msg, share) / d
            ma.store(mr + j, count: w)
            sumA += firstLanes((Float32x16.load(b + 2 * H + j, count: w) + s) * ma, count: w)
        }
        let toInput = bf * sumA.sum() / row.mapInputs
        row.toInputShare = toInput
        row.toRecurrentShare = toInput
        if resetAfter {
            let ur = row.uMessages
            var sumU = Float32x16()
            forEachLaneGroup(H) { j, w in
                let reset = vsigmoid(.load(pre + j, count: w))
                let bias = Float32x16.load(bhn + j, count: w), u = Float32x16.load(ax + j, count: w) + bias
                let s = vstabiliser(u, eps), d = u + s
                least = pointwiseMin(least, vabsFirst(d, count: w))
                let msg = fmadd(reset * u, .load(mr + j, count: w), toInput) / d
                msg.store(ur + j, count: w)
                sumU += firstLanes((bias + s) * msg, count: w)
            }
            row.toRecurrentShare = bf * sumU.sum() / Float(H)
        }
        row.least = least
    }

    static func lrpRecurrentReadsU(resetAfter: Bool) -> Bool { resetAfter }

    /// The reset-before GRU's map reads r⊙h_{t−1}, whose product sends everything on to h.
    @inline(__always) static func lrpRecurrentInput(_ tape: LayerTape, t: Int, r: Int) -> UnsafePointer<Float>? {
        tape.layer.resetAfter ? UnsafePointer(tape.previousH(t, r)) : UnsafePointer(tape.aux.pointer + (t * tape.rows + r) * tape.layer.hiddenSize)
    }

    static var hasDirectPath: Bool { true }

    @inline(__always) static func gradientLanes(_ row: GradientRow, j: Int, n: Int) {
        let H = row.H, t = row.t, N = row.tape.rows, pre = row.pre, ar = row.dGates, br = row.dGatesRecurrent
        let dh = Float32x16.load(row.dh + j, count: n)
        let ax = row.tape.aux.pointer + (t * N + row.r) * H, hp = UnsafePointer(row.tape.previousH(t, row.r))
        let z = vsigmoid(.load(pre + H + j, count: n)), reset = vsigmoid(.load(pre + j, count: n))
        let u = Float32x16.load(ax + j, count: n) + .load(row.bhn + j, count: n)
        var a = Float32x16.load(pre + 2 * H + j, count: n)
        let resetAfter = row.tape.layer.resetAfter
        if resetAfter { a = fmadd(reset, u, a) }
        let nv = vtanh(a)
        (dh * z).store(row.direct + j, count: n)
        let dan = dh * (1 - z) * (1 - nv * nv)
        (dh * (load(hp, j, n) - nv) * z * (1 - z)).store(ar + H + j, count: n)
        dan.store(ar + 2 * H + j, count: n)
        if resetAfter {
            let dar = dan * u * reset * (1 - reset)
            dar.store(ar + j, count: n); dar.store(br + j, count: n)
            Float32x16.load(ar + H + j, count: n).store(br + H + j, count: n)
            (dan * reset).store(br + 2 * H + j, count: n)
        }
    }

    /// Reset-after: ∂/∂h_{t−1} through R of r, z and the n block behind r (`dGatesRecurrent`).
    /// Reset-before: n reads R_n (r⊙h), so q = ∂/∂(r⊙h) first, which reaches both h and the
    /// reset gate; then r and z through R. Both add the direct path z⊙h.
    @inline(__always) static func gradientRecurrent(_ p: GradientProducts) {
        let N = p.N, H = p.H, GH = p.GH
        if p.tape.layer.resetAfter {
            multiply(m: N, n: H, k: GH, p.dGatesRecurrent, lda: GH, p.R, ldb: H, p.toPrevious, ldc: H, beta: 0, workers: p.workers)
        } else {
            let tape = p.tape, t = p.t, ma = p.dGates, q = p.scratch, direct = p.direct
            multiply(m: N, n: H, k: H, ma + 2 * H, lda: GH, p.R + 2 * H * H, ldb: H, q, ldc: H, beta: 0, workers: p.workers)
            let qs = SendablePointer(q), ms = SendablePointer(ma), ds = SendablePointer(direct)
            forEachRow(N, workers: p.workers) { r in
                let pre = tape.pre.pointer + (t * N + r) * GH, ar = ms.pointer + r * GH, qr = qs.pointer + r * H
                let dr = ds.pointer + r * H, hp = UnsafePointer(tape.previousH(t, r))
                forEachLaneGroup(H) { j, n in
                    let reset = vsigmoid(.load(pre + j, count: n)), qv = Float32x16.load(qr + j, count: n)
                    (qv * load(hp, j, n) * reset * (1 - reset)).store(ar + j, count: n)
                    fmadd(qv, reset, .load(dr + j, count: n)).store(dr + j, count: n)
                }
            }
            multiply(m: N, n: H, k: 2 * H, ma, lda: GH, p.R, ldb: H, p.toPrevious, ldc: H, beta: 0, workers: p.workers)
        }
        for i in 0..<(N * H) { p.toPrevious[i] += p.direct[i] }
    }
}

extension GRUCell: CellMapRules {
    /// The reset-before GRU needs r first: rec's n block becomes R_n (r⊙h).
    static func prepareMap(_ m: MapRows) {
        guard !m.layer.resetAfter else { return }
        let H = m.H, GH = m.GH, rows = m.rows, pre = m.pre.pointer, rec = m.rec.pointer, hs = m.hs.pointer
        var rh = [Double](repeating: 0, count: rows * H)
        for r in 0..<rows { for j in 0..<H { rh[r * H + j] = sigmoid(pre[r * GH + j] + rec[r * GH + j]) * hs[r * H + j] } }
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(H), Int32(H), 1, rh, Int32(H),
                    m.R + 2 * H * H, Int32(H), 0, rec + 2 * H, Int32(GH))
    }

    /// F(h) = (1 − z)⊙n + z⊙h by the chain rule through r, z and n; the reset-before GRU's n
    /// reads R_n (r⊙h), so its Jacobian gains M = R_n · diag(h ⊙ r(1 − r)) · R_r.
    @inline(__always) static func mapRow(_ m: MapRows, _ r: Int) {
        let H = m.H, D = m.D, GH = m.GH, next = m.next.pointer, J = m.J.pointer, R = m.R, jo = r * D * D
        let pre = m.pre.pointer, rec = m.rec.pointer, hs = m.hs.pointer, bhn = m.bhn!
        let resetBefore = !m.layer.resetAfter
        let h = { (j: Int) in hs[r * H + j] }
        var outer: [Double] = []
        if resetBefore && m.jacobian {
            var scaled = [Double](repeating: 0, count: H * H)
            for k in 0..<H {
                let rk = sigmoid(m.a(r, 0, k)), w = h(k) * rk * (1 - rk)
                for l in 0..<H { scaled[k * H + l] = w * R[k * H + l] }
            }
            outer = [Double](repeating: 0, count: H * H)
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(H), Int32(H), Int32(H), 1,
                        R + 2 * H * H, Int32(H), scaled, Int32(H), 0, &outer, Int32(H))
        }
        for i in 0..<H {
            let rg = sigmoid(m.a(r, 0, i)), z = sigmoid(m.a(r, 1, i))
            let u = rec[r * GH + 2 * H + i] + (resetBefore ? 0 : bhn[i])
            let n = tanh(pre[r * GH + 2 * H + i] + (resetBefore ? u : rg * u))
            next[r * D + i] = (1 - z) * n + z * h(i)
            guard m.jacobian else { continue }
            let dn = (1 - z) * (1 - n * n), dz = (h(i) - n) * z * (1 - z)
            for k in 0..<H {
                let rn = R[(2 * H + i) * H + k]
                let throughN = resetBefore
                    ? rn * sigmoid(m.a(r, 0, k)) + outer[i * H + k]
                    : u * rg * (1 - rg) * R[i * H + k] + rg * rn
                J[jo + i * D + k] = dn * throughN + dz * R[(H + i) * H + k]
            }
            J[jo + i * D + i] += z
        }
    }
}
