import CellAuditCore
import CellAuditOpenCL
import Foundation

/// DIR/report.html and DIR/figures/*.svg.
public func writeReport(plan: CharacterizationPlan, name: String, summary: AuditSummary, summaries: [CellSummary],
                 classes: [[CellClass]], scores: [Double], ranks: [Int], ablation: AblationStudy?,
                 links: [(title: String, href: String, gist: String)] = [], backend: any ComputeBackend, to dir: URL) throws {
    let shown = AuditReport.extremes(ranks: ranks)
    // The trajectories at the reference step the summaries use.
    var trajectories: [Int: [Float]] = [:]
    if let reference = Reduction.referenceStep(plan.bank) {
        let rows = shown.top + shown.bottom
        let values = try Characterizer.trajectories(plan, rows: rows, columns: [reference], on: backend)
        for (i, row) in rows.enumerated() {
            trajectories[row] = Array(values[(i * plan.bank.steps)..<((i + 1) * plan.bank.steps)])
        }
    }
    var facts: [(String, String)] = [("model", name), ("backend", "\(backend.identity)")]
    for (operation, ranOn) in (otherBackends(backend) ?? [:]).sorted(by: { $0.key < $1.key }) {
        facts.append(("\(BackendOperation(rawValue: operation)?.title ?? operation) on", ranOn))
    }
    if let acc = summary.accuracy { facts.append(("accuracy", String(format: "%.4f on %@", acc, summary.data ?? ""))) }
    if let mse = summary.mse { facts.append(("MSE", String(format: "%.4g on %@", mse, summary.data ?? ""))) }
    let stimuli = summary.stimuli
    facts += [("cells", "\(plan.rows.count) \(plan.network.kind.rawValue) cells in layer\(plan.layers.count > 1 ? "s" : "") \(plan.layers.map(String.init).joined(separator: ", "))"),
              ("stimuli", "\(stimuli.count): \(stimuli.steps) steps, \(stimuli.sinusoids) sinusoids; window \(plan.bank.window), \(plan.bank.preSteps) rest steps"),
              ("decoupling", "mode \(plan.mode.rawValue), direction \(plan.directionLabels.joined(separator: " ")), probe \(plan.probe.rawValue)"),
              ("throughput", String(format: "%.3g cell-stimulus-steps/s", summary.cellStimulusStepsPerSecond))]
    if let ignored = summary.ignored { facts.append(("ignored (--core)", ignored.joined(separator: "; "))) }
    if let note = summary.readoutNote { facts.append(("readout", "none: \(note)")) }
    var report = AuditReport(title: "CellAudit report: \(name)", facts: facts, plan: plan, summaries: summaries, classes: classes,
                             scores: scores, ranks: ranks, stepTrajectories: trajectories, shownCells: shown, ablation: ablation)
    report.links = links
    let figures = report.figures()
    try writeFigures(figures, to: dir, checkpoint: "figures")
    try report.html(figures: figures).write(to: dir.appendingPathComponent("report.html"), atomically: false, encoding: .utf8)
}

/// DIR/cells.csv's text: one row per cell (`plan.rows` order) with its identity, the first
/// ranker's rank and score, its classes, the summary metrics (README, "cells.csv"), and each further
/// ranker's rank and score; numbers as `csvNumber` writes them.
public func cellsCSV(plan: CharacterizationPlan, summaries: [CellSummary], classes: [[CellClass]], rankers: [any CellRanker],
              scores: [[Double]], ranks: [[Int]]) -> String {
    let directions = !plan.network.isForwardOnly
    var header = CellID.tableHeader(directions: directions) + ["rank", "score", "classes", "y0", "y_final", "gain", "peak_time", "overshoot_pct",
                  "undershoot_pct", "rise_time", "settling_time", "ringing", "responded", "gain_spread", "linearity",
                  "saturation", "low_frequency_gain", "bandwidth", "resonance", "resonance_frequency", "response_magnitude"]
    header += rankers.dropFirst().flatMap { ["\($0.name)_rank", "\($0.name)_score"] }
    var lines = [header.joined(separator: ",")]
    let f = csvNumber
    for (j, s) in summaries.enumerated() {
        var row = s.id.tableFields(directions: directions) + [String(ranks[0][j]), f(scores[0][j]),
                   classes[j].map(\.rawValue).joined(separator: " ")]
        row += [s.y0, s.yFinal, s.gain, s.peakTime, s.overshootPct, s.undershootPct, s.riseTime, s.settlingTime, s.ringing].map(f)
        row += [s.responded ? "1" : "0"]
        row += [s.gainSpread, s.linearity, s.saturation, s.lowFrequencyGain, s.bandwidth, s.resonance,
                s.resonanceFrequency, s.responseMagnitude].map(f)
        for k in rankers.indices.dropFirst() { row += [String(ranks[k][j]), f(scores[k][j])] }
        lines.append(row.joined(separator: ","))
    }
    return lines.joined(separator: "\n") + "\n"
}

