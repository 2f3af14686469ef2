/// The element-wise rules of one cell kind in the CPU backward passes (LRP and the gradient,
/// docs/METHOD.md §7), one conformance per kind beside its update in `Cells/`. The passes
/// themselves (`LayerTape.lrpBackward`, `gradientBackward`) are written once, generic over the
/// rules, so each kind's rules are inlined into its own specialisation; `CellKind.withRules` is
/// the one place a kind value becomes its rules.
protocol CellBackwardRules: SendableMetatype {
    /// LRP at one row and step: from the relevance at h_t (`row.atH`, 16 cells at a time) to the
    /// messages m = R / (z + ε·s) of the map that carries the signal (`row.messages`), with the
    /// kind's own intermediate shares (the LSTM's memory, the GRU's direct path and reset-after
    /// u), the bias-and-stabiliser constant of each map (`row.toInputShare`, `row.toRecurrentShare`)
    /// and the smallest denominator (`row.least`).
    static func lrpMessages(_ row: inout LRPRow)
    /// Whether the recurrent product of LRP multiplies `row.uMessages` (the GRU reset-after's u =
    /// R_n h + b_hn) rather than `row.messages`.
    static func lrpRecurrentReadsU(resetAfter: Bool) -> Bool
    /// The recurrent map's input at step t of row r (its relevance is input × message): h_{t−1},
    /// or the reset-before GRU's r⊙h_{t−1}; nil at t = 0 (the zero state).
    static func lrpRecurrentInput(_ tape: LayerTape, t: Int, r: Int) -> UnsafePointer<Float>?
    /// Whether a share reaches h_{t−1} outside the recurrent map (the GRU's z⊙h_{t−1}, in
    /// `row.direct`).
    static var hasDirectPath: Bool { get }

    /// The gradient at one row and step, cells j ..< j + n: from ∂/∂h_t (`row.dh`) to ∂/∂ of the
    /// gate pre-activations (`row.dGates`, and the reset-after GRU's `row.dGatesRecurrent`), and
    /// the kind's own carried derivatives (the LSTM's ∂/∂c, the GRU's direct path).
    static func gradientLanes(_ row: GradientRow, j: Int, n: Int)
    /// The gradient's products at step t after the element-wise pass: ∂/∂h_{t−1} into
    /// `p.toPrevious` (through R, and any direct path), and any gate derivative that needs a
    /// product first (the reset-before GRU's reset gate, behind R_n (r⊙h)). The product of the
    /// gate derivatives with W (to the input) follows it.
    static func gradientRecurrent(_ p: GradientProducts)
}

/// What the gradient's products at one step read and write (`gradientRecurrent`).
struct GradientProducts {
    let N: Int, H: Int, GH: Int, t: Int, workers: Int
    let tape: LayerTape
    /// R [G·H × H].
    let R: UnsafePointer<Float>
    /// [N][G·H] from `gradientLanes`: `dGates` (updated in place where a product completes
    /// them) and `dGatesRecurrent`.
    let dGates: UnsafeMutablePointer<Float>, dGatesRecurrent: UnsafeMutablePointer<Float>
    /// [N][H]: scratch, the direct path, and ∂/∂h_{t−1} (written).
    let scratch: UnsafeMutablePointer<Float>, direct: UnsafeMutablePointer<Float>, toPrevious: UnsafeMutablePointer<Float>
}

extension CellBackwardRules {
    /// ∂/∂h_{t−1} = dGates · R (every gate reads h_{t−1} through R).
    @inline(__always) static func gradientRecurrent(_ p: GradientProducts) {
        multiply(m: p.N, n: p.H, k: p.GH, p.dGates, lda: p.GH, p.R, ldb: p.H, p.toPrevious, ldc: p.H, beta: 0, workers: p.workers)
    }
    static func lrpRecurrentReadsU(resetAfter: Bool) -> Bool { false }
    static func lrpRecurrentInput(_ tape: LayerTape, t: Int, r: Int) -> UnsafePointer<Float>? { UnsafePointer(tape.previousH(t, r)) }
    static var hasDirectPath: Bool { false }
}

/// A cell kind's rules on the CPU beyond its update: the backward passes' and the float64 map's.
typealias CellRules = CellBackwardRules & CellMapRules

/// Generic code over a kind's rules (`CellKind.withRules`).
protocol CellRulesVisitor {
    func visit<Rules: CellRules>(_ rules: Rules.Type)
}

