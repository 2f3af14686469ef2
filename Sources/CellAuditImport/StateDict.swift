import CellAuditCore
import Foundation

/// What a plain state dict cannot say for itself, from the command line (`--rnn-prefix`,
/// `--readout-prefix`, `--task`, `--output`, `--nonlinearity`) or from the dataset it is used with.
public struct ModelHints: Sendable, Equatable {
    /// The prefix of the recurrent module's tensors, e.g. "rnn." or "module.lstm.".
    public var rnnPrefix: String?
    /// The prefix of the readout `nn.Linear`'s tensors, e.g. "head.".
    public var readoutPrefix: String?
    public var task: ModelTask?
    public var output: OutputMode?
    /// An `nn.RNN`'s activation, which its state dict does not record: tanh or relu.
    public var nonlinearity: String?
    /// `--core`: read the recurrent stack and the linear map that reads it (if any) out of a bigger
    /// model, and list every other tensor as ignored instead of refusing the file.
    public var core = false
    /// `--bidirectional-readout`: what a last-step readout of a bidirectional stack reads, which a
    /// state dict does not record (each direction's final state, or output[:, -1]).
    public var bidirectionalReadout: FinalStateReading?
    /// `--embedding-prefix`: the prefix of the token embedding's tensor ('X.' for 'X.weight'), where
    /// its name does not say "emb" (PyTorch's word-language example calls it 'encoder.').
    public var embeddingPrefix: String?
    /// Task and output mode read off a dataset: labels [N] mean classification of the last step,
    /// targets [N, K] regression of the last step, targets [N, T, K] regression at every step.
    public var fromData: (task: ModelTask, output: OutputMode)?

    public init(rnnPrefix: String? = nil, readoutPrefix: String? = nil, task: ModelTask? = nil, output: OutputMode? = nil,
                nonlinearity: String? = nil) {
        self.rnnPrefix = rnnPrefix; self.readoutPrefix = readoutPrefix; self.task = task; self.output = output
        self.nonlinearity = nonlinearity
    }

    public static func == (a: ModelHints, b: ModelHints) -> Bool {
        a.rnnPrefix == b.rnnPrefix && a.readoutPrefix == b.readoutPrefix && a.task == b.task && a.output == b.output
            && a.nonlinearity == b.nonlinearity && a.embeddingPrefix == b.embeddingPrefix && a.core == b.core && a.bidirectionalReadout == b.bidirectionalReadout && a.fromData?.task == b.fromData?.task && a.fromData?.output == b.fromData?.output
    }

    /// Whether any of the command-line hints was given (they apply to plain state dicts only).
    public var anyFlag: Bool { rnnPrefix != nil || readoutPrefix != nil || task != nil || output != nil || nonlinearity != nil || embeddingPrefix != nil }

    /// The flags given that only a plain state dict reads (a file that states its architecture
    /// refuses them): --rnn-prefix, --readout-prefix, --output, --nonlinearity,
    /// --embedding-prefix, --bidirectional-readout.
    public var stateDictFlagsGiven: [String] {
        [("--rnn-prefix", rnnPrefix != nil), ("--readout-prefix", readoutPrefix != nil), ("--output", output != nil),
         ("--nonlinearity", nonlinearity != nil), ("--embedding-prefix", embeddingPrefix != nil),
         ("--bidirectional-readout", bidirectionalReadout != nil)].filter(\.1).map(\.0)
    }

    /// The task and output mode a dataset implies.
    public mutating func follow(_ dataset: some DatasetReader) {
        if dataset.shape.hasLabels { fromData = (.classification, .last) } else if let shape = dataset.shape.targetShape {
            fromData = (.regression, shape.count == 3 ? .sequence : .last)
        }
    }
}

