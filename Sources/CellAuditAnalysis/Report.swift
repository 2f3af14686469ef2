import CellAuditCore
import Foundation

/// The audit report: SVG figures and one self-contained HTML page that inlines them (no script,
/// no stylesheet or font from elsewhere: it opens offline).
public struct AuditReport {
    public var title: String
    /// Lines of facts for the header (model, backend, bank, accuracy…).
    public var facts: [(String, String)]
    public var plan: CharacterizationPlan
    public var summaries: [CellSummary]
    public var classes: [[CellClass]]
    public var scores: [Double]
    public var ranks: [Int]
    /// Trajectories at the reference step for `shownCells` (row indices), each [steps].
    public var stepTrajectories: [Int: [Float]]
    public var shownCells: (top: [Int], bottom: [Int])
    /// The ablation check, when a dataset was given.
    public var ablation: AblationStudy?
    /// Pages of the other methods written beside this one: (heading, relative href, one-line gist).
    public var links: [(title: String, href: String, gist: String)] = []

    public init(title: String, facts: [(String, String)], plan: CharacterizationPlan, summaries: [CellSummary],
                classes: [[CellClass]], scores: [Double], ranks: [Int], stepTrajectories: [Int: [Float]],
                shownCells: (top: [Int], bottom: [Int]), ablation: AblationStudy? = nil) {
        self.title = title; self.facts = facts; self.plan = plan; self.summaries = summaries; self.classes = classes
        self.scores = scores; self.ranks = ranks; self.stepTrajectories = stepTrajectories; self.shownCells = shownCells
        self.ablation = ablation
    }

    /// The rows (cells) to show as the top and bottom of a ranking.
    public static func extremes(ranks: [Int], count: Int = 5) -> (top: [Int], bottom: [Int]) {
        let order = ranks.indices.sorted { ranks[$0] < ranks[$1] }
        let k = min(count, order.count)
        return (Array(order.prefix(k)), Array(order.suffix(k).reversed()))
    }

    static let histogramMetrics: [(String, String, @Sendable (CellSummary) -> Double)] = [
        ("gain", "gain at the reference step", { $0.gain }),
        ("settling_time", "settling time (steps)", { $0.settlingTime }),
        ("rise_time", "rise time (steps)", { $0.riseTime }),
        ("overshoot_pct", "overshoot (%)", { $0.overshootPct }),
        ("bandwidth", "bandwidth (cycles/step)", { $0.bandwidth }),
        ("linearity", "linearity (R²)", { $0.linearity }),
        ("response_magnitude", "response magnitude m_j", { $0.responseMagnitude }),
    ]

    /// What a figure of a metric leaves out, or how to read it: cells with no finite value are
    /// counted (bandwidth: those whose gain never falls 3 dB within the bank), and linearity's
    /// R² is explained where it goes below 0.
    static func histogramNote(_ name: String, _ values: [Double], bank: StimulusBank) -> String? {
        var parts: [String] = []
        let unbounded = values.filter { $0 == .infinity }.count, missing = values.filter(\.isNaN).count
        if name == "bandwidth" && unbounded > 0 {
            let top = bank.stimuli.filter { $0.kind == .sine }.map(\.frequency).max() ?? 0
            parts.append("\(unbounded) cell\(unbounded == 1 ? "" : "s") above \(SVGPlot.label(Double(top))) (no −3 dB point in the bank), not shown")
        } else if unbounded > 0 {
            parts.append("\(unbounded) infinite, not shown")
        }
        if missing > 0 { parts.append("\(missing) without a value (no response), not shown") }
        if name == "linearity" && values.contains(where: { $0 < 0 }) {
            parts.append("R² through the origin: below 0 a line through 0 fits worse than the mean")
        }
        return parts.isEmpty ? nil : parts.joined(separator: "; ")
    }

