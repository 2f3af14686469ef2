import ArgumentParser
import CellAuditAnalysis
import CellAuditCore
import Foundation

struct Capacity: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare metric distributions and class shares across networks of different sizes.",
        discussion: """
        Without MODELs it compares the bundled digits family (LSTMs of 8, 16, 32, 64 and 128 cells). \
        Writes DIR/distributions.csv, DIR/classes.csv, DIR/ks.csv (Kolmogorov–Smirnov distance \
        between every pair of sizes, per metric), DIR/capacity.html with figures, and each model's \
        responses in DIR/<model>/.
        """
    )

    @Argument(help: "Models of one task, different sizes (default: the bundled digits family).")
    var models: [String] = []

    @Option(help: "Class thresholds as JSON.")
    var classThresholds: String?

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var stimulusOptions: StimulusOptions
    @OptionGroup var backendOptions: BackendOptions
    @OptionGroup var outputOptions: OutputOptions

    /// Each model with the model options; `--nonlinearity` applies to the nn.RNN state dicts of
    /// the family (an LSTM or GRU beside them is read without it).
    func loadMember(_ path: String) throws -> LoadedModel {
        do { return try modelOptions.load(path) } catch where modelOptions.nonlinearity != nil {
            var options = modelOptions
            options.nonlinearity = nil
            guard let model = try? options.load(path), model.network.kind != .rnnTanh, model.network.kind != .rnnReLU else { throw error }
            return model
        }
    }

    func run() throws {
        try failing {
            let thresholds = try classThresholds.map(ClassThresholds.load(json:)) ?? ClassThresholds()
            var cleanup: () -> Void = {}
            defer { cleanup() }
            var paths = models
            if paths.isEmpty {
                let family = [8, 16, 32, 64, 128].map { "digits_lstm\($0).safetensors" }
                let bundled = try BundledFiles(family)
                cleanup = bundled.remove
                paths = family.map(bundled.path)
            }
            guard paths.count >= 2 else { throw CleanFailure(description: "capacity compares at least two models, got \(paths.count)") }
            let loaded = try paths.map { try loadMember($0) }
            let names = paths.map { (($0 as NSString).lastPathComponent as NSString).deletingPathExtension }
            guard Set(names).count == names.count else { throw CleanFailure(description: "two models have the same file name") }
            // A family is one task at different sizes: the same task and the same inputs.
            for (k, model) in loaded.enumerated().dropFirst() {
                guard model.task == loaded[0].task else {
                    throw CleanFailure(description: "\(paths[k]) is a \(model.task.rawValue) model but \(paths[0]) is \(loaded[0].task.rawValue); capacity compares networks of one task")
                }
                guard model.network.inputSize == loaded[0].network.inputSize else {
                    throw CleanFailure(description: "\(paths[k]) reads \(model.network.inputSize) input channels but \(paths[0]) reads \(loaded[0].network.inputSize); capacity compares networks of one task")
                }
            }
            let plans = try loaded.map { try stimulusOptions.plan($0.network, layers: nil) }
            let output = try OutputDirectory(outputOptions.out ?? "cellaudit-capacity", force: outputOptions.force)
            let backend = try backendOptions.makeBackend()
            let study = try output.build { dir -> CapacityStudy in
                var members: [CapacityStudy.Member] = []
                for (k, plan) in plans.enumerated() {
                    let sub = dir.appendingPathComponent(names[k])
                    try makeOutputSubdirectory(sub)
                    let progress = ProgressReporter(quiet: outputOptions.quiet || outputOptions.json, label: names[k])
                    _ = try writeCharacterization(plan, backend: backend, to: sub, model: paths[k], selection: nil, progress: progress)
                    let summaries = try summarizeWritten(plan, in: sub)
                    members.append(.init(name: names[k], cells: plan.rows.count, summaries: summaries,
                                         classes: summaries.map { thresholds.classify($0, window: plan.bank.window) }))
                }
                let study = CapacityStudy(members: members)
                try writeCapacity(study, to: dir)
                return study
            }
            if outputOptions.json {
                try printJSON(["models": study.members.map { ["name": $0.name, "cells": $0.cells] },
                               "class_shares": study.classShares().filter { $0.3 > 0 }.map { ["model": $0.0, "class": $0.2.rawValue, "share": $0.4] }])
                return
            }
            print("capacity: \(study.members.map { "\($0.name) (\($0.cells))" }.joined(separator: ", "))")
            print("backend: \(backend.identity)")
            for c in CellClass.allCases {
                let shares = study.members.map { m in Double(m.classes.filter { $0.contains(c) }.count) / Double(m.summaries.count) }
                if shares.allSatisfy({ $0 == 0 }) { continue }
                print("  \(c.rawValue.padding(toLength: 12, withPad: " ", startingAt: 0))" + shares.map { String(format: " %5.1f%%", 100 * $0) }.joined())
            }
            print("wrote \(outputOptions.out ?? "cellaudit-capacity")/capacity.html, distributions.csv, classes.csv, ks.csv")
        }
    }
}

func writeCapacity(_ study: CapacityStudy, to dir: URL) throws {
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
    let figureDir = dir.appendingPathComponent("figures")
    try makeOutputSubdirectory(figureDir)
    for (file, svg) in figures { try svg.write(to: figureDir.appendingPathComponent(file), atomically: false, encoding: .utf8) }
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
