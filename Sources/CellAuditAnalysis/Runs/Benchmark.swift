import CellAuditCore
import CellAuditOpenCL
import Foundation

/// Throughput of a backend on fixed workloads (`cellaudit bench`; BENCHMARKS.md): synthetic
/// networks seeded the same every run, a warm-up, then repeated timed runs. Timings are
/// measurements for the user, never a result of an audit.
public struct Benchmark {
    /// The trained network of the fixed-points workload, the dataset whose visited states seed
    /// its search, and where to write the seeds for a peer (safetensors, F64 'seeds' [N, D]).
    public struct FixedPointSubject {
        public var loaded: LoadedModel
        public var name: String
        public var data: Dataset?
        public var seedsOut: String?
        public init(loaded: LoadedModel, name: String, data: Dataset?, seedsOut: String?) {
            self.loaded = loaded; self.name = name; self.data = data; self.seedsOut = seedsOut
        }
    }

    /// Cell kind and size of the synthetic networks; `layers` > 1 makes the ablation workload the
    /// whole single-cell phase of a stack; `bidirectional` the forward workload's layer.
    public var cell: CellKind
    public var cells: Int
    public var layers: Int
    public var bidirectional: Bool
    /// The response workload's observation window.
    public var window: Int
    public var repeats: Int
    public var fixedPoints: FixedPointSubject?

    public init(cell: CellKind, cells: Int, layers: Int = 1, bidirectional: Bool = false, window: Int = Defaults.window,
                repeats: Int = 5, fixedPoints: FixedPointSubject? = nil) {
        self.cell = cell; self.cells = cells; self.layers = layers; self.bidirectional = bidirectional; self.window = window
        self.repeats = repeats; self.fixedPoints = fixedPoints
    }

    /// One workload on one backend, as `bench --json` prints it.
    public struct Row: Encodable {
        public var workload: String, cell: String, backend: String, device: String, size: String, unit: String
        public var median_per_second: Double, min_per_second: Double, max_per_second: Double
        public var median_seconds: Double, kernel_seconds: Double?, work: Int, host_peak_rss_mib: Double
        public var device_peak_mib: Double?
        /// With --native-math on the response workload: how far native math moves the metrics
        /// from precise math (max |Δ| for values, share of pairs that differ for step times).
        public var native_math_error: [String: Double]?
    }

