import CellAuditCore
import Foundation
import OpenCLKit

/// One backend-parity harness, in the manner of ggml's `test-backend-ops`: a table of cases
/// (cell kind × operation × awkward sizes × kernel settings), each run on an OpenCL device and
/// on the cpu reference, compared with the tolerances of `Tolerance` and `MetricTolerance`, with
/// NaN/Inf and canary checks. A case the device cannot run is reported as unsupported, never as
/// a failure or a crash. `swift test` runs the full table; `cellaudit check-kernels` runs the tiny
/// one under oclgrind.
public enum ParityHarness {
    /// What a case exercises.
    public enum Operation: String, Sendable, CaseIterable {
        /// Full forward of a two-layer network, no ablation.
        case forward
        /// Full forward with several ablation configurations and mean-style clamp values.
        case maskedForward = "masked_forward"
        /// The response kernel: every metric of every (cell, stimulus) pair.
        case responseMetrics = "response_metrics"
        /// The trajectory kernel: the probed signal at every step.
        case trajectories
        /// LRP through a network (forward with its record, then `lrp_backward` per layer).
        case relevance
        /// The dynamics' map in float64: one step with its Jacobian (`map_step`), per-row inputs,
        /// and settling runs after a pulse (`map_settle`).
        case mapStep = "map_step"
    }

    /// One row of the table.
    public struct Case: Sendable, CustomStringConvertible {
        public var kind: CellKind
        /// GRU only: the reset-before variant (forward operations).
        public var resetAfter: Bool = true
        /// LSTM only: the peephole variant (every operation).
        public var peephole: Bool = false
        public var operation: Operation
        /// Cells of the response layer, or hidden sizes of the forward's layers.
        public var sizes: [Int]
        public var probe: Probe = .h
        public var settings: KernelSettings = KernelSettings()
        public var seed: UInt64
        /// Forward operations: sequences in the batch (each masked configuration runs all of them).
        public var sequences: Int = 3
        /// Forward and relevance: the directions of every level ([.forward, .reverse]: a
        /// bidirectional stack, read at its final states; [.reverse]: reverse layers alone).
        public var directions: [TimeDirection] = [.forward]
        /// Forward and relevance: a padded batch, every sequence with its own length.
        public var padded: Bool = false

        public var description: String {
            let variant = kind == .gru && !resetAfter ? "gru(reset-before)" : peephole ? "lstm(peephole)" : kind.rawValue
            var parts = ["\(variant) \(operation.rawValue) \(sizes.map(String.init).joined(separator: "x"))"]
            if operation == .responseMetrics || operation == .trajectories {
                parts.append("probe \(probe.rawValue)")
                if let w = settings.vectorWidth { parts.append("VW \(w)") }
                if let c = settings.chains { parts.append("chains \(c)") }
            }
            if directions != [.forward] { parts.append(directions.count == 2 ? "bidirectional" : "reverse") }
            if padded { parts.append("lengths") }
            if operation == .forward || operation == .maskedForward {
                parts.append("\(sequences) sequences")
                if settings.perSequenceForward { parts.append("per-sequence kernel") }
                if let c = settings.forwardChunkPairs { parts.append("chunks of \(c) pairs") }
                if let t = settings.forwardTileItems { parts.append("tile items \(t)×\(t)") }
            }
            return parts.joined(separator: ", ")
        }
    }

    public enum Outcome: Sendable, Equatable {
        case passed(String)
        case failed(String)
        case unsupported(String)
    }

    public struct Result: Sendable, CustomStringConvertible {
        public var testCase: Case
        public var outcome: Outcome
        public var description: String {
            switch outcome {
            case .passed(let d): "ok           \(testCase): \(d)"
            case .failed(let d): "FAILED       \(testCase): \(d)"
            case .unsupported(let d): "unsupported  \(testCase): \(d)"
            }
        }
    }

