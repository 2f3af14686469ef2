import CellAuditAnalysis
import CellAuditCore
import CellAuditOpenCL
import Foundation
import OpenCLKit
import Synchronization
import Testing
import TestSupport

func randomBank(seed: UInt64, steps: Int = 7, sines: Int = 9, window: Int = 160) throws -> StimulusBank {
    try ParityHarness.randomBank(seed: seed, steps: steps, sines: sines, window: window)
}

func responseJob(cells: Int, seed: UInt64, probe: Probe = .h, bank: StimulusBank? = nil, kind: CellKind = .lstm) throws -> ResponseJob {
    let network = try RecurrentNetwork.random(kind: kind, seed: seed, inputSize: 5, hiddenSizes: [cells], scale: 3)
    return try ResponseJob(cells: try DecoupledCells(layer: network.layers[0]), bank: try bank ?? randomBank(seed: seed), probe: probe)
}

/// The parity harness's full table: every cell kind × operation × awkward size × kernel
/// settings, OpenCL against the cpu reference (ParityHarness; `check-kernels` runs its tiny table).
@Suite(.enabled(if: OpenCLTestSupport.enabled, "no OpenCL device (set CELLAUDIT_REQUIRE_OPENCL=1 to fail instead)"))
struct ParityTests {
    @Test(arguments: ParityHarness.fullTable())
    func openCLAgreesWithTheCPUReference(_ testCase: ParityHarness.Case) throws {
        let result = try #require(ParityHarness.run([testCase], device: try OpenCLTestSupport.device()).first)
        switch result.outcome {
        case .passed: break
        case .failed(let why): Issue.record("\(testCase): \(why)")
        case .unsupported(let why):
            // Reported, not failed: only a work-group limit may make a case unsupported, and the
            // table stays within every device's (64 cells).
            Issue.record("\(testCase) unsupported on this device: \(why)")
        }
    }

    @Test func theTableCoversEveryKindAndOperation() {
        let table = ParityHarness.fullTable()
        for kind in CellKind.allCases {
            for operation in ParityHarness.Operation.allCases {
                #expect(table.contains { $0.kind == kind && $0.operation == operation }, "\(kind) \(operation)")
            }
        }
        #expect(table.contains { $0.kind == .gru && !$0.resetAfter && $0.operation == .maskedForward })
        #expect(table.contains { $0.probe == .c })
    }
}

@Suite(.enabled(if: OpenCLTestSupport.enabled, "no OpenCL device (set CELLAUDIT_REQUIRE_OPENCL=1 to fail instead)"))
struct CrossBackendTests {
    /// METHOD.md §4 computed in the kernel equals the plain reference on the kernel's own stored trajectory.
    @Test(arguments: CellKind.allCases)
    func kernelMetricsEqualTheReferenceOnItsTrajectory(kind: CellKind) throws {
        let opencl = try OpenCLBackend(device: try OpenCLTestSupport.device(), canaryPadding: 17)
        let job = try responseJob(cells: 93, seed: 21, kind: kind)
        let reference = ResponseBlock.reference(try opencl.trajectories(job), baseline: try opencl.unstimulatedRun(job),
                                                bank: job.bank, settlingBand: job.settlingBand)
        let problems = try opencl.responses(job).disagreements(with: reference, tolerance: MetricTolerance.sameTrajectory)
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
    }

    @Test func autoFallsBackToCPUWithOneWarningWhenTheDeviceFailsAtRunTime() throws {
        let warnings = Mutex<[String]>([])
        let device = try OpenCLTestSupport.device()
        let backend = try BackendSelection.make(.auto, deviceIndex: device.index) { line in
            warnings.withLock { $0.append(line) }
        }
        #expect(backend.identity.kind == .opencl)
        let job = try responseJob(cells: 9, seed: 3)
        let (first, second) = try CLFaults.with(call: "clEnqueueNDRangeKernel", failingWith: .outOfResources) {
            (try backend.responses(job), try backend.responses(job))
        }
        let same = { (a: Float, b: Float) in a == b || (a.isNaN && b.isNaN) }
        #expect(first.values.elementsEqual(second.values, by: same))
        #expect(first.values.elementsEqual(try CPUBackend().responses(job).values, by: same))
        #expect(backend.identity.kind == .cpu)
        let lines = warnings.withLock { $0 }
        #expect(lines.count == 1)
        #expect(lines.first?.contains("CL_OUT_OF_RESOURCES") == true)
    }

