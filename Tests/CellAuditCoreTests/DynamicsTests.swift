import CellAuditAnalysis
import CellAuditCore
import CellAuditImport
import CellAuditOpenCL
import Foundation
import Testing
import TestSupport

/// The backends the dynamics are checked on: the CPU reference, and OpenCL where a device is.
private func dynamicsBackends() throws -> [any ComputeBackend] {
    var list: [any ComputeBackend] = [CPUBackend()]
    if OpenCLTestSupport.enabled { list.append(try OpenCLBackend(device: try OpenCLTestSupport.device())) }
    return list
}

/// h' = tanh(h W) in FixedPointFinder's row-vector convention (its test/ground-truth networks):
/// W[i, :] = −roll(linspace(−1, 1, n), −i), no input, no bias; PyTorch's weight_hh is Wᵀ.
private func groundTruthNetwork(_ n: Int) throws -> RecurrentNetwork {
    let line = (0..<n).map { -1 + 2 * Double($0) / Double(n - 1) }
    var W = [Float](repeating: 0, count: n * n)
    for i in 0..<n { for j in 0..<n { W[i * n + j] = Float(-line[(j + i) % n]) } }
    var R = W
    for i in 0..<n { for j in 0..<n { R[i * n + j] = W[j * n + i] } }
    let layer = try RecurrentLayer(kind: .rnnTanh, inputSize: 1, hiddenSize: n, W: [Float](repeating: 0, count: n),
                                   R: R, b: [Float](repeating: 0, count: n))
    return try RecurrentNetwork(layers: [layer])
}

@Suite("Dynamics (fixed points and excitable networks, METHOD.md §8)")
struct DynamicsTests {
    /// (kind, reset-after, peephole): every cell the map computes.
    static let variants: [(CellKind, Bool, Bool)] = [(.lstm, true, false), (.gru, true, false), (.gru, false, false), (.rnnTanh, true, false),
                                                     (.rnnReLU, true, false), (.lstm, true, true)]

    @Test("Jacobians equal central finite differences of the map, every kind", arguments: 0..<6)
    func jacobianMatchesFiniteDifferences(_ variant: Int) throws {
        let (kind, resetAfter, peephole) = Self.variants[variant]
        let net = try RecurrentNetwork.random(kind: kind, seed: 40 + UInt64(variant), inputSize: 3, hiddenSizes: [7], scale: 2, resetAfter: resetAfter,
                                              peephole: peephole)
        var rng = SeededGenerator(seed: 9)
        let map = try LayerMap(layer: net.layers[0], input: [0.3, -0.2, 0.7])
        let D = map.dimension, rows = 3
        let s = (0..<(rows * D)).map { _ in Double(rng.uniform(-1.5, 1.5)) }
        let J = map.step(states: s, rows: rows, jacobian: true, workers: 2).jacobian
        let e = 1e-6
        var worst = 0.0
        for r in 0..<rows {
            for k in 0..<D {
                var plus = Array(s[(r * D)..<((r + 1) * D)]), minus = plus
                plus[k] += e; minus[k] -= e
                let fp = map.step(states: plus, rows: 1, jacobian: false, workers: 1).next, fm = map.step(states: minus, rows: 1, jacobian: false, workers: 1).next
                for i in 0..<D { worst = max(worst, abs((fp[i] - fm[i]) / (2 * e) - J[r * D * D + i * D + k])) }
            }
        }
        #expect(worst < 1e-7, "\(kind.rawValue) reset-after \(resetAfter) peephole \(peephole): Jacobian off by \(worst)")
    }

    @Test("The float64 map is the network's step: it matches the float32 forward to float32 rounding")
    func mapMatchesForwardStep() throws {
        for (variant, (kind, resetAfter, peephole)) in Self.variants.enumerated() {
            let layer = try RecurrentNetwork.random(kind: kind, seed: 70 + UInt64(variant), inputSize: 4, hiddenSizes: [9], resetAfter: resetAfter,
                                                    peephole: peephole).layers[0]
            let x: [Float] = [0.5, -1, 0.25, 2]
            var h = [Float](repeating: 0.1, count: 9), c = [Float](repeating: -0.3, count: 9)
            let map = try LayerMap(layer: layer, input: x.map(Double.init))
            let start = h.map(Double.init) + (kind.hasCellState ? c.map(Double.init) : [])
            let next = map.step(states: start, rows: 1, jacobian: false, workers: 1).next
            layer.step(x[...], h: &h, c: &c)
            let want = h.map(Double.init) + (kind.hasCellState ? c.map(Double.init) : [])
            let worst = zip(next, want).map { abs($0 - $1) }.max()!
            #expect(worst < 1e-5, "\(kind.rawValue): map and forward differ by \(worst)")
        }
    }

