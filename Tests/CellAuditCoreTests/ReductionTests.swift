import CellAuditAnalysis
import CellAuditCore
import Foundation
import Testing
import TestSupport

@Suite struct ReductionTests {
    /// A first-order low-pass cell (see the engine tests) plus a random layer: summaries against
    /// direct computations and the transfer function.
    @Test func summariesMatchDirectComputation() throws {
        let a = 0.9, w: Float = 0.5
        var layer = try RecurrentNetwork.random(seed: 12, inputSize: 1, hiddenSizes: [6], outputs: 2, scale: 2)
        // Cell 0 of the layer: only w_g, b_f and b_o set, so c follows c_t = a c_{t-1} + K u_t.
        var l0 = layer.layers[0]
        for gate in CellKind.lstm.gates {
            let row = l0.row(gate, 0)
            l0.W[row] = gate == .cell ? w : 0
            for m in 0..<6 { l0.R[row * 6 + m] = 0 }
            l0.b[row] = gate == .forget ? Float(log(a / (1 - a))) : gate == .output ? 20 : 0
        }
        layer.layers[0] = l0
        let frequencies = StimulusBank.logSpaced(from: 0.004, to: 0.45, count: 48)
        let bank = try StimulusBank.grid(stepAmplitudes: [-0.02, 0.005, 0.01, 0.02], frequencies: frequencies,
                                         sineAmplitudes: [0.01], preSteps: 5, window: 500)
        let plan = try CharacterizationPlan(network: layer, probe: .c, bank: bank)
        let job = try ResponseJob(cells: try DecoupledCells(layer: l0), bank: bank, probe: .c)
        let block = try CPUBackend().responses(job)
        let s = Reduction.summarize(block, plan: plan, referenceAmplitude: 0.01)
        #expect(s.count == 6 && s[3].id == CellID(layer: 0, index: 3))
        let cell = s[0]
        #expect(cell.gain == Double(block[.gain, 0, 2]) && cell.settlingTime == Double(block[.settlingTime, 0, 2]))
        #expect(cell.linearity > 0.9999, "\(cell.linearity)")
        #expect(abs(cell.saturation - 1) < 1e-3)
        // Bandwidth relative to the lowest measured frequency, from the transfer function.
        let K = 0.5 * Double(w)
        func gain(_ f: Double) -> Double { let o = 2 * Double.pi * f; return K / ((1 - a * cos(o)) * (1 - a * cos(o)) + a * a * sin(o) * sin(o)).squareRoot() }
        let target = gain(Double(frequencies[0])) / 2.0.squareRoot()
        var lo = Double(frequencies[0]), hi = 0.45
        for _ in 0..<60 { let mid = (lo * hi).squareRoot(); if gain(mid) > target { lo = mid } else { hi = mid } }
        #expect(abs(log(cell.bandwidth / lo)) < 0.03, "bandwidth \(cell.bandwidth) vs \(lo)")
        #expect(cell.resonance == 1 && cell.resonanceFrequency.isNaN)   // a low-pass has its peak at the lowest frequency
        #expect(cell.frequencies.count == 48 && cell.phases.allSatisfy { $0 <= 0 })
        // Response magnitude: RMS of Δ over steps and of the sinusoid amplitude, written out directly.
        for j in 0..<6 {
            var values: [Double] = []
            for c in 0..<bank.count {
                let v = bank.stimuli[c].kind == .step ? Double(block[.yFinal, j, c]) - Double(block[.y0, j, c])
                    : Double(block[.sineGain, j, c]) * Double(abs(bank.stimuli[c].amplitude))
                if v.isFinite { values.append(v) }
            }
            let rms = (values.map { $0 * $0 }.reduce(0, +) / Double(values.count)).squareRoot()
            #expect(abs(s[j].responseMagnitude - rms) <= 1e-9 * max(1e-6, rms))
        }
    }

    /// Summaries read back from a responses file a few rows at a time equal those of the block.
    @Test func summariesFromAFileInBatchesEqualThoseFromMemory() throws {
        let network = try RecurrentNetwork.random(seed: 30, inputSize: 2, hiddenSizes: [11], scale: 2)
        let bank = try StimulusBank.grid(stepAmplitudes: [-1, 0.5, 1], frequencies: [0.03, 0.1, 0.3], sineAmplitudes: [1], window: 90)
        let plan = try CharacterizationPlan(network: network, bank: bank)
        let block = try CPUBackend().responses(try ResponseJob(cells: try DecoupledCells(layer: network.layers[0]), bank: bank))
        var writer = SafeTensorsWriter()
        for m in Metric.allCases where m != .responded {
            try writer.add(m.name, floats: Array(block.plane(m)), shape: [11, bank.count])
        }
        try writer.add("responded", dtype: .U8, shape: [11, bank.count], bytes: Data(block.plane(.responded).map { UInt8($0) }))
        let path = try Fixtures.scratch("summaries").appendingPathComponent("responses.safetensors").path
        try writer.write(to: path)
        let fromFile = try Reduction.summarize(responses: try SafeTensorsFile(path: path), plan: plan, batchBytes: 3 * bank.count * 60)
        let fromMemory = Reduction.summarize(block, plan: plan)
        #expect(fromFile.count == 11)
        for (a, b) in zip(fromFile, fromMemory) {
            #expect(a.id == b.id && a.settlingTime.isNaN == b.settlingTime.isNaN)
            #expect(a.responseMagnitude == b.responseMagnitude && a.sineGains == b.sineGains && a.gain == b.gain)
        }
    }

