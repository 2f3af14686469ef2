import CellAuditCore
import CellAuditOpenCL
import Foundation


/// A number in a JSON summary: JSON has no NaN or infinity, so those are written as null.
public struct JSONNumber: Codable, Equatable {
    public var value: Double
    public init(_ value: Double) { self.value = value }
    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        value = c.decodeNil() ? .nan : try c.decode(Double.self)
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        if value.isFinite { try c.encode(value) } else { try c.encodeNil() }
    }
}

/// How a summary is written: sorted snake_case keys, pretty-printed (summary.json and `--json`).
public func encodeSummary(_ value: some Encodable) throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.keyEncodingStrategy = .convertToSnakeCase
    return try encoder.encode(value)
}

/// Prints a summary as `encodeSummary` writes it (the CLI's `--json`).
public func printJSON(_ value: some Encodable) throws {
    print(String(decoding: try encodeSummary(value), as: UTF8.self))
}

/// `ablate`'s summary.json, and the `ablation` object of `audit`'s (METHOD.md §6).
public struct AblationSummary: Codable {
    public struct Correlation: Codable {
        public var name: String
        public var rho: JSONNumber, ciLow: JSONNumber, ciHigh: JSONNumber
    }
    /// accuracy (classification) or mse (regression).
    public var metric: String
    public var baseline: Double
    public var allAblated: Double
    /// The loss the damage is measured in: cross_entropy (classification) or mse.
    public var damage: String
    public var baselineLoss: Double
    /// The largest continuous single-cell damage, and (classification) the largest accuracy drop.
    public var maxSingleDamage: Double
    public var maxAccuracyDrop: Double?
    /// With --ablate-cells: how many cells the single-cell ablation checked (nil: all).
    public var checkedCells: Int?
    public var rankers: [Correlation]
    /// The ranking most consistent with the damage, and those whose intervals overlap its own.
    public var mostConsistentRanking: String?
    public var indistinguishableRankings: [String] = []
    public var metrics: [Correlation]
    public var model: String?
    public var data: String?
    public var backend: String?
    /// Parts that ran on another backend than `backend` (operation → backend), if any.
    public var otherBackends: [String: String]?
    public var clamp: String?
    /// What ablation holds: "h and c" for an LSTM, "h" for the other kinds.
    public var clampedState: String?

    public init(_ study: AblationStudy) {
        func corr(_ c: [AblationStudy.Correlation]) -> [Correlation] {
            c.map { Correlation(name: $0.name, rho: JSONNumber($0.rho), ciLow: JSONNumber($0.low), ciHigh: JSONNumber($0.high)) }
        }
        metric = study.task == .classification ? "accuracy" : "mse"
        baseline = study.baseline
        allAblated = study.allAblated
        damage = study.lossName
        baselineLoss = study.baselineLoss
        maxSingleDamage = study.damage.filter { !$0.isNaN }.max() ?? 0
        maxAccuracyDrop = study.accuracyDrop?.filter { !$0.isNaN }.max()
        checkedCells = study.checkedCells?.count
        rankers = corr(study.rankers)
        if let (best, ties) = AuditReport.mostConsistentRanking(study) {
            mostConsistentRanking = best.name
            indistinguishableRankings = ties.map(\.name)
        }
        metrics = corr(study.metrics)
    }

    public func print() {
        for (operation, ranOn) in (otherBackends ?? [:]).sorted(by: { $0.key < $1.key }) {
            Swift.print("\(BackendOperation(rawValue: operation)?.title ?? operation) ran on \(ranOn)")
        }
        Swift.print(String(format: "%@: %.4f with every cell, %.4f with none", metric, baseline, allAblated))
        Swift.print(String(format: "%@ %.4f intact; largest single-cell damage (its increase) %.4f", damage, baselineLoss, maxSingleDamage)
                    + (maxAccuracyDrop.map { String(format: ", largest accuracy drop %.4f", $0) } ?? ""))
        if let checkedCells { Swift.print("single-cell ablation checked \(checkedCells) cells (--ablate-cells); the correlations use those only") }
        Swift.print("Spearman ρ of each ranking with the single-cell damage (\(damage) increase; 95 % bootstrap interval):")
        for r in rankers {
            let name = r.name.padding(toLength: 16, withPad: " ", startingAt: 0)
            Swift.print("  \(name)" + String(format: " ρ = %6.3f  [%6.3f, %6.3f]", r.rho.value, r.ciLow.value, r.ciHigh.value))
        }
        if let best = mostConsistentRanking {
            Swift.print("most consistent with ablation: \(best)"
                        + (indistinguishableRankings.isEmpty ? "" : " (not told apart from \(indistinguishableRankings.joined(separator: ", ")) on this data)"))
        }
    }
}