    /// Spearman ρ of every ranking against single-cell damage, with its bootstrap interval: which
    /// ranking method to trust for this network.
    public static func rankerComparison(_ study: AblationStudy) -> SVGPlot {
        var plot = SVGPlot(title: "Which ranking agrees with ablation?", xLabel: "ranking", yLabel: "Spearman ρ with single-cell damage")
        plot.width = max(420, Double(study.rankers.count) * 90 + 80)
        plot.categories = study.rankers.map(\.name)
        let x = study.rankers.indices.map(Double.init)
        plot.series = [.init(label: "ρ", x: x, y: study.rankers.map(\.rho), mark: .bars, color: palette(0)),
                       .init(label: "95 % interval", x: x + x, y: study.rankers.map(\.low) + study.rankers.map(\.high), mark: .points,
                             color: palette(1))]
        plot.note = "bars: ρ; dots: the ends of its bootstrap interval over cells"
        return plot
    }

    private static func palette(_ i: Int) -> String { SVGPlot.palette[i % SVGPlot.palette.count] }

    /// The ranking (random aside) whose ρ with the single-cell damage is highest, and the others,
    /// random included, whose 95 % interval reaches its interval (on this data they cannot be told
    /// apart; random among them means the best is not distinguishable from chance); nil when no
    /// ρ is finite.
    public static func mostConsistentRanking(_ study: AblationStudy)
        -> (best: AblationStudy.Correlation, ties: [AblationStudy.Correlation])? {
        let finite = study.rankers.filter { $0.rho.isFinite && $0.name != "random" }
        guard let best = finite.max(by: { $0.rho < $1.rho }) else { return nil }
        let ties = study.rankers.filter { $0.rho.isFinite && $0.name != best.name && $0.high.isFinite && best.low.isFinite && $0.high >= best.low }
        return (best, ties)
    }

    /// `mostConsistentRanking` as one sentence of the report.
    public static func rankerVerdict(_ study: AblationStudy) -> String? {
        guard let (best, ties) = mostConsistentRanking(study) else { return nil }
        var text = "Most consistent with single-cell ablation on this network and data: <b>\(escape(best.name))</b> (ρ = \(String(format: "%.3f", best.rho)))."
        if !ties.isEmpty {
            text += " Its interval overlaps " + ties.map { "\(escape($0.name)) (ρ = \(String(format: "%.3f", $0.rho)))" }.joined(separator: ", ")
                + ": on this data they cannot be told apart."
        }
        return text
    }

