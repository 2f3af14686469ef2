import CellAuditCore
import Foundation

/// A grid of signed values drawn as coloured cells: red for positive, blue for negative, white at
/// zero, the colour's depth proportional to |value| / max |value| of the grid. This is how
/// ArrasL/LRP_for_LSTM colours the words of a sentence by their relevance.
public struct SVGHeatmap {
    public var title: String
    public var note: String?
    /// values[row][column].
    public var values: [[Double]]
    public var rowLabels: [String], columnLabels: [String]
    public var xLabel: String, yLabel: String
    /// Width of a column and height of a row, in pixels (rows stay tall enough for their labels).
    public var cell = 14.0
    public var rowHeight = 14.0

    public init(title: String, values: [[Double]], rowLabels: [String], columnLabels: [String], xLabel: String, yLabel: String) {
        self.title = title; self.values = values; self.rowLabels = rowLabels; self.columnLabels = columnLabels
        self.xLabel = xLabel; self.yLabel = yLabel
    }

    /// The fill of a value on a scale whose extreme is `scale` (> 0).
    public static func color(_ v: Double, scale: Double) -> String {
        guard v.isFinite, scale > 0 else { return "#eeeeee" }
        let t = min(1, abs(v) / scale)
        let fade = Int((255 * (1 - t)).rounded())
        return v >= 0 ? String(format: "#ff%02x%02x", fade, fade) : String(format: "#%02x%02xff", fade, fade)
    }

    public func render() -> String {
        let rows = values.count, columns = values.first?.count ?? 0
        let left = 64.0, top = note == nil ? 34.0 : 48.0
        let width = max(260, left + Double(columns) * cell + 16), height = top + Double(rows) * rowHeight + 40
        let scale = values.flatMap { $0 }.filter(\.isFinite).map(abs).max() ?? 0
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(fmt(width))\" height=\"\(fmt(height))\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"10\">\n"
        svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        svg += "<text x=\"\(fmt(width / 2))\" y=\"16\" text-anchor=\"middle\" font-size=\"12\" font-weight=\"bold\">\(escape(title))</text>\n"
        if let note { svg += "<text x=\"\(fmt(width / 2))\" y=\"31\" text-anchor=\"middle\" fill=\"#555\">\(escape(note))</text>\n" }
        for r in 0..<rows {
            let y = top + Double(r) * rowHeight
            if r < rowLabels.count, rows <= 40 || r % max(1, rows / 20) == 0 {
                svg += "<text x=\"\(fmt(left - 4))\" y=\"\(fmt(y + rowHeight * 0.75))\" text-anchor=\"end\">\(escape(rowLabels[r]))</text>\n"
            }
            for c in 0..<columns {
                let v = values[r][c]
                svg += "<rect x=\"\(fmt(left + Double(c) * cell))\" y=\"\(fmt(y))\" width=\"\(fmt(cell))\" height=\"\(fmt(rowHeight))\" fill=\"\(Self.color(v, scale: scale))\"><title>\(escape(rowLabels[safe: r] ?? "")), \(escape(columnLabels[safe: c] ?? "")): \(String(format: "%.4g", v))</title></rect>\n"
            }
        }
        let bottom = top + Double(rows) * rowHeight
        for c in 0..<columns where columns <= 40 || c % max(1, columns / 20) == 0 {
            svg += "<text x=\"\(fmt(left + (Double(c) + 0.5) * cell))\" y=\"\(fmt(bottom + 12))\" text-anchor=\"middle\">\(escape(columnLabels[safe: c] ?? ""))</text>\n"
        }
        svg += "<text x=\"\(fmt(left + Double(columns) * cell / 2))\" y=\"\(fmt(bottom + 28))\" text-anchor=\"middle\">\(escape(xLabel))</text>\n"
        svg += "<text x=\"12\" y=\"\(fmt(top + Double(rows) * rowHeight / 2))\" text-anchor=\"middle\" transform=\"rotate(-90 12 \(fmt(top + Double(rows) * rowHeight / 2)))\">\(escape(yLabel))</text>\n"
        svg += "</svg>\n"
        return svg
    }

    private func fmt(_ x: Double) -> String { String(format: "%.1f", x) }
}

extension Array {
    subscript(safe i: Int) -> Element? { indices.contains(i) ? self[i] : nil }
}