    @Test func autoRoutesTheForwardToTheSwiftPathOnACPUDevice() throws {
        let device = try OpenCLTestSupport.device()
        let backend = try BackendSelection.make(.auto, deviceIndex: device.index) { _ in }
        #expect(backend.identity.kind == .opencl)
        #expect(backend.identity.device.contains("full forward, relevance and dynamics on cpu") == (device.info.type == .cpu))
        // A baseline build sends the responses to a CPU device and keeps the forward; a build for
        // this CPU keeps everything on the Swift path there. A GPU takes everything either way.
        let baseline = BackendSelection.autoDecision(devices: [device], swiftBuiltForThisCPU: false)
        #expect(baseline.device?.index == device.index)
        #expect(baseline.forwardOnCPU == (device.info.type == .cpu))
        let native = BackendSelection.autoDecision(devices: [device], swiftBuiltForThisCPU: true)
        #expect(native.device?.index == (device.info.type == .cpu ? nil : device.index), "\(native.reason)")
        #expect(!native.forwardOnCPU)
        #expect(BackendSelection.autoDecision(devices: []).device == nil)
    }

    @Test func explicitOpenCLRefusesAMissingDevice() throws {
        let count = try OpenCL.devices().count
        let error = try #require(throws: BackendError.self) {
            try BackendSelection.make(.opencl, deviceIndex: count + 3) { _ in }
        }
        #expect("\(error)".contains("--device \(count + 3)"))
    }
}

@Suite struct CPUEngineTests {
    @Test func cpuMetricsEqualTheReferenceOnItsTrajectory() throws {
        for cells in [7, 93] {
            let job = try responseJob(cells: cells, seed: UInt64(cells) + 40, probe: cells == 7 ? .c : .h)
            let cpu = CPUBackend()
            let reference = ResponseBlock.reference(try cpu.trajectories(job), baseline: job.baseline.signal, bank: job.bank, settlingBand: job.settlingBand)
            let problems = try cpu.responses(job).disagreements(with: reference, tolerance: MetricTolerance.sameTrajectory)
            #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
        }
    }

    @Test func cpuBackendIsDeterministicAndMatchesAScalarLoop() throws {
        let bank = try StimulusBank(stimuli: [.step(-1), .step(0.5), .sine(0.7, frequency: 0.1)], preSteps: 3, window: 17)
        let job = try responseJob(cells: 11, seed: 5, bank: bank)
        let out = try CPUBackend(threads: 3).trajectories(job)
        #expect(out.values.elementsEqual(try CPUBackend(threads: 1).trajectories(job).values) { $0 == $1 || ($0.isNaN && $1.isNaN) })
        // Cells 4 and 9, every stimulus, written out by hand from METHOD.md §1 and §3 in Double.
        let p = job.cells
        for j in [4, 9] {
            for s in 0..<bank.count {
                var h = 0.0, c = 0.0
                let stim = bank.stimuli[s]
                for t in 0..<bank.schedules[s].end {
                    let on = t >= 3
                    let u = !on ? 0 : stim.kind == .step ? Double(stim.amplitude)
                        : Double(stim.amplitude) * sin(2 * .pi * Double(stim.frequency) * Double(t - 3))
                    func pre(_ g: Gate) -> Double { Double(p.w(g, j)) * u + Double(p.r(g, j)) * h + Double(p.b(g, j)) }
                    let sg = { (x: Double) in 1 / (1 + exp(-x)) }
                    c = sg(pre(.forget)) * c + sg(pre(.input)) * tanh(pre(.cell))
                    h = sg(pre(.output)) * tanh(c)
                    let got = out.series(cell: j, stimulus: s)[out.series(cell: j, stimulus: s).startIndex + t]
                    #expect(abs(Double(got) - h) <= 2e-6, "cell \(j) stimulus \(s) step \(t)")
                }
            }
        }
    }