/// Reads a plain PyTorch state dict saved with `safetensors.torch.save_file(model.state_dict(), …)`:
/// the architecture is inferred from PyTorch's names and shapes (`…weight_ih_l{k}`, any prefix,
/// including DataParallel's `module.`; `nn.LSTM`, `nn.GRU`, `nn.RNN`), the readout is the one
/// `nn.Linear` whose input width is the last hidden size, and every tensor in the file must be
/// one of those: a tensor the model would not use is refused by name, never dropped.
enum StateDict {
    /// The refusal of tensors left over after the stack and its readout, named for what they
    /// most likely are. With no readout found, a 2-D weight that reads another width than the
    /// last layer's `width` cells is named with what it reads (2·width: a bidirectional readout);
    /// otherwise the list of leftovers, with a hint: a second readout of the last layer
    /// (--readout-prefix chooses), or a token embedding before the stack. Nil when none is left.
    static func leftoverRefusal(_ unused: [String], file: SafeTensorsFile, width: Int, readoutFound: Bool,
                                layers count: Int, kind: CellKind) -> String? {
        guard !unused.isEmpty else { return nil }
        let shapes = Dictionary(uniqueKeysWithValues: unused.map { ($0, (try? file.info($0).shape) ?? []) })
        let isEmbedding = { (name: String) in name.lowercased().contains("emb") }
        if !readoutFound, let odd = unused.first(where: { $0.hasSuffix("weight") && shapes[$0]!.count == 2 }) {
            let shape = shapes[odd]!, reads = shape[1]
            let guess = reads == 2 * width ? " (2 × \(width): a readout of a bidirectional stack's concatenated directions?)"
                : isEmbedding(odd) ? " (a token embedding before the stack?)" : ""
            return "'\(odd)' has shape \(shape): a linear map reading \(reads) values, but the last layer has \(width) cells, so no readout reads it\(guess); "
                + "CellAudit will not audit a model with parts left out" + coreHint
        }
        let hint = unused.contains(where: { $0.hasSuffix("weight") && shapes[$0]!.count == 2 && shapes[$0]![1] == width })
            ? " (a second readout of the last layer's \(width) cells: --readout-prefix chooses one)"
            : unused.contains(where: isEmbedding) ? " (a token embedding before the recurrent stack? One is read when it is 'X.weight' of [V, I], I the first layer's input width, without a bias)" : ""
        return "\(unused.count == 1 ? "tensor" : "tensors") \(quoted(Array(unused.prefix(8))))\(unused.count > 8 ? " and \(unused.count - 8) more" : "") "
            + "\(unused.count == 1 ? "is" : "are") not part of the \(count)-layer \(kind.rawValue) and its readout that CellAudit inferred; "
            + "it will not audit a model with parts left out" + hint + coreHint
    }

    /// How to audit the recurrent stack of a bigger model anyway.
    static let coreHint = "; --core audits the recurrent stack alone (and the linear map that reads it), listing the rest as ignored"