/// What `cellaudit explain` reports of a relevance pass over a dataset, accumulated a chunk of
/// sequences at a time in dataset order (the same sums as over the whole at once): per-cell
/// Σ|R|, per-step Σ|R| of the inputs, each sequence's conservation error and input share (one
/// number per sequence), and the first sequences in full, for the report's pictures.
public struct RelevanceTally: Sendable {
    /// How many leading sequences are kept whole (`shown`).
    public let keep: Int
    public private(set) var sequences = 0
    /// Σ |R| of every cell [C] over sequences and steps.
    public private(set) var absoluteCellSums: [Double] = []
    /// Σ over sequences and channels of |R| of the inputs at each step [T].
    public private(set) var absoluteInputByStep: [Double] = []
    /// Per sequence: |Σ input + rest − score| / |score| (`RelevanceResult.conservationErrors`).
    public private(set) var conservationErrors: [Double] = []
    /// Per sequence: Σ input / score.
    public private(set) var inputShares: [Double] = []
    /// Σ score over sequences, in order.
    public private(set) var scoreSum = 0.0
    /// The first `keep` sequences' results whole.
    public private(set) var shown: RelevanceResult?

    public init(keep: Int) { self.keep = keep }

    /// Adds the next chunk's result (sequences in dataset order).
    public mutating func add(_ result: RelevanceResult) {
        if absoluteCellSums.isEmpty {
            absoluteCellSums = [Double](repeating: 0, count: result.cells)
            absoluteInputByStep = [Double](repeating: 0, count: result.steps)
        }
        result.addAbsoluteCellRelevance(into: &absoluteCellSums)
        let t = result.steps, w = result.width
        for s in 0..<result.count {
            for step in 0..<t { for i in 0..<w { absoluteInputByStep[step] += Double(abs(result.input[(s * t + step) * w + i])) } }
        }
        conservationErrors += result.conservationErrors()
        inputShares += result.inputShares()
        scoreSum = result.score.reduce(scoreSum) { $0 + Double($1) }
        let wanted = min(keep - (shown?.count ?? 0), result.count)
        if wanted > 0 {
            let part = result.sequences(0..<wanted)
            shown = shown.map { .concatenating([$0, part]) } ?? part
        }
        sequences += result.count
    }

    /// Mean |relevance| of every cell over sequences and steps [C]: the LRP ranking's score.
    public var meanAbsoluteCellRelevance: [Double] {
        let rows = Double(max(1, sequences * absoluteInputByStep.count))
        return absoluteCellSums.map { $0 / rows }
    }
}

/// The page `cellaudit explain` writes: what was explained, whether relevance was conserved,
/// input heatmaps of chosen sequences, and the cells by mean |relevance|.
public struct RelevanceReport {
    public var title: String
    public var facts: [(String, String)]
    /// The whole pass, as accumulated.
    public var tally: RelevanceTally
    /// The leading sequences' results (`tally.shown`): sequence s of the data is row s here.
    var result: RelevanceResult {
        tally.shown ?? RelevanceResult(count: 0, steps: 0, width: 0, cells: 0, input: [], cellRelevance: [], score: [], rest: [], minimumDenominator: [])
    }
    /// (layer, cell) of every column of `result.cellRelevance`.
    public var rows: [CellID]
    /// Sequences shown as heatmaps (among the tally's leading ones), and a caption for each
    /// (target, label, score).
    public var shown: [(index: Int, caption: String)]
    public var biasFactor: Float
    /// For a model with a token embedding: the token ids of the leading sequences [S, T] and,
    /// where `--vocab` gave them, the words of ids 0..<V; the report then shows each chosen
    /// sequence as its tokens, coloured by their relevance (the sum over embedding dimensions).
    public var tokens: (ids: [Int], vocabulary: [String]?)?

    /// - Precondition: every shown index lies among the tally's leading sequences.
    public init(title: String, facts: [(String, String)], tally: RelevanceTally, rows: [CellID],
                shown: [(index: Int, caption: String)], biasFactor: Float) {
        precondition(shown.allSatisfy { $0.index < (tally.shown?.count ?? 0) })
        self.title = title; self.facts = facts; self.tally = tally; self.rows = rows; self.shown = shown; self.biasFactor = biasFactor
    }

    /// The input heatmap of sequence `s`: channels × steps.
    func inputHeatmap(_ s: Int, caption: String) -> SVGHeatmap {
        let t = result.steps, w = result.width
        let values = (0..<w).map { i in (0..<t).map { step in Double(result.input[(s * t + step) * w + i]) } }
        var map = SVGHeatmap(title: "Sequence \(s): input relevance", values: values, rowLabels: (0..<w).map { "x\($0)" },
                             columnLabels: (0..<t).map(String.init), xLabel: "step", yLabel: "input channel")
        map.note = caption
        map.cell = t > 60 ? 6 : 14
        return map
    }

