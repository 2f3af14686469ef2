import ArgumentParser
import CellAuditAnalysis
import CellAuditCore
import CellAuditImport
import Foundation

func printJSON(_ object: [String: Any]) throws {
    // Key-value output of `inspect` and `eval`, whose keys depend on the model and the data.
    let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Describe a model file: architecture, parameters, convention.")

    @Argument(help: ArgumentHelp(modelArgumentHelp))
    var model: String

    @Option(help: "A dataset to report the model's score on.")
    var data: String?

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var backendOptions: BackendOptions

    @Flag(help: "Rerun the framework's own outputs stored in the model file (golden.outputs, golden.hidden, golden_accuracy / golden_mse; the exporters write them) on --data and fail on any disagreement.")
    var verify = false

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        if verify && data == nil { throw ValidationError("--verify needs --data: the dataset the golden outputs were computed on") }
    }

    func run() throws {
        try failing {
            let loaded = try modelOptions.load(model, data: try data.map { try DatasetFile($0) })
            if verify, let data {
                let report = try verifyGolden(loaded, dataPath: data, backend: try backendOptions.makeBackend())
                if json { try printJSON(report); return }
                print("verified \(model) against its golden outputs on \(data): " + report.map { "\($0.key) \($0.value)" }.sorted().joined(separator: ", "))
                return
            }
            let net = loaded.network
            var info: [String: Any] = [
                "model": model, "convention": loaded.convention.rawValue, "cell": net.kind.rawValue,
                "gates": net.kind.gateNames,
                "input_size": net.inputSize, "hidden_sizes": net.layers.map(\.hiddenSize),
                "outputs": net.readout?.outputs ?? 0, "output_mode": loaded.output.rawValue,
                "task": loaded.task.rawValue, "parameters": loaded.parameterCount, "cells": net.cellCount,
            ]
            if net.kind == .gru { info["reset_after"] = net.layers[0].resetAfter }
            if net.hasPeephole { info["peephole"] = true }
            if !loaded.ignored.isEmpty { info["ignored"] = loaded.ignored }
            if !net.isForwardOnly {
                info["hidden_sizes"] = net.levels.map { level in level.map { net.layers[$0].hiddenSize } }
                info["directions"] = net.levels.map { level in level.map { net.layers[$0].direction.rawValue } }
                if let reading = net.readout?.reading, loaded.output == .last { info["bidirectional_readout"] = reading.rawValue }
            }
            if let note = loaded.readoutNote { info["readout_note"] = note }
            if let e = loaded.embedding { info["embedding"] = ["source": e.source, "vocabulary_size": e.vocabularySize, "width": e.width] as [String: Any] }
            if let data {
                let backend = try backendOptions.makeBackend()
                let scored = try loaded.score(on: try DatasetStream(try DatasetFile(data), preparedFor: loaded), backend: backend)
                info[scored.name] = scored.value
                info["backend"] = "\(backend.identity)"
            }
            if json { try printJSON(info); return }
            print("model: \(model)")
            let variant = net.kind == .gru ? (net.layers[0].resetAfter ? " (reset gate after R_n h + b_hn)" : " (reset gate before R_n: r ⊙ h)")
                : net.hasPeephole ? " with peepholes (i, f read c(t−1), o reads c(t))" : ""
            let shape = net.isForwardOnly ? "" : net.levels.allSatisfy({ $0.count == 2 }) ? " (bidirectional)" : " (with reverse layers)"
            print("  convention \(loaded.convention.rawValue), \(net.kind.rawValue)\(variant), \(net.levels.count) layer\(net.levels.count == 1 ? "" : "s")\(shape)")
            let widths = net.levels.map { level in
                net.isForwardOnly ? String(net.layers[level[0]].hiddenSize)
                    : level.map { "\(net.layers[$0].hiddenSize) \(net.layers[$0].direction == .forward ? "fwd" : "rev")" }.joined(separator: " + ")
            }
            let reading = !net.isForwardOnly && loaded.output == .last ? net.readout.map { ", \($0.reading.rawValue)" } ?? "" : ""
            print("  input \(net.inputSize) → cells \(widths.joined(separator: " → ")) → " + (net.readout == nil ? "no readout" : "readout \(net.readout!.outputs) (\(loaded.output.rawValue) step\(reading))"))
            if let e = loaded.embedding {
                print("  token embedding '\(e.source)': \(e.vocabularySize) tokens → \(e.width) dimensions (data: token ids [N, T])")
            }
            print("  task \(loaded.task.rawValue), \(loaded.parameterCount) parameters (biases fused), \(net.cellCount) cells")
            if let p = loaded.metadata["projection"] {
                print("  output projection (proj_size \(p)): each layer's h = W_hr (o ⊙ tanh c), folded into the maps that read h; the cells are the memory cells (the parameter count is the folded network's)")
            }
            if let note = loaded.readoutNote { print("  readout: none, \(note)") }
            if let lengths = loaded.metadata["lengths_input"] { print("  sequence_lens from graph input '\(lengths)': the data's `lengths` feed it") }
            if !loaded.ignored.isEmpty {
                let what = loaded.convention == .keras ? "layer" : loaded.convention == .onnx ? "part" : "tensor"
                print("  ignored by --core (\(loaded.ignored.count) \(what)\(loaded.ignored.count == 1 ? "" : "s") outside the recurrent core):")
                for name in loaded.ignored { print("    \(name)") }
            }
            for key in ["accuracy", "mse"] { if let v = info[key] as? Double { print("  \(key) on \(data!): \(String(format: "%.4f", v)) (\(info["backend"]!))") } }
        }
    }
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a model on a dataset; print accuracy or MSE.")

    @Argument(help: ArgumentHelp(modelArgumentHelp))
    var model: String

    @Option(help: "The dataset (.safetensors with inputs and labels or targets).")
    var data: String

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var backendOptions: BackendOptions

    @Option(help: "Write the readout values as safetensors ('outputs', [N, K] or [N, T, K]).")
    var out: String?

    @Flag(help: "Replace an existing --out file.")
    var force = false

    @Option(name: .customLong("repeat"), help: "Time this many forward passes after one warm-up and report the median (1 = a single cold pass).")
    var repeats: Int = 1

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        try failing {
            guard repeats >= 1 else { throw ValidationError("--repeat must be at least 1, got \(repeats)") }
            if let out {
                guard !out.isEmpty else { throw ValidationError("--out is empty: give a file name") }
                var isDirectory: ObjCBool = false
                if FileManager.default.fileExists(atPath: out, isDirectory: &isDirectory) {
                    guard !isDirectory.boolValue else { throw RunFailure(description: "--out \(out) is a directory; give a file name") }
                    guard force else { throw RunFailure(description: "--out \(out) exists; use --force to replace it") }
                }
            }
            let file = try DatasetFile(data)
            let loaded = try modelOptions.load(model, data: file)
            let stream = try DatasetStream(file, preparedFor: loaded)
            let backend = try backendOptions.makeBackend()
            if let out, let input = InputFiles.conflict(withOutput: out) {
                throw RunFailure(description: "--out \(out) would overwrite the input \(input); cellaudit never writes over its inputs: choose another file")
            }
            if repeats > 1 { _ = try loaded.score(on: stream, backend: backend) }
            var scored: Score?
            var times: [Double] = []
            for run in 0..<repeats {
                let start = DispatchTime.now().uptimeNanoseconds
                if let out, run == repeats - 1 {
                    // The outputs written in place as each chunk comes, into a file renamed over
                    // --out only when complete.
                    try writeFileWhole(out) { staging in
                        let writer = try SafeTensorsStreamWriter(path: staging,
                                                                 tensors: [.init("outputs", .F32, loaded.outputShape(sequences: stream.count, steps: stream.steps))],
                                                                 metadata: ["model": (model as NSString).lastPathComponent, "backend": "\(backend.identity)"])
                        var written = 0
                        scored = try loaded.score(on: stream, backend: backend) { result in
                            try result.outputs.withUnsafeBufferPointer { try writer.write("outputs", at: written, $0) }
                            written += result.outputs.count
                        }
                        try writer.finish()
                    }
                } else {
                    scored = try loaded.score(on: stream, backend: backend)
                }
                times.append(Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
            }
            let score = scored!
            let seconds = times.sorted()[times.count / 2]
            let sequenceSteps = Double(stream.count * stream.steps)
            // Where the forward actually ran, when not on the backend named (auto keeps it on the CPU of a CPU device).
            let elsewhere = otherBackends(backend)
            if json {
                var info: [String: Any] = ["model": model, "data": data, score.name: score.value, "backend": "\(backend.identity)",
                                           "sequences": stream.count, "seconds": seconds,
                                           "sequence_steps_per_second": sequenceSteps / max(seconds, 1e-12)]
                if let elsewhere { info["other_backends"] = elsewhere }
                try printJSON(info)
                return
            }
            let binary = loaded.task == .classification && Score.isBinary(outputs: loaded.network.readout?.outputs ?? 0)
            print("\(score.name): \(String(format: "%.4f", score.value)) on \(stream.count) sequences of \(data)"
                  + (binary ? " (a single-logit binary classifier: class 1 where the logit is above 0)" : ""))
            print("backend: \(backend.identity)" + (elsewhere?["forward"].map { " (the forward ran on \($0))" } ?? ""))
            print(String(format: "forward: %.4f s, %.3g sequence-steps per second", seconds, sequenceSteps / max(seconds, 1e-12)))
        }
    }
}

