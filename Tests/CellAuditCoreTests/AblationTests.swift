import CellAuditAnalysis
import CellAuditCore
import CellAuditImport
import CellAuditOpenCL
import Foundation
import Synchronization
import Testing
import TestSupport

@Suite struct StatisticsTests {
    @Test func spearmanOnKnownCases() {
        #expect(Statistics.spearman([1, 2, 3, 4], [10, 20, 30, 45]) == 1)
        #expect(Statistics.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == -1)
        #expect(Statistics.ranks([5, 1, 5, 3]) == [3.5, 1, 3.5, 2])
        // With ties: Pearson of the average ranks, written out.
        let r = Statistics.spearman([1, 2, 2, 3], [1, 3, 2, 4])
        #expect(abs(r - Statistics.pearson([1, 2.5, 2.5, 4], [1, 3, 2, 4])) < 1e-12)
        #expect(Statistics.spearman([1, 1, 1], [1, 2, 3]).isNaN)
        let (rho, low, high) = Statistics.spearmanWithBootstrap((0..<30).map(Double.init), (0..<30).map { Double($0 % 7) }, resamples: 300, seed: 1)
        #expect(low <= rho && rho <= high && low < high)
    }

    /// The counting path of the bootstrap equals Spearman's ρ of every resample sorted out in full,
    /// with ties in both variables, on awkward sizes.
    @Test(arguments: [3, 7, 64, 131])
    func bootstrapCountsEqualSortedResamples(n: Int) {
        var rng = SeededGenerator(seed: UInt64(n))
        // Few distinct values: many ties within and across resamples.
        let a = (0..<n).map { _ in Double(rng.next() % 5) }, b = (0..<n).map { i in Double(rng.next() % 9) + (i % 3 == 0 ? 0.5 : 0) }
        let resamples = 400, seed: UInt64 = 11
        var draw = SeededGenerator(seed: seed)
        var samples: [Double] = []
        for _ in 0..<resamples {
            let idx = (0..<n).map { _ in Int(draw.next() % UInt64(n)) }
            let r = Statistics.spearman(idx.map { a[$0] }, idx.map { b[$0] })
            if r.isFinite { samples.append(r) }
        }
        samples.sort()
        let (rho, low, high) = Statistics.spearmanWithBootstrap(a, b, resamples: resamples, seed: seed)
        #expect(rho == Statistics.spearman(a, b))
        if samples.count >= 10 {
            #expect(abs(low - samples[Int(0.025 * Double(samples.count - 1))]) < 1e-12)
            #expect(abs(high - samples[Int(0.975 * Double(samples.count - 1))]) < 1e-12)
        } else {
            #expect(low.isNaN && high.isNaN)
        }
        // With a NaN the sorting path runs, and still gives an interval around ρ.
        var withNaN = a
        withNaN[n / 2] = .nan
        let (r2, l2, h2) = Statistics.spearmanWithBootstrap(withNaN, b, resamples: 50, seed: seed)
        #expect(l2.isNaN || (l2 <= h2 && !r2.isNaN))
    }
}