    /// Every figure, by file name.
    public func figures(meanAbsolute: [Double], ranks: [Int]) -> [(name: String, svg: String)] {
        var out: [(String, String)] = []
        for (s, caption) in shown { out.append(("input_relevance_\(s).svg", inputHeatmap(s, caption: caption).render())) }
        if let tokens, !shown.isEmpty { out.append(("tokens.svg", tokenFigure(tokens))) }
        // Cells by mean |relevance|, the 40 most relevant.
        let order = ranks.indices.sorted { ranks[$0] < ranks[$1] }.prefix(40)
        var bars = SVGPlot(title: "Cells by mean |relevance| over the data and steps", xLabel: "cell (layer:cell)", yLabel: "mean |R|")
        bars.width = max(420, Double(order.count) * 16 + 80)
        bars.categories = order.map { rows[$0].compactLabel }
        bars.series = [.init(label: "", x: order.indices.map { Double($0 - order.startIndex) }, y: order.map { meanAbsolute[$0] },
                             mark: .bars, color: SVGPlot.palette[0])]
        if ranks.count > 40 { bars.note = "the 40 most relevant of \(ranks.count) cells" }
        out.append(("cells.svg", bars.render()))
        // Mean |input relevance| per step: when the network takes its evidence.
        let t = tally.absoluteInputByStep.count, n = tally.sequences
        let perStep = tally.absoluteInputByStep
        var steps = SVGPlot(title: "Input relevance by step", xLabel: "step", yLabel: "mean Σ|R| over channels")
        steps.series = [.init(label: "", x: (0..<t).map(Double.init), y: perStep.map { $0 / Double(max(1, n)) }, mark: .line,
                              color: SVGPlot.palette[1])]
        out.append(("steps.svg", steps.render()))
        // The most relevant cells over time, in the first shown sequence.
        if let first = shown.first {
            let top = Array(order.prefix(24))
            let c = result.cells
            let values = top.map { j in (0..<t).map { step in Double(result.cellRelevance[(first.index * t + step) * c + j]) } }
            var map = SVGHeatmap(title: "Sequence \(first.index): relevance of the top cells' h", values: values,
                                 rowLabels: top.map { rows[$0].compactLabel }, columnLabels: (0..<t).map(String.init),
                                 xLabel: "step", yLabel: "cell (layer:cell)")
            map.cell = t > 60 ? 6 : 14
            out.append(("cells_over_time.svg", map.render()))
        }
        return out
    }

    /// The chosen sequences as text: each token on a background of its relevance (red for, blue
    /// against the explained output), scaled per sequence to its largest |R|, as LRP_for_LSTM draws
    /// sentences; hovering a token shows its id and relevance.
    /// Each chosen sequence's tokens (its words, or "#id" without a vocabulary) and their relevance.
    func shownTokens(_ tokens: (ids: [Int], vocabulary: [String]?)) -> [(index: Int, caption: String, words: [String], relevance: [Double])] {
        let t = result.steps
        let relevance = TokenEmbedding.tokenRelevance(result.input, count: result.count, steps: t, width: result.width)
        return shown.map { s in
            let ids = tokens.ids[(s.index * t)..<((s.index + 1) * t)]
            return (s.index, s.caption, ids.map { id in tokens.vocabulary.map { $0[id] } ?? "#\(id)" },
                    relevance[(s.index * t)..<((s.index + 1) * t)].map(Double.init))
        }
    }

    func tokenSection(_ tokens: (ids: [Int], vocabulary: [String]?)) -> String {
        let t = result.steps
        var h = "<h2>Token relevance of chosen sequences</h2><p>Each token's relevance is the sum of its embedding's input relevance over the embedding dimensions (both directions). Red: evidence for the explained output; blue: against; each sequence scaled to its own largest |R|."
        h += tokens.vocabulary == nil ? " Tokens are shown by id: <code>--vocab FILE</code> (one token per line, line v for id v) shows words.</p>\n" : "</p>\n"
        for (s, caption, words, row) in shownTokens(tokens) {
            let scale = row.map(abs).max() ?? 0
            h += "<p class=\"tokens\"><b>Sequence \(s)</b> (\(escape(caption))): "
            for step in 0..<t {
                let id = tokens.ids[s * t + step]
                h += "<span style=\"background:\(SVGHeatmap.color(row[step], scale: scale));padding:1px 2px\" title=\"step \(step), id \(id), R = \(String(format: "%.4g", row[step]))\">\(escape(words[step]))</span> "
            }
            h += "</p>\n"
        }
        return h
    }

