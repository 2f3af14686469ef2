import ArgumentParser
import CellAuditAnalysis
import CellAuditCore
import CellAuditImport
import CellAuditOpenCL
import Foundation
import OpenCLKit

/// Throughput of each backend on fixed workloads: a warm-up, then repeated timed runs.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure throughput of each backend (median of repeated runs after a warm-up).",
        discussion: """
        Workloads: 'response' (decoupled cells of a random layer under the default stimulus bank, \
        every metric computed; unit: cell-stimulus-steps per second, each step counted once), \
        'forward' (full forward of a random network over random sequences; unit: sequence-steps \
        per second) and 'ablation' (every single-cell ablation plus the intact network as one \
        batched forward; unit: configuration-sequence-steps per second), 'relevance' (LRP of 256 \
        sequences; unit: sequence-steps per second) and 'fixed-points' (the fixed-point search of \
        `attractors` from 1024 seeds on --model, seeded from --data; unit: seeds converged to \
        q < 1e-12 per second). Tools/bench_peers.py runs the NumPy and PyTorch peers beside it and \
        prints the ratios.
        """
    )

    @Option(help: "Backend to measure: cpu, opencl, or all available (default).")
    var backend: String = "all"

    @OptionGroup var deviceOption: DeviceOption
    var device: Int? { deviceOption.device }

    @Option(help: "Workload: response, forward, ablation, relevance, fixed-points or all.")
    var workload: String = "all"

    @Option(help: "fixed-points: the model (default: the repository's Tests/Fixtures/dynamics/flipflop3_gru16.safetensors).")
    var model: String?

    @Option(help: "fixed-points: the dataset whose visited states seed the search (default: the flip-flop test split beside it).")
    var data: String?

    @Option(help: "fixed-points: write the seeds used (safetensors, F64 'seeds' [N, D]) here, for a peer to start from.")
    var seedsOut: String?

    @Option(help: "Cell kind of the random networks: lstm, gru, rnn_tanh or rnn_relu.")
    var cell: String = "lstm"

    @Option(help: "Cells of the random layer (response) or hidden size (forward).")
    var cells: Int = 1024

    @Option(help: "ablation: stacked layers of --cells cells each; above 1, the workload is the study's whole single-cell phase (every cell and the intact and all-ablated networks, 360 sequences × 8 steps, scored), as `audit --data` runs it.")
    var layers: Int = 1

    @Flag(help: "forward: a bidirectional layer (a forward and a reverse direction of --cells cells each, read at their final states), as nn.LSTM(bidirectional=True).")
    var bidirectional = false

    @Option(help: "Observation window of the bank (response).")
    var window: Int = Defaults.window

    @Option(help: "Timed runs after the warm-up.")
    var repeats: Int = 5

    @Flag(help: "Use native (fast, less precise) math in the OpenCL kernels.")
    var nativeMath = false

    @Flag(help: "Print JSON.")
    var json = false

    struct Row: Encodable {
        var workload: String, cell: String, backend: String, device: String, size: String, unit: String
        var median_per_second: Double, min_per_second: Double, max_per_second: Double
        var median_seconds: Double, kernel_seconds: Double?, work: Int, host_peak_rss_mib: Double
        var device_peak_mib: Double?
        /// With --native-math on the response workload: how far native math moves the metrics
        /// from precise math (max |Δ| for values, share of pairs that differ for step times).
        var native_math_error: [String: Double]?
    }

    func run() throws {
        try failing {
            guard CellKind(rawValue: cell) != nil else {
                throw RunFailure(description: "--cell must be one of \(CellKind.allCases.map(\.rawValue).joined(separator: ", ")), got '\(cell)'")
            }
            guard repeats >= 1 else { throw RunFailure(description: "--repeats must be at least 1, got \(repeats)") }
            guard (1...(1 << 20)).contains(cells) else { throw RunFailure(description: "--cells must be 1…1048576, got \(cells)") }
            guard (1...64).contains(layers) else { throw RunFailure(description: "--layers must be 1…64, got \(layers)") }
            if bidirectional && workload != "forward" {
                throw RunFailure(description: "--bidirectional applies to --workload forward")
            }
            if layers > 1 && workload != "ablation" {
                throw RunFailure(description: "--layers applies to --workload ablation; the \(workload) workload times one layer")
            }
            let known = ["response", "forward", "ablation", "relevance", "fixed-points"]
            // `all` leaves out fixed-points, which reads a model file rather than a random network.
            let workloads = workload == "all" ? Array(known.dropLast()) : [workload]
            for w in workloads where !known.contains(w) {
                throw RunFailure(description: "--workload must be response, forward, ablation, relevance, fixed-points or all, got '\(w)'")
            }
            // The other workloads time synthetic networks of --cells: a model or dataset given to them
            // would be ignored, so it is refused rather than silently unused.
            for (flag, given) in [("--model", model != nil), ("--data", data != nil), ("--seeds-out", seedsOut != nil)]
                where given && workloads != ["fixed-points"] {
                throw RunFailure(description: "\(flag) applies to --workload fixed-points; the \(workload) workload times synthetic networks of --cells cells")
            }
            var backends: [any ComputeBackend] = []
            switch backend {
            case "cpu": backends = [CPUBackend(threads: try hostThreads())]
            case "opencl", "all":
                if backend == "all" { backends.append(CPUBackend(threads: try hostThreads())) }
                try installFaultsFromEnvironment()
                do {
                    let devices = try OpenCL.devices()
                    let index = device ?? BackendSelection.autoDecision(devices: devices).device?.index ?? 0
                    guard devices.indices.contains(index) else { throw BackendError.unavailable("no OpenCL device \(index) (found \(devices.count))") }
                    backends.append(try OpenCLBackend(device: devices[index], settings: try KernelSettings.fromEnvironment(ProcessInfo.processInfo.environment, nativeMath: nativeMath),
                                                      hostThreads: try hostThreads()))
                } catch where backend == "all" {
                    Terminal.warn("warning: no OpenCL backend to measure (\(error))")
                }
            default: throw RunFailure(description: "--backend must be cpu, opencl or all, got '\(backend)'")
            }
            var rows: [Row] = []
            for w in workloads {
                for b in backends { rows.append(try measure(w, on: b)) }
            }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(rows), as: UTF8.self))
                return
            }
            print("CellAudit \(CellAudit.version) bench: median of \(repeats) runs after one warm-up")
            for r in rows {
                let kernel = (r.kernel_seconds.map { String(format: ", kernel %.4f s", $0) } ?? "")
                    + (r.device_peak_mib.map { String(format: ", device peak %.1f MiB", $0) } ?? "")
                print(String(format: "%@ %@ %@ [%@]: %.3g %@/s (min %.3g, max %.3g), %.4f s%@, peak RSS %.0f MiB — %@",
                             r.workload, r.cell, r.backend, r.size, r.median_per_second, r.unit, r.min_per_second, r.max_per_second,
                             r.median_seconds, kernel, r.host_peak_rss_mib, r.device))
                if let e = r.native_math_error {
                    print("  native math against precise: " + e.keys.sorted().map { "\($0) \(String(format: "%.3g", e[$0]!))" }.joined(separator: ", "))
                }
            }
        }
    }

    func measure(_ workload: String, on backend: any ComputeBackend) throws -> Row {
        var rng = SeededGenerator(seed: 2024)
        let kind = CellKind(rawValue: cell)!
        let task: () throws -> Void
        let work: Int, size: String, unit: String
        var nativeError: [String: Double]?
        var kindName = cell
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
            let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Tests/Fixtures/dynamics").standardized
            let modelPath = model ?? fixtures.appendingPathComponent("flipflop3_gru16.safetensors").path
            let dataPath = data ?? (model == nil ? fixtures.appendingPathComponent("flipflop3_test.safetensors").path : nil)
            guard FileManager.default.fileExists(atPath: modelPath) else {
                throw RunFailure(description: "bench --workload fixed-points: \(modelPath) does not exist; give --model (and --data)")
            }
            let loaded = try readModel(modelPath)
            var dataset = try dataPath.map { try Dataset.load($0, requireAnswers: false) }
            try dataset?.prepare(for: loaded)
            let map = try LayerMap(layer: loaded.network.layers[0], input: [Double](repeating: 0, count: loaded.network.inputSize))
            kindName = loaded.network.kind.rawValue
            var options = FixedPointOptions()
            options.seeds = 1024
            var seedRng = SeededGenerator(seed: 0)
            let visited = try dataset.map { try AttractorAnalysis.visitedStates(map: map, data: $0.inputs, backend: backend) }
            let seeds = FixedPointSeeds(map: map, visited: visited, count: options.seeds, noise: options.seedNoise, rng: &seedRng)
            if let seedsOut {
                var writer = SafeTensorsWriter(metadata: ["model": (modelPath as NSString).lastPathComponent, "q_tolerance": "\(options.qTolerance)"])
                try writer.add("seeds", dtype: .F64, shape: [seeds.count, map.dimension], bytes: seeds.states.withUnsafeBufferPointer { Data(buffer: $0) })
                try writer.write(to: seedsOut)
            }
            let converged = try FixedPointFinder.minimise(map: map, seeds: seeds, options: options, backend: backend).q.filter { $0 < options.qTolerance }.count
            work = converged
            size = "\(seeds.count) seeds on \((modelPath as NSString).lastPathComponent) (\(map.dimension)-dimensional state), \(converged) converge"
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