    @Test("FixedPointFinder's ground truth: n = 2, 3, 4 have 3, 3, 9 fixed points, 2, 0, 2 stable", arguments: [(2, 3, 2), (3, 3, 0), (4, 9, 2)])
    func groundTruth(_ n: Int, _ count: Int, _ stable: Int) throws {
        let net = try groundTruthNetwork(n)
        var options = FixedPointOptions()
        options.seeds = 256
        for backend in try dynamicsBackends() {
            let analysis = try AttractorAnalysis.run(network: net, input: [0], data: nil, options: options, pulses: PulseOptions(), backend: backend)
            let fixed = analysis.points.filter(\.isFixed)
            #expect(fixed.count == count, "n = \(n) on \(backend.identity): \(fixed.count) fixed points")
            #expect(fixed.filter(\.isStable).count == stable, "n = \(n) on \(backend.identity): \(fixed.filter(\.isStable).count) stable")
            #expect(fixed.allSatisfy { $0.q < 1e-12 })
            if n == 3 {
                // The non-origin pair sits at |λ|max ≈ 1.0064: decided honestly, as unstable.
                let radii = fixed.map(\.spectralRadius).sorted()
                #expect(radii.contains { abs($0 - 1.0064) < 1e-3 }, "n = 3 spectral radii \(radii)")
            }
        }
    }

    @Test("At the origin of h' = tanh(W h) the eigenvalues are numpy.linalg.eigvals(W)")
    func closedFormJacobian() throws {
        let path = Fixtures.path("dynamics/jacobian_rnn7.safetensors")
        let loaded = try ModelFile.load(path)
        let reference = try SafeTensorsFile(path: path).floats("golden.eigenvalues")
        var options = FixedPointOptions()
        options.seeds = 64
        for backend in try dynamicsBackends() {
            let analysis = try AttractorAnalysis.run(network: loaded.network, input: [0, 0], data: nil, options: options,
                                                     pulses: PulseOptions(), backend: backend)
            let origin = try #require(analysis.points.first { p in p.isFixed && p.state.allSatisfy { abs($0) < 1e-9 } })
            var want = (0..<7).map { (re: Double(reference[2 * $0]), im: Double(reference[2 * $0 + 1])) }
            // Pair each reported eigenvalue with the nearest reference value.
            for got in origin.eigenvalues {
                let nearest = want.indices.min { hypot(want[$0].re - got.re, want[$0].im - got.im) < hypot(want[$1].re - got.re, want[$1].im - got.im) }!
                #expect(hypot(want[nearest].re - got.re, want[nearest].im - got.im) < 1e-5, "\(got) has no match in \(want)")
                want.remove(at: nearest)
            }
        }
    }

    @Test("3-bit flip-flop: 8 stable states, one per bit pattern, and 24 single-bit transitions", arguments: ["lstm16", "gru16"])
    func flipFlop(_ name: String) throws {
        let path = Fixtures.path("dynamics/flipflop3_\(name).safetensors")
        let loaded = try ModelFile.load(path)
        let file = try SafeTensorsFile(path: path)
        let golden = try file.floats("golden.stable_states"), patterns = try file.floats("golden.patterns")
        let data = try Dataset.load(Fixtures.path("dynamics/flipflop3_test.safetensors"))
        var options = FixedPointOptions()
        options.seeds = 128
        let analysis = try AttractorAnalysis.run(network: loaded.network, input: [0, 0, 0], data: data.inputs, options: options,
                                                 pulses: PulseOptions(), backend: CPUBackend())
        let stable = analysis.stablePoints
        #expect(stable.count == 8, "\(name): \(stable.count) stable fixed points")
        let D = analysis.layers[0].dimension, H = loaded.network.layers[0].hiddenSize
        let readout = try #require(loaded.network.readout)
        // Each stable state is PyTorch's resting state for one pattern, and the readout shows it.
        var patternOf: [Int: [Int]] = [:]
        for p in stable {
            let state = analysis.points[p].state
            let match = (0..<8).min { a, b in
                distance(state, golden[(a * D)..<((a + 1) * D)]) < distance(state, golden[(b * D)..<((b + 1) * D)])
            }!
            #expect(distance(state, golden[(match * D)..<((match + 1) * D)]) < 1e-4, "\(name): point \(p) is no resting state of PyTorch's")
            let y = (0..<3).map { k in (0..<H).reduce(Double(readout.a[k])) { $0 + Double(readout.V[k * H + $1]) * state[$1] } }
            let bits = y.map { $0 > 0 ? 1 : -1 }
            #expect(bits == (0..<3).map { Int(patterns[match * 3 + $0]) }, "\(name): readout \(y) at point \(p)")
            patternOf[p] = bits
        }
        #expect(Set(patternOf.values).count == 8)
        // From each state, the pulse on channel k with the sign that flips bit k reaches the state
        // with only bit k flipped.
        var flips = 0
        for (p, bits) in patternOf {
            for k in 0..<3 {
                var want = bits
                want[k] = -bits[k]
                let edge = analysis.layers[0].graph.edges.first { $0.from == p && $0.channel == k && $0.sign == want[k] }
                #expect(edge != nil, "\(name): no edge from \(bits) on channel \(k)")
                guard let edge else { continue }
                #expect(patternOf[edge.to] == want, "\(name): channel \(k) from \(bits) reaches \(patternOf[edge.to] ?? [])")
                #expect(edge.threshold > 0 && edge.threshold <= 4)
                flips += 1
            }
        }
        #expect(flips == 24)
    }