/// `audit`'s summary.json.
public struct AuditSummary: Codable {
    public struct Stimuli: Codable { var count, steps, sinusoids, preSteps, onset, window: Int }
    public struct Timings: Codable { var characterizeSeconds, reduceSeconds: Double }
    public struct TopCell: Codable {
        public var layer, cell, rank: Int
        /// "reverse" for a cell of a reverse direction; absent for forward cells.
        public var direction: String?
        public var score: Double
        public var classes: [String]
        public var gain, settlingTime, bandwidth: JSONNumber
    }
    public var model: String
    public var cellaudit: String
    public var backend: String
    public var device: String
    public var cellKind: String
    public var cells: Int
    public var layers: [Int]
    public var mode: String
    public var probe: String
    public var directions: [String]
    public var stimuli: Stimuli
    public var timings: Timings
    public var cellStimulusSteps: Int
    public var cellStimulusStepsPerSecond: Double
    public var respondedShare: Double
    public var classCounts: [String: Int]
    public var topCells: [TopCell]
    public var ranker: String
    /// The response score's formula when it is not the default ‖v_j‖·m_j (a model without a readout).
    public var rankerFormula: String?
    /// What `--core` left out of the model file, and why the core has no readout if it has none.
    public var ignored: [String]?
    public var readoutNote: String?
    public var data: String?
    public var accuracy: Double?
    public var mse: Double?
    public var ablation: AblationSummary?
    /// With a dataset: the fixed-point analysis of each layer (DIR/attractors/summary.json has it all).
    public var attractors: [AttractorSummary.Layer]?

    /// Records what the model file's reading left out (`--core`) and a response score that is not the default.
    public mutating func describe(_ loaded: LoadedModel) {
        if !loaded.ignored.isEmpty { ignored = loaded.ignored }
        readoutNote = loaded.readoutNote
        if loaded.network.readout == nil { rankerFormula = ResponseRanker.formula(for: loaded.network) }
    }

    public init(plan: CharacterizationPlan, name: String, backend: any ComputeBackend, result: CharacterizationResult,
         reduceSeconds: Double, summaries: [CellSummary], classes: [[CellClass]], scores: [Double], ranks: [Int]) {
        var counts: [String: Int] = [:]
        for c in CellClass.allCases { counts[c.rawValue] = classes.filter { $0.contains(c) }.count }
        let order = ranks.indices.sorted { ranks[$0] < ranks[$1] }
        topCells = order.prefix(10).map { j in
            TopCell(layer: summaries[j].id.layer, cell: summaries[j].id.index, rank: ranks[j],
                    direction: summaries[j].id.direction == .reverse ? "reverse" : nil, score: scores[j],
                    classes: classes[j].map(\.rawValue), gain: JSONNumber(summaries[j].gain),
                    settlingTime: JSONNumber(summaries[j].settlingTime), bandwidth: JSONNumber(summaries[j].bandwidth))
        }
        let bank = plan.bank
        model = name
        cellaudit = CellAuditVersion.current
        self.backend = backend.identity.kind.rawValue
        device = backend.identity.device
        cellKind = plan.network.kind.rawValue
        cells = plan.rows.count
        layers = plan.layers
        mode = plan.mode.rawValue
        probe = plan.probe.rawValue
        directions = plan.directionLabels
        stimuli = Stimuli(count: plan.columnCount, steps: bank.stimuli.filter { $0.kind == .step }.count,
                          sinusoids: bank.stimuli.filter { $0.kind == .sine }.count,
                          preSteps: bank.preSteps, onset: bank.onset, window: bank.window)
        timings = Timings(characterizeSeconds: result.seconds, reduceSeconds: reduceSeconds)
        cellStimulusSteps = plan.simulatedSteps
        cellStimulusStepsPerSecond = Double(plan.simulatedSteps) / max(result.seconds, 1e-12)
        respondedShare = result.respondedShare
        classCounts = counts
        ranker = "response"
    }

    public mutating func record(_ score: Score) {
        if score.name == "accuracy" { accuracy = score.value } else { mse = score.value }
    }