    /// Every cell kind (and the reset-before GRU for the forward), every operation, sizes that
    /// leave partial work-items and groups, and every vector width × chain count on 37 cells.
    public static func fullTable() -> [Case] {
        var cases: [Case] = []
        for kind in CellKind.allCases {
            for (cells, seed) in [(7, UInt64(7)), (93, 93), (144, 144)] {
                for probe in kind.probes {
                    cases.append(Case(kind: kind, operation: .responseMetrics, sizes: [cells], probe: probe, seed: seed))
                    cases.append(Case(kind: kind, operation: .trajectories, sizes: [cells], probe: probe, seed: seed))
                }
            }
            for width in [1, 4, 8, 16] {
                for chains in [1, 2, 4] {
                    cases.append(Case(kind: kind, operation: .responseMetrics, sizes: [37],
                                      settings: KernelSettings(vectorWidth: width, chains: chains), seed: 77))
                }
            }
            for (resetAfter, peephole) in variants(kind) {
                if peephole {
                    // The peephole cell's responses: both probes, and a vector width × chain pair.
                    for probe in kind.probes {
                        cases.append(Case(kind: kind, peephole: true, operation: .responseMetrics, sizes: [93], probe: probe, seed: 93))
                        cases.append(Case(kind: kind, peephole: true, operation: .trajectories, sizes: [93], probe: probe, seed: 93))
                    }
                    cases.append(Case(kind: kind, peephole: true, operation: .responseMetrics, sizes: [37],
                                      settings: KernelSettings(vectorWidth: 4, chains: 2), seed: 77))
                }
                cases.append(Case(kind: kind, resetAfter: resetAfter, peephole: peephole, operation: .forward, sizes: [13, 6], seed: 8))
                cases.append(Case(kind: kind, resetAfter: resetAfter, peephole: peephole, operation: .maskedForward, sizes: [5, 3], seed: 4))
                cases.append(Case(kind: kind, resetAfter: resetAfter, peephole: peephole, operation: .forward, sizes: [33],
                                  settings: KernelSettings(forwardTileItems: 16), seed: 33))
                // Tiles of the tiled forward cut in both directions (111 pairs, 67 and 5 cells, K
                // tiles with a partial float4), in chunks of 29 pairs, under every tile shape; and
                // the per-sequence kernel.
                for items in [4, 8, 16] {
                    cases.append(Case(kind: kind, resetAfter: resetAfter, peephole: peephole, operation: .maskedForward, sizes: [67, 5],
                                      settings: KernelSettings(forwardChunkPairs: 29, forwardTileItems: items), seed: 67, sequences: 37))
                }
                cases.append(Case(kind: kind, resetAfter: resetAfter, peephole: peephole, operation: .forward, sizes: [13, 6],
                                  settings: KernelSettings(perSequenceForward: true), seed: 8))
                cases.append(Case(kind: kind, resetAfter: resetAfter, peephole: peephole, operation: .relevance, sizes: [13, 6], seed: 13))
                cases.append(Case(kind: kind, resetAfter: resetAfter, peephole: peephole, operation: .relevance, sizes: [33], seed: 34))
                cases.append(Case(kind: kind, resetAfter: resetAfter, peephole: peephole, operation: .mapStep, sizes: [7], seed: 71))
                cases.append(Case(kind: kind, resetAfter: resetAfter, peephole: peephole, operation: .mapStep, sizes: [93], seed: 93))
                // Directions (each layer in its own time, a level's output side by side) and
                // padded batches, on both forward kernels and through relevance.
                let both: [TimeDirection] = [.forward, .reverse]
                cases.append(Case(kind: kind, resetAfter: resetAfter, peephole: peephole, operation: .maskedForward, sizes: [13, 6], seed: 15,
                                  directions: both))
                cases.append(Case(kind: kind, resetAfter: resetAfter, peephole: peephole, operation: .maskedForward, sizes: [67, 5],
                                  settings: KernelSettings(forwardChunkPairs: 29, forwardTileItems: 8), seed: 68, sequences: 37, directions: both))
                cases.append(Case(kind: kind, resetAfter: resetAfter, peephole: peephole, operation: .maskedForward, sizes: [13, 6],
                                  settings: KernelSettings(perSequenceForward: true), seed: 16, directions: both, padded: true))
                cases.append(Case(kind: kind, resetAfter: resetAfter, peephole: peephole, operation: .forward, sizes: [9], seed: 17,
                                  directions: [.reverse], padded: true))
                cases.append(Case(kind: kind, resetAfter: resetAfter, peephole: peephole, operation: .relevance, sizes: [13, 6], seed: 18,
                                  directions: both))
                cases.append(Case(kind: kind, resetAfter: resetAfter, peephole: peephole, operation: .relevance, sizes: [7], seed: 19,
                                  directions: both, padded: true))
            }
        }
        return cases
    }

    /// The cell variants of a kind that compile to different kernels: (reset-after, peephole) —
    /// the GRU's reset-before cell and the LSTM's peephole cell beside the plain ones.
    static func variants(_ kind: CellKind) -> [(resetAfter: Bool, peephole: Bool)] {
        switch kind {
        case .gru: [(true, false), (false, false)]
        case .lstm: [(true, false), (true, true)]
        case .rnnTanh, .rnnReLU: [(true, false)]
        }
    }

