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
            var fixedPoints: Benchmark.FixedPointSubject?
            if workloads.contains("fixed-points") {
                // `attractors`' search on a trained network (default: the repository's flip-flop fixture).
                // The repository this binary was built from: the nearest folder above this source file
                // that holds Package.swift (so moving the file does not move the fixtures).
                var root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
                while root.path != "/" && !FileManager.default.fileExists(atPath: root.appendingPathComponent("Package.swift").path) {
                    root.deleteLastPathComponent()
                }
                let fixtures = root.appendingPathComponent("Tests/Fixtures/dynamics")
                let modelPath = model ?? fixtures.appendingPathComponent("flipflop3_gru16.safetensors").path
                let dataPath = data ?? (model == nil ? fixtures.appendingPathComponent("flipflop3_test.safetensors").path : nil)
                guard FileManager.default.fileExists(atPath: modelPath) else {
                    throw RunFailure(description: "bench --workload fixed-points: \(modelPath) does not exist; give --model (and --data)")
                }
                let loaded = try readModel(modelPath)
                var dataset = try dataPath.map { try Dataset.load($0, requireAnswers: false) }
                try dataset?.prepare(for: loaded)
                fixedPoints = Benchmark.FixedPointSubject(loaded: loaded, name: (modelPath as NSString).lastPathComponent, data: dataset,
                                                          seedsOut: seedsOut)
            }
            let bench = Benchmark(cell: CellKind(rawValue: cell)!, cells: cells, layers: layers, bidirectional: bidirectional, window: window,
                                  repeats: repeats, fixedPoints: fixedPoints)
            var rows: [Benchmark.Row] = []
            for w in workloads {
                for b in backends { rows.append(try bench.measure(w, on: b)) }
            }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(rows), as: UTF8.self))
                return
            }
            print("CellAudit \(CellAuditVersion.current) bench: median of \(repeats) runs after one warm-up")
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
}