    public func print() {
        Swift.print("CellAudit \(CellAuditVersion.current) audit of \(model)")
        Swift.print("backend: \(backend) (\(device))")
        if let accuracy { Swift.print(String(format: "accuracy on %@: %.4f", data ?? "", accuracy)) }
        if let mse { Swift.print(String(format: "mse on %@: %.4f", data ?? "", mse)) }
        ablation?.print()
        for l in attractors ?? [] {
            Swift.print("dynamics, layer \(l.layer)\(l.direction == nil ? "" : " rev"): \(l.fixedPoints) fixed points (\(l.stableFixedPoints) stable), \(l.edges) input-driven transitions (attractors/report.html)")
        }
        Swift.print("\(cells) \(cellKind) cells × \(stimuli.count) stimuli (\(stimuli.steps) steps, \(stimuli.sinusoids) sinusoids), window \(stimuli.window)")
        Swift.print(String(format: "%.3g cell-stimulus-steps/s; %.1f%% of pairs responded", cellStimulusStepsPerSecond, 100 * respondedShare))
        let counts = classCounts.filter { $0.value > 0 }.sorted { $0.key < $1.key }
        Swift.print("classes: " + counts.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        if let ignored { Swift.print("--core ignored \(ignored.count) part\(ignored.count == 1 ? "" : "s") outside the recurrent core: " + ignored.prefix(6).joined(separator: ", ") + (ignored.count > 6 ? ", …" : "")) }
        if let readoutNote { Swift.print("readout: none (\(readoutNote))") }
        Swift.print("top cells by response score (\(rankerFormula ?? "‖v_j‖·m_j")):")
        for cell in topCells.prefix(5) {
            Swift.print(String(format: "  #%d  layer %d%@ cell %3d  score %.4g  %@", cell.rank, cell.layer, cell.direction == nil ? "" : " rev",
                               cell.cell, cell.score,
                               cell.classes.joined(separator: " ")))
        }
    }
}

/// `characterize --json`.
public struct CharacterizeSummary: Codable {
    public init(out: String, cells: Int, stimuli: Int, backend: String, seconds: Double, cellStimulusSteps: Int,
                cellStimulusStepsPerSecond: Double, respondedShare: Double) {
        self.out = out; self.cells = cells; self.stimuli = stimuli; self.backend = backend; self.seconds = seconds
        self.cellStimulusSteps = cellStimulusSteps; self.cellStimulusStepsPerSecond = cellStimulusStepsPerSecond; self.respondedShare = respondedShare
    }
    public var out: String
    public var cells: Int
    public var stimuli: Int
    public var backend: String
    public var seconds: Double
    public var cellStimulusSteps: Int
    public var cellStimulusStepsPerSecond: Double
    public var respondedShare: Double
}

/// `explain`'s summary.json (METHOD.md §7).
public struct ExplainSummary: Codable {
    public init() {}
    public struct Cell: Codable {
        public var layer: Int, cell: Int
        /// "reverse" for a cell of a reverse direction; absent for forward cells.
        public var direction: String?
        public var meanAbsRelevance: Double
        public init(layer: Int, cell: Int, direction: String?, meanAbsRelevance: Double) {
            self.layer = layer; self.cell = cell; self.direction = direction; self.meanAbsRelevance = meanAbsRelevance
        }
    }
    public var model = "", data = "", backend = ""
    public var sequences = 0, steps = 0
    /// predicted, label or "output K".
    public var target = ""
    public var explainedStep: Int?
    public var epsilon = 0.0, biasFactor = 0.0
    public var meanScore = JSONNumber(.nan)
    /// bias_factor = 1 only: |Σ input + rest − score| / |score| over the sequences (0 up to rounding).
    public var conservationMedianRelativeError: JSONNumber?, conservationWorstRelativeError: JSONNumber?
    /// Median of Σ input / score: how much of the score the inputs receive.
    public var inputShareOfScore = JSONNumber(.nan)
    public var topCells: [Cell] = []
    public var seconds = 0.0, sequenceStepsPerSecond = 0.0
    /// Whether relevance.safetensors holds the per-step 'cells' [N, T, C] ("all") or only
    /// 'cells_total' [N, C] ("none"), and why.
    public var perStep = "all", perStepReason = ""

    public func print() {
        Swift.print("explained \(target)\(explainedStep.map { " at step \($0)" } ?? "") for \(sequences) sequences of \(data) with LRP (ε = \(epsilon), bias factor \(biasFactor))")
        Swift.print("backend: \(backend)")
        if biasFactor == 1 {
            Swift.print(String(format: "conservation: Σ input + rest = score within %.2g (median), %.2g (worst), relative", conservationMedianRelativeError?.value ?? .nan, conservationWorstRelativeError?.value ?? .nan))
        } else {
            Swift.print(String(format: "inputs receive a median %.3g of the score (the rest stays with biases and stabilisers; --bias-factor 1 conserves it)", inputShareOfScore.value))
        }
        Swift.print("most relevant cells (mean |R|): " + topCells.prefix(5).map { "L\($0.layer)\($0.direction == nil ? "" : " rev") c\($0.cell) \(String(format: "%.3g", $0.meanAbsRelevance))" }.joined(separator: ", "))
        Swift.print(String(format: "relevance: %.3g s, %.3g sequence-steps/s", seconds, sequenceStepsPerSecond))
        Swift.print("per-step cell relevance: \(perStep == "all" ? "written ('cells' [N, T, C])" : "summed over steps ('cells_total' [N, C])") (\(perStepReason))")
    }
}
