import CellAuditCore
import Foundation

/// The report page of `cellaudit attractors`: per layer, the points and sample trajectories in
/// the first two principal components, the eigenvalue spectra against the unit circle, the
/// excitable network as a drawn graph, and the table of points.
public struct AttractorReport {
    public var title: String
    public var facts: [(String, String)]
    public var analysis: AttractorAnalysis
    /// The network analysed: the table shows the readout at each point of the last layer.
    public var network: RecurrentNetwork

    public init(title: String, facts: [(String, String)], analysis: AttractorAnalysis, network: RecurrentNetwork) {
        self.title = title; self.facts = facts; self.analysis = analysis; self.network = network
    }

    /// SVG figures by file name.
    /// - Throws: `DynamicsError.numerical` when the principal components cannot be computed.
    public func figures() throws -> [(String, String)] {
        var out: [(String, String)] = []
        for layer in analysis.layers {
            let D = layer.dimension
            let points = Array(analysis.points[layer.points])
            // The plane: principal components of the visited states, else of the points.
            let basis: [Double] = layer.trajectories.isEmpty ? points.flatMap(\.state) : layer.trajectories.flatMap { $0 }
            let plane = try LinearAlgebra.principalPlane(basis, count: basis.count / D, dimension: D)
            func project(_ s: ArraySlice<Double>) -> (Double, Double) {
                var x = 0.0, y = 0.0
                for (k, v) in s.enumerated() {
                    x += (v - plane.mean[k]) * plane.axes[0][k]
                    y += (v - plane.mean[k]) * plane.axes[1][k]
                }
                return (x, y)
            }
            var pca = SVGPlot(title: "Layer \(layer.label): points and trajectories (PC1, PC2)", xLabel: "PC1", yLabel: "PC2")
            pca.width = 520; pca.height = 400
            for (i, t) in layer.trajectories.prefix(6).enumerated() {
                let xy = stride(from: 0, to: t.count, by: D).map { project(t[$0..<($0 + D)]) }
                pca.series.append(.init(label: i == 0 ? "trajectories on the data" : "", x: xy.map(\.0), y: xy.map(\.1), mark: .line, color: "#bbbbbb"))
            }
            for (label, color, filter) in [("stable fixed", "#1f77b4", { (p: FixedPoint) in p.isFixed && p.isStable }),
                                           ("unstable fixed", "#d62728", { (p: FixedPoint) in p.isFixed && !p.isStable }),
                                           ("slow", "#ff7f0e", { (p: FixedPoint) in !p.isFixed })] {
                let xy = points.filter(filter).map { project($0.state[...]) }
                if !xy.isEmpty { pca.series.append(.init(label: label, x: xy.map(\.0), y: xy.map(\.1), mark: .points, color: color)) }
            }
            out.append(("\(layer.fileStem)_pca.svg", pca.render()))

            var spectrum = SVGPlot(title: "Layer \(layer.label): eigenvalues of ∂F/∂s", xLabel: "Re λ", yLabel: "Im λ")
            spectrum.width = 540; spectrum.height = 400
            spectrum.equalAspect = true   // the unit circle is a circle; the legend sits right of it
            let circle = (0...96).map { 2 * Double.pi * Double($0) / 96 }
            spectrum.series.append(.init(label: "|λ| = 1", x: circle.map(cos), y: circle.map(sin), mark: .line, color: "#999999"))
            // Unstable first, so the stable points' eigenvalues are drawn on top.
            for (label, color, stable) in [("at unstable points", "#d62728", false), ("at stable points", "#1f77b4", true)] {
                let eig = points.filter { $0.isFixed && $0.isStable == stable }.flatMap(\.eigenvalues)
                if !eig.isEmpty { spectrum.series.append(.init(label: label, x: eig.map(\.re), y: eig.map(\.im), mark: .points, color: color)) }
            }
            out.append(("\(layer.fileStem)_spectra.svg", spectrum.render()))
            out.append(("\(layer.fileStem)_graph.svg", graphSVG(layer)))
        }
        return out
    }