    /// Times `workload` (response, forward, ablation, relevance, fixed-points) on `backend`: one
    /// warm-up run, then `repeats` timed runs; the row gives the median rate and the spread.
    /// - Throws: the backend's errors; `RunFailure` for fixed-points without a subject.
    public func measure(_ workload: String, on backend: any ComputeBackend) throws -> Row {
        var rng = SeededGenerator(seed: 2024)
        let kind = cell
        let task: () throws -> Void
        let work: Int, size: String, unit: String
        var nativeError: [String: Double]?
        var kindName = cell.rawValue
        switch workload {
        case "response":
            let layer = try RecurrentLayer.random(kind: kind, inputSize: 16, hiddenSize: cells, using: &rng)
            let bank = try StimulusBank.standard(window: window)
            let job = try ResponseJob(cells: try DecoupledCells(layer: layer), bank: bank)
            work = job.simulatedSteps
            size = "\(cells) cells × \(bank.count) stimuli, window \(window)"
            unit = "cell-stimulus-steps"
            task = { _ = try backend.responses(job) }
            if let cl = backend as? OpenCLBackend, cl.nativeMath {
                let native = try cl.responses(job)
                var settings = cl.settings
                settings.nativeMath = false
                let precise = try OpenCLBackend(device: cl.device, settings: settings).responses(job)
                var error: [String: Double] = [:]
                for m in [Metric.yFinal, .gain, .sineGain, .phaseDeg, .thd] {
                    error["max_abs_\(m.name)"] = zip(native.plane(m), precise.plane(m))
                        .filter { $0.isFinite && $1.isFinite }.map { Double(abs($0 - $1)) }.max() ?? 0
                }
                for m in [Metric.peakTime, .settlingTime, .riseTime] {
                    let pairs = zip(native.plane(m), precise.plane(m)).filter { $0.isFinite || $1.isFinite }
                    error["share_differing_\(m.name)"] = Double(pairs.filter { $0 != $1 }.count) / Double(max(1, pairs.count))
                }
                nativeError = error
            }
        case "relevance":
            // The whole explanation of a dataset: forward with its record, then LRP to every input
            // and every cell (`cellaudit explain`'s work), 256 sequences × 32 steps.
            let hidden = min(cells, 128)
            let network = try RecurrentNetwork.random(kind: kind, seed: 17, inputSize: 8, hiddenSizes: [hidden], outputs: 10)
            let n = 256, steps = 32
            let inputs = try SequenceBatch(count: n, steps: steps, width: 8, values: (0..<(n * steps * 8)).map { _ in rng.uniform(-1, 1) })
            let job = try RelevanceJob(network: network, inputs: inputs, output: .last, targets: (0..<n).map { $0 % 10 })
            work = n * steps
            size = "\(n) sequences × \(steps) steps, \(hidden) cells"
            unit = "sequence-steps"
            task = { _ = try backend.relevance(job) }
        case "fixed-points":
            // `attractors`' search on a trained network: the same seeds every run (data states with
            // noise, and random states), LM to q < 1e-12; a seed counts when it gets there.
            guard let subject = fixedPoints else { throw RunFailure(description: "bench --workload fixed-points needs a model") }
            let loaded = subject.loaded, dataset = subject.data
            let map = try LayerMap(layer: loaded.network.layers[0], input: [Double](repeating: 0, count: loaded.network.inputSize))
            kindName = loaded.network.kind.rawValue
            var options = FixedPointOptions()
            options.seeds = Defaults.fixedPointSeeds
            var seedRng = SeededGenerator(seed: 0)
            let visited = try dataset.map { try AttractorAnalysis.visitedStates(map: map, data: $0.inputs, backend: backend) }
            let seeds = FixedPointSeeds(map: map, visited: visited, count: options.seeds, noise: options.seedNoise, rng: &seedRng)
            if let seedsOut = subject.seedsOut {
                var writer = SafeTensorsWriter(metadata: ["model": subject.name, "q_tolerance": "\(options.qTolerance)"])
                try writer.add("seeds", dtype: .F64, shape: [seeds.count, map.dimension], bytes: seeds.states.withUnsafeBufferPointer { Data(buffer: $0) })
                try writer.write(to: seedsOut)
            }
            let converged = try FixedPointFinder.minimise(map: map, seeds: seeds, options: options, backend: backend).q.filter { $0 < options.qTolerance }.count
            work = converged
            size = "\(seeds.count) seeds on \(subject.name) (\(map.dimension)-dimensional state), \(converged) converge"
            unit = "seeds converged"
            task = { _ = try FixedPointFinder.minimise(map: map, seeds: seeds, options: options, backend: backend) }
        case "ablation" where layers > 1:
            // The single-cell phase of `audit --data` on a stack: each cell's configuration from its
            // own level up, on the intact output of the levels below (docs/METHOD.md §6).
            let network = try RecurrentNetwork.random(kind: kind, seed: 6, inputSize: 16, hiddenSizes: [Int](repeating: cells, count: layers), outputs: 10)
            let n = 360, steps = 8
            let inputs = try SequenceBatch(count: n, steps: steps, width: 16, values: (0..<(n * steps * 16)).map { _ in rng.uniform(-1, 1) })
            let dataset = Dataset(inputs: inputs, labels: (0..<n).map { $0 % 10 })
            let configurations = Array(0..<AblationStudy.singleConfigurationCount(cells: network.cellCount))
            work = configurations.count * n * steps
            size = "\(configurations.count) configurations × \(n) sequences × \(steps) steps, \(layers) × \(cells) cells"
            unit = "configuration-sequence-steps"
            task = { _ = try AblationStudy.singleAblations(network: network, dataset: dataset, task: .classification, output: .last,
                                                           configurations: configurations, on: backend) }
        case "ablation":
            // Single-cell ablation of every cell plus the intact network: masks as a batch dimension.
            let hidden = min(cells, 64)
            let network = try RecurrentNetwork.random(kind: kind, seed: 6, inputSize: 8, hiddenSizes: [hidden], outputs: 10)
            let n = 256, steps = 16
            let inputs = try SequenceBatch(count: n, steps: steps, width: 8, values: (0..<(n * steps * 8)).map { _ in rng.uniform(-1, 1) })
            let masks = [CellMask.none(cells: hidden)] + (0..<hidden).map { CellMask.ablating([$0], of: hidden) }
            var job = try ForwardJob(network: network, inputs: inputs, output: .last, masks: masks)
            // Scored from the readout, as `ablate` and the peers do: no hidden states kept.
            job.keepsHidden = false
            work = masks.count * n * steps
            size = "\(masks.count) configurations × \(n) sequences × \(steps) steps, \(hidden) cells"
            unit = "configuration-sequence-steps"
            task = { _ = try backend.forward(job) }
        default:
            let hidden = min(cells, 256)
            let network = try RecurrentNetwork.random(kind: kind, seed: 5, inputSize: 16, hiddenSizes: [hidden], outputs: 10,
                                                      directions: bidirectional ? [.forward, .reverse] : [.forward], reading: .finalStates)
            let n = 512, steps = 64
            let inputs = try SequenceBatch(count: n, steps: steps, width: 16, values: (0..<(n * steps * 16)).map { _ in rng.uniform(-1, 1) })
            let job = try ForwardJob(network: network, inputs: inputs, output: .last)
            work = n * steps
            size = "\(n) sequences × \(steps) steps, \(hidden) cells" + (bidirectional ? " per direction, bidirectional" : "")
            unit = "sequence-steps"
            task = { _ = try backend.forward(job) }
        }
        (backend as? OpenCLBackend)?.resetDevicePeak()
        try task()   // warm-up: kernel build, page faults, thread pools
        var times: [Double] = [], kernels: [Double] = []
        for _ in 0..<repeats {
            let start = DispatchTime.now().uptimeNanoseconds
            try task()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
            // Kernel time is that of the last launch: meaningful for one-launch workloads only.
            if workload != "fixed-points", let cl = backend as? OpenCLBackend { kernels.append(cl.lastKernelSeconds) }
        }
        // The median: the middle run, or the mean of the two middle runs of an even count.
        let sorted = times.sorted(), half = sorted.count / 2
        let median = sorted.count % 2 == 1 ? sorted[half] : (sorted[half - 1] + sorted[half]) / 2
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        // The CPU path's products run on OpenBLAS: which core's kernels it picked (or was told to use) matters.
        let device = backend.identity.device + (backend.identity.kind == .cpu ? ", OpenBLAS \(blasCoreName) kernels" : "")
        return Row(workload: workload, cell: kindName, backend: backend.identity.kind.rawValue, device: device, size: size, unit: unit,
                   median_per_second: Double(work) / median, min_per_second: Double(work) / sorted.last!,
                   max_per_second: Double(work) / sorted.first!, median_seconds: median,
                   kernel_seconds: kernels.isEmpty ? nil : kernels.sorted()[kernels.count / 2], work: work,
                   host_peak_rss_mib: Double(usage.ru_maxrss) / 1024,
                   device_peak_mib: (backend as? OpenCLBackend).map { Double($0.peakDeviceBytes) / 1_048_576 },
                   native_math_error: nativeError)
    }
}