    static func load(_ file: SafeTensorsFile, path: String, hints: ModelHints) throws -> LoadedModel {
        let name = file.fileName
        func fail(_ problem: String) -> FormatError { FormatError(file: name, problem) }
        let keys = Set(file.tensors.keys)
        // The recurrent module: every prefix with a weight_ih_l0.
        let candidates = keys.filter { $0.hasSuffix("weight_ih_l0") }.map { String($0.dropLast("weight_ih_l0".count)) }.sorted()
        let prefix: String
        if let wanted = hints.rnnPrefix {
            guard candidates.contains(wanted) else {
                throw fail("--rnn-prefix '\(wanted)': no '\(wanted)weight_ih_l0' in the file"
                           + (candidates.isEmpty ? "" : " (recurrent modules found: \(quoted(candidates)))"))
            }
            prefix = wanted
        } else {
            guard let only = candidates.first else {
                throw fail("no CellAudit metadata and no PyTorch recurrent layer ('…weight_ih_l0') to infer the network from")
            }
            guard candidates.count == 1 else {
                throw fail("several recurrent modules (\(quoted(candidates))): give --rnn-prefix with one of them")
            }
            prefix = only
        }
        var used = Set<String>()
        func tensor(_ suffix: String) -> String? {
            keys.contains(prefix + suffix) ? prefix + suffix : nil
        }
        // Layers 0, 1, … as long as they exist; what PyTorch adds for features we cannot represent is refused.
        var count = 0
        while tensor("weight_ih_l\(count)") != nil { count += 1 }
        // bidirectional=True: every layer has a second, reverse direction ('…_l{k}_reverse').
        let bidirectional = tensor("weight_ih_l0_reverse") != nil
        let directions: [TimeDirection] = bidirectional ? [.forward, .reverse] : [.forward]
        // proj_size: every layer's h is projected by 'weight_hr_l{k}' [P, H] (METHOD.md §8).
        let projected = tensor("weight_hr_l0") != nil
        for k in 0..<count {
            if (tensor("weight_ih_l\(k)_reverse") != nil) != bidirectional {
                throw fail("layer \(k) of '\(prefix)' \(bidirectional ? "has no" : "has a") reverse direction but layer 0 \(bidirectional ? "has one" : "does not"): not one nn.LSTM, nn.GRU or nn.RNN")
            }
            for direction in directions where (tensor("weight_hr_l\(k)\(direction == .reverse ? "_reverse" : "")") != nil) != projected {
                throw fail("layer \(k)\(direction == .reverse ? " (reverse)" : "") of '\(prefix)' \(projected ? "has no" : "has an") output projection '\(prefix)weight_hr_l\(k)\(direction == .reverse ? "_reverse" : "")' but layer 0 \(projected ? "has one" : "does not"): not one nn.LSTM")
            }
        }
        var first = try file.info(prefix + "weight_hh_l0").shape
        if projected {
            // weight_hh is [4H, P]; H comes from weight_hr [P, H].
            let hr = try file.info(prefix + "weight_hr_l0").shape
            guard hr.count == 2, hr[0] >= 1, hr[1] > hr[0], first == [4 * hr[1], hr[0]] else {
                throw fail("'\(prefix)weight_hr_l0' has shape \(hr) and '\(prefix)weight_hh_l0' \(first): not the [P, H] and [4H, P] of an nn.LSTM with proj_size P < H")
            }
            first = [4 * hr[1], hr[1]]
        }
        guard first.count == 2, first[1] >= 1, first[0] % first[1] == 0, [1, 3, 4].contains(first[0] / first[1]) else {
            throw fail("'\(prefix)weight_hh_l0' has shape \(first): not the [G·H, H] of an nn.LSTM (G = 4), nn.GRU (3) or nn.RNN (1)")
        }
        let kind: CellKind
        switch first[0] / first[1] {
        case 4: kind = .lstm
        case 3: kind = .gru
        default:
            guard let nl = hints.nonlinearity else {
                throw fail("an nn.RNN state dict does not record its nonlinearity: give --nonlinearity tanh or relu")
            }
            guard nl == "tanh" || nl == "relu" else { throw fail("--nonlinearity must be tanh or relu, got '\(nl)'") }
            kind = nl == "relu" ? .rnnReLU : .rnnTanh
        }
        if kind != .rnnTanh && kind != .rnnReLU, let nl = hints.nonlinearity {
            throw fail("--nonlinearity \(nl) applies to nn.RNN; '\(prefix)' is an nn.\(kind == .lstm ? "LSTM" : "GRU")")
        }
        let inputSize = try file.info(prefix + "weight_ih_l0").shape.last ?? 0
        var levels: [[RecurrentLayer]] = []
        var width = inputSize
        // With proj_size: the width of the projected outputs the next level's tensors read (P per
        // direction), and each direction's projection of the level below, [P, H] row-major.
        var projectedWidth = inputSize
        var projections: [Projection] = []
        for k in 0..<count {
          var level: [RecurrentLayer] = []
          var levelProjections: [Projection] = []
          for direction in directions {
            let names = ModelFile.tensorNames(.pytorch, kind: kind, prefix: prefix, layer: k, direction: direction)
            let biases = names[2...].filter { keys.contains($0) }
            guard biases.isEmpty || biases.count == 2 else {
                throw fail("layer \(k) has \(biases[0]) but not its partner: a PyTorch layer has both biases or neither (bias=False)")
            }
            if projected {
                // h_t = W_hr (o ⊙ tanh c_t): folded into every map that reads h (the layer's own
                // R, the next level's W, the readout), so the network's cells are the H memory
                // cells and its state (m = o ⊙ tanh c, c); exact up to float rounding.
                let hrName = prefix + "weight_hr_l\(k)\(direction == .reverse ? "_reverse" : "")"
                let hrShape = try file.info(hrName).shape
                guard hrShape.count == 2, hrShape[1] > hrShape[0], hrShape[0] >= 1 else {
                    throw fail("'\(hrName)' has shape \(hrShape): not the [P, H] of a projection to P < H")
                }
                let (P, h) = (hrShape[0], hrShape[1])
                // One proj_size for the whole module: every projection has P rows.
                let firstP = try file.info(prefix + "weight_hr_l0").shape.first ?? P
                guard P == firstP else {
                    throw fail("'\(hrName)' has shape \(hrShape) but '\(prefix)weight_hr_l0' projects to \(firstP): not one nn.LSTM (proj_size is one number)")
                }
                let hr = try file.floats(hrName, shape: [P, h])
                try ModelFile.checkFinite(hr, "projection '\(hrName)'", fail)
                let rows = 4 * h
                var W = try file.floats(names[0], shape: [rows, projectedWidth])
                if k > 0 { W = fold(W, rows: rows, by: projections) }
                let R = fold(try file.floats(names[1], shape: [rows, P]), rows: rows, by: [Projection(P: P, H: h, weight: hr)])
                let b = biases.isEmpty ? [Float](repeating: 0, count: rows)
                    : zip(try file.floats(names[2], shape: [rows]), try file.floats(names[3], shape: [rows])).map(+)
                for values in [W, R, b] {
                    try ModelFile.checkFinite(values, "layer \(k)\(direction == .reverse ? " (reverse)" : "") of '\(prefix)'", fail)
                }
                var layer = try RecurrentLayer(kind: kind, inputSize: width, hiddenSize: h, W: W, R: R, b: b)
                layer.direction = direction
                level.append(layer)
                levelProjections.append(Projection(P: P, H: h, weight: hr))
                used.formUnion(names.filter { keys.contains($0) } + [hrName])
                continue
            }
            let h = try file.info(names[1]).shape.last ?? 0
            let weights: ModelFile.CanonicalWeights
            if biases.isEmpty {
                // bias=False: the same cell with zero biases, exactly.
                let rows = kind.gateCount * h
                weights = .init(W: try file.floats(names[0], shape: [rows, width]), R: try file.floats(names[1], shape: [rows, h]),
                                b: [Float](repeating: 0, count: rows), bhn: kind == .gru ? [Float](repeating: 0, count: h) : nil)
            } else {
                weights = try ModelFile.canonicalWeights(file, kind: kind, convention: .pytorch, prefix: prefix, layer: k,
                                                         direction: direction, input: width, hidden: h, resetAfter: true)
            }
            for values in [weights.W, weights.R, weights.b, weights.bhn ?? []] {
                try ModelFile.checkFinite(values, "layer \(k)\(direction == .reverse ? " (reverse)" : "") of '\(prefix)'", fail)
            }
            var layer = try RecurrentLayer(kind: kind, inputSize: width, hiddenSize: h, W: weights.W, R: weights.R, b: weights.b,
                                           hiddenBiasN: weights.bhn)
            layer.direction = direction
            level.append(layer)
            used.formUnion(names.filter { keys.contains($0) })
          }
          levels.append(level)
          width = level.reduce(0) { $0 + $1.hiddenSize }
          if projected {
              projections = levelProjections
              projectedWidth = levelProjections.reduce(0) { $0 + $1.P }
          } else {
              projectedWidth = width
          }
        }
        // A token embedding before the stack: an nn.Embedding's 'X.weight' [V, I] (no bias), I the
        // first layer's input width, named "emb…" or given by --embedding-prefix.
        let embeddings = modulePrefixes(keys, excluding: used) { key in
            !keys.contains(String(key.dropLast("weight".count)) + "bias")
                && (try? file.info(key).shape).map { $0.count == 2 && $0[0] >= 1 && $0[1] == inputSize } == true
        }
        let embeddingPrefix = try choose(hints.embeddingPrefix, flag: "--embedding-prefix", shape: "[V, \(inputSize)] without a bias",
                                         among: embeddings, unless: embeddings.filter { $0.lowercased().contains("emb") }, fail) { named in
            "several token embeddings could feed '\(prefix)' (\(quoted(named))): give --embedding-prefix with one of them"
        }
        var embedding: TokenEmbedding?
        if let e = embeddingPrefix {
            let shape = try file.info(e + "weight").shape
            let table = try file.floats(e + "weight")
            try ModelFile.checkFinite(table, "token embedding '\(e)weight'", fail)
            embedding = try TokenEmbedding(vocabularySize: shape[0], width: shape[1], table: table, source: e + "weight")
            used.insert(e + "weight")
        }
        // The readout: an nn.Linear ('X.weight' [K, H_last], optional 'X.bias' [K]) outside the
        // recurrent module; under --core also a 1×1 nn.Conv1d ('X.weight' [K, H_last, 1]), the same map.
        let linears = modulePrefixes(keys, excluding: used) { key in
            (try? file.info(key).shape).map { s in
                (s.count == 2 && s[1] == projectedWidth) || (hints.core && s.count == 3 && s[1] == projectedWidth && s[2] == 1)
            } == true
        }
        var readout: RecurrentNetwork.Readout?
        var readoutPrefix = try choose(hints.readoutPrefix, flag: "--readout-prefix", shape: "[K, \(projectedWidth)]", among: linears, unless: linears, fail) {
            "several nn.Linear layers read the last layer's \(projectedWidth) \(projected ? "projected outputs" : "cells") (\(quoted($0))): CellAudit audits one readout and will not leave the others out; save a state dict with only the readout to audit"
        }
        var readoutNote: String?
        if hints.core, let r = readoutPrefix {
            // A linear map whose outputs something else reads is the first layer of a deeper
            // head: its outputs are not the model's, so the core gets no readout.
            let k = (try file.info(r + "weight").shape)[0]
            let after = keys.subtracting(used).subtracting([r + "weight", r + "bias"]).sorted()
            if let next = after.first(where: { $0.hasSuffix("weight") && ((try? file.info($0).shape).map { $0.count >= 2 && $0[1] == k } ?? false) }) {
                readoutNote = "the linear map '\(r)' reads the last layer, but '\(next)' reads its \(k) outputs (a deeper head, which --core leaves out), so the core has no readout"
                readoutPrefix = nil
            }
        } else if hints.core && readoutPrefix == nil {
            readoutNote = "no linear map reads the last layer's \(projectedWidth) \(projected ? "projected outputs" : "cells"), so the core has no readout"
        }
        if let r = readoutPrefix {
            var V = try file.floats(r + "weight")
            let k = V.count / projectedWidth
            if projected { V = fold(V, rows: k, by: projections) }
            var a = [Float](repeating: 0, count: k)
            if keys.contains(r + "bias") { a = try file.floats(r + "bias", shape: [k]); used.insert(r + "bias") }
            try ModelFile.checkFinite(V, "readout '\(r)weight'", fail)
            try ModelFile.checkFinite(a, "readout '\(r)bias'", fail)
            readout = .init(V: V, a: a)
            used.insert(r + "weight")
        }
        let output = hints.output ?? hints.fromData?.output ?? .last
        if bidirectional, readout != nil {
            // Which states a last-step readout reads is in the model's forward code, not in its
            // state dict: asked, never guessed (at every step both directions read output[:, t]).
            if let reading = hints.bidirectionalReadout {
                readout!.reading = reading
            } else if output == .last {
                throw fail("a bidirectional '\(prefix)' whose readout '\(readoutPrefix ?? "")' reads the last step: its state dict does not say which states that is; give --bidirectional-readout final-states (code that reads cat(h_n[-2], h_n[-1]): each direction after its last step) or last-step (code that reads output[:, -1]: the reverse direction after its first step)")
            }
        }
        // Every tensor accounted for: refused, or under --core listed as ignored.
        let unused = keys.subtracting(used).sorted()
        if !hints.core, let refusal = leftoverRefusal(unused, file: file, width: width, readoutFound: readout != nil, layers: count, kind: kind) {
            throw fail(refusal)
        }
        let task = hints.task ?? hints.fromData?.task ?? .classification
        var metadata = ["convention": "pytorch", "cell": kind.rawValue, "prefix": prefix, "layers": "\(count)",
                        "inferred_from": "state dict", "readout_prefix": readoutPrefix ?? ""]
        if hints.core { metadata["core"] = "true" }
        if bidirectional { metadata["bidirectional"] = "true" }
        if projected { metadata["projection"] = "\(projectedWidth / directions.count)" }
        if let embeddingPrefix { metadata["embedding_prefix"] = embeddingPrefix }
        var model = LoadedModel(network: try RecurrentNetwork(levels: levels, readout: readout), convention: .pytorch, output: output,
                                task: task, metadata: metadata, path: path)
        model.embedding = embedding
        if hints.core {
            model.ignored = unused.map { name in "\(name) \((try? file.info(name).shape).map { "\($0)" } ?? "")" }
            model.readoutNote = readoutNote
        }
        return model
    }