    @Test func bandwidthAndFitEdgeCases() {
        #expect(Reduction.bandwidthForTest(frequencies: [0.1, 0.2], gains: [1, 0.9]) == .infinity)
        #expect(Reduction.bandwidthForTest(frequencies: [0.1, 0.2], gains: [0, 0]).isNaN)
        let b = Reduction.bandwidthForTest(frequencies: [0.1, 0.4], gains: [1, 0.5])
        #expect(b > 0.1 && b < 0.4)
    }
}

@Suite struct RankerTests {
    /// Every registered ranker, data-driven ones included.
    static let rankers: [any CellRanker] = RankerRegistry.all(seed: 3, withData: true)

    func context(permutation: [Int]? = nil) throws -> RankingContext {
        let network = try RecurrentNetwork.random(seed: 21, inputSize: 3, hiddenSizes: [7, 5], outputs: 4, scale: 2)
        let bank = try StimulusBank.grid(stepAmplitudes: [-1, 1], frequencies: [0.05, 0.2], sineAmplitudes: [1], window: 80)
        let plan = try CharacterizationPlan(network: network, bank: bank)
        var rows = plan.rows
        var values = [Float](repeating: .nan, count: Metric.allCases.count * rows.count * plan.columnCount)
        _ = try Characterizer.run(plan, on: CPUBackend(), sink: { c in
            for m in Metric.allCases { for r in 0..<c.block.cellCount { for s in 0..<c.block.stimulusCount {
                values[(m.rawValue * rows.count + c.rowStart + r) * plan.columnCount + c.columnStart + s] = c.block[m, r, s]
            } } }
        })
        let block = ResponseBlock(cellCount: rows.count, stimulusCount: plan.columnCount, values: values)
        var summaries = Reduction.summarize(block, plan: plan)
        if let p = permutation {
            rows = p.map { rows[$0] }
            summaries = p.map { summaries[$0] }
        }
        // The data-driven rankers read 24 random labelled sequences.
        var data = Dataset(inputs: try SequenceBatch(count: 24, steps: 6, width: 3, values: RandomInputs.floats(24 * 6 * 3, seed: 22)))
        data.labels = (0..<24).map { $0 % 4 }
        let evidence = try RankingEvidence(dataset: data, task: .classification, output: .last, backend: CPUBackend())
        return RankingContext(network: network, rows: rows, summaries: summaries, evidence: evidence)
    }

    @Test func theRelevanceRankersScoreMeanAbsoluteRelevance() throws {
        let c = try context()
        let evidence = try #require(c.evidence)
        let targets = try RelevanceJob.predictedTargets(network: c.network, inputs: try evidence.data.read(0..<24).inputs, output: .last, on: CPUBackend())
        let job = try RelevanceJob(network: c.network, inputs: try evidence.data.read(0..<24).inputs, output: .last, targets: targets)
        let lrp = try CPUBackend().relevance(job)
        let s = try RelevanceRanker().scores(c)
        // Cell 1 of layer 1 is column 7 + 1: its mean |R(h)| over 24 sequences × 6 steps.
        var sum = 0.0
        for row in 0..<(24 * 6) { sum += Double(abs(lrp.cellRelevance[row * 12 + 8])) }
        #expect(abs(s[8] - sum / Double(24 * 6)) < 1e-9)
        let g = try GradientInputRanker().scores(c)
        #expect(g != s)
        let bare = RankingContext(network: c.network, rows: c.rows, summaries: c.summaries)
        #expect(throws: ModelError.self) { try RelevanceRanker().scores(bare) }
        #expect(!RankerRegistry.all(seed: 1, withData: false).contains { RankerRegistry.needingData.contains($0.name) })
    }

    @Test func everyRankerKeepsTheContract() throws {
        let base = try context()
        let n = base.rows.count
        var rng = SeededGenerator(seed: 4)
        var permutation = Array(0..<n)
        permutation.shuffle(using: &rng)
        let permuted = try context(permutation: permutation)
        for ranker in Self.rankers {
            let s = try ranker.scores(base)
            #expect(s.count == n && s.allSatisfy(\.isFinite), "\(ranker.name)")
            #expect(try ranker.scores(base) == s, "\(ranker.name) is not deterministic")
            #expect(try ranker.scores(permuted) == permutation.map { s[$0] }, "\(ranker.name) does not follow a permutation")
            let ranks = try ranker.ranks(base)
            #expect(ranks.sorted() == Array(1...n))
            let best = ranks.firstIndex(of: 1)!
            #expect(s[best] == s.max())
            #expect(Set(s).count > 1, "\(ranker.name) gives every cell the same score")
        }
        #expect(try RandomRanker(seed: 3).scores(base) != RandomRanker(seed: 4).scores(base))
    }

    @Test func readoutWeightIsTheOutgoingColumnNorm() throws {
        let c = try context()
        let s = try ReadoutWeightRanker().scores(c)
        let net = c.network
        // Cell 2 of layer 0 is read by layer 1's W column 2; cell 1 of layer 1 by the readout's column 1.
        let w = (0..<(4 * 5)).map { Double(net.layers[1].W[$0 * 7 + 2]) }
        #expect(abs(s[2] - (w.map { $0 * $0 }.reduce(0, +)).squareRoot()) < 1e-9)
        let v = (0..<4).map { Double(net.readout!.V[$0 * 5 + 1]) }
        #expect(abs(s[7 + 1] - (v.map { $0 * $0 }.reduce(0, +)).squareRoot()) < 1e-9)
        let r = try ResponseRanker().scores(c)
        #expect(abs(r[3] - s[3] * c.summaries[3].responseMagnitude) < 1e-12)
    }
}
