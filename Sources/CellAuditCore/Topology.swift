/// The direction in which a layer's cells run through time (METHOD.md §8): `forward` reads steps
/// 0…T−1, `reverse` reads T−1…0 (PyTorch `bidirectional=True`'s second direction, ONNX
/// `direction="reverse"`). Every layer CellAudit reads today has one forward direction; the type
/// is here so that every cell is named by the direction it belongs to.
public enum TimeDirection: String, Sendable, Codable, CaseIterable, Comparable {
    case forward, reverse

    /// Forward before reverse (the order of PyTorch's `_reverse` tensors and of ONNX's
    /// `num_directions` axis).
    public static func < (a: TimeDirection, b: TimeDirection) -> Bool {
        a == .forward && b == .reverse
    }
}

/// The identity of one directed cell: its layer, the direction it runs in and its index among that
/// direction's cells (0…H−1). This replaces the untyped `(layer, cell)` pairs; the flat position
/// of a cell in every per-cell array comes from a `CellLayout`, never from hand arithmetic.
public struct CellID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var layer: Int
    public var direction: TimeDirection
    public var index: Int

    public init(layer: Int, direction: TimeDirection = .forward, index: Int) {
        self.layer = layer; self.direction = direction; self.index = index
    }

    /// Layer, then direction (forward first), then index: the flat order of `CellLayout`.
    public static func < (a: CellID, b: CellID) -> Bool {
        (a.layer, a.direction == .reverse ? 1 : 0, a.index) < (b.layer, b.direction == .reverse ? 1 : 0, b.index)
    }

    /// `L0 c12`, or `L0 rev c12` for a reverse cell: the label of tables and figure legends.
    public var description: String {
        direction == .forward ? "L\(layer) c\(index)" : "L\(layer) rev c\(index)"
    }

    /// The identity columns of a cell table (cells.csv, ablation.csv): layer and cell, with a
    /// direction column between them where the network has reverse layers (`directions`).
    public static func tableHeader(directions: Bool) -> [String] { directions ? ["layer", "direction", "cell"] : ["layer", "cell"] }

    /// This cell's fields under `tableHeader(directions:)`.
    public func tableFields(directions: Bool) -> [String] {
        directions ? [String(layer), direction.rawValue, String(index)] : [String(layer), String(index)]
    }

    /// `0:12`, or `0:rev:12` for a reverse cell: the short label of bar charts and heatmap rows.
    public var compactLabel: String {
        direction == .forward ? "\(layer):\(index)" : "\(layer):rev:\(index)"
    }
}

/// The flat order of every directed cell of a network: layer after layer, within a layer its
/// directions in `TimeDirection` order, within a direction cells by index. Per-cell arrays of the
/// whole network (ablation masks, clamp values, mean states, relevance per cell) are indexed by
/// `offset(of:)`; `cell(at:)` is its inverse.
public struct CellLayout: Sendable, Equatable {
    /// Per layer, its directions and each direction's cell count.
    public let layers: [[(direction: TimeDirection, cells: Int)]]
    /// Where each (layer, direction) block starts, in the same nesting as `layers`.
    private let starts: [[Int]]
    /// Every directed cell: Σ over layers and directions of the cell counts.
    public let count: Int

    /// - Parameter layers: per layer, its directions (distinct, in `TimeDirection` order) with
    ///   their cell counts (each ≥ 1).
    public init(layers: [[(direction: TimeDirection, cells: Int)]]) {
        precondition(layers.allSatisfy { !$0.isEmpty && $0.allSatisfy { $0.cells >= 1 } })
        precondition(layers.allSatisfy { zip($0, $0.dropFirst()).allSatisfy { $0.direction < $1.direction } })
        var starts: [[Int]] = [], next = 0
        for layer in layers {
            starts.append(layer.map { block in defer { next += block.cells }; return next })
        }
        self.layers = layers; self.starts = starts; self.count = next
    }

    public static func == (a: CellLayout, b: CellLayout) -> Bool {
        a.layers.map { $0.map(\.direction) } == b.layers.map { $0.map(\.direction) }
            && a.layers.map { $0.map(\.cells) } == b.layers.map { $0.map(\.cells) }
    }

    private func block(_ layer: Int, _ direction: TimeDirection) -> Int? {
        layers[layer].firstIndex { $0.direction == direction }
    }

    /// The flat position of `cell`. Traps on a cell the network does not have (a programming
    /// error: callers build cells from this layout or check them with `contains`).
    public func offset(of cell: CellID) -> Int {
        guard let b = block(cell.layer, cell.direction), (0..<layers[cell.layer][b].cells).contains(cell.index) else {
            preconditionFailure("\(cell) is not a cell of this network")
        }
        return starts[cell.layer][b] + cell.index
    }

    /// Whether the network has this cell.
    public func contains(_ cell: CellID) -> Bool {
        guard layers.indices.contains(cell.layer), let b = block(cell.layer, cell.direction) else { return false }
        return (0..<layers[cell.layer][b].cells).contains(cell.index)
    }

    /// The cell at flat position `flat` (0…count−1).
    public func cell(at flat: Int) -> CellID {
        precondition((0..<count).contains(flat), "cell \(flat) is outside 0..<\(count)")
        let l = starts.lastIndex { $0[0] <= flat }!
        let b = starts[l].lastIndex { $0 <= flat }!
        return CellID(layer: l, direction: layers[l][b].direction, index: flat - starts[l][b])
    }

    /// The flat positions of one direction's cells in layer `layer`.
    public func range(ofLayer layer: Int, direction: TimeDirection) -> Range<Int> {
        guard let b = block(layer, direction) else { preconditionFailure("layer \(layer) has no \(direction) direction") }
        return starts[layer][b]..<(starts[layer][b] + layers[layer][b].cells)
    }

    /// The flat positions of layer `layer`'s cells, all its directions.
    public func range(ofLayer layer: Int) -> Range<Int> {
        let first = starts[layer][0]
        return first..<(first + layers[layer].reduce(0) { $0 + $1.cells })
    }

    /// Layer `layer`'s cells in flat order.
    public func cells(ofLayer layer: Int) -> [CellID] {
        layers[layer].flatMap { block in (0..<block.cells).map { CellID(layer: layer, direction: block.direction, index: $0) } }
    }

    /// The cells of the chosen layers, in flat order.
    public func cells(ofLayers chosen: [Int]) -> [CellID] { chosen.flatMap { cells(ofLayer: $0) } }

    /// Every cell, in flat order.
    public var all: [CellID] { cells(ofLayers: Array(layers.indices)) }
}

extension RecurrentNetwork {
    /// The flat order of this network's cells: level after level, forward before reverse.
    public var layout: CellLayout {
        CellLayout(layers: levels.map { level in level.map { (direction: layers[$0].direction, cells: layers[$0].hiddenSize) } })
    }
}