@Suite struct AblationStudyTests {
    /// The ablation's masked forward in blocks (for progress) gives the same bits as one job, on
    /// both backends, and reports every block.
    @Test(arguments: ["cpu", "opencl"])
    func blocksOfConfigurationsGiveTheSameNumbersAsOneJob(backendName: String) throws {
        guard backendName == "cpu" || OpenCLTestSupport.enabled else { return }
        let backend: any ComputeBackend = backendName == "cpu" ? CPUBackend(threads: 2) : try OpenCLBackend(device: try OpenCLTestSupport.device())
        let loaded = try ModelFile.load(Fixtures.path("digits_gru16.safetensors"))
        let dataset = try Dataset.load(Fixtures.path("digits_test.safetensors"))
        let n = loaded.network.cellCount
        let masks = (0..<(n + 5)).map { AblationStudy.singleConfiguration($0 % (n + 2), cells: n) }
        let whole = try AblationStudy.forwardInBlocks(network: loaded.network, inputs: dataset.inputs, output: loaded.output, masks: masks,
                                                      clamp: nil, on: backend, phase: "p", progress: nil)
        let seen = Mutex<[Int]>([])
        let blocked = try AblationStudy.forwardInBlocks(network: loaded.network, inputs: dataset.inputs, output: loaded.output, masks: masks,
                                                        clamp: nil, on: backend, phase: "p", progress: { _, done, _ in seen.withLock { $0.append(done) } },
                                                        blockWork: 0)
        #expect(blocked.shape == whole.shape)
        #expect(blocked.outputs.map(\.bitPattern) == whole.outputs.map(\.bitPattern))
        #expect(seen.withLock { $0 }.count == 16 || seen.withLock { $0 }.count == (masks.count + (masks.count + 15) / 16 - 1) / ((masks.count + 15) / 16))
        #expect(seen.withLock { $0 }.last == masks.count)
    }

    @Test func studyAgreesWithDirectForwardPasses() throws {
        let loaded = try ModelFile.load(Fixtures.path("digits_lstm16.safetensors"))
        let dataset = try Dataset.load(Fixtures.path("digits_test.safetensors"))
        let net = loaded.network, n = net.cellCount
        var rng = SeededGenerator(seed: 5)
        let scores = (0..<n).map { _ in Double(rng.uniform(0, 1)) }
        let cpu = CPUBackend()
        let study = try AblationStudy.run(network: net, dataset: dataset, task: loaded.task, output: loaded.output,
                                          rankings: [("made-up", scores)], metrics: [("index", (0..<n).map(Double.init))],
                                          seeds: 3, points: 8, bootstrap: 200, on: cpu)
        func score(_ mask: CellMask) throws -> Double {
            let r = try cpu.forward(try ForwardJob(network: net, inputs: dataset.inputs, output: loaded.output, masks: [mask]))
            return try Score.of(r, dataset: dataset, task: loaded.task, output: loaded.output).value
        }
        // No cell ablated reproduces eval; every cell ablated is the readout bias alone.
        #expect(abs(study.baseline - Double(try #require(try SafeTensorsFile(path: Fixtures.path("digits_lstm16.safetensors")).metadata["golden_accuracy"].flatMap(Double.init)))) < 1e-9)
        let a = net.readout!.a
        let biasClass = a.indices.max { a[$0] < a[$1] }!
        let labels = dataset.labels!
        #expect(abs(study.allAblated - Double(labels.filter { $0 == biasClass }.count) / Double(labels.count)) < 1e-9)
        // Continuous damage: the rise of the mean cross-entropy of the true class, written out here
        // from the logits; the accuracy drop beside it.
        func crossEntropy(_ mask: CellMask) throws -> Double {
            let r = try cpu.forward(try ForwardJob(network: net, inputs: dataset.inputs, output: loaded.output, masks: [mask]))
            var total = 0.0
            for i in 0..<labels.count {
                let z = r.outputs[(i * 10)..<((i + 1) * 10)].map(Double.init)
                total += -log(exp(z[labels[i]]) / z.map(exp).reduce(0, +))
            }
            return total / Double(labels.count)
        }
        let intact = try crossEntropy(.none(cells: n))
        #expect(abs(study.baselineLoss - intact) < 1e-9 && intact > 0)
        for j in [0, 7, 15] {
            #expect(abs(study.damage[j] - (try crossEntropy(.ablating([j], of: n)) - intact)) < 1e-9)
            #expect(abs(try #require(study.accuracyDrop)[j] - (study.baseline - (try score(.ablating([j], of: n))))) < 1e-9)
        }
        // Continuous: unlike the accuracy drop (steps of 1/360), nearly every cell has its own damage.
        #expect(Set(study.damage).count >= n - 1)
        let top = try #require(study.curves.first { $0.order == "top" })
        let order = scores.indices.sorted { scores[$0] > scores[$1] }
        #expect(top.k.last == n && abs(top.score.last! - study.allAblated) < 1e-9)
        #expect(abs(top.score[1] - (try score(.ablating(order.prefix(top.k[1]), of: n)))) < 1e-9)
        let random = try #require(study.curves.first { $0.order == "random" })
        #expect(random.spread.allSatisfy { $0 >= 0 } && random.spread.contains { $0 > 0 })
        #expect(study.rankers.count == 1 && study.metrics.count == 1 && study.rankers[0].rho.isFinite)
        // The ablation ranker keeps the rankers' contract: permuting rows permutes its scores.
        let rows = (0..<n).map { CellID(layer: 0, index: $0) }
        let ranker = AblationRanker(damage: study.damage, rows: rows)
        let context = RankingContext(network: net, rows: rows, summaries: [])
        let reversed = RankingContext(network: net, rows: rows.reversed(), summaries: [])
        #expect(try ranker.scores(context) == study.damage)
        #expect(try ranker.scores(reversed) == study.damage.reversed())
    }
}