extension CellKind {
    /// Calls `visitor` with the kind's rules (`CellRules`, each kind's in its `Cells/` file): the
    /// one place a kind value becomes its rules. The rules' type is static in each case, so the
    /// visitor's generic code is specialised per kind and the rules inlined into it.
    func withRules(_ visitor: some CellRulesVisitor) {
        switch self {
        case .lstm: visitor.visit(LSTMCell.self)
        case .gru: visitor.visit(GRUCell.self)
        case .rnnTanh, .rnnReLU: visitor.visit(RNNCell.self)
        }
    }
}

/// One row at one step of LRP through a layer: what a kind's `lrpMessages` reads and writes.
struct LRPRow {
    let H: Int, epsilon: Float, biasFactor: Float
    /// The number of inputs of the map fed by the layer's input and h (I + H).
    let mapInputs: Float
    let tape: LayerTape, t: Int, r: Int
    /// This row's gate pre-activations at t [G·H] (as the tape recorded them), the biases b
    /// [G·H] and the GRU's b_hn [H].
    let pre: UnsafeMutablePointer<Float>, b: UnsafeMutablePointer<Float>, bhn: UnsafeMutablePointer<Float>
    /// The relevance at h_t [H] (read).
    let atH: UnsafeMutablePointer<Float>
    /// Messages of the signal's map [H] (written).
    let messages: UnsafeMutablePointer<Float>
    /// The LSTM's relevance at c_{t−1} [H] (read as what reached c_t from step t + 1, written).
    let memory: UnsafeMutablePointer<Float>
    /// The GRU's relevance at h_{t−1} through z⊙h_{t−1} [H] (written).
    let direct: UnsafeMutablePointer<Float>
    /// The reset-after GRU's messages of u = R_n h + b_hn [H] (written).
    let uMessages: UnsafeMutablePointer<Float>
    /// The bias-and-stabiliser share added to every input of the input map, and of the recurrent
    /// map (where it differs: the reset-after GRU's u).
    var toInputShare: Float = 0, toRecurrentShare: Float = 0
    /// The smallest |z + ε·s| so far (per lane).
    var least = Float32x16(repeating: .infinity)
}

/// One row at one step of the gradient through a layer: what a kind's `gradientLanes` reads
/// and writes.
struct GradientRow {
    let H: Int
    let tape: LayerTape, t: Int, r: Int
    let pre: UnsafeMutablePointer<Float>, bhn: UnsafeMutablePointer<Float>
    /// ∂score/∂h_t [H] (read).
    let dh: UnsafeMutablePointer<Float>
    /// ∂/∂ of the gate pre-activations [G·H] as the input and recurrent maps see them
    /// (`dGatesRecurrent`: the reset-after GRU's recurrent map, whose n block is behind r).
    let dGates: UnsafeMutablePointer<Float>, dGatesRecurrent: UnsafeMutablePointer<Float>
    /// The LSTM's ∂/∂c carried to step t − 1 [H]; the GRU's direct ∂/∂h_{t−1} [H].
    let memory: UnsafeMutablePointer<Float>, direct: UnsafeMutablePointer<Float>
    /// The LSTM's peepholes (p_i, p_f, p_o, H each), when it has them.
    let peephole: UnsafeMutablePointer<Float>?
    let relu: Bool
}

/// 16 lanes of ±ε by the sign of z (sign(0) = +1): the ε-rule's stabiliser.
@inline(__always) func vstabiliser(_ z: Float32x16, _ eps: Float) -> Float32x16 {
    Float32x16(repeating: -eps).replacing(with: eps, where: z .>= 0)
}

let laneIndex = Float32x16(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)

/// |d| in the first `count` lanes, +∞ past them (so padding never sets a minimum).
@inline(__always) func vabsFirst(_ d: Float32x16, count: Int) -> Float32x16 {
    count == 16 ? vabs(d) : vabs(d).replacing(with: .infinity, where: laneIndex .>= Float(count))
}

/// Runs `body(j, w)` over 0 ..< count in groups of w = 16 lanes, the last group shorter. Inlined,
/// the full groups see w = 16 as a constant, so their loads and stores are plain vector moves.
@inline(__always) func forEachLaneGroup(_ count: Int, _ body: (Int, Int) -> Void) {
    var j = 0
    while j + 16 <= count { body(j, 16); j += 16 }
    if j < count { body(j, count - j) }
}

/// v in the first `count` lanes, 0 past them: a padded lane's term never enters a sum (its
/// denominator may be 0).
@inline(__always) func firstLanes(_ v: Float32x16, count: Int) -> Float32x16 {
    count == 16 ? v : v.replacing(with: 0, where: laneIndex .>= Float(count))
}

/// 16 lanes from p + j (w of them), or zeros for the zero initial state (p nil).
@inline(__always) func load(_ p: UnsafePointer<Float>?, _ j: Int, _ w: Int) -> Float32x16 {
    p.map { .load($0 + j, count: w) } ?? Float32x16()
}