/// Reruns the golden values a model file carries on `dataPath` with `backend`.
/// - Returns: what was compared and the largest difference of each.
/// - Throws: `RunFailure` naming the file when it carries no golden outputs, the dataset does not
///   match them, or any value differs beyond `Tolerance.forward` (or a score beyond 1e-9).
func verifyGolden(_ loaded: LoadedModel, dataPath: String, backend: any ComputeBackend) throws -> [String: String] {
    let name = (loaded.path as NSString).lastPathComponent
    if FileFormat.sniff(loaded.path) == .onnx {
        throw RunFailure(description: "\(name) is an ONNX graph, which carries no golden outputs; --verify reads 'golden.outputs' from a CellAudit model file (the exporters in Tools/ write them): compare with `cellaudit eval \(name) --data DATA --out FILE` instead")
    }
    let file = try SafeTensorsFile(path: loaded.path)
    guard file.tensors["golden.outputs"] != nil else {
        throw RunFailure(description: "\(name) carries no golden outputs ('golden.outputs') to verify against")
    }
    let stream = try DatasetStream(try DatasetFile(dataPath), preparedFor: loaded)
    var report: [String: String] = ["backend": "\(backend.identity)"]
    let expectedShape = loaded.outputShape(sequences: stream.count, steps: stream.steps)
    guard try file.info("golden.outputs").shape == expectedShape else {
        throw RunFailure(description: "\(name): golden outputs are \(try file.info("golden.outputs").shape) but \(stream.fileName) gives \(expectedShape): verify on the dataset the exporter used")
    }
    var hiddenShape: [Int]?
    if file.tensors["golden.hidden"] != nil {
        let shape = try file.info("golden.hidden").shape
        guard shape.count == 3, shape[1] == stream.steps, shape[2] == loaded.network.layers.last!.hiddenSize, shape[0] <= stream.count else {
            throw RunFailure(description: "\(name): golden hidden states are \(shape), which \(stream.fileName) and the model cannot give")
        }
        hiddenShape = shape
    }
    /// The largest difference so far of each compared tensor, and where.
    var worst: [String: (value: Float, at: Int)] = [:]
    func compare(_ got: ArraySlice<Float>, _ want: [Float], from first: Int, _ what: String) throws {
        // A NaN or infinity in a golden is a broken golden, never a value to skip.
        if let bad = want.firstIndex(where: { !$0.isFinite }) {
            throw RunFailure(description: "\(name): golden \(what) hold \(want[bad]) at element \(first + bad); a golden must be finite to verify against")
        }
        var (largest, at) = worst[what] ?? (0, 0)
        for (i, (g, w)) in zip(got, want).enumerated() where !(abs(g - w) <= largest) { largest = abs(g - w); at = first + i }
        guard largest <= Tolerance.forward else {
            throw RunFailure(description: "\(name): \(what) differ from the framework's by up to \(largest) (element \(at), tolerance \(Tolerance.forward)): this file is not read as its framework ran it")
        }
        worst[what] = (largest, at)
    }
    var accumulator = ScoreAccumulator(task: loaded.task, output: loaded.output)
    try stream.forEachChunk { range, chunk in
        var job = try ForwardJob(network: loaded.network, inputs: chunk.inputs, output: loaded.output)
        let hiddenSequences = range.clamped(to: 0..<(hiddenShape?[0] ?? 0))
        job.keepsHidden = !hiddenSequences.isEmpty
        let result = try backend.forward(job)
        let per = result.outputs.count / range.count
        try compare(result.outputs[...], try file.floats("golden.outputs", elements: (range.lowerBound * per)..<(range.upperBound * per)),
                    from: range.lowerBound * per, "outputs")
        if let hiddenShape, !hiddenSequences.isEmpty {
            let row = hiddenShape[1] * hiddenShape[2]
            try compare(result.hidden[0..<(hiddenSequences.count * row)],
                        try file.floats("golden.hidden", elements: (hiddenSequences.lowerBound * row)..<(hiddenSequences.upperBound * row)),
                        from: hiddenSequences.lowerBound * row, "hidden states")
        }
        try accumulator.add(result, chunk: chunk, loss: false)
    }
    for (what, (largest, _)) in worst { report[what] = String(format: "max |Δ| %.3g", largest) }
    let score = accumulator.score
    let key = "golden_\(score.name)"
    if let text = loaded.metadata[key], Double(text)?.isFinite != true {
        throw RunFailure(description: "\(name): metadata '\(key)' is '\(text)', not a finite number; fix or remove it to verify")
    }
    for other in ["golden_accuracy", "golden_mse"] where other != key && loaded.metadata[other] != nil {
        throw RunFailure(description: "\(name): metadata '\(other)' does not fit the model's task (\(loaded.task.rawValue) scores \(score.name)); fix or remove it to verify")
    }
    if let stored = loaded.metadata[key].flatMap(Double.init) {
        guard abs(stored - score.value) <= 1e-9 else {
            throw RunFailure(description: "\(name): \(score.name) \(score.value) on \(stream.fileName), but the framework measured \(stored)")
        }
        report[score.name] = String(format: "%.6g (the framework's too)", score.value)
    }
    return report
}
