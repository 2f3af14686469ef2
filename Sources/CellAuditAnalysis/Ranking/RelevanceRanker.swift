import CellAuditCore
import Foundation

/// What the data-driven rankers need beyond the network: the dataset (read in chunks), how the
/// model reads it, and where to compute.
public struct RankingEvidence: Sendable {
    public var data: DatasetStream
    public var task: ModelTask
    public var output: OutputMode
    public var backend: any ComputeBackend

    public init(data: DatasetStream, task: ModelTask, output: OutputMode, backend: any ComputeBackend) {
        self.data = data; self.task = task; self.output = output; self.backend = backend
    }

    /// A dataset in memory (prepared for the model).
    public init(dataset: Dataset, task: ModelTask, output: OutputMode, backend: any ComputeBackend) throws {
        self.init(data: try DatasetStream(dataset, preparedFor: nil, validate: false), task: task, output: output, backend: backend)
    }

    /// Mean |relevance| of every cell of the network (flat, layer after layer) over the data and
    /// steps under `rule`: for classification, of each sequence's predicted class; for
    /// regression, summed over the outputs, each explained over all its steps. Computed a chunk
    /// at a time; each output's sums run over the chunks in order, so the values are those of
    /// one pass over the whole dataset.
    public func meanAbsoluteCellRelevance(_ network: RecurrentNetwork, rule: RelevanceJob.Rule) throws -> [Double] {
        let explained = task == .classification ? 1 : network.readout?.outputs ?? 0
        var sums = [[Double]](repeating: [Double](repeating: 0, count: network.cellCount), count: explained)
        var rows = 0
        try data.forEachChunk { _, chunk in
            let n = chunk.inputs.count
            rows += n * chunk.inputs.steps
            for o in 0..<explained {
                let targets = task == .classification
                    ? try ExplanationTarget.predicted.resolve(network: network, task: task, output: output, dataset: chunk, step: nil, on: backend)
                    : [Int](repeating: o, count: n)
                let job = try RelevanceJob(network: network, inputs: chunk.inputs, output: output, targets: targets, rule: rule)
                try backend.relevance(job).addAbsoluteCellRelevance(into: &sums[o])
            }
        }
        var total = [Double](repeating: 0, count: network.cellCount)
        for output in sums {
            for (j, v) in output.enumerated() { total[j] += v / Double(max(1, rows)) }
        }
        return total
    }
}

extension RankingContext {
    /// Picks each row's value out of a per-cell vector over the whole network (layer after layer).
    func perRow(_ values: [Double]) -> [Double] {
        let layout = network.layout
        return rows.map { values[layout.offset(of: $0)] }
    }

    func requireEvidence(_ ranker: String) throws -> RankingEvidence {
        guard let evidence else {
            throw ModelError.shape("the \(ranker) ranking needs data: give --data")
        }
        return evidence
    }
}

/// s_j = mean over the data and steps of |R(h_t,j)|, the LRP relevance of cell j's output
/// (Arras et al. 2019; ε = 0.001, bias factor 0, the explanation's defaults).
public struct RelevanceRanker: CellRanker {
    public let name = "lrp"
    public init() {}

    public func scores(_ context: RankingContext) throws -> [Double] {
        let evidence = try context.requireEvidence(name)
        return context.perRow(try evidence.meanAbsoluteCellRelevance(context.network, rule: .lrp(epsilon: Defaults.relevanceEpsilon, biasFactor: Defaults.relevanceBiasFactor)))
    }
}

/// s_j = mean over the data and steps of |h_t,j · ∂score/∂h_t,j| in the unmodified network
/// (gradient × input, Shrikumar et al. 2016; the baseline Arras et al. 2019 compare LRP with).
public struct GradientInputRanker: CellRanker {
    public let name = "gradient_x_input"
    public init() {}

    public func scores(_ context: RankingContext) throws -> [Double] {
        let evidence = try context.requireEvidence(name)
        return context.perRow(try evidence.meanAbsoluteCellRelevance(context.network, rule: .gradientTimesInput))
    }
}