/// A ranking by name (response, readout_weight, random) or from a CSV with layer, cell and score columns.
public func namedRanking(_ name: String, context: RankingContext, seed: UInt64) throws -> (String, [Double]) {
    if let ranker = RankerRegistry.ranker(named: name, seed: seed) { return (name, try ranker.scores(context)) }
    InputFiles.record(name)
    guard let text = try? String(contentsOfFile: name, encoding: .utf8) else {
        throw RunFailure(description: "--ranking \(name): not \(RankerRegistry.names.joined(separator: ", ")) or a readable CSV file")
    }
    let lines = text.split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
    guard let header = lines.first, let l = header.firstIndex(of: "layer"), let c = header.firstIndex(of: "cell"),
          let s = header.firstIndex(of: "score") else {
        throw RunFailure(description: "--ranking \(name): the CSV needs layer, cell and score columns")
    }
    // A network with reverse layers names each cell's direction too (absent: forward).
    let d = header.firstIndex(of: "direction")
    var byCell: [String: Double] = [:]
    for row in lines.dropFirst() where row.count > max(l, c, s, d ?? 0) {
        // A NaN or infinite score has no place in an order (it would rank differently in the
        // curves and in Spearman's ρ): refused like text.
        guard let v = Double(row[s]), v.isFinite else {
            throw RunFailure(description: "--ranking \(name): score '\(row[s])' of layer \(row[l]) cell \(row[c]) is not a finite number")
        }
        byCell["\(row[l]),\(d.map { row[$0] } ?? TimeDirection.forward.rawValue),\(row[c])"] = v
    }
    let scores = try context.rows.map { row -> Double in
        guard let v = byCell["\(row.layer),\(row.direction.rawValue),\(row.index)"] else {
            throw RunFailure(description: "--ranking \(name): no score for \(row)")
        }
        return v
    }
    return ((name as NSString).lastPathComponent, scores)
}

/// The summary metrics whose rank correlation with the ablation damage a study reports
/// (METHOD.md §6), by name, one value per cell.
public func summaryMetrics(_ s: [CellSummary]) -> [(String, [Double])] {
    [("gain", s.map(\.gain)), ("abs_gain", s.map { abs($0.gain) }), ("settling_time", s.map(\.settlingTime)),
     ("rise_time", s.map(\.riseTime)), ("overshoot_pct", s.map(\.overshootPct)), ("linearity", s.map(\.linearity)),
     ("saturation", s.map(\.saturation)), ("bandwidth", s.map(\.bandwidth)), ("low_frequency_gain", s.map(\.lowFrequencyGain)),
     ("response_magnitude", s.map(\.responseMagnitude))]
}

/// DIR/ablation.csv (per cell: damage, accuracy drop for classification, the ablation rank and
/// each ranking's rank; blank where `--ablate-cells` left a cell out) and DIR/curves.csv (each
/// ranked and random curve: k, the score, the spread over random orders).
/// - Throws: file-system errors.
public func writeAblation(_ study: AblationStudy, rows: [CellID], rankings: [(String, [Double])], to dir: URL) throws {
    let ablationRanks = rankPositions(study.damage, rows: rows)
    // damage: the continuous loss increase (METHOD.md §6); accuracy_drop beside it for classification.
    let drop = study.accuracyDrop
    let directions = rows.contains { $0.direction == .reverse }
    var lines = [(CellID.tableHeader(directions: directions) + ["damage"] + (drop != nil ? ["accuracy_drop"] : []) + ["ablation_rank"]
                  + rankings.map { "\($0.0)_rank" }).joined(separator: ",")]
    let rankColumns = rankings.map { rankPositions($0.1, rows: rows) }
    for (j, row) in rows.enumerated() {
        let identity = row.tableFields(directions: directions)
        // A cell --ablate-cells left out: its damage, drop and ablation rank are blank.
        let measured = !study.damage[j].isNaN
        let values = [measured ? String(format: "%.6g", study.damage[j]) : ""] + (drop.map { [measured ? String(format: "%.6g", $0[j]) : ""] } ?? [])
        let ranks = [measured ? String(ablationRanks[j]) : ""] + rankColumns.map { String($0[j]) }
        lines.append((identity + values + ranks).joined(separator: ","))
    }
    try (lines.joined(separator: "\n") + "\n").write(to: dir.appendingPathComponent("ablation.csv"), atomically: false, encoding: .utf8)
    var curves = ["ranking,order,k,\(study.task == .classification ? "accuracy" : "mse"),spread"]
    for c in study.curves {
        for i in c.k.indices { curves.append("\(c.ranking),\(c.order),\(c.k[i]),\(String(format: "%.6g", c.score[i])),\(String(format: "%.6g", c.spread[i]))") }
    }
    try (curves.joined(separator: "\n") + "\n").write(to: dir.appendingPathComponent("curves.csv"), atomically: false, encoding: .utf8)
}

