import Foundation
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

extension LSTMCell: CellBackwardRules {
    /// LRP (METHOD.md §7): h = o⊙tanh(c) sends everything to c; c = f⊙c₋ + i⊙g is a sum of two
    /// signals (N = 2H), f⊙c₋ to the memory of step t − 1, i⊙g through g's map.
    @inline(__always) static func lrpMessages(_ row: inout LRPRow) {
        let H = row.H, eps = row.epsilon, bf = row.biasFactor, t = row.t, N = row.tape.rows
        let pre = row.pre, b = row.b, rr = row.atH, mr = row.messages, cm = row.memory
        let ct = row.tape.c.pointer + (t * N + row.r) * H
        let cp: UnsafePointer<Float>? = t > 0 ? UnsafePointer(row.tape.c.pointer + ((t - 1) * N + row.r) * H) : nil
        var least = row.least, sum = Float32x16()
        forEachLaneGroup(H) { j, w in
            let c = Float32x16.load(ct + j, count: w), s = vstabiliser(c, eps), d = c + s
            least = pointwiseMin(least, vabsFirst(d, count: w))
            let msg = (Float32x16.load(cm + j, count: w) + .load(rr + j, count: w)) / d
            msg.store(mr + j, count: w)
            sum += firstLanes(s * msg, count: w)
        }
        let share = bf * sum.sum() / Float(2 * H)
        var sumG = Float32x16()
        forEachLaneGroup(H) { j, w in
            let i = vsigmoid(.load(pre + j, count: w)), f = vsigmoid(.load(pre + H + j, count: w))
            let ag = Float32x16.load(pre + 2 * H + j, count: w), g = vtanh(ag)
            let msg = Float32x16.load(mr + j, count: w)
            fmadd(f * load(cp, j, w), msg, share).store(cm + j, count: w)
            let s = vstabiliser(ag, eps), d = ag + s
            least = pointwiseMin(least, vabsFirst(d, count: w))
            let mg = fmadd(i * g, msg, share) / d
            mg.store(mr + j, count: w)
            sumG += firstLanes((Float32x16.load(b + 2 * H + j, count: w) + s) * mg, count: w)
        }
        row.toInputShare = bf * sumG.sum() / row.mapInputs
        row.toRecurrentShare = row.toInputShare
        row.least = least
    }

    /// The gradient: every gate's derivative, and ∂/∂c carried back through f (and the
    /// peepholes: o reads c_t, i and f read c_{t−1}).
    @inline(__always) static func gradientLanes(_ row: GradientRow, j: Int, n: Int) {
        let H = row.H, t = row.t, N = row.tape.rows, pre = row.pre, ar = row.dGates, cm = row.memory
        let dh = Float32x16.load(row.dh + j, count: n)
        let ct = row.tape.c.pointer + (t * N + row.r) * H
        let cp: UnsafePointer<Float>? = t > 0 ? UnsafePointer(row.tape.c.pointer + ((t - 1) * N + row.r) * H) : nil
        let i = vsigmoid(.load(pre + j, count: n)), f = vsigmoid(.load(pre + H + j, count: n))
        let g = vtanh(.load(pre + 2 * H + j, count: n)), o = vsigmoid(.load(pre + 3 * H + j, count: n))
        let tc = vtanh(.load(ct + j, count: n))
        var dc = Float32x16.load(cm + j, count: n) + dh * o * (1 - tc * tc)
        let dao = dh * tc * o * (1 - o)
        if let p = row.peephole { dc = fmadd(dao, .load(p + 2 * H + j, count: n), dc) }
        let dai = dc * g * i * (1 - i), daf = dc * load(cp, j, n) * f * (1 - f)
        dai.store(ar + j, count: n)
        daf.store(ar + H + j, count: n)
        (dc * i * (1 - g * g)).store(ar + 2 * H + j, count: n)
        dao.store(ar + 3 * H + j, count: n)
        if let p = row.peephole {
            fmadd(dai, .load(p + j, count: n), fmadd(daf, .load(p + H + j, count: n), dc * f)).store(cm + j, count: n)
        } else {
            (dc * f).store(cm + j, count: n)
        }
    }
}

extension LSTMCell: CellMapRules {
    /// F(h, c) = (o⊙tanh(c'), c') with c' = f⊙c + i⊙g, by the chain rule through every gate; the
    /// peepholes add the paths through p_i, p_f (from c) and p_o (from c'). ∂/∂c is diagonal.
    @inline(__always) static func mapRow(_ m: MapRows, _ r: Int) {
        let H = m.H, D = m.D, next = m.next.pointer, J = m.J.pointer, R = m.R, states = m.states.pointer, jo = r * D * D
        let P = m.peephole, peepholes = P != nil
        for i in 0..<H {
            let c = states[r * D + H + i]
            let ig = sigmoid(peepholes ? m.a(r, 0, i) + P![i] * c : m.a(r, 0, i)), fg = sigmoid(peepholes ? m.a(r, 1, i) + P![H + i] * c : m.a(r, 1, i))
            let g = tanh(m.a(r, 2, i))
            let c2 = fg * c + ig * g, tc = tanh(c2)
            let og = sigmoid(peepholes ? m.a(r, 3, i) + P![2 * H + i] * c2 : m.a(r, 3, i))
            next[r * D + i] = og * tc
            next[r * D + H + i] = c2
            guard m.jacobian else { continue }
            let di = g * ig * (1 - ig), df = c * fg * (1 - fg), dg = ig * (1 - g * g)
            let dho = tc * og * (1 - og), dhc = og * (1 - tc * tc)
            // With peepholes c' also moves o (dh/dc' gains dho·p_o), and c moves i and f.
            let dhdc = peepholes ? dhc + dho * P![2 * H + i] : dhc
            let dcdc = peepholes ? fg + di * P![i] + df * P![H + i] : fg
            for k in 0..<H {
                let dc = di * R[i * H + k] + df * R[(H + i) * H + k] + dg * R[(2 * H + i) * H + k]
                J[jo + (H + i) * D + k] = dc
                J[jo + i * D + k] = dho * R[(3 * H + i) * H + k] + dhdc * dc
            }
            // ∂/∂c is diagonal: zeros but for cell i's own c.
            (J + jo + (H + i) * D + H).update(repeating: 0, count: H)
            (J + jo + i * D + H).update(repeating: 0, count: H)
            J[jo + (H + i) * D + H + i] = dcdc
            J[jo + i * D + H + i] = dhdc * dcdc
        }
    }
}