    /// A cell set up as a first-order low-pass: i, f, o constant (no input or recurrent weights on
    /// them), g ≈ w·u for a small input, probe c: c_t = a·c_{t−1} + K·u_t with a = σ(b_f),
    /// K = σ(b_i)·w. Rise 10→90 % = ln 9·τ ≈ 2.2 τ, settling (2 %) ≈ ln 50·τ ≈ 3.9 τ,
    /// sinusoid gain K/|1 − a e^{−iω}| and phase −atan2(a sin ω, 1 − a cos ω).
    @Test(arguments: [0.8, 0.9, 0.95])
    func firstOrderLowPassMatchesItsTransferFunction(a: Double) throws {
        let bf = Float(log(a / (1 - a))), bi: Float = 0, w: Float = 0.5
        // Parameters gate-major [q][gate][cell]: w (i,f,g,o), r, b; one active cell, one silent one.
        var params = [Float](repeating: 0, count: 2 * 12)
        params[2 * 2 + 0] = w                 // w_g of cell 0
        params[(8 + 0) * 2 + 0] = bi           // b_i
        params[(8 + 1) * 2 + 0] = bf           // b_f
        params[(8 + 3) * 2 + 0] = 20           // b_o: o ≈ 1
        let cells = DecoupledCells(kind: .lstm, cellCount: 2, parameters: params)
        let frequencies: [Float] = [0.01, 0.05, 0.2]
        let bank = try StimulusBank(stimuli: [.step(0.01)] + frequencies.map { .sine(0.01, frequency: $0) }, preSteps: 5, window: 600)
        let job = try ResponseJob(cells: cells, bank: bank, probe: .c)
        let tau = -1 / log(a), K = 0.5 * Double(w)   // σ(0) = 0.5
        for backend in try backendsUnderTest() {
            let m = try backend.responses(job)
            #expect(abs(Double(m[.riseTime, 0, 0]) - log(9) * tau) <= 0.6, "\(backend.identity): rise \(m[.riseTime, 0, 0]) vs \(log(9) * tau)")
            #expect(abs(Double(m[.settlingTime, 0, 0]) - log(50) * tau) <= 1.5, "\(backend.identity): settling \(m[.settlingTime, 0, 0]) vs \(log(50) * tau)")
            #expect(abs(Double(m[.gain, 0, 0]) - K / (1 - a)) <= 1e-3 * K / (1 - a))
            #expect(m[.overshootPct, 0, 0] < 1e-2 && m[.ringing, 0, 0] == 0)
            for (k, f) in frequencies.enumerated() {
                let omega = 2 * Double.pi * Double(f)
                let gain = K / ((1 - a * cos(omega)) * (1 - a * cos(omega)) + a * a * sin(omega) * sin(omega)).squareRoot()
                let phase = -atan2(a * sin(omega), 1 - a * cos(omega)) * 180 / .pi
                #expect(abs(Double(m[.sineGain, 0, k + 1]) - gain) <= 2e-3 * gain, "\(backend.identity) f=\(f): gain \(m[.sineGain, 0, k + 1]) vs \(gain)")
                #expect(abs(Double(m[.phaseDeg, 0, k + 1]) - phase) <= 0.5, "\(backend.identity) f=\(f): phase \(m[.phaseDeg, 0, k + 1]) vs \(phase)")
            }
            // The silent cell (all weights 0, b_o only): no response, relative metrics NaN, flagged.
            for s in 0..<bank.count {
                #expect(m[.responded, 1, s] == 0)
                #expect(m[.riseTime, 1, s].isNaN && m[.overshootPct, 1, s].isNaN && m[.phaseDeg, 1, s].isNaN)
            }
            #expect(m[.gain, 1, 0] == 0)
            #expect(m[.yFinal, 0, 1].isNaN && m[.sineGain, 0, 0].isNaN)   // NaN where a metric does not apply
        }
    }
}

