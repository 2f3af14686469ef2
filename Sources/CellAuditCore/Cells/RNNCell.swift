import Foundation
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

/// Generic code over a kind's decoupled lane step (`DecoupledCells.withLanes`).
protocol DecoupledLanesVisitor {
    associatedtype Result
    func visit<Lanes: DecoupledLanes>(_ lanes: Lanes.Type) -> Result
}

/// Eight decoupled cells of one kind side by side under two stimuli, for the CPU response engine.
protocol DecoupledLanes: SendableMetatype {
    init(_ cells: DecoupledCells, group: Int)
    /// One time step under input u (per lane); c is the LSTM's memory, untouched by other kinds.
    func step(u: Float32x16, h: inout Float32x16, c: inout Float32x16)
}

extension DecoupledCells {
    /// Calls `visitor` with the lane step of these cells' kind (the peephole LSTM's where they
    /// have peepholes): the one place a kind value becomes its decoupled step, for the response
    /// engine and the unstimulated runs alike. The step's type is static in each case, so the
    /// visitor's generic code is specialised and the step inlined.
    func withLanes<Visitor: DecoupledLanesVisitor>(_ visitor: Visitor) -> Visitor.Result {
        switch kind {
        case .lstm where peephole: visitor.visit(PeepholeLSTMLanes.self)
        case .lstm: visitor.visit(LSTMLanes.self)
        case .gru: visitor.visit(GRULanes.self)
        case .rnnTanh: visitor.visit(RNNLanes<TanhActivation>.self)
        case .rnnReLU: visitor.visit(RNNLanes<ReLUActivation>.self)
        }
    }

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

extension RNNCell: CellBackwardRules {
    /// LRP (METHOD.md §7): h' = act(W x + R h + b): the activation passes, one map over x and h.
    @inline(__always) static func lrpMessages(_ row: inout LRPRow) {
        let eps = row.epsilon, pre = row.pre, b = row.b, rr = row.atH, mr = row.messages
        var least = row.least, sumA = Float32x16()
        forEachLaneGroup(row.H) { j, w in
            let a = Float32x16.load(pre + j, count: w), s = vstabiliser(a, eps), d = a + s
            least = pointwiseMin(least, vabsFirst(d, count: w))
            let ma = Float32x16.load(rr + j, count: w) / d
            ma.store(mr + j, count: w)
            sumA += firstLanes((Float32x16.load(b + j, count: w) + s) * ma, count: w)
        }
        row.toInputShare = row.biasFactor * sumA.sum() / row.mapInputs
        row.toRecurrentShare = row.toInputShare
        row.least = least
    }

    /// The gradient through act: 1 − h² (tanh) or the step of the pre-activation (ReLU).
    @inline(__always) static func gradientLanes(_ row: GradientRow, j: Int, n: Int) {
        let dh = Float32x16.load(row.dh + j, count: n), pre = row.pre
        let ht = row.tape.h.pointer + (row.t * row.tape.rows + row.r) * row.H
        let slope = row.relu
            ? Float32x16().replacing(with: 1, where: Float32x16.load(pre + j, count: n) .> 0)
            : 1 - Float32x16.load(ht + j, count: n) * .load(ht + j, count: n)
        (dh * slope).store(row.dGates + j, count: n)
    }
}

extension RNNCell: CellMapRules {
    /// F(h) = act(W x + R h + b); J = diag(act′(a)) R, with ReLU′(0) = 0 as PyTorch takes it.
    @inline(__always) static func mapRow(_ m: MapRows, _ r: Int) {
        let H = m.H, D = m.D, next = m.next.pointer, J = m.J.pointer, R = m.R, jo = r * D * D
        let tanhKind = m.layer.kind == .rnnTanh
        for i in 0..<H {
            let ai = m.a(r, 0, i)
            let (y, dy) = tanhKind ? (tanh(ai), 1 - tanh(ai) * tanh(ai)) : (max(0, ai), ai > 0 ? 1.0 : 0.0)
            next[r * D + i] = y
            if m.jacobian { for k in 0..<H { J[jo + i * D + k] = dy * R[i * H + k] } }
        }
    }
}
