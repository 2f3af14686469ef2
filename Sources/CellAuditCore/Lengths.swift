import Foundation

/// Padded batches (METHOD.md §8, "Lengths"): a batch whose sequences have their own lengths runs
/// as groups of equal length, each group a plain batch of its length's steps, and the results are
/// put back in place with padding where PyTorch's `pad_packed_sequence` leaves it. So padding never
/// enters a state, a reverse direction starts at each sequence's last real step, a readout reads
/// each sequence's own last step or final states, and a padded batch gives exactly the numbers of
/// its sequences run one at a time, on every backend (each runs the groups as it runs any batch).
public struct LengthGroup: Sendable, Equatable {
    /// The steps every sequence of the group runs.
    public let length: Int
    /// The group's sequences, ascending.
    public let sequences: [Int]
}

extension SequenceBatch {
    /// Whether a sequence is shorter than `steps` (else the batch runs as it is).
    public var isPadded: Bool { lengths?.contains { $0 < steps } ?? false }

    /// The sequences by length, longest first.
    public func lengthGroups() -> [LengthGroup] {
        let lengths = self.lengths ?? [Int](repeating: steps, count: count)
        return Dictionary(grouping: 0..<count) { lengths[$0] }.map { LengthGroup(length: $0.key, sequences: $0.value.sorted()) }
            .sorted { $0.length > $1.length }
    }

    /// Sequences `indices` (in that order), cut to their first `steps` steps, as a batch without lengths.
    public func gathering(_ indices: [Int], steps length: Int) throws -> SequenceBatch {
        var values = [Float]()
        values.reserveCapacity(indices.count * length * width)
        for s in indices { values += self.values[(s * steps * width)..<((s * steps + length) * width)] }
        return try SequenceBatch(count: indices.count, steps: length, width: width, values: values)
    }
}

extension ForwardJob {
    /// The job run by length groups through `run` (a backend's own forward) and put back in
    /// place: outputs [configurations × N × K] read at each sequence's own end; at every step
    /// [configurations × N × T × K] with the readout of h = 0 (its bias) at padded steps, as a
    /// PyTorch head applied to `pad_packed_sequence`'s output gives; hidden states 0 at padding.
    public func byLength(_ run: (ForwardJob) throws -> ForwardResult) throws -> ForwardResult {
        let n = inputs.count, T = inputs.steps, configs = masks.count
        let readout = network.readout!, k = readout.outputs, w = network.outputWidth
        let perStep = output == .sequence
        var outputs = [Float](repeating: 0, count: configs * n * (perStep ? T : 1) * k)
        if perStep {
            for row in 0..<(configs * n * T) { for o in 0..<k { outputs[row * k + o] = readout.a[o] } }
        }
        var hidden: [Float] = []
        for group in inputs.lengthGroups() {
            var part = self
            part.inputs = try inputs.gathering(group.sequences, steps: group.length)
            let result = try run(part)
            let g = group.sequences.count, L = group.length
            if hidden.isEmpty && !result.hidden.isEmpty { hidden = [Float](repeating: 0, count: configs * n * T * w) }
            for c in 0..<configs {
                for (i, s) in group.sequences.enumerated() {
                    if perStep {
                        let from = ((c * g + i) * L) * k, to = ((c * n + s) * T) * k
                        outputs.replaceSubrange(to..<(to + L * k), with: result.outputs[from..<(from + L * k)])
                    } else {
                        let from = (c * g + i) * k, to = (c * n + s) * k
                        outputs.replaceSubrange(to..<(to + k), with: result.outputs[from..<(from + k)])
                    }
                    if !result.hidden.isEmpty {
                        let from = ((c * g + i) * L) * w, to = ((c * n + s) * T) * w
                        hidden.replaceSubrange(to..<(to + L * w), with: result.hidden[from..<(from + L * w)])
                    }
                }
            }
        }
        return ForwardResult(outputs: outputs, hidden: hidden, shape: perStep ? [configs, n, T, k] : [configs, n, k])
    }
}

extension RelevanceJob {
    /// The job run by length groups through `run` and put back in place: relevance of padded steps'
    /// inputs and cells exactly 0; score, rest and smallest denominator per sequence.
    public func byLength(_ run: (RelevanceJob) throws -> RelevanceResult) throws -> RelevanceResult {
        let n = inputs.count, T = inputs.steps, I = inputs.width, C = network.cellCount
        var input = [Float](repeating: 0, count: n * T * I), cells = [Float](repeating: 0, count: n * T * C)
        var score = [Float](repeating: 0, count: n), rest = score, minimum = score
        var done = 0
        for group in inputs.lengthGroups() {
            var part = self
            part.inputs = try inputs.gathering(group.sequences, steps: group.length)
            part.targets = group.sequences.map { targets[$0] }
            part.progress = nil
            let result = try run(part)
            let L = group.length
            for (i, s) in group.sequences.enumerated() {
                input.replaceSubrange((s * T * I)..<((s * T + L) * I), with: result.input[(i * L * I)..<((i + 1) * L * I)])
                cells.replaceSubrange((s * T * C)..<((s * T + L) * C), with: result.cellRelevance[(i * L * C)..<((i + 1) * L * C)])
                score[s] = result.score[i]; rest[s] = result.rest[i]; minimum[s] = result.minimumDenominator[i]
            }
            done += group.sequences.count
            progress?(done, n)
        }
        return RelevanceResult(count: n, steps: T, width: I, cells: C, input: input, cellRelevance: cells, score: score, rest: rest,
                               minimumDenominator: minimum)
    }
}
