import CellAuditAnalysis
import CellAuditCore
import CellAuditImport
import CellAuditOpenCL
import Foundation
import Testing
import TestSupport

/// METHOD.md §2 and §4 as updated: runs start at the cell's resting state, every metric is taken
/// against the cell's own unstimulated run, and a constant tail gives Δ exactly.
@Suite struct BaselineTests {
    /// ../shared/cases/limit-cycle: cell 1 oscillates with period 2 at zero input. A step of 1e-4
    /// changes nothing in its trajectory, so its gain is 0 (it was 7,615 when measured against
    /// the value at onset), and it is flagged not at rest and classed drifting.
    @Test func aCellInALimitCycleGetsNoCreditForTheStimulus() throws {
        let loaded = try ModelFile.load(Fixtures.path("cases/limit-cycle.safetensors"))
        let bank = try StimulusBank(stimuli: [.step(1e-4), .step(1)])
        let plan = try CharacterizationPlan(network: loaded.network, bank: bank)
        for backend in try backendsUnderTest() {
            let atRest = try Characterizer.atRest(plan, on: backend)
            #expect(atRest == [true, false, true], "\(backend.identity)")
            let job = try ResponseJob(cells: try DecoupledCells(layer: loaded.network.layers[0]), bank: bank)
            let m = try backend.responses(job)
            #expect(abs(m[.gain, 1, 0]) < 1e-3, "\(backend.identity): gain \(m[.gain, 1, 0]) for a step that changes nothing")
            #expect(m[.responded, 1, 0] == 0)
            // The ordinary cell still responds to both steps.
            #expect(m[.responded, 2, 0] == 1 && m[.responded, 2, 1] == 1)
        }
        var summary = try #require(Reduction.summarize(try CPUBackend().responses(
            try ResponseJob(cells: try DecoupledCells(layer: loaded.network.layers[0]), bank: bank)), plan: plan).dropFirst().first)
        summary.atRest = false
        #expect(ClassThresholds().classify(summary, window: bank.window).first == .drifting)
    }

    /// A step of amplitude 0 never responds, however far from rest the run starts.
    @Test(arguments: [nil, 20] as [Int?])
    func aZeroStepNeverResponds(preSteps: Int?) throws {
        let network = try ModelFile.load(Fixtures.path("digits_lstm16.safetensors")).network
        let bank = try StimulusBank(stimuli: [.step(0), .step(1), .sine(0, frequency: 0.1)], preSteps: preSteps, window: 120)
        let job = try ResponseJob(cells: try DecoupledCells(layer: network.layers[0]), bank: bank)
        for backend in try backendsUnderTest() {
            let m = try backend.responses(job)
            for j in 0..<16 {
                #expect(m[.responded, j, 0] == 0 && m[.yFinal, j, 0] == m[.y0, j, 0] && m[.gain, j, 0].isNaN, "\(backend.identity) cell \(j)")
                #expect(m[.responded, j, 2] == 0, "\(backend.identity) cell \(j): a zero sinusoid responded")
            }
            #expect((0..<16).filter { m[.responded, $0, 1] == 1 }.count >= 12)
        }
    }

    /// Starting at the resting state leaves fewer cells of digits_lstm16 moving at onset than 20
    /// rest steps from zero did, and every cell whose rest search converged is at rest.
    @Test func runsStartAtTheRestingState() throws {
        let cells = try DecoupledCells(layer: try ModelFile.load(Fixtures.path("digits_lstm16.safetensors")).network.layers[0])
        let atRest = try ResponseJob(cells: cells, bank: try StimulusBank(stimuli: [.step(1)])).baseline
        let fromZero = try ResponseJob(cells: cells, bank: try StimulusBank(stimuli: [.step(1)], preSteps: 20)).baseline
        let moving = fromZero.atRest.filter { !$0 }.count
        #expect(moving >= 3, "\(fromZero.atRest)")
        #expect(atRest.atRest.filter { !$0 }.count < moving, "from rest: \(atRest.atRest), found: \(atRest.restFound)")
        for j in 0..<16 where atRest.restFound[j] { #expect(atRest.atRest[j], "cell \(j) converged but drifts") }
        // At rest, the run before onset is the resting state itself.
        for j in 0..<16 { #expect(abs(atRest.y0(j, onset: 1, probe: .h) - atRest.initialH[j]) <= 1e-6) }
    }

    /// A response that is constant from onset: Δ is that constant exactly, so there is no
    /// overshoot and nothing outside the settling band, on every backend.
    @Test func aConstantTailGivesTheFinalValueExactly() throws {
        // h = tanh(w·u + b): no recurrence, so the response is constant from the first stimulated step.
        let values: [Float] = [4, 0.7, 2.5, 0, 0, 0, 0.3, -0.2, 0.05]
        let cells = DecoupledCells(kind: .rnnTanh, cellCount: 3, parameters: values)
        let amplitudes: [Float] = [1e-3, 0.37, -1.3, 2]
        let bank = try StimulusBank(stimuli: amplitudes.map { .step($0) }, window: 400)
        let job = try ResponseJob(cells: cells, bank: bank)
        for backend in try backendsUnderTest() {
            let m = try backend.responses(job)
            let y = try backend.trajectories(job)
            for j in 0..<3 {
                for s in amplitudes.indices {
                    let last = y.series(cell: j, stimulus: s).dropFirst(bank.schedules[s].end - 1).first!
                    let r = last - job.baseline.series(j)[job.baseline.series(j).startIndex + bank.schedules[s].end - 1]
                    #expect(m[.yFinal, j, s] == m[.y0, j, s] + r, "\(backend.identity) cell \(j) stimulus \(s)")
                    #expect(m[.overshootPct, j, s] == 0 && m[.settlingTime, j, s] == 0, "\(backend.identity) cell \(j) stimulus \(s)")
                }
            }
        }
        let constant: Float = 0.1 + 1e-7
        #expect(StepMetrics.tailMean([Float](repeating: constant, count: 20)) == constant)
    }
}