/// `capacity`'s files in `dir`: distributions.csv (per model and metric: count, mean, sd and
/// quantiles), classes.csv (class shares per model), ks.csv (Kolmogorov–Smirnov distance between
/// neighbouring sizes), the figures and capacity.html.
/// - Throws: file-system errors.
public func writeCapacity(_ study: CapacityStudy, to dir: URL) throws {
    let f = csvNumber
    let distributions = study.distributions()
    var lines = ["model,cells,metric,count,mean,sd,q10,q25,median,q75,q90"]
    for d in distributions {
        lines.append("\(d.model),\(d.cells),\(d.metric),\(d.count),\(f(d.mean)),\(f(d.sd)),\(f(d.q10)),\(f(d.q25)),\(f(d.median)),\(f(d.q75)),\(f(d.q90))")
    }
    try (lines.joined(separator: "\n") + "\n").write(to: dir.appendingPathComponent("distributions.csv"), atomically: false, encoding: .utf8)
    let shares = study.classShares()
    try (["model,cells,class,count,share"] + shares.map { "\($0.0),\($0.1),\($0.2.rawValue),\($0.3),\(f($0.4))" })
        .joined(separator: "\n").appending("\n").write(to: dir.appendingPathComponent("classes.csv"), atomically: false, encoding: .utf8)
    try (["metric,model_a,model_b,ks"] + study.distances().map { "\($0.metric),\($0.a),\($0.b),\(f($0.ks))" })
        .joined(separator: "\n").appending("\n").write(to: dir.appendingPathComponent("ks.csv"), atomically: false, encoding: .utf8)

    // Figures: class shares against size, and each metric's median and quartiles against size.
    let sizes = study.members.map { Double($0.cells) }
    var figures: [(String, String)] = []
    var classPlot = SVGPlot(title: "Share of each class against network size", xLabel: "cells", yLabel: "share of cells", xScale: .log)
    classPlot.width = 560
    for (i, c) in CellClass.allCases.enumerated() {
        let y = study.members.map { m in Double(m.classes.filter { $0.contains(c) }.count) / Double(m.summaries.count) }
        if y.allSatisfy({ $0 == 0 }) { continue }
        classPlot.series.append(.init(label: c.rawValue, x: sizes, y: y, mark: .line, color: SVGPlot.palette[i % SVGPlot.palette.count]))
    }
    figures.append(("capacity_classes.svg", classPlot.render()))
    for (name, _) in CapacityStudy.metrics {
        let d = distributions.filter { $0.metric == name }
        var plot = SVGPlot(title: "\(name): median and quartiles", xLabel: "cells", yLabel: name, xScale: .log)
        // The two quartiles share a colour and one legend entry.
        plot.series = [.init(label: "quartiles", x: sizes, y: d.map(\.q25), mark: .line, color: SVGPlot.palette[8]),
                       .init(label: "median", x: sizes, y: d.map(\.median), mark: .line, color: SVGPlot.palette[0]),
                       .init(label: "", x: sizes, y: d.map(\.q75), mark: .line, color: SVGPlot.palette[8])]
        figures.append(("capacity_\(name).svg", plot.render()))
    }
    try writeFigures(figures, to: dir, checkpoint: nil)
    var h = """
    <!DOCTYPE html>
    <html lang="en"><head><meta charset="utf-8"><title>CellAudit capacity</title>
    <style>body { font-family: Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1320px; color: #222; }
    .grid { display: flex; flex-wrap: wrap; gap: 10px; } .grid svg { border: 1px solid #eee; }
    table { border-collapse: collapse; font-size: 12px; } td, th { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: right; }
    th { background: #f4f4f4; } td.l, th.l { text-align: left; }</style></head><body>
    <h1>CellAudit: cell dynamics across network sizes</h1>
    <p>Models: \(study.members.map { "\(escape($0.name)) (\($0.cells) cells)" }.joined(separator: ", ")).</p>
    <div class="grid">\(figures[0].1)</div>
    <h2>Metric distributions against size</h2><div class="grid">
    """
    for (_, svg) in figures.dropFirst() { h += svg }
    h += "</div>\n<h2>Kolmogorov–Smirnov distance between neighbouring sizes</h2>\n<table><tr><th class=\"l\">metric</th>"
    let pairs = zip(study.members, study.members.dropFirst()).map { ($0.name, $1.name) }
    for (a, b) in pairs { h += "<th>\(escape(a)) vs \(escape(b))</th>" }
    h += "</tr>\n"
    let distances = study.distances()
    for (name, _) in CapacityStudy.metrics {
        h += "<tr><td class=\"l\">\(name)</td>"
        for (a, b) in pairs {
            let d = distances.first { $0.metric == name && $0.a == a && $0.b == b }?.ks ?? .nan
            h += "<td>\(f(d))</td>"
        }
        h += "</tr>\n"
    }
    h += "</table>\n</body></html>\n"
    try h.write(to: dir.appendingPathComponent("capacity.html"), atomically: false, encoding: .utf8)
}