    /// Tiny sizes for `check-kernels` under oclgrind: every kind, both probes where they exist,
    /// vector width 1 and the device's, 1/2/4 chains, and both forward operations.
    public static func tinyTable(device: Device) -> [Case] {
        var cases: [Case] = []
        let widths = Set([1, OpenCLBackend.defaultVectorWidth(for: device)]).sorted()
        for kind in CellKind.allCases {
            for width in widths {
                for chains in [1, 2, 4] {
                    for probe in kind.probes {
                        for operation in [Operation.responseMetrics, .trajectories] {
                            cases.append(Case(kind: kind, operation: operation, sizes: [chains == 2 ? 5 : 3], probe: probe,
                                              settings: KernelSettings(vectorWidth: width, chains: chains), seed: 1))
                        }
                    }
                }
            }
            for (resetAfter, peephole) in variants(kind) {
                if peephole {
                    for probe in kind.probes {
                        cases.append(Case(kind: kind, peephole: true, operation: .responseMetrics, sizes: [3], probe: probe,
                                          settings: KernelSettings(vectorWidth: widths.last!, chains: 2), seed: 1))
                    }
                }
                cases.append(Case(kind: kind, resetAfter: resetAfter, peephole: peephole, operation: .maskedForward, sizes: [5, 3], seed: 4))
                cases.append(Case(kind: kind, resetAfter: resetAfter, peephole: peephole, operation: .maskedForward, sizes: [5, 3],
                                  settings: KernelSettings(perSequenceForward: true), seed: 4))
                cases.append(Case(kind: kind, resetAfter: resetAfter, peephole: peephole, operation: .relevance, sizes: [5, 3], seed: 5))
                cases.append(Case(kind: kind, resetAfter: resetAfter, peephole: peephole, operation: .mapStep, sizes: [3], seed: 6))
                cases.append(Case(kind: kind, resetAfter: resetAfter, peephole: peephole, operation: .maskedForward, sizes: [5, 3], seed: 7,
                                  directions: [.forward, .reverse], padded: true))
                cases.append(Case(kind: kind, resetAfter: resetAfter, peephole: peephole, operation: .maskedForward, sizes: [5, 3],
                                  settings: KernelSettings(perSequenceForward: true), seed: 7, directions: [.forward, .reverse], padded: true))
                cases.append(Case(kind: kind, resetAfter: resetAfter, peephole: peephole, operation: .relevance, sizes: [5, 3], seed: 8,
                                  directions: [.forward, .reverse], padded: true))
            }
        }
        return cases
    }

    /// A bank with steps of both signs (one tiny, one zero) and sinusoids from low to near Nyquist.
    public static func randomBank(seed: UInt64, steps: Int = 7, sines: Int = 9, window: Int = 160, preSteps: Int = 20) throws -> StimulusBank {
        var rng = SeededGenerator(seed: seed)
        var stimuli: [Stimulus] = (0..<steps).map { _ in .step(rng.uniform(-3, 3)) } + [.step(0), .step(1e-3)]
        stimuli += (0..<sines).map { _ in .sine(rng.uniform(-2, 2), frequency: rng.uniform(0.02, 0.45)) }
        return try StimulusBank(stimuli: stimuli, preSteps: preSteps, window: window)
    }

    /// Runs every case on `device` (each with canary padding past its outputs).
    public static func run(_ cases: [Case], device: Device, small: Bool = false) -> [Result] {
        let cpu = CPUBackend()
        return cases.map { testCase in
            do {
                return Result(testCase: testCase, outcome: try run(testCase, device: device, cpu: cpu, small: small))
            } catch let error as CLError where error.status == .invalidWorkGroupSize {
                return Result(testCase: testCase, outcome: .unsupported("\(error)"))
            } catch {
                return Result(testCase: testCase, outcome: .failed("\(error)"))
            }
        }
    }

