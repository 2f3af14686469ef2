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
            guard paths.count >= 2 else { throw RunFailure(description: "capacity compares at least two models, got \(paths.count)") }
            let loaded = try paths.map { try loadMember($0) }
            let names = paths.map { (($0 as NSString).lastPathComponent as NSString).deletingPathExtension }
            guard Set(names).count == names.count else { throw RunFailure(description: "two models have the same file name") }
            // A family is one task at different sizes: the same task and the same inputs.
            for (k, model) in loaded.enumerated().dropFirst() {
                guard model.task == loaded[0].task else {
                    throw RunFailure(description: "\(paths[k]) is a \(model.task.rawValue) model but \(paths[0]) is \(loaded[0].task.rawValue); capacity compares networks of one task")
                }
                guard model.network.inputSize == loaded[0].network.inputSize else {
                    throw RunFailure(description: "\(paths[k]) reads \(model.network.inputSize) input channels but \(paths[0]) reads \(loaded[0].network.inputSize); capacity compares networks of one task")
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