@Suite struct CapacityTests {
    @Test func ksAndQuantilesOnKnownCases() {
        #expect(CapacityStudy.ks([1, 2, 3], [1, 2, 3]) == 0)
        #expect(CapacityStudy.ks([1, 2, 3], [4, 5, 6]) == 1)
        #expect(abs(CapacityStudy.ks([1, 2, 3, 4], [3, 4, 5, 6]) - 0.5) < 1e-12)
        #expect(CapacityStudy.ks([.nan], [1]).isNaN)
        #expect(CapacityStudy.quantile([1, 2, 3, 4, 5], 0.5) == 3)
        #expect(CapacityStudy.quantile([0, 10], 0.25) == 2.5)
    }
}

@Suite struct MeanAblationTests {
    /// Mean ablation holds an ablated cell at its data mean: its h is that mean at every step;
    /// the other configurations are unchanged; both backends agree; zero clamping is the default.
    @Test func ablatedCellsSitAtTheirMean() throws {
        let loaded = try ModelFile.load(Fixtures.path("digits_lstm32x2.safetensors"))
        let data = try Dataset.load(Fixtures.path("digits_test.safetensors"))
        let inputs = try SequenceBatch(count: 23, steps: data.inputs.steps, width: data.inputs.width,
                                       values: Array(data.inputs.values.prefix(23 * 64)))
        let net = loaded.network, n = net.cellCount
        let means = AblationStudy.meanStates(net, inputs: inputs)
        // The means equal the averages of an intact forward pass's last-layer states.
        let intact = try CPUBackend().forward(try ForwardJob(network: net, inputs: inputs, output: .sequence))
        for j in [0, 17, 31] {
            let values = stride(from: j, to: intact.hidden.count, by: 32).map { Double(intact.hidden[$0]) }
            #expect(abs(Double(means.h[32 + j]) - values.reduce(0, +) / Double(values.count)) < 1e-5)
        }
        let masks: [CellMask] = [.none(cells: n), .ablating([32 + 5, 32 + 20, 3], of: n)]
        let job = try ForwardJob(network: net, inputs: inputs, output: .sequence, masks: masks, clamp: means)
        let results = try backendsUnderTest().map { try $0.forward(job) }
        let per = 23 * inputs.steps * 32
        for result in results {
            #expect(maxDifference(result.hidden.prefix(per), intact.hidden) <= Tolerance.forward)
            for cell in [5, 20] {
                let held = stride(from: per + cell, to: 2 * per, by: 32).map { result.hidden[$0] }
                #expect(held.allSatisfy { abs($0 - means.h[32 + cell]) <= 1e-6 }, "cell \(cell)")
            }
            #expect(maxDifference(result.outputs, results[0].outputs) <= Tolerance.forward)
        }
        // Zero clamping stays the default and differs from mean clamping.
        let zero = try CPUBackend().forward(try ForwardJob(network: net, inputs: inputs, output: .sequence, masks: masks))
        #expect(stride(from: per + 5, to: 2 * per, by: 32).allSatisfy { zero.hidden[$0] == 0 })
        #expect(throws: ModelError.self) { try ForwardJob(network: net, inputs: inputs, output: .last, clamp: (h: [1], c: [1])) }
    }
}