    /// Every figure, by file name.
    public func figures() -> [(name: String, svg: String)] {
        var out: [(String, String)] = []
        let layers = plan.layers
        for (name, label, value) in Self.histogramMetrics {
            var plot = SVGPlot(title: "Distribution: \(label)", xLabel: label, yLabel: "cells")
            plot.width = layers.count > 1 ? 470 : 420
            plot.note = Self.histogramNote(name, summaries.map(value), bank: plan.bank)
            for (k, l) in layers.enumerated() {
                let values = summaries.filter { $0.id.layer == l }.map(value)
                let h = SVGPlot.histogram(values, bins: 16)
                plot.series.append(.init(label: "layer \(l)", x: h.centers, y: h.counts, mark: layers.count > 1 ? .line : .bars,
                                         color: SVGPlot.palette[k % SVGPlot.palette.count]))
            }
            out.append(("distribution_\(name).svg", plot.render()))
        }
        var bars = SVGPlot(title: "Cells per class", xLabel: "class", yLabel: "cells")
        bars.width = 700
        bars.height = 320
        bars.categories = CellClass.allCases.map(\.rawValue)
        bars.series = [.init(label: "", x: CellClass.allCases.indices.map(Double.init),
                             y: CellClass.allCases.map { c in Double(classes.filter { $0.contains(c) }.count) },
                             mark: .bars, color: SVGPlot.palette[0])]
        out.append(("classes.svg", bars.render()))
        for (which, rows) in [("top", shownCells.top), ("bottom", shownCells.bottom)] {
            var step = SVGPlot(title: "Step responses, \(which)-ranked cells", xLabel: "steps after onset", yLabel: plan.probe.rawValue)
            var gain = SVGPlot(title: "Frequency response (gain), \(which)-ranked cells", xLabel: "frequency (cycles/step)",
                               yLabel: "sine gain", xScale: .log)
            var phase = SVGPlot(title: "Frequency response (phase), \(which)-ranked cells", xLabel: "frequency (cycles/step)",
                                yLabel: "phase (degrees)", xScale: .log)
            for (k, j) in rows.enumerated() {
                let color = SVGPlot.palette[k % SVGPlot.palette.count]
                let label = "#\(ranks[j]) \(summaries[j].id)"
                if let y = stepTrajectories[j] {
                    let onset = plan.bank.onset
                    let end = min(y.count, onset + plan.bank.window)
                    let from = max(0, onset - 10)
                    step.series.append(.init(label: label, x: (from..<end).map { Double($0 - onset) },
                                             y: (from..<end).map { Double(y[$0]) }, mark: .line, color: color))
                }
                gain.series.append(.init(label: label, x: summaries[j].frequencies, y: summaries[j].sineGains, mark: .line, color: color))
                phase.series.append(.init(label: label, x: summaries[j].frequencies, y: summaries[j].phases, mark: .line, color: color))
            }
            out.append(("step_\(which).svg", step.render()))
            out.append(("frequency_gain_\(which).svg", gain.render()))
            out.append(("frequency_phase_\(which).svg", phase.render()))
        }
        if let study = ablation {
            let metric = study.task == .classification ? "accuracy" : "MSE"
            var curves = SVGPlot(title: "Cumulative ablation along each ranking", xLabel: "cells ablated (k)", yLabel: metric)
            curves.width = 560
            for (i, c) in study.curves.enumerated() {
                curves.series.append(.init(label: c.order == c.ranking ? c.ranking : "\(c.ranking) \(c.order)", x: c.k.map(Double.init), y: c.score,
                                           mark: .line, color: SVGPlot.palette[i % SVGPlot.palette.count]))
            }
            out.append(("ablation_curves.svg", curves.render()))
            out.append(("rankers.svg", Self.rankerComparison(study).render()))
            var damage = SVGPlot(title: "Single-cell damage against the response score", xLabel: "response score",
                                 yLabel: study.task == .classification ? "cross-entropy rise" : "MSE rise")
            // Cells --ablate-cells left out have no damage (NaN): not drawn.
            let measured = study.damage.indices.filter { !study.damage[$0].isNaN }
            damage.series = [.init(label: "", x: measured.map { scores[$0] }, y: measured.map { study.damage[$0] }, mark: .points, color: SVGPlot.palette[1])]
            out.append(("damage_vs_score.svg", damage.render()))
        }
        for (name, label, value) in Self.histogramMetrics where name != "response_magnitude" {
            var scatter = SVGPlot(title: "Score against \(label)", xLabel: label, yLabel: "response score")
            scatter.note = Self.histogramNote(name, summaries.map(value), bank: plan.bank)
            // One colour per layer, so the layers can be told apart.
            for (k, l) in layers.enumerated() {
                let rows = summaries.indices.filter { summaries[$0].id.layer == l }
                scatter.series.append(.init(label: layers.count > 1 ? "layer \(l)" : "", x: rows.map { value(summaries[$0]) },
                                            y: rows.map { scores[$0] }, mark: .points, color: SVGPlot.palette[k % SVGPlot.palette.count]))
            }
            if layers.count > 1 { scatter.width = 470 }
            out.append(("score_vs_\(name).svg", scatter.render()))
        }
        return out
    }

