import Foundation

/// The framework whose tensor names and layouts a model file uses (METHOD.md §1).
public enum Convention: String, Sendable, CaseIterable {
    case pytorch, keras, onnx
}

/// How the readout is applied: to the last step (`last`) or to every step (`sequence`).
public enum OutputMode: String, Sendable, CaseIterable { case last, sequence }

public enum ModelTask: String, Sendable, CaseIterable { case classification, regression }

/// A network loaded from a model file, in the canonical layout, with what the file said of it.
public struct LoadedModel: Sendable {
    public var network: RecurrentNetwork
    public var convention: Convention
    public var output: OutputMode
    public var task: ModelTask
    public var metadata: [String: String]
    public var path: String
    /// What `--core` left out of the file (tensor names, with a note where the reader knows what
    /// they are): everything outside the recurrent stack and the linear map that reads it. Empty
    /// without `--core`, where such parts are refused instead.
    public var ignored: [String] = []
    /// The token embedding before the first recurrent layer, if the model has one: its data are
    /// token ids [N, T], embedded before anything runs (`Dataset.prepare(for:)`).
    public var embedding: TokenEmbedding?
    /// The number of steps every sequence runs when the model fixes it (an ONNX node's constant,
    /// uniform `sequence_lens`): the data's lengths are cut to it (`Dataset.prepare(for:)`).
    public var sequenceLength: Int?
    /// Why the model has no readout when `--core` found none or left one out, for messages and reports.
    public var readoutNote: String?
    /// The model file's name, for messages.
    public var fileName: String { (path as NSString).lastPathComponent }

    /// The shape of the readout's values on `sequences` sequences of `steps` steps: [N, K] read
    /// at the last step, [N, T, K] at every step (K: the readout's outputs, 0 without one).
    public func outputShape(sequences: Int, steps: Int) -> [Int] {
        let k = network.readout?.outputs ?? 0
        return output == .last ? [sequences, k] : [sequences, steps, k]
    }

    public init(network: RecurrentNetwork, convention: Convention, output: OutputMode, task: ModelTask,
                metadata: [String: String], path: String) {
        self.network = network; self.convention = convention; self.output = output; self.task = task
        self.metadata = metadata; self.path = path
    }

    public var parameterCount: Int {
        network.layers.reduce(0) { $0 + $1.parameterCount }
            + (network.readout.map { $0.V.count + $0.a.count } ?? 0) + (embedding?.table.count ?? 0)
    }
}