    /// The stable points on a circle, an arrow per edge labelled "channel±: threshold".
    func graphSVG(_ layer: AttractorAnalysis.Layer) -> String {
        let nodes = analysis.stablePoints.filter { layer.points.contains($0) }
        let size = 520.0, centre = size / 2, radius = size / 2 - 70
        var position: [Int: (Double, Double)] = [:]
        for (k, p) in nodes.enumerated() {
            let angle = 2 * Double.pi * Double(k) / Double(max(nodes.count, 1)) - .pi / 2
            position[p] = (centre + radius * cos(angle), centre + radius * sin(angle))
        }
        var svg = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(size))" height="\(Int(size) + 20)" font-family="Helvetica, Arial, sans-serif" font-size="10">
        <defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>
        <text x="\(Int(centre))" y="16" text-anchor="middle" font-size="13">Layer \(layer.label): excitable network (\(nodes.count) stable points, \(layer.graph.edges.count) edges)</text>

        """
        // Label boxes placed so far (and the nodes), so that no label is drawn over another.
        var taken: [(x0: Double, y0: Double, x1: Double, y1: Double)] = nodes.map { p in
            let (x, y) = position[p]!
            return (x - 12, y - 12, x + 12, y + 12)
        }
        for (e, edge) in layer.graph.edges.enumerated() {
            guard let a = position[edge.from], let b = position[edge.to] else { continue }
            // Bend each arrow to the left so the two directions between a pair stay apart, and
            // each input channel further out than the last.
            let (dx, dy) = (b.0 - a.0, b.1 - a.1), length = max(hypot(dx, dy), 1)
            let (nx, ny) = (-dy / length, dx / length)
            let bend = 22.0 + Double(edge.channel) * 22
            let (cx, cy) = ((a.0 + b.0) / 2 + nx * bend, (a.1 + b.1) / 2 + ny * bend)
            let shorten = 12 / length
            let (sx, sy) = (a.0 + dx * shorten, a.1 + dy * shorten), (tx, ty) = (b.0 - dx * shorten, b.1 - dy * shorten)
            let color = SVGPlot.palette[edge.channel % SVGPlot.palette.count]
            svg += "<path d=\"M \(f(sx)) \(f(sy)) Q \(f(cx)) \(f(cy)) \(f(tx)) \(f(ty))\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.2\" marker-end=\"url(#arrow)\"><title>point \(edge.from) → \(edge.to): channel \(edge.channel), sign \(edge.sign > 0 ? "+" : "−"), threshold \(String(format: "%.3g", edge.threshold))</title></path>\n"
            if layer.graph.edges.count <= 40 || e % max(1, layer.graph.edges.count / 40) == 0 {
                // At the curve's midpoint, moved along its normal until it overlaps no other label.
                let text = "\(edge.channel)\(edge.sign > 0 ? "+" : "−") \(String(format: "%.2g", edge.threshold))"
                let (mx, my) = (0.25 * a.0 + 0.5 * cx + 0.25 * b.0, 0.25 * a.1 + 0.5 * cy + 0.25 * b.1)
                let halfWidth = Double(text.count) * 2.9 + 2
                var spot = (mx, my)
                for k in [0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6] {
                    let candidate = (mx + nx * Double(k) * 12, my + ny * Double(k) * 12)
                    let box = (x0: candidate.0 - halfWidth, y0: candidate.1 - 9, x1: candidate.0 + halfWidth, y1: candidate.1 + 3)
                    if !taken.contains(where: { $0.x0 < box.x1 && box.x0 < $0.x1 && $0.y0 < box.y1 && box.y0 < $0.y1 }) {
                        spot = candidate
                        break
                    }
                }
                taken.append((spot.0 - halfWidth, spot.1 - 9, spot.0 + halfWidth, spot.1 + 3))
                svg += "<text x=\"\(f(spot.0))\" y=\"\(f(spot.1))\" text-anchor=\"middle\" fill=\"\(color)\">\(text)</text>\n"
            }
        }
        for p in nodes {
            let (x, y) = position[p]!
            svg += "<circle cx=\"\(f(x))\" cy=\"\(f(y))\" r=\"11\" fill=\"#1f77b4\"/><text x=\"\(f(x))\" y=\"\(f(y + 3.5))\" text-anchor=\"middle\" fill=\"white\">\(p)</text>\n"
        }
        if nodes.isEmpty { svg += "<text x=\"\(Int(centre))\" y=\"\(Int(centre))\" text-anchor=\"middle\">no stable fixed point</text>\n" }
        svg += "<text x=\"8\" y=\"\(Int(size) + 12)\">edge label: input channel, pulse sign, threshold amplitude (colour by channel)</text>\n</svg>\n"
        return svg
    }

    private func f(_ v: Double) -> String { String(format: "%.1f", v) }

    public func html(figures: [(String, String)]) -> String {
        var h = reportPageHead(title: title, facts: facts)
        for note in analysis.notes { h += "<p><b>Note:</b> \(escape(note))</p>\n" }
        h += """
        <p>Each layer is taken as an input-driven map s′ = F(s, x̄) under a constant input x̄ (the state s is h, or (h, c) \
        for an LSTM). Fixed points minimise q = ½‖F(s) − s‖² to below the tolerance; slow points stopped above it. A point \
        is stable when every eigenvalue of the Jacobian ∂F/∂s lies inside the unit circle. The graph's nodes are the \
        stable points; an edge A → B means a pulse on one input channel moves the layer from A to B, labelled with the \
        smallest amplitude that does (Ceni, Ashwin &amp; Livi 2019).</p>

