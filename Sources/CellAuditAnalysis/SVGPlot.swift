import Foundation

/// A small SVG chart: one panel with axes, ticks, a title and any number of series. Enough for
/// the report's histograms, bar charts, line plots (linear or log x) and scatter plots, with no
/// dependency and no external resource.
public struct SVGPlot {
    public enum Scale { case linear, log }
    public enum Mark { case line, points, bars }
    public struct Series {
        public var label: String
        public var x: [Double], y: [Double]
        public var mark: Mark
        public var color: String
        public init(label: String, x: [Double], y: [Double], mark: Mark, color: String) {
            self.label = label; self.x = x; self.y = y; self.mark = mark; self.color = color
        }
    }

    public var title: String
    public var xLabel: String, yLabel: String
    public var xScale: Scale = .linear
    public var width = 420.0, height = 280.0
    public var series: [Series] = []
    /// Category names under bars (bar charts), one per x = 0, 1, 2…
    public var categories: [String] = []
    /// A line under the title saying what the figure leaves out or how to read it.
    public var note: String?
    /// One unit is as long on both axes (a circle is drawn round): the shorter range is widened
    /// about its centre. For the complex plane of eigenvalues.
    public var equalAspect = false

    public init(title: String, xLabel: String, yLabel: String, xScale: Scale = .linear) {
        self.title = title; self.xLabel = xLabel; self.yLabel = yLabel; self.xScale = xScale
    }