    /// The chosen sequences' tokens as an SVG (`tokens.svg`): one line per sequence, each token a
    /// box coloured by its relevance (scaled per sequence to its largest |R|), its word or id inside.
    func tokenFigure(_ tokens: (ids: [Int], vocabulary: [String]?)) -> String {
        let sequences = shownTokens(tokens)
        let words = sequences.map(\.words)
        // Boxes as wide as their words (7 px a character in the 12 px font), lines of at most 900 px.
        let rowHeight = 22.0, left = 110.0
        var rows: [[(x: Double, width: Double, step: Int)]] = []
        for line in words {
            var x = left, placed: [(Double, Double, Int)] = []
            for (step, word) in line.enumerated() {
                let width = max(18, Double(word.count) * 7 + 8)
                placed.append((x, width, step)); x += width + 3
            }
            rows.append(placed)
        }
        let width = max(420, (rows.flatMap { $0 }.map { $0.x + $0.width }.max() ?? 0) + 10)
        let height = 40 + Double(shown.count) * (rowHeight + 8)
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        svg += "<text x=\"\(Int(width / 2))\" y=\"16\" text-anchor=\"middle\" font-weight=\"bold\">Token relevance (red: for the explained output, blue: against)</text>\n"
        for (row, (s, _, _, values)) in sequences.enumerated() {
            let y = 30 + Double(row) * (rowHeight + 8)
            let scale = values.map(abs).max() ?? 0
            svg += "<text x=\"\(Int(left - 8))\" y=\"\(Int(y + 15))\" text-anchor=\"end\">sequence \(s)</text>\n"
            for box in rows[row] {
                let v = values[box.step]
                svg += "<rect x=\"\(Int(box.x))\" y=\"\(Int(y))\" width=\"\(Int(box.width))\" height=\"\(Int(rowHeight))\" fill=\"\(SVGHeatmap.color(v, scale: scale))\" stroke=\"#ccc\"><title>step \(box.step): R = \(String(format: "%.4g", v))</title></rect>"
                svg += "<text x=\"\(Int(box.x + box.width / 2))\" y=\"\(Int(y + 15))\" text-anchor=\"middle\">\(escape(words[row][box.step]))</text>\n"
            }
        }
        return svg + "</svg>\n"
    }

    public func html(figures: [(name: String, svg: String)], meanAbsolute: [Double], ranks: [Int]) -> String {
        func fig(_ name: String) -> String { figures.first { $0.name == name }?.svg ?? "" }
        var h = reportPageHead(title: title, facts: facts)
        let errors = tally.conservationErrors.sorted()
        let shares = tally.inputShares.filter(\.isFinite).sorted()
        h += "<h2>Conservation</h2>\n"
        if biasFactor == 1 {
            let median = errors[errors.count / 2], worst = errors.last!
            let off = errors.filter { $0 > 1e-3 }.count
            h += "<p>With bias factor 1, Σ input + rest should equal the explained score. Median relative error \(String(format: "%.2g", median)), worst \(String(format: "%.2g", worst)) over \(tally.sequences) sequences.</p>\n"
            if off > 0 {
                h += "<p><b>\(off) sequence\(off == 1 ? " misses" : "s miss") it by more than 0.1 %.</b> An ε-rule divided by a denominator within float32 rounding of zero there (see <code>min_denominator</code> in relevance.safetensors); a larger <code>--epsilon</code> stabilises it.</p>\n"
            }
        } else {
            h += "<p>With bias factor \(biasFactor) biases and stabilisers keep part of the relevance; the inputs receive a median \(String(format: "%.3g", shares.isEmpty ? .nan : shares[shares.count / 2])) of the score (bias factor 1 conserves it).</p>\n"
        }
        if !shown.isEmpty {
            h += "<h2>Input relevance of chosen sequences</h2><p>Red: evidence for the explained output; blue: against; each map scaled to its own largest |R|. Hover a square for its value.</p>\n<div class=\"grid\">"
            for (s, _) in shown { h += fig("input_relevance_\(s).svg") }
            h += "</div>\n"
        }
        if let tokens, !shown.isEmpty {
            h += tokenSection(tokens)
        }
        h += "<h2>Cells</h2><div class=\"grid\">\(fig("cells.svg"))\(fig("steps.svg"))\(fig("cells_over_time.svg"))</div>\n"
        let directions = rows.contains { $0.direction == .reverse }
        h += "<h2>All cells, by mean |relevance|</h2>\n<table><tr><th>rank</th>\(CellID.tableHeader(directions: directions).map { "<th>\($0)</th>" }.joined())<th>mean |R|</th></tr>\n"
        for j in ranks.indices.sorted(by: { ranks[$0] < ranks[$1] }) {
            h += "<tr><td>\(ranks[j])</td>\(rows[j].tableFields(directions: directions).map { "<td>\($0)</td>" }.joined())<td>\(String(format: "%.4g", meanAbsolute[j]))</td></tr>\n"
        }
        h += "</table>\n<p>Made by CellAudit (LRP after Arras et al. 2019). The figures are also saved as SVG files beside this page.</p>\n</body></html>\n"
        return h
    }
}