/// Plain ablation drops the ablated cells (`RecurrentNetwork.keeping`): the same outputs as the
/// masked pass, which computes every cell and holds the ablated ones at 0.
@Suite struct DroppedCellTests {
    /// (kind, reset-after, peephole): the dropped network keeps the kept cells' peepholes too.
    @Test(arguments: [(CellKind.lstm, true, false), (.lstm, true, true), (.gru, true, false), (.gru, false, false), (.rnnTanh, true, false),
                      (.rnnReLU, true, false)])
    func droppingAblatedCellsEqualsMasking(kind: CellKind, resetAfter: Bool, peephole: Bool) throws {
        let network = try RecurrentNetwork.random(kind: kind, seed: 21, inputSize: 3, hiddenSizes: [7, 19], outputs: 4, scale: 2,
                                                  resetAfter: resetAfter, peephole: peephole)
        var rng = SeededGenerator(seed: 5)
        let inputs = try SequenceBatch(count: 9, steps: 6, width: 3, values: (0..<(9 * 6 * 3)).map { _ in Float.random(in: -1...1, using: &rng) })
        let n = network.cellCount
        var masks: [CellMask] = [.none(cells: n), .ablating(0..<n, of: n), .ablating(0..<7, of: n), .ablating(7..<n, of: n)]
        masks += (0..<12).map { _ in .ablating((0..<n).filter { _ in Bool.random(using: &rng) }, of: n) }
        for output in [OutputMode.last, .sequence] {
            let job = try ForwardJob(network: network, inputs: inputs, output: output, masks: masks)
            let dropped = try CPUBackend().forward(job)
            let masked = CPUBackend().maskedForward(job, workers: 2)
            #expect(dropped.shape == masked.shape)
            let worst = zip(dropped.outputs, masked.outputs).map { abs($0 - $1) }.max()!
            #expect(worst <= 1e-5, "\(kind) \(output): outputs differ by \(worst)")
            let worstHidden = zip(dropped.hidden, masked.hidden).map { abs($0 - $1) }.max()!
            #expect(worstHidden <= 1e-5, "\(kind) \(output): hidden differs by \(worstHidden)")
            // Ablated cells of the last layer read 0, as the masked pass writes them.
            for (c, mask) in masks.enumerated() {
                for j in 0..<19 where mask.keep[7 + j] == 0 {
                    #expect((0..<(9 * 6)).allSatisfy { dropped.hidden[(c * 9 * 6 + $0) * 19 + j] == 0 })
                }
            }
            // A configuration computes alike alone or among others (shards rely on it).
            for c in [0, 5, 15] {
                let alone = try CPUBackend().forward(try ForwardJob(network: network, inputs: inputs, output: output, masks: [masks[c]]))
                let per = alone.outputs.count
                #expect(Array(dropped.outputs[(c * per)..<((c + 1) * per)]) == alone.outputs)
            }
        }
        // The kept network: sizes, and nil when a layer keeps nothing.
        let (kept, lastKept) = try #require(network.keeping(CellMask.ablating([0, 8, 9], of: n).keep))
        #expect(kept.layers.map(\.hiddenSize) == [6, 17] && kept.layers[1].inputSize == 6 && Array(lastKept.prefix(2)) == [0, 3])
        #expect(network.keeping(CellMask.ablating(0..<7, of: n).keep) == nil)
    }
}