@Suite struct EngineTests {
    /// Any chunking gives the same result as one launch, for every mode and direction.
    @Test(arguments: RecurrenceMode.allCases)
    func chunkingDoesNotChangeResults(mode: RecurrenceMode) throws {
        let network = try RecurrentNetwork.random(seed: 8, inputSize: 3, hiddenSizes: [13, 6], scale: 2)
        let bank = try randomBank(seed: 2, steps: 3, sines: 4, window: 60)
        func run(_ chunkBytes: Int?, _ direction: DirectionSpec, layers: [Int]?) throws -> ([Float], CharacterizationPlan, Int) {
            let plan = try CharacterizationPlan(network: network, layers: layers, mode: mode, direction: direction, bank: bank, chunkBytes: chunkBytes)
            var out = [Float](repeating: -1, count: Metric.allCases.count * plan.rows.count * plan.columnCount)
            var chunks = 0
            _ = try Characterizer.run(plan, on: CPUBackend(), sink: { c in
                chunks += 1
                for m in Metric.allCases {
                    for r in 0..<c.block.cellCount {
                        for s in 0..<c.block.stimulusCount {
                            out[(m.rawValue * plan.rows.count + c.rowStart + r) * plan.columnCount + c.columnStart + s] = c.block[m, r, s]
                        }
                    }
                }
            })
            return (out, plan, chunks)
        }
        for (direction, layers) in [(DirectionSpec.single(.all), nil as [Int]?), (.each, [0])] {
            let (whole, plan, one) = try run(nil, direction, layers: layers)
            let (pieces, _, many) = try run(2048, direction, layers: layers)
            #expect(one == plan.layers.count * plan.directionLabels.count)
            #expect(many > one)
            #expect(!whole.contains(-1))
            // Decoupled modes are bit-identical; mode network goes through BLAS, whose blocking
            // depends on the batch, so it agrees as two backends do.
            if mode == .network {
                let a = ResponseBlock(cellCount: plan.rows.count, stimulusCount: plan.columnCount, values: whole)
                let b = ResponseBlock(cellCount: plan.rows.count, stimulusCount: plan.columnCount, values: pieces)
                let problems = a.disagreements(with: b, tolerance: MetricTolerance.crossBackend)
                #expect(problems.isEmpty, "\(problems)")
            } else {
                #expect(whole.elementsEqual(pieces) { $0 == $1 || ($0.isNaN && $1.isNaN) })
            }
        }
    }

    @Test func clampedModeAddsTheRestingLayerToTheBias() throws {
        let layer = try RecurrentNetwork.random(seed: 3, inputSize: 2, hiddenSizes: [5], scale: 2).layers[0]
        let rest = layer.restState()
        #expect(rest.converged)
        let selfCells = try DecoupledCells(layer: layer, direction: .all, mode: .self)
        let clamped = try DecoupledCells(layer: layer, direction: .all, mode: .clamped, restState: rest.h)
        for gate in CellKind.lstm.gates {
            for j in 0..<5 {
                let extra = (0..<5).filter { $0 != j }.reduce(Float(0)) { $0 + layer.R[layer.row(gate, j) * 5 + $1] * rest.h[$1] }
                #expect(abs(clamped.b(gate, j) - (selfCells.b(gate, j) + extra)) <= 1e-6)
                #expect(clamped.w(gate, j) == selfCells.w(gate, j) && clamped.r(gate, j) == selfCells.r(gate, j))
            }
        }
    }