    /// An output projection of one direction: h = W_hr m, W_hr [P, H] row-major.
    struct Projection { var P: Int, H: Int, weight: [Float] }

    /// A map [rows, Σ P_d] that reads the projected outputs of a level's directions, folded into
    /// the map [rows, Σ H_d] that reads the cells behind them: M · blockdiag(W_hr_d). Products
    /// are summed in Double and rounded once.
    static func fold(_ M: [Float], rows: Int, by projections: [Projection]) -> [Float] {
        let inWidth = projections.reduce(0) { $0 + $1.P }, outWidth = projections.reduce(0) { $0 + $1.H }
        var out = [Float](repeating: 0, count: rows * outWidth)
        for r in 0..<rows {
            var inBase = 0, outBase = 0
            for p in projections {
                for j in 0..<p.H {
                    var sum = 0.0
                    for q in 0..<p.P { sum += Double(M[r * inWidth + inBase + q]) * Double(p.weight[q * p.H + j]) }
                    out[r * outWidth + outBase + j] = Float(sum)
                }
                inBase += p.P; outBase += p.H
            }
        }
        return out
    }

    /// The module prefixes ('X.' of 'X.weight') of the unused weights that pass `accepts`, sorted.
    private static func modulePrefixes(_ keys: Set<String>, excluding used: Set<String>, _ accepts: (String) -> Bool) -> [String] {
        keys.filter { $0.hasSuffix("weight") && !used.contains($0) && accepts($0) }.map { String($0.dropLast("weight".count)) }.sorted()
    }

    /// The prefix `wanted` (given by `flag`), which must be one of `candidates` (the refusal lists
    /// them); without it, the one of `chosen` (the candidates taken without a flag), nil for none,
    /// and refused by `ambiguous` for several.
    private static func choose(_ wanted: String?, flag: String, shape: String, among candidates: [String], unless chosen: [String],
                               _ fail: (String) -> FormatError, ambiguous: ([String]) -> String) throws -> String? {
        guard let wanted else {
            guard chosen.count <= 1 else { throw fail(ambiguous(chosen)) }
            return chosen.first
        }
        guard candidates.contains(wanted) else {
            throw fail("\(flag) '\(wanted)': no '\(wanted)weight' of shape \(shape) in the file"
                       + (candidates.isEmpty ? "" : " (candidates: \(quoted(candidates)))"))
        }
        return wanted
    }

    private static func quoted(_ names: [String]) -> String { names.map { "'\($0)'" }.joined(separator: ", ") }
}
