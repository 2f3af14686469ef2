import ArgumentParser
import CellAuditAnalysis
import CellAuditCore
import Foundation
import CellAuditImport
import CellAuditOpenCL
import OpenCLKit

/// The help of every command's model argument.
let modelArgumentHelp = "The model: a CellAudit model file or plain PyTorch state dict (.safetensors), a torch.save state dict (.pt, .pth, .bin), a Keras file (.keras, or a legacy .h5) or an ONNX graph (.onnx), told by content (README, \"Model files\")."

/// How to read a plain PyTorch state dict, which has no CellAudit metadata (README, "Model files").
struct ModelOptions: ParsableArguments {
    @Option(help: "State dicts: the recurrent module's tensor prefix (e.g. 'rnn.' or 'module.lstm.') when there are several.")
    var rnnPrefix: String?

    @Option(help: "State dicts: the readout nn.Linear's tensor prefix (e.g. 'head.') when several read the last layer.")
    var readoutPrefix: String?

    @Option(help: "State dicts and ONNX graphs: classification, binary (one logit, sigmoid; what a one-output classifier always is) or regression (default: what the dataset holds, else classification).")
    var task: String?

    @Option(help: "State dicts: last or sequence, where the readout is applied (default: what the dataset holds, else last).")
    var output: String?

    @Option(help: "State dicts of nn.RNN: tanh or relu (the state dict does not record it).")
    var nonlinearity: String?

    @Option(help: "Bidirectional state dicts whose readout reads the last step: final-states (the model reads cat(h_n[-2], h_n[-1]), each direction after its last step) or last-step (it reads output[:, -1]). A state dict does not record which; CellAudit asks rather than guesses.")
    var bidirectionalReadout: String?

    @Option(help: "State dicts: the token embedding's tensor prefix ('X.' for an nn.Embedding 'X.weight' of [V, I]) where its name does not contain 'emb'. Data are then integer token ids [N, T].")
    var embeddingPrefix: String?

    @Flag(help: "A bigger model (state dict, torch.save, Keras or ONNX file): read the recurrent stack and the linear map that reads it (if any), and list every other part as ignored instead of refusing the file. Data is then the stack's input.")
    var core = false

    func validate() throws {
        if let task, ModelTask(rawValue: task) == nil && task != "binary" {
            throw ValidationError("--task must be classification, binary or regression, got '\(task)'")
        }
        if let output, OutputMode(rawValue: output) == nil { throw ValidationError("--output must be last or sequence, got '\(output)'") }
        if let bidirectionalReadout, FinalStateReading(rawValue: bidirectionalReadout) == nil {
            throw ValidationError("--bidirectional-readout must be final-states or last-step, got '\(bidirectionalReadout)'")
        }
        if let nonlinearity, !["tanh", "relu"].contains(nonlinearity) {
            throw ValidationError("--nonlinearity must be tanh or relu, got '\(nonlinearity)'")
        }
    }

    /// The model at `path`; a state dict's task and output mode follow `data` unless given.
    func load(_ path: String, data: (any DatasetReader)? = nil) throws -> LoadedModel {
        // binary: a classification read from one logit (Score.isBinary), checked below.
        var hints = ModelHints(rnnPrefix: rnnPrefix, readoutPrefix: readoutPrefix,
                               task: task == "binary" ? .classification : task.flatMap(ModelTask.init(rawValue:)),
                               output: output.flatMap(OutputMode.init(rawValue:)), nonlinearity: nonlinearity)
        hints.core = core
        hints.embeddingPrefix = embeddingPrefix
        hints.bidirectionalReadout = bidirectionalReadout.flatMap(FinalStateReading.init(rawValue:))
        if let data { hints.follow(data) }
        let loaded = try readModel(path, hints: hints)
        if task == "binary", let k = loaded.network.readout?.outputs, !Score.isBinary(outputs: k) {
            throw RunFailure(description: "\((path as NSString).lastPathComponent): --task binary reads one logit, but the readout has \(k) outputs (a softmax classifier: --task classification)")
        }
        return loaded
    }
}

/// Reads a model file of any format CellAudit reads (`ModelImport`, which sniffs the content).
/// A file that HDF5's C library reads (a Keras .keras or .h5 file) is read once in a child process
/// first: HDF5 1.10 can crash on a damaged or hostile file, and such a crash must end in a clear
/// error naming the file, not in a crash of the run.
func readModel(_ path: String, hints: ModelHints = ModelHints()) throws -> LoadedModel {
    if [.keras3, .hdf5].contains(FileFormat.sniff(path)) { try ReadInIsolation.check(path) }
    do { return try ModelImport.load(path, hints: hints) } catch let refusal as ModelRefusal { throw RunFailure(description: refusal.description) }
}

/// `cellaudit __read-in-isolation FILE`: reads a model file and exits (0 read, 1 refused), so the
/// parent learns whether reading it crashes. Hidden: `readModel` runs it.
struct ReadInIsolation: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "__read-in-isolation", shouldDisplay: false)

    @Argument var model: String

    func run() throws {
        do { _ = try ModelImport.load(model) } catch { throw ExitCode(1) }
    }

    /// Runs this command on `path` in a child process.
    /// - Throws: `RunFailure` naming the file when the child dies of a signal (HDF5 crashed
    ///   reading it) or cannot be started.
    static func check(_ path: String) throws {
        let name = (path as NSString).lastPathComponent
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe")
        process.arguments = ["__read-in-isolation", path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFT_BACKTRACE"] = "enable=no"
        process.environment = environment
        do { try process.run() } catch {
            throw RunFailure(description: "\(name): could not start a process to read it in isolation: \(error)")
        }
        // HDF5 1.10 can also loop forever on a damaged file: the child gets 30 s, plus 1 s per
        // 16 MiB of file (reading the largest models takes a fraction of that);
        // CELLAUDIT_HDF5_SECONDS sets another limit (the tests' damaged files use 5).
        let size = ((try? FileManager.default.attributesOfItem(atPath: path)[.size]) as? Int) ?? 0
        var limit = 30 + size >> 24
        if let given = ProcessInfo.processInfo.environment["CELLAUDIT_HDF5_SECONDS"] {
            guard let seconds = Int(given), seconds >= 1 else {
                throw RunFailure(description: "CELLAUDIT_HDF5_SECONDS must be a whole number of seconds ≥ 1, got '\(given)'")
            }
            limit = seconds
        }
        let deadline = Date().addingTimeInterval(Double(limit))
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            process.terminate()
            usleep(100_000)
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            throw RunFailure(description: "\(name): HDF5's library did not finish reading it within \(limit) s (it loops on some damaged files): a damaged or hostile HDF5 file, which CellAudit refuses")
        }
        process.waitUntilExit()
        if process.terminationReason == .uncaughtSignal {
            throw RunFailure(description: "\(name): HDF5's library crashed reading it (signal \(process.terminationStatus)): a damaged or hostile HDF5 file, which CellAudit refuses")
        }
    }
}