    @Test("LSTM: Levenberg–Marquardt with c eliminated takes the full solve's steps", arguments: ["dynamics/flipflop3_lstm16", "digits_lstm32"])
    func cellStateElimination(_ name: String) throws {
        let loaded = try ModelFile.load(Fixtures.path("\(name).safetensors"))
        let layer = loaded.network.layers[0]
        let map = try LayerMap(layer: layer, input: [Double](repeating: 0, count: layer.inputSize))
        var rng = SeededGenerator(seed: 3)
        let seeds = FixedPointSeeds(map: map, visited: nil, count: 40, noise: 0, rng: &rng)
        for iterations in [1, 2, 4] {
            var blocked = FixedPointOptions(), dense = FixedPointOptions()
            blocked.maxIterations = iterations; dense.maxIterations = iterations
            dense.eliminateCellState = false
            let a = try FixedPointFinder.minimise(map: map, seeds: seeds, options: blocked, backend: CPUBackend())
            let b = try FixedPointFinder.minimise(map: map, seeds: seeds, options: dense, backend: CPUBackend())
            let worst = zip(a.states, b.states).map { abs($0 - $1) }.max()!
            #expect(worst < 1e-9, "\(name), \(iterations) iterations: states differ by \(worst)")
            for (qa, qb) in zip(a.q, b.q) { #expect(abs(qa - qb) <= 1e-9 * max(qa, qb) + 1e-20) }
        }
    }

    @Test("Both backends find the same points and the same graph")
    func backendsAgree() throws {
        let backends = try dynamicsBackends()
        guard backends.count > 1 else { return }
        let path = Fixtures.path("dynamics/flipflop3_gru16.safetensors")
        let loaded = try ModelFile.load(path)
        let data = try Dataset.load(Fixtures.path("dynamics/flipflop3_test.safetensors"))
        var options = FixedPointOptions()
        options.seeds = 48
        let results = try backends.map {
            try AttractorAnalysis.run(network: loaded.network, input: [0, 0, 0], data: data.inputs, options: options, pulses: PulseOptions(), backend: $0)
        }
        let (cpu, ocl) = (results[0], results[1])
        #expect(cpu.points.count == ocl.points.count)
        for (a, b) in zip(cpu.points, ocl.points) {
            #expect(distance(a.state, b.state[...]) < 1e-6 && a.isFixed == b.isFixed && a.isStable == b.isStable)
        }
        let key = { (e: ExcitableNetwork.Edge) in [e.from, e.to, e.channel, e.sign] }
        #expect(cpu.layers[0].graph.edges.map(key) == ocl.layers[0].graph.edges.map(key))
        for (a, b) in zip(cpu.layers[0].graph.edges, ocl.layers[0].graph.edges) {
            #expect(abs(a.threshold - b.threshold) <= 0.02 * a.threshold, "thresholds \(a.threshold) and \(b.threshold)")
        }
    }

    @Test("Settings out of range and inputs of the wrong width are refused")
    func refusals() throws {
        let net = try groundTruthNetwork(3)
        var options = FixedPointOptions()
        options.seeds = 0
        #expect(throws: DynamicsError.self) { try AttractorAnalysis.run(network: net, input: [0], data: nil, options: options, pulses: PulseOptions(), backend: CPUBackend()) }
        var pulses = PulseOptions()
        pulses.maxAmplitude = -1
        #expect(throws: DynamicsError.self) { try AttractorAnalysis.run(network: net, input: [0], data: nil, options: FixedPointOptions(), pulses: pulses, backend: CPUBackend()) }
        #expect(throws: DynamicsError.self) { try AttractorAnalysis.run(network: net, input: [0, 1], data: nil, options: FixedPointOptions(), pulses: PulseOptions(), backend: CPUBackend()) }
        #expect(throws: ModelError.self) { try LayerMap(layer: net.layers[0], input: [.nan]) }
    }
}

private func distance(_ a: [Double], _ b: ArraySlice<Float>) -> Double {
    zip(a, b).reduce(0) { $0 + ($1.0 - Double($1.1)) * ($1.0 - Double($1.1)) }.squareRoot()
}

private func distance(_ a: [Double], _ b: ArraySlice<Double>) -> Double {
    zip(a, b).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot()
}