    /// The whole page, figures inlined.
    public func html(figures: [(name: String, svg: String)]) -> String {
        func fig(_ name: String) -> String { figures.first { $0.name == name }?.svg ?? "" }
        func fmt(_ x: Double) -> String { x.isNaN ? "–" : x.isInfinite ? "∞" : String(format: "%.4g", x + 0) }
        // Percentages below 0.005 % are rounding, not overshoot: shown as 0.
        func percent(_ x: Double) -> String { x.isFinite && abs(x) < 0.005 ? "0" : fmt(x) }
        let topFrequency = plan.bank.stimuli.filter { $0.kind == .sine }.map(\.frequency).max().map(Double.init)
        // No −3 dB point within the bank: above its highest frequency.
        func bandwidth(_ x: Double) -> String { x == .infinity ? topFrequency.map { "> \(SVGPlot.label($0))" } ?? "∞" : fmt(x) }
        var h = reportPageHead(title: title, facts: facts)
        for link in links {
            h += "<h2>\(escape(link.title))</h2><p><a href=\"\(escape(link.href))\">\(escape(link.href))</a>: \(escape(link.gist))</p>\n"
        }
        if let study = ablation {
            let metric = study.task == .classification ? "accuracy" : "MSE"
            h += "<h2>Does the ranking hold?</h2><p>Each cell ablated alone (\(plan.network.kind.hasCellState ? "h and c" : "h") clamped to 0 at every step): the damage is the \(study.task == .classification ? "rise in the mean cross-entropy of the true class (the accuracy drop, in steps of one sample, is in ablation.csv beside it)" : "rise in MSE"). \(metric) \(fmt(study.baseline)) with every cell, \(fmt(study.allAblated)) with none. Spearman ρ between each ranking's scores and the damage, with a 95 % bootstrap interval over cells:</p>\n"
            if let checked = study.checkedCells {
                h += "<p><b>Single-cell ablation was run on \(checked.count) of the \(study.damage.count) cells</b> (--ablate-cells); the correlations use those cells only, and the others' damage is not measured (blank in ablation.csv). A subset drawn from the top and bottom of one ranking spreads the damage, so ρ over it can be larger than over every cell; a random subset estimates the whole. The cumulative curves ablate along the full rankings.</p>\n"
            }
            // No ablation changed the loss (a readout of zeros, say): no ranking can be checked.
            if study.damage.allSatisfy({ $0 == 0 || $0.isNaN }) {
                h += "<p><b>No single-cell ablation changed the \(study.task == .classification ? "cross-entropy" : "MSE") on this data</b>: every damage is 0, so no ranking can be compared with it (ρ is undefined) and the curves are flat. The model's output does not depend on any one cell here; check its readout and the data.</p>\n"
            }
            h += "<table><tr><th class=\"l\">ranking</th><th>ρ</th><th>interval</th></tr>\n"
            for r in study.rankers { h += "<tr><td class=\"l\">\(escape(r.name))</td><td>\(fmt(r.rho))</td><td>[\(fmt(r.low)), \(fmt(r.high))]</td></tr>\n" }
            h += "</table>\n"
            if let verdict = Self.rankerVerdict(study) { h += "<p>\(verdict)</p>\n" }
            h += "<div class=\"grid\">\(fig("rankers.svg"))\(fig("ablation_curves.svg"))\(fig("damage_vs_score.svg"))</div>\n"
            let strongest = study.metrics.filter { $0.rho.isFinite }.sorted { abs($0.rho) > abs($1.rho) }.prefix(4)
            if !strongest.isEmpty {
                h += "<p>Metrics most correlated with the damage: " + strongest.map { "\(escape($0.name)) (ρ = \(fmt($0.rho)))" }.joined(separator: ", ") + ".</p>\n"
            }
        }
        h += "<h2>Cell classes</h2><div class=\"grid\">\(fig("classes.svg"))</div>\n"
        let drifting = classes.filter { $0.contains(.drifting) }.count
        if drifting > 0 {
            h += "<p>\(drifting) cell\(drifting == 1 ? " is" : "s are") <b>drifting</b>: without any stimulus the cell did not stay within "
                + "\(plan.restTolerance) of its value at onset over the longest run. It oscillates on its own, or approaches rest more slowly "
                + "than the rest search allowed. Its metrics measure only what the stimulus changed (the response minus the same cell's "
                + "unstimulated run), but read them with that motion in mind.</p>\n"
        }
        h += plan.network.readout == nil
            ? "<h2>Top- and bottom-ranked cells</h2><p>Ranked by the response magnitude m<sub>j</sub> over the bank alone (METHOD.md §5): the model has no readout, so the last layer's cells have no outgoing weights, and every cell is scored without them.</p>\n"
            : "<h2>Top- and bottom-ranked cells</h2><p>Ranked by the response score ‖v<sub>j</sub>‖·m<sub>j</sub> (METHOD.md §5): outgoing weight norm times response magnitude over the bank.</p>\n"
        h += "<div class=\"grid\">\(fig("step_top.svg"))\(fig("frequency_gain_top.svg"))\(fig("frequency_phase_top.svg"))</div>\n"
        h += "<div class=\"grid\">\(fig("step_bottom.svg"))\(fig("frequency_gain_bottom.svg"))\(fig("frequency_phase_bottom.svg"))</div>\n"
        h += "<h2>Metric distributions</h2><div class=\"grid\">"
        for (name, _, _) in Self.histogramMetrics { h += fig("distribution_\(name).svg") }
        h += "</div>\n<h2>Score against each metric</h2><div class=\"grid\">"
        for (name, _, _) in Self.histogramMetrics where name != "response_magnitude" { h += fig("score_vs_\(name).svg") }
        let directions = !plan.network.isForwardOnly
        h += "</div>\n<h2>All cells, by rank</h2>\n<table><tr><th>rank</th>\(CellID.tableHeader(directions: directions).map { "<th>\($0)</th>" }.joined())<th>score</th><th class=\"l\">classes</th><th>gain</th><th>settling</th><th>rise</th><th>overshoot %</th><th>bandwidth</th><th>linearity</th><th>m<sub>j</sub></th></tr>\n"
        for j in ranks.indices.sorted(by: { ranks[$0] < ranks[$1] }) {
            let s = summaries[j]
            h += "<tr><td>\(ranks[j])</td>\(s.id.tableFields(directions: directions).map { "<td>\($0)</td>" }.joined())<td>\(fmt(scores[j]))</td><td class=\"l\">\(classes[j].map(\.rawValue).joined(separator: " "))</td>"
            h += [fmt(s.gain), fmt(s.settlingTime), fmt(s.riseTime), percent(s.overshootPct), bandwidth(s.bandwidth), fmt(s.linearity),
                  fmt(s.responseMagnitude)].map { "<td>\($0)</td>" }.joined()
            h += "</tr>\n"
        }
        h += "</table>\n<p>Made by CellAudit. Figures are also saved as separate SVG files beside this page.</p>\n</body></html>\n"
        return h
    }
}

/// The opening of every CellAudit report page: one self-contained style sheet, the title and a
/// list of facts (model, data, backend…).
func reportPageHead(title: String, facts: [(String, String)]) -> String {
    var h = """
    <!DOCTYPE html>
    <html lang="en"><head><meta charset="utf-8"><title>\(escape(title))</title>
    <style>
    body { font-family: Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1320px; color: #222; }
    h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
    .grid { display: flex; flex-wrap: wrap; gap: 10px; } .grid svg { border: 1px solid #eee; }
    table { border-collapse: collapse; font-size: 12px; } td, th { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: right; }
    th { background: #f4f4f4; position: sticky; top: 0; } td.l, th.l { text-align: left; }
    dl { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; } dt { font-weight: bold; }
    </style></head><body>
    <h1>\(escape(title))</h1>
    <dl>

    """
    for (k, v) in facts { h += "<dt>\(escape(k))</dt><dd>\(escape(v))</dd>\n" }
    return h + "</dl>\n"
}