    static func run(_ c: Case, device: Device, cpu: CPUBackend, small: Bool) throws -> Outcome {
        let opencl = try OpenCLBackend(device: device, settings: c.settings, canaryPadding: 23)
        switch c.operation {
        case .responseMetrics, .trajectories:
            // A scale that drives the cells out of their linear range (saturation, ReLU's kink). A
            // ReLU cell with a self-weight above 1 grows without bound, and its response (the run
            // minus the equally growing unstimulated run) is then rounding noise on either
            // backend: ReLU cells get weights within (−1, 1).
            let network = try RecurrentNetwork.random(kind: c.kind, seed: c.seed, inputSize: 5, hiddenSizes: c.sizes,
                                                      scale: c.kind == .rnnReLU ? 1 : 3, peephole: c.peephole)
            let bank = small ? try StimulusBank(stimuli: [.step(-0.5), .step(1.5), .sine(1, frequency: 0.15)], preSteps: 2, window: 12)
                             : try randomBank(seed: c.seed)
            let job = try ResponseJob(cells: try DecoupledCells(layer: network.layers[0]), bank: bank, probe: c.probe)
            if c.operation == .trajectories {
                let a = try opencl.trajectories(job), b = try cpu.trajectories(job)
                for s in 0..<bank.count {
                    let end = bank.schedules[s].end
                    for j in 0..<a.cellCount {
                        let series = a.series(cell: j, stimulus: s)
                        guard series.prefix(end).allSatisfy(\.isFinite), series.dropFirst(end).allSatisfy(\.isNaN) else {
                            return .failed("cell \(j) stimulus \(s): non-finite values before the stimulus's end, or values after it")
                        }
                    }
                }
                // Absolute below 1, relative above (a ReLU cell with r > 1 grows without bound).
                let worst = zip(a.values, b.values).map { $0.isNaN && $1.isNaN ? 0 : abs($0 - $1) / max(1, abs($1)) }.max() ?? .infinity
                return worst <= Tolerance.trajectory ? .passed("max |opencl − cpu| / max(1, |cpu|) \(worst)")
                    : .failed("max |opencl − cpu| / max(1, |cpu|) \(worst) > \(Tolerance.trajectory)")
            }
            let a = try opencl.responses(job), b = try cpu.responses(job)
            let problems = a.disagreements(with: b, tolerance: MetricTolerance.crossBackend)
            let responded = b.plane(.responded).filter { $0 == 1 }.count
            guard responded > 0 else { return .failed("no pair responded: the case compares nothing") }
            return problems.isEmpty ? .passed("\(responded) of \(b.planeSize) pairs responded; every metric within tolerance")
                : .failed(problems.joined(separator: "; "))
        case .forward, .maskedForward:
            let network = try RecurrentNetwork.random(kind: c.kind, seed: c.seed, inputSize: 3, hiddenSizes: c.sizes, outputs: 2,
                                                      scale: 2, resetAfter: c.resetAfter, peephole: c.peephole,
                                                      directions: c.directions, reading: .finalStates)
            var rng = SeededGenerator(seed: c.seed + 1)
            let n = c.sequences, steps = 9, cells = network.cellCount
            var inputs = try SequenceBatch(count: n, steps: steps, width: 3, values: (0..<(n * steps * 3)).map { _ in rng.uniform(-1.5, 1.5) })
            if c.padded { try inputs.setLengths((0..<n).map { 1 + ($0 * 5 + 3) % steps }) }
            var masks: [CellMask]? = nil
            var clamp: (h: [Float], c: [Float])? = nil
            if c.operation == .maskedForward {
                masks = [.none(cells: cells), .ablating([1, cells - 1], of: cells), .ablating([0, 2, 3], of: cells)]
                clamp = (h: (0..<cells).map { Float($0) * 0.1 - 0.3 }, c: (0..<cells).map { Float($0) * -0.05 })
            }
            let job = try ForwardJob(network: network, inputs: inputs, output: .sequence, masks: masks, clamp: clamp)
            let a = try opencl.forward(job), b = try cpu.forward(job)
            guard a.hidden.count == b.hidden.count, a.outputs.count == b.outputs.count else { return .failed("shapes differ") }
            guard a.hidden.allSatisfy(\.isFinite), a.outputs.allSatisfy(\.isFinite) else { return .failed("NaN or Inf in the OpenCL result") }
            // Absolute below 1, relative above: a ReLU stack at scale 2 grows past 10, where float32's
            // rounding of the two backends' different summation orders is relative to the value.
            let difference = { (x: Float, y: Float) in abs(x - y) / max(1, abs(y)) }
            let worst = max(zip(a.hidden, b.hidden).map(difference).max()!, zip(a.outputs, b.outputs).map(difference).max()!)
            return worst <= Tolerance.forwardCrossBackend ? .passed("max |opencl − cpu| / max(1, |cpu|) \(worst)")
                : .failed("max |opencl − cpu| / max(1, |cpu|) \(worst) > \(Tolerance.forwardCrossBackend)")
        case .relevance:
            // Sequence outputs, a target per sequence, bias shares and a stabiliser on (the seed
            // picks the bias factor), so every rule's every term is compared.
            let network = try RecurrentNetwork.random(kind: c.kind, seed: c.seed, inputSize: 3, hiddenSizes: c.sizes, outputs: 2,
                                                      scale: 2, resetAfter: c.resetAfter, peephole: c.peephole,
                                                      directions: c.directions, reading: .finalStates)
            var rng = SeededGenerator(seed: c.seed + 1)
            let n = 5, steps = 7
            var inputs = try SequenceBatch(count: n, steps: steps, width: 3, values: (0..<(n * steps * 3)).map { _ in rng.uniform(-1.5, 1.5) })
            if c.padded { try inputs.setLengths([7, 3, 5, 1, 7]) }
            let job = try RelevanceJob(network: network, inputs: inputs, output: .sequence, targets: (0..<n).map { $0 % 2 },
                                       rule: .lrp(epsilon: 0.01, biasFactor: c.seed % 2 == 0 ? 1 : 0.5))
            let a = try opencl.relevance(job), b = try cpu.relevance(job)
            guard a.input.count == b.input.count, a.cellRelevance.count == b.cellRelevance.count else { return .failed("shapes differ") }
            guard (a.input + a.cellRelevance + a.rest + a.score).allSatisfy(\.isFinite) else { return .failed("NaN or Inf in the OpenCL result") }
            var worst: Float = 0
            for (x, y) in [(a.input, b.input), (a.cellRelevance, b.cellRelevance), (a.rest, b.rest), (a.score, b.score)] {
                let scale = y.map(abs).max() ?? 0
                let d = zip(x, y).map { abs($0 - $1) }.max() ?? 0
                if d > Tolerance.relevance * scale + Tolerance.relevanceAbsolute {
                    return .failed("max |opencl − cpu| \(d) > \(Tolerance.relevance) × \(scale) + \(Tolerance.relevanceAbsolute)")
                }
                worst = max(worst, scale > 0 ? d / scale : d)
            }
            return .passed("max |opencl − cpu| \(worst) of the scale")
        case .mapStep:
            guard device.info.supportsFP64 else { return .unsupported("\(device.info.name) has no cl_khr_fp64") }
            // Weights at scale 0.9 keep the ReLU RNN bounded, so settling runs end somewhere.
            let layer = try RecurrentNetwork.random(kind: c.kind, seed: c.seed, inputSize: 3, hiddenSizes: c.sizes, scale: c.kind == .rnnReLU ? 0.9 : 2,
                                                    resetAfter: c.resetAfter, peephole: c.peephole).layers[0]
            var rng = SeededGenerator(seed: c.seed + 1)
            let map = try LayerMap(layer: layer, input: [0.2, -0.4, 0.1])
            let rows = 5, D = map.dimension
            let states = (0..<(rows * D)).map { _ in Double(rng.uniform(-1.5, 1.5)) }
            let inputs = (0..<(rows * 3)).map { _ in Double(rng.uniform(-2, 2)) }
            var worst = 0.0
            for (rowInputs, jacobian) in [(nil, true), (inputs, false)] as [([Double]?, Bool)] {
                let a = try opencl.mapStep(map, states: states, inputs: rowInputs, rows: rows, jacobian: jacobian)
                let b = try cpu.mapStep(map, states: states, inputs: rowInputs, rows: rows, jacobian: jacobian)
                guard a.next.count == b.next.count, a.jacobian.count == b.jacobian.count else { return .failed("shapes differ") }
                for (x, y) in zip(a.next + a.jacobian, b.next + b.jacobian) {
                    guard x.isFinite else { return .failed("NaN or Inf in the OpenCL map") }
                    worst = max(worst, abs(x - y) / max(1, abs(y)))
                }
            }
            guard worst <= Tolerance.mapStep else { return .failed("map: max |opencl − cpu| / max(1, |cpu|) \(worst) > \(Tolerance.mapStep)") }
            let a = try opencl.mapSettle(map, states: states, pulses: inputs, rows: rows, pulseSteps: 2, maxSteps: 3000, tolerance: 1e-9)
            let b = try cpu.mapSettle(map, states: states, pulses: inputs, rows: rows, pulseSteps: 2, maxSteps: 3000, tolerance: 1e-9)
            guard a.settled == b.settled else { return .failed("settled \(a.settled) on opencl, \(b.settled) on cpu") }
            let settledWorst = zip(a.states, b.states).map { abs($0 - $1) }.max() ?? 0
            return settledWorst <= Tolerance.settledState
                ? .passed("map and Jacobian within \(worst) relative; \(b.settled.filter { $0 }.count) of \(rows) runs settled, states within \(settledWorst)")
                : .failed("settled states differ by \(settledWorst) > \(Tolerance.settledState)")
        }
    }
}