    @Test func stimulusBankValidatesAndScales() throws {
        #expect(throws: StimulusError.self) { try StimulusBank(stimuli: []) }
        #expect(throws: StimulusError.self) { try StimulusBank(stimuli: [.sine(1, frequency: 0.5)]) }
        #expect(throws: StimulusError.self) { try StimulusBank(stimuli: [.sine(1, frequency: 0)]) }
        #expect(throws: StimulusError.self) { try StimulusBank(stimuli: [.step(.nan)]) }
        #expect(throws: StimulusError.self) { try StimulusBank(stimuli: [.step(1)], preSteps: -1) }
        #expect(throws: StimulusError.self) { try StimulusBank(stimuli: [.step(1)], window: 0) }
        #expect(throws: StimulusError.self) { try StimulusBank.grid(stepAmplitudes: [], frequencies: [0.1], sineAmplitudes: []) }
        let standard = try StimulusBank.standard()
        #expect(standard.count == 32 + 128 * 4)
        #expect(standard.stimuli.prefix(32).map(\.amplitude).min() == -4 && abs(standard.stimuli[16].amplitude - 1.0 / 16) < 1e-6)
        let f = StimulusBank.defaultFrequencies(window: 400)
        #expect(abs(f.first! - 0.005) < 1e-6 && abs(f.last! - 0.45) < 1e-6)
        // Sinusoid schedule: transient max(T/4, 2 periods), whole periods after it, window extended if needed.
        let low = try StimulusBank(stimuli: [.sine(1, frequency: 0.005)], preSteps: 20, window: 400).schedules[0]
        #expect(low.analysisStart == 20 + 400 && low.analysisLength == 400 && low.end == 20 + 800)
        let high = try StimulusBank(stimuli: [.sine(1, frequency: 0.1)], preSteps: 20, window: 400).schedules[0]
        #expect(high.analysisStart == 120 && high.analysisLength == 300 && high.end == 420 && high.harmonics == 4)
        // 10,000+ stimuli are fine.
        let big = try StimulusBank.grid(stepAmplitudes: StimulusBank.logSpaced(from: 0.01, to: 4, count: 400),
                                        frequencies: StimulusBank.logSpaced(from: 0.01, to: 0.45, count: 2400),
                                        sineAmplitudes: [0.5, 1, 2, 4], window: 100)
        #expect(big.count == 10_000)
    }

