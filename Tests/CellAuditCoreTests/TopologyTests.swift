import CellAuditCore
import Testing

@Suite struct TopologyTests {
    /// A layout with a bidirectional layer between two forward ones: every cell's offset is its
    /// position in `all`, `cell(at:)` inverts it, and each layer's range holds exactly its cells.
    @Test func layoutOffsetsInvertAndFollowTheFlatOrder() {
        let layout = CellLayout(layers: [[(.forward, 3)], [(.forward, 2), (.reverse, 4)], [(.reverse, 1)]])
        #expect(layout.count == 10)
        let all = layout.all
        #expect(all.count == 10 && all == all.sorted())
        for (flat, cell) in all.enumerated() {
            #expect(layout.offset(of: cell) == flat)
            #expect(layout.cell(at: flat) == cell)
            #expect(layout.range(ofLayer: cell.layer).contains(flat))
            #expect(layout.contains(cell))
        }
        #expect(layout.range(ofLayer: 1) == 3..<9 && layout.range(ofLayer: 2) == 9..<10)
        #expect(layout.cell(at: 5) == CellID(layer: 1, direction: .reverse, index: 0))
        #expect(!layout.contains(CellID(layer: 0, direction: .reverse, index: 0)))
        #expect(!layout.contains(CellID(layer: 1, index: 2)) && !layout.contains(CellID(layer: 3, index: 0)))
        #expect(CellID(layer: 1, direction: .reverse, index: 12).description == "L1 rev c12")
        #expect(CellID(layer: 0, index: 7).description == "L0 c7" && CellID(layer: 0, index: 7).compactLabel == "0:7")
    }

    /// A network's layout is one forward block per layer, sized by its cells.
    @Test func networkLayoutMatchesTheLayers() throws {
        let net = try RecurrentNetwork.random(kind: .gru, seed: 3, inputSize: 2, hiddenSizes: [5, 3])
        #expect(net.layout.count == net.cellCount && net.cellCount == 8)
        #expect(net.layout.cells(ofLayer: 1) == (0..<3).map { CellID(layer: 1, index: $0) })
        #expect(net.layout.range(ofLayer: 1) == 5..<8)
    }
}