    public static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]

    let left = 58.0, right = 12.0

    /// Characters of the longest category name, and whether the names need slanting to fit.
    private var slantedCategories: Bool {
        guard !categories.isEmpty else { return false }
        let room = (width - left - right) / Double(categories.count)
        return Double(categories.map(\.count).max()!) * 6.2 > room * 0.95
    }

    public func render() -> String {
        let top = note == nil ? 30.0 : 44.0
        let bottom = slantedCategories ? 24.0 + Double(categories.map(\.count).max()!) * 4.6 : 44.0
        let finite = series.flatMap { s in zip(s.x, s.y).filter { $0.0.isFinite && $0.1.isFinite && (xScale == .linear || $0.0 > 0) } }
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(f(width))\" height=\"\(f(height))\" viewBox=\"0 0 \(f(width)) \(f(height))\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"11\">\n"
        svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        svg += "<text x=\"\(f(width / 2))\" y=\"18\" text-anchor=\"middle\" font-size=\"13\" font-weight=\"bold\">\(escape(title))</text>\n"
        if let note { svg += "<text x=\"\(f(width / 2))\" y=\"33\" text-anchor=\"middle\" font-size=\"10\" fill=\"#555\">\(escape(note))</text>\n" }
        guard !finite.isEmpty else {
            svg += "<text x=\"\(f(width / 2))\" y=\"\(f(height / 2))\" text-anchor=\"middle\" fill=\"#777\">no finite values</text>\n</svg>\n"
            return svg
        }
        let bars = series.contains { $0.mark == .bars }
        var (x0, x1) = (finite.map(\.0).min()!, finite.map(\.0).max()!)
        var (y0, y1) = (finite.map(\.1).min()!, finite.map(\.1).max()!)
        // Bars are as wide as the closest spacing of their x values (1 for categories, the bin for histograms).
        let barXs = Set(series.filter { $0.mark == .bars }.flatMap(\.x).filter(\.isFinite)).sorted()
        let spacing = zip(barXs, barXs.dropFirst()).map { $1 - $0 }.min() ?? 1
        if bars { x0 -= spacing / 2; x1 += spacing / 2; y0 = min(0, y0) }
        if xScale == .log { (x0, x1) = (log10(x0), log10(x1)) }
        if x0 == x1 { x0 -= 0.5; x1 += 0.5 }
        if y0 == y1 { y0 -= 0.5; y1 += 0.5 }
        let pad = (y1 - y0) * 0.05
        y0 -= bars ? 0 : pad; y1 += pad
        // A legend of several labelled series sits right of the plot, never over it.
        let labelled = series.filter { !$0.label.isEmpty }
        let legendWidth = labelled.count > 1 ? Double(labelled.prefix(12).map(\.label.count).max()!) * 6.2 + 26 : 0
        let pw = width - left - right - legendWidth, ph = height - top - bottom
        if equalAspect && !bars && xScale == .linear {
            let xPad = (x1 - x0) * 0.05
            x0 -= xPad; x1 += xPad
            let unit = max((x1 - x0) / pw, (y1 - y0) / ph)
            let (cx, cy) = ((x0 + x1) / 2, (y0 + y1) / 2)
            (x0, x1) = (cx - unit * pw / 2, cx + unit * pw / 2)
            (y0, y1) = (cy - unit * ph / 2, cy + unit * ph / 2)
        }
        func px(_ x: Double) -> Double { left + ((xScale == .log ? log10(x) : x) - x0) / (x1 - x0) * pw }
        func py(_ y: Double) -> Double { top + (1 - (y - y0) / (y1 - y0)) * ph }
        // Axes and ticks.
        svg += "<g stroke=\"#444\" stroke-width=\"1\"><line x1=\"\(f(left))\" y1=\"\(f(top + ph))\" x2=\"\(f(left + pw))\" y2=\"\(f(top + ph))\"/><line x1=\"\(f(left))\" y1=\"\(f(top))\" x2=\"\(f(left))\" y2=\"\(f(top + ph))\"/></g>\n"
        for t in Self.ticks(y0, y1) {
            svg += "<line x1=\"\(f(left - 4))\" y1=\"\(f(py(t)))\" x2=\"\(f(left + pw))\" y2=\"\(f(py(t)))\" stroke=\"#e5e5e5\"/>"
            svg += "<text x=\"\(f(left - 6))\" y=\"\(f(py(t) + 4))\" text-anchor=\"end\">\(Self.label(t))</text>\n"
        }
        if !categories.isEmpty {
            for (i, c) in categories.enumerated() {
                if slantedCategories {
                    svg += "<text transform=\"translate(\(f(px(Double(i)) + 3)) \(f(top + ph + 10))) rotate(-40)\" text-anchor=\"end\">\(escape(c))</text>\n"
                } else {
                    svg += "<text x=\"\(f(px(Double(i))))\" y=\"\(f(top + ph + 14))\" text-anchor=\"middle\">\(escape(c))</text>\n"
                }
            }
        } else {
            let xt = xScale == .log ? Self.logTicks(x0, x1) : Self.ticks(x0, x1)
            for t in xt {
                let x = xScale == .log ? pow(10, t) : t
                svg += "<line x1=\"\(f(px(x)))\" y1=\"\(f(top + ph))\" x2=\"\(f(px(x)))\" y2=\"\(f(top + ph + 4))\" stroke=\"#444\"/>"
                svg += "<text x=\"\(f(px(x)))\" y=\"\(f(top + ph + 15))\" text-anchor=\"middle\">\(Self.label(x))</text>\n"
            }
        }
        svg += "<text x=\"\(f(left + pw / 2))\" y=\"\(f(height - 8))\" text-anchor=\"middle\">\(escape(xLabel))</text>\n"
        svg += "<text transform=\"translate(14 \(f(top + ph / 2))) rotate(-90)\" text-anchor=\"middle\">\(escape(yLabel))</text>\n"
        // Series.
        let barWidth = pw / (x1 - x0) * spacing * 0.9 / Double(max(1, series.filter { $0.mark == .bars }.count))
        var barIndex = 0
        for s in series {
            let points = zip(s.x, s.y).filter { $0.0.isFinite && $0.1.isFinite && (xScale == .linear || $0.0 > 0) }
            switch s.mark {
            case .line:
                let d = points.map { "\(f(px($0.0))),\(f(py($0.1)))" }.joined(separator: " ")
                svg += "<polyline fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"1.5\" points=\"\(d)\"><title>\(escape(s.label))</title></polyline>\n"
            case .points:
                for p in points {
                    svg += "<circle cx=\"\(f(px(p.0)))\" cy=\"\(f(py(p.1)))\" r=\"2.5\" fill=\"\(s.color)\" fill-opacity=\"0.75\"/>"
                }
                svg += "\n"
            case .bars:
                for p in points {
                    let x = px(p.0) - barWidth * Double(series.filter { $0.mark == .bars }.count) / 2 + barWidth * Double(barIndex)
                    let (a, b) = (py(max(0, p.1)), py(min(0, p.1)))
                    svg += "<rect x=\"\(f(x))\" y=\"\(f(a))\" width=\"\(f(barWidth * 0.95))\" height=\"\(f(max(0.5, b - a)))\" fill=\"\(s.color)\"><title>\(escape(s.label)): \(Self.label(p.1))</title></rect>"
                }
                svg += "\n"
                barIndex += 1
            }
        }
        // Legend right of the plot area (its width was reserved above).
        if labelled.count > 1 {
            let shown = labelled.prefix(12)
            let x = left + pw + 10
            for (i, s) in shown.enumerated() {
                let y = top + 2 + Double(i) * 14
                svg += "<rect x=\"\(f(x))\" y=\"\(f(y))\" width=\"9\" height=\"9\" fill=\"\(s.color)\"/><text x=\"\(f(x + 13))\" y=\"\(f(y + 8))\">\(escape(s.label))</text>\n"
            }
            if labelled.count > shown.count {
                svg += "<text x=\"\(f(x))\" y=\"\(f(top + 2 + Double(shown.count) * 14 + 8))\" fill=\"#777\">+\(labelled.count - shown.count) more</text>\n"
            }
        }
        svg += "</svg>\n"
        return svg
    }

    /// A histogram of `values` (finite ones) in `bins` equal bins, as bar series data.
    public static func histogram(_ values: [Double], bins: Int = 20) -> (centers: [Double], counts: [Double]) {
        let v = values.filter(\.isFinite)
        guard let lo = v.min(), let hi = v.max() else { return ([], []) }
        if lo == hi { return ([lo], [Double(v.count)]) }
        let w = (hi - lo) / Double(bins)
        var counts = [Double](repeating: 0, count: bins)
        for x in v { counts[min(bins - 1, Int((x - lo) / w))] += 1 }
        return ((0..<bins).map { lo + (Double($0) + 0.5) * w }, counts)
    }

    static func ticks(_ a: Double, _ b: Double) -> [Double] {
        let span = b - a
        guard span > 0, span.isFinite else { return [a] }
        let raw = span / 5, mag = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * mag }.first { $0 >= raw }!
        var out: [Double] = []
        var t = ceil(a / step) * step
        while t <= b + step * 1e-9 { out.append(abs(t) < step * 1e-9 ? 0 : t); t += step }
        return out
    }

    static func logTicks(_ a: Double, _ b: Double) -> [Double] {
        let out = stride(from: ceil(a), through: floor(b), by: 1).map { $0 }
        return out.isEmpty ? [a, b] : out
    }

    static func label(_ x: Double) -> String {
        if x == 0 { return "0" }
        if abs(x) >= 1e4 || abs(x) < 1e-3 { return String(format: "%.0e", x) }
        if x == x.rounded() { return String(Int(x)) }
        return String(format: "%.3g", x)
    }

    /// x with one decimal, as "%.1f" writes it (halves to even; -0.0 keeps its sign), without
    /// Foundation's formatter: a report's figures format tens of thousands of coordinates, and
    /// String(format:) took most of their time.
    func f(_ x: Double) -> String {
        guard x.isFinite, abs(x) < 1e14 else { return String(format: "%.1f", x) }
        // x·10 = p + e exactly (e from a fused multiply-add). A tie in p is decided by e, so
        // the rounding is of x itself, as printf's is, not of the rounded product.
        let p = x * 10, e = (-p).addingProduct(x, 10)
        var rounded = p.rounded(.toNearestOrEven)
        if abs(p - rounded) == 0.5 && e != 0 { rounded = e > 0 ? p.rounded(.up) : p.rounded(.down) }
        let tenths = Int(rounded), m = tenths.magnitude
        return (tenths < 0 || (tenths == 0 && x.sign == .minus) ? "-" : "") + String(m / 10) + "." + String(m % 10)
    }
}

/// Escapes text for XML and HTML.
public func escape(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
}