        """
        for layer in analysis.layers {
            let points = analysis.points[layer.points]
            h += "<h2>Layer \(layer.label)</h2>\n<p>\(points.filter(\.isFixed).count) fixed points (\(points.filter { $0.isFixed && $0.isStable }.count) stable), "
                + "\(points.filter { !$0.isFixed }.count) slow points (q < 1e-4) from \(layer.seeds) seeds; \(layer.unconverged) seeds stopped with q ≥ 1e-4 (at a local minimum of q that high, or the iteration limit); \(layer.unreachable) points outside the states the layer can take and \(layer.outliers) outliers dropped; \(layer.graph.edges.count) edges, "
                + "\(layer.graph.unresolved.count) unresolved probes.</p>\n<div class=\"grid\">\n"
            // This layer's own figures (a forward layer's stem is a prefix of its reverse twin's).
            let own = Set(["pca", "spectra", "graph"].map { "\(layer.fileStem)_\($0).svg" })
            for (name, svg) in figures where own.contains(name) { h += svg }
            h += "</div>\n<table><tr><th>point</th><th class=\"l\">kind</th><th class=\"l\">stable</th><th>q</th><th>|λ|max</th><th>unstable modes</th><th>slowest τ (steps)</th><th class=\"l\">readout V h + a</th></tr>\n"
            for (i, p) in zip(layer.points, points) {
                h += "<tr><td>\(i)</td><td class=\"l\">\(p.isFixed ? "fixed" : "slow")</td><td class=\"l\">\(p.isStable ? "yes" : "no")</td>"
                    + "<td>\(String(format: "%.2e", p.q))</td><td>\(String(format: "%.6f", p.spectralRadius))</td><td>\(p.unstableModes)</td>"
                    + "<td>\(String(format: "%.4g", p.slowestTimeConstant))</td>"
                    + "<td class=\"l\">\(analysis.readout(at: i, of: network).map { $0.map { String(format: "%+.3f", $0) }.joined(separator: " ") } ?? "")</td></tr>\n"
            }
            h += "</table>\n"
            if !layer.graph.edges.isEmpty {
                h += "<h3>Edges</h3><table><tr><th>from</th><th>to</th><th>channel</th><th>sign</th><th>threshold</th></tr>\n"
                for e in layer.graph.edges {
                    h += "<tr><td>\(e.from)</td><td>\(e.to)</td><td>\(e.channel)</td><td>\(e.sign > 0 ? "+1" : "−1")</td><td>\(String(format: "%.4g", e.threshold))</td></tr>\n"
                }
                h += "</table>\n"
            }
        }
        return h + "<p>Made by CellAudit. Figures are also saved as separate SVG files beside this page.</p>\n</body></html>\n"
    }
}