    @Test func stimulusFilesLoadAndBadOnesAreNamed() throws {
        let dir = try Fixtures.scratch("stimuli")
        let good = dir.appendingPathComponent("bank.json")
        try Data(#"{"window": 200, "step_amplitudes": [1, -1], "stimuli": [{"kind": "sine", "amplitude": 0.5, "frequency": 0.1}]}"#.utf8).write(to: good)
        let bank = try StimulusBank.load(json: good.path)
        #expect(bank.count == 3 && bank.window == 200 && bank.stimuli[2] == .sine(0.5, frequency: 0.1))
        for (text, words) in [(#"{"stimuli": [{"kind": "sine", "amplitude": 1, "frequency": 0.7}]}"#, "frequency"),
                              (#"{"stimuli": [{"kind": "ramp", "amplitude": 1}]}"#, "bad.json, stimuli[0]: 'kind' must be step or sine, got 'ramp'"),
                              (#"{"stimuli": [{"kind": "sine", "amplitude": 1}]}"#, "stimuli[0]: a sine needs a 'frequency'"),
                              (#"{"stimuli": [{"kind": "step", "amplitude": 1, "phase": 2}]}"#, "unknown key 'phase' (accepted: kind, amplitude, frequency)"),
                              (#"{"windw": 100, "step_amplitudes": [1]}"#, "bad.json: unknown key 'windw'"),
                              (#"{"window": "long", "step_amplitudes": [1]}"#, "'window' must be a number, got a string"),
                              (#"{"step_amplitudes": [1, 1e39]}"#, "'step_amplitudes[1]' = 1e+39 does not fit a 32-bit float"),
                              (#"{"stimuli": []}"#, "bad.json lists no stimulus"), ("{", "bad.json is not valid JSON"), (#"{"window": -5, "step_amplitudes": [1]}"#, "window")] {
            let bad = dir.appendingPathComponent("bad.json")
            try Data(text.utf8).write(to: bad)
            let error = try #require(throws: StimulusError.self) { try StimulusBank.load(json: bad.path) }
            #expect("\(error)".contains(words), "\(error)")
        }
    }

    @Test func directionsParse() throws {
        #expect(try DirectionSpec.parse("all") == .single(.all))
        #expect(try DirectionSpec.parse("each") == .each)
        #expect(try DirectionSpec.parse("channel:2") == .single(.channel(2)))
        #expect(try DirectionSpec.parse("1, 0, -0.5") == .single(.vector([1, 0, -0.5])))
        for bad in ["channel:x", "0,0", "up", ""] { #expect(throws: StimulusError.self) { try DirectionSpec.parse(bad) } }
    }
}

@Test func backendChoiceComesFromFlagThenEnvironment() throws {
    #expect(try BackendChoice.resolve(flag: nil, environment: [:]) == .auto)
    #expect(try BackendChoice.resolve(flag: nil, environment: ["CELLAUDIT_BACKEND": "cpu"]) == .cpu)
    #expect(try BackendChoice.resolve(flag: "opencl", environment: ["CELLAUDIT_BACKEND": "cpu"]) == .opencl)
    #expect(throws: BackendError.self) { try BackendChoice.resolve(flag: nil, environment: ["CELLAUDIT_BACKEND": "gpu"]) }
}

@Test func jobsRefuseImpossibleParameters() throws {
    let cells = try DecoupledCells(layer: try RecurrentLayer.random(inputSize: 2, hiddenSize: 3, using: &SeededGenerator.test))
    let bank = try StimulusBank(stimuli: [.step(1)])
    #expect(throws: StimulusError.self) { try ResponseJob(cells: cells, bank: bank, settlingBand: 0) }
    var bad = cells
    bad.parameters[5] = .infinity
    #expect(throws: ModelError.self) { try ResponseJob(cells: bad, bank: bank) }
}

extension SeededGenerator {
    nonisolated(unsafe) static var test = SeededGenerator(seed: 99)
}

/// A run reports where each part actually ran: no OpenCL label on CPU work.
@Suite(.enabled(if: OpenCLTestSupport.enabled, "no OpenCL device (set CELLAUDIT_REQUIRE_OPENCL=1 to fail instead)"))
struct BackendPlacementTests {
    @Test func gradientTimesInputOnAnOpenCLBackendIsReportedAsCPUWork() throws {
        let opencl = try OpenCLBackend(device: try OpenCLTestSupport.device(), hostThreads: 1)
        #expect(opencl.placement(of: .gradientTimesInput) == CPUBackend(threads: 1).identity)
        #expect(opencl.placement(of: .lrp) == opencl.identity && opencl.placement(of: .forward) == opencl.identity)
        let routed = RoutedBackend(responses: opencl, forward: CPUBackend(threads: 3))
        #expect(routed.placement(of: .responses) == opencl.identity && routed.placement(of: .forward).kind == .cpu)
        #expect(routed.hostThreads == 3)

        let recorder = PlacementRecorder(opencl)
        let network = try RecurrentNetwork.random(kind: .lstm, seed: 7, inputSize: 3, hiddenSizes: [5], outputs: 2)
        let inputs = try SequenceBatch(count: 4, steps: 6, width: 3, values: RandomInputs.floats(72, seed: 3))
        for rule in [RelevanceJob.Rule.lrp(epsilon: 0.01, biasFactor: 1), .gradientTimesInput] {
            _ = try recorder.relevance(try RelevanceJob(network: network, inputs: inputs, output: .last, targets: [0, 1, 0, 1], step: nil, rule: rule))
        }
        #expect(recorder.placements.map(\.operation) == [.lrp, .gradientTimesInput])
        #expect(recorder.elsewhere.map(\.operation) == [.gradientTimesInput] && recorder.elsewhere[0].ranOn.kind == .cpu)
    }
}
