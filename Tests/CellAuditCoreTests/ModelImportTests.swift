import CellAuditCore
import CellAuditImport
import CellAuditOpenCL
import Foundation
import Testing
import TestSupport

func backendsUnderTest() throws -> [any ComputeBackend] {
    var list: [any ComputeBackend] = [CPUBackend()]
    if OpenCLTestSupport.enabled {
        list.append(try OpenCLBackend(device: try OpenCLTestSupport.device(), canaryPadding: 29))
    }
    return list
}

func maxDifference(_ a: some Collection<Float>, _ b: some Collection<Float>) -> Float {
    zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
}

@Suite struct FixtureForwardTests {
    /// Every trained fixture, on every backend, reproduces its framework's outputs, hidden
    /// states and accuracy or MSE.
    @Test(arguments: Fixtures.digitsModels.map { ($0, "digits_test") } + Fixtures.flipflopModels.map { ($0, "flipflop_test") })
    func backendsReproduceTheFramework(model: String, data: String) throws {
        let loaded = try ModelFile.load(Fixtures.path(model + ".safetensors"))
        let file = try SafeTensorsFile(path: Fixtures.path(model + ".safetensors"))
        let golden = try file.floats("golden.outputs")
        let goldenHidden = try file.floats("golden.hidden")
        let dataset = try Dataset.load(Fixtures.path(data + ".safetensors"))
        let job = try ForwardJob(network: loaded.network, inputs: dataset.inputs, output: loaded.output)
        for backend in try backendsUnderTest() {
            let result = try backend.forward(job)
            #expect(result.outputs.count == golden.count)
            let worst = maxDifference(result.outputs, golden)
            #expect(worst <= Tolerance.forward, "\(model) on \(backend.identity): max |Δ| = \(worst)")
            let h = loaded.network.layers.last!.hiddenSize
            let hidden = result.hidden.prefix(4 * dataset.inputs.steps * h)
            #expect(maxDifference(hidden, goldenHidden) <= Tolerance.forward, "\(model) hidden on \(backend.identity)")
            let score = try Score.of(result, dataset: dataset, task: loaded.task, output: loaded.output)
            if let accuracy = file.metadata["golden_accuracy"].flatMap(Double.init) {
                #expect(abs(score.value - accuracy) < 1e-9, "\(model): \(score.value) vs \(accuracy)")
                #expect(score.value > 0.9, "\(model): accuracy \(score.value)")
            }
            if let mse = file.metadata["golden_mse"].flatMap(Double.init) {
                #expect(abs(score.value - mse) < 1e-4)
            }
        }
    }

    @Test func threeConventionsLoadTheSameNetwork() throws {
        let torch = try ModelFile.load(Fixtures.path("digits_lstm16.safetensors"))
        let keras = try ModelFile.load(Fixtures.path("digits_lstm16_keras.safetensors"))
        let onnx = try ModelFile.load(Fixtures.path("digits_lstm16_onnx.safetensors"))
        #expect((torch.convention, keras.convention, onnx.convention) == (.pytorch, .keras, .onnx))
        for other in [keras, onnx] {
            let a = torch.network.layers[0], b = other.network.layers[0]
            #expect(maxDifference(a.W, b.W) == 0)
            #expect(maxDifference(a.R, b.R) == 0)
            #expect(maxDifference(a.b, b.b) <= 1e-6)
            #expect(maxDifference(torch.network.readout!.V, other.network.readout!.V) == 0)
        }
    }
}

@Suite struct AblationMaskTests {
    /// Ablation on every backend reproduces PyTorch's own scores with the same cells zeroed
    /// (stored by Tools/train_fixtures.py as golden_ablation).
    @Test(arguments: [("digits_lstm16", "digits_test"), ("digits_lstm64", "digits_test"),
                      ("digits_lstm32x2", "digits_test"), ("flipflop_lstm64", "flipflop_test"),
                      ("digits_gru16", "digits_test"), ("flipflop_gru32", "flipflop_test"),
                      ("digits_rnn16", "digits_test"), ("flipflop_rnn32", "flipflop_test")])
    func ablationMatchesPyTorch(model: String, data: String) throws {
        let file = try SafeTensorsFile(path: Fixtures.path(model + ".safetensors"))
        struct Entry: Decodable { var cells: [Int]; var score: Double }
        let golden = try JSONDecoder().decode([Entry].self, from: Data(try #require(file.metadata["golden_ablation"]).utf8))
        #expect(golden.count >= 4)
        let loaded = try ModelFile.load(Fixtures.path(model + ".safetensors"))
        let dataset = try Dataset.load(Fixtures.path(data + ".safetensors"))
        let cells = loaded.network.cellCount
        let job = try ForwardJob(network: loaded.network, inputs: dataset.inputs, output: loaded.output,
                                 masks: golden.map { .ablating($0.cells, of: cells) })
        for backend in try backendsUnderTest() {
            let result = try backend.forward(job)
            for (k, entry) in golden.enumerated() {
                let score = try Score.of(result, config: k, dataset: dataset, task: loaded.task, output: loaded.output)
                let tolerance = loaded.task == .classification ? 1.5 / Double(dataset.inputs.count) : 1e-4
                #expect(abs(score.value - entry.score) <= tolerance, "\(model) \(backend.identity) cells \(entry.cells.count): \(score.value) vs \(entry.score)")
            }
        }
    }

    @Test func masksAgreeAcrossBackendsAndEdgeCasesHold() throws {
        let loaded = try ModelFile.load(Fixtures.path("digits_lstm32x2.safetensors"))
        let data = try Dataset.load(Fixtures.path("digits_test.safetensors"))
        let inputs = try SequenceBatch(count: 37, steps: data.inputs.steps, width: data.inputs.width,
                                       values: Array(data.inputs.values.prefix(37 * 64)))
        let cells = loaded.network.cellCount
        var rng = SeededGenerator(seed: 11)
        let masks: [CellMask] = [.none(cells: cells), .ablating(0..<cells, of: cells)]
            + (0..<5).map { _ in .ablating((0..<cells).filter { _ in rng.uniform(0, 1) < 0.3 }, of: cells) }
        let job = try ForwardJob(network: loaded.network, inputs: inputs, output: .last, masks: masks)
        let results = try backendsUnderTest().map { try $0.forward(job) }
        let k = 10, per = 37 * k
        for result in results {
            #expect(result.shape == [masks.count, 37, k])
            #expect(maxDifference(result.outputs, results[0].outputs) <= Tolerance.forward)
            // Configuration 0 (nothing ablated) equals a plain forward pass.
            let plain = try CPUBackend().forward(try ForwardJob(network: loaded.network, inputs: inputs, output: .last))
            #expect(maxDifference(result.outputs.prefix(per), plain.outputs) <= Tolerance.forward)
            // Every cell ablated: the readout bias alone.
            let allOff = result.outputs[per..<(2 * per)]
            for (i, v) in allOff.enumerated() { #expect(v == loaded.network.readout!.a[i % k]) }
        }
        // A working set too small for two configurations runs them one slice at a time; BLAS may
        // block the smaller products differently, so the result agrees to rounding.
        let sliced = try CPUBackend(forwardWorkingSetBytes: 1).forward(job)
        #expect(sliced.shape == results[0].shape)
        #expect(maxDifference(sliced.outputs, results[0].outputs) <= Tolerance.forward)
        #expect(maxDifference(sliced.hidden, results[0].hidden) <= Tolerance.forward)
    }
}

@Suite struct SafeTensorsTests {
    @Test func roundTripsAndConvertsHalfFormats() throws {
        var writer = SafeTensorsWriter(metadata: ["note": "test"])
        let values = RandomInputs.floats(93, seed: 4)
        try writer.add("a", floats: values, shape: [3, 31])
        try writer.add("ints", int64s: [3, -1, 7], shape: [3])
        // 1.5, -2, 65504 as F16; 1.5 as BF16; 0.1 as F64.
        try writer.add("half", dtype: .F16, shape: [3], bytes: Data([0x00, 0x3E, 0x00, 0xC0, 0xFF, 0x7B]))
        try writer.add("bf", dtype: .BF16, shape: [1], bytes: Data([0xC0, 0x3F]))
        var d = Data(); withUnsafeBytes(of: (0.1).bitPattern.littleEndian) { d.append(contentsOf: $0) }
        try writer.add("f64", dtype: .F64, shape: [1], bytes: d)
        let file = try SafeTensorsFile(data: try writer.serialized())
        #expect(file.metadata == ["note": "test"])
        #expect(try file.floats("a", shape: [3, 31]) == values)
        #expect(try file.integers("ints") == [3, -1, 7])
        #expect(try file.floats("half") == [1.5, -2, 65504])
        #expect(try file.floats("bf") == [1.5])
        #expect(try file.floats("f64") == [Float(0.1)])
        #expect(throws: FormatError.self) { try file.floats("a", shape: [31, 3]) }
        #expect(throws: FormatError.self) { try file.floats("ints") }
        #expect(throws: FormatError.self) { try file.floats("missing") }
    }
}

/// Builds a safetensors file from a header text and a data section.
func rawFile(header: String, data: Data = Data(), lengthOverride: UInt64? = nil) -> Data {
    var out = Data()
    let h = Data(header.utf8)
    withUnsafeBytes(of: (lengthOverride ?? UInt64(h.count)).littleEndian) { out.append(contentsOf: $0) }
    out.append(h)
    out.append(data)
    return out
}

@Suite struct BadInputTests {
    @Test(arguments: [
        ("truncated", Data([1, 2, 3]), "shorter than"),
        ("header longer than file", rawFile(header: "{}", lengthOverride: 1000), "larger than"),
        ("huge header length", rawFile(header: "{}", lengthOverride: UInt64(1) << 40), "exceeds"),
        ("not JSON", rawFile(header: "{not json"), "not JSON"),
        ("unknown dtype", rawFile(header: #"{"a":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}}"#, data: Data([0])), "unknown dtype"),
        ("out of range", rawFile(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: Data(count: 4)), "outside"),
        ("overlap", rawFile(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}"#, data: Data(count: 6)), "overlaps"),
        ("gap", rawFile(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: Data(count: 8)), "belong to no tensor"),
        ("count mismatch", rawFile(header: #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: Data(count: 8)), "needs 12"),
        ("metadata not strings", rawFile(header: #"{"__metadata__":{"a":1}}"#), "not a string"),
    ])
    func malformedSafeTensorsAreRefused(name: String, bytes: Data, mention: String) throws {
        let error = try #require(throws: FormatError.self) { try SafeTensorsFile(data: bytes, path: "bad.safetensors") }
        #expect(error.description.contains(mention), "\(name): \(error)")
        #expect(error.description.hasPrefix("bad.safetensors:"))
        #expect(!error.description.contains("\n"))
    }

    /// A model file from the real fixture with one tensor replaced.
    func modelVariant(_ edit: (inout [String: (DType, [Int], Data)], inout [String: String]) -> Void) throws -> String {
        let source = try SafeTensorsFile(path: Fixtures.path("digits_lstm8.safetensors"))
        var tensors: [String: (DType, [Int], Data)] = [:]
        for (name, info) in source.tensors {
            tensors[name] = (info.dtype, info.shape, try source.withBytes(name) { Data($0) })
        }
        var metadata = source.metadata
        edit(&tensors, &metadata)
        var writer = SafeTensorsWriter(metadata: metadata)
        for (name, t) in tensors.sorted(by: { $0.key < $1.key }) { try writer.add(name, dtype: t.0, shape: t.1, bytes: t.2) }
        let path = try Fixtures.scratch("model").appendingPathComponent("variant.safetensors").path
        try writer.write(to: path)
        return path
    }

    @Test func nanWeightIsNamed() throws {
        let path = try modelVariant { tensors, _ in
            var (dtype, shape, data) = tensors["lstm.weight_hh_l0"]!
            data.replaceSubrange(40..<44, with: withUnsafeBytes(of: Float.nan.bitPattern.littleEndian) { Data($0) })
            tensors["lstm.weight_hh_l0"] = (dtype, shape, data)
            _ = shape
        }
        let error = try #require(throws: FormatError.self) { try ModelFile.load(path) }
        #expect("\(error)".contains("recurrent weights (lstm.weight_hh_l0)"), "\(error)")
        #expect("\(error)".contains("nan"))
    }

    @Test func missingAndMisshapenTensorsAreNamed() throws {
        let missing = try modelVariant { tensors, _ in tensors["lstm.bias_ih_l0"] = nil }
        #expect("\(try #require(throws: FormatError.self) { try ModelFile.load(missing) })".contains("missing tensor 'lstm.bias_ih_l0'"))
        let misshapen = try modelVariant { tensors, _ in
            let (dtype, _, data) = tensors["lstm.weight_ih_l0"]!
            tensors["lstm.weight_ih_l0"] = (dtype, [8, 32], data)
        }
        #expect("\(try #require(throws: FormatError.self) { try ModelFile.load(misshapen) })".contains("lstm.weight_ih_l0' has shape [8, 32]"))
        let noConvention = try modelVariant { _, meta in meta["convention"] = nil }
        #expect("\(try #require(throws: FormatError.self) { try ModelFile.load(noConvention) })".contains("convention"))
        // An LSTM's tensors labelled as a GRU: the GRU's own tensors are missing, and the error says which.
        let gru = try modelVariant { _, meta in meta["cell"] = "gru"; meta["prefix"] = nil }
        #expect("\(try #require(throws: FormatError.self) { try ModelFile.load(gru) })".contains("gru.weight_ih_l0"))
        let mislabelled = try modelVariant { _, meta in meta["cell"] = "gru" }
        #expect("\(try #require(throws: FormatError.self) { try ModelFile.load(mislabelled) })".contains("has shape"))
    }

    @Test func datasetProblemsAreRefused() throws {
        let model = try ModelFile.load(Fixtures.path("digits_lstm8.safetensors"))
        let flip = try Dataset.load(Fixtures.path("flipflop_test.safetensors"))
        let error = try #require(throws: DataError.self) {
            try ForwardJob(network: model.network, inputs: flip.inputs, output: .last)
        }
        // A data problem is called one, not a bad model shape.
        #expect("\(error)" == "bad data: the data has 3 input channels but the model takes 8")
        var writer = SafeTensorsWriter()
        try writer.add("inputs", floats: [], shape: [0, 8, 8])
        try writer.add("labels", int64s: [], shape: [0])
        let empty = try Fixtures.scratch("data").appendingPathComponent("empty.safetensors").path
        try writer.write(to: empty)
        #expect("\(try #require(throws: FormatError.self) { try Dataset.load(empty) })".contains("empty"))
        // A finite F64 beyond Float32's range is named, not turned into inf.
        var big = SafeTensorsWriter()
        var bytes = Data()
        for v in [1.0, 3.0e39, 2.0] { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
        try big.add("inputs", dtype: .F64, shape: [1, 1, 3], bytes: bytes)
        try big.add("labels", int64s: [0], shape: [1])
        let overflow = try Fixtures.scratch("data").appendingPathComponent("overflow.safetensors").path
        try big.write(to: overflow)
        #expect("\(try #require(throws: FormatError.self) { try Dataset.load(overflow) })"
                == "overflow.safetensors: tensor 'inputs' holds 3e+39 at element 1, which does not fit a 32-bit float")
    }
}

/// Cases from ../shared/cases (copied into Tests/Fixtures/cases): read exactly or refused clearly.
@Suite struct SharedCaseTests {
    /// st-dup-tensor-key: a header that lists `fc.bias` twice is refused, naming the key.
    @Test func aDuplicatedTensorKeyIsNamed() throws {
        let error = try #require(throws: FormatError.self) { try ModelFile.load(Fixtures.path("cases/st-dup-tensor-key.safetensors")) }
        #expect("\(error)".contains("the header lists 'fc.bias' more than once"), "\(error)")
    }

    /// pt-bidirectional: the `_reverse` tensors are named and the file refused, never half-read.
    @Test func aBidirectionalStateDictIsRefusedNamingTheReverseTensors() throws {
        let error = try #require(throws: FormatError.self) { try ModelFile.load(Fixtures.path("cases/pt-bidirectional.safetensors")) }
        #expect("\(error)".contains("lstm.weight_ih_l0_reverse") && "\(error)".contains("bidirectional"), "\(error)")
    }

    /// The duplicate-key scan looks at the top level only, and strings with braces or escaped
    /// quotes do not confuse it.
    @Test func duplicateKeyScan() {
        func dup(_ s: String) -> String? { SafeTensorsFile.duplicateTopLevelKey(Data(s.utf8)) }
        #expect(dup(#"{"a": {"x": 1, "x": 2}, "b": [1, {"a": 3}]}"#) == nil)
        #expect(dup(#"{"a\"}": 1, "b": "{\"a\": 1}", "a\"}": 2}"#) == #"a\"}"#)
        #expect(dup(#"{"__metadata__": {"k": "v"}, "w": {"dtype": "F32"}, "w": {}}"#) == "w")
    }
}

/// The forward projects each layer's inputs a block of steps at a time (CPUBackend
/// `projectionBlockBytes`): blocks of a single step give the result of one block, for every kind,
/// two layers, a plain pass, a masked pass with a shared layer-0 projection (non-zero clamp) and
/// the per-configuration pass of plain ablation, with and without the hidden states.
@Suite struct ProjectionBlockTests {
    @Test(arguments: [(CellKind.lstm, true), (.gru, true), (.gru, false), (.rnnTanh, true), (.rnnReLU, true)])
    func blocksOfOneStepEqualOneBlock(_ kind: CellKind, _ resetAfter: Bool) throws {
        let network = try RecurrentNetwork.random(kind: kind, seed: 21, inputSize: 3, hiddenSizes: [11, 6], outputs: 2,
                                                  scale: kind == .rnnReLU ? 0.9 : 2, resetAfter: resetAfter)
        var rng = SeededGenerator(seed: 22)
        let n = 5, steps = 7, cells = network.cellCount
        let inputs = try SequenceBatch(count: n, steps: steps, width: 3, values: (0..<(n * steps * 3)).map { _ in rng.uniform(-1.5, 1.5) })
        let masks: [CellMask] = [.none(cells: cells), .ablating([1, 4, 12], of: cells), .ablating(0..<11, of: cells)]
        let clamp = (h: (0..<cells).map { Float($0) * 0.05 - 0.2 }, c: (0..<cells).map { Float($0) * -0.03 })
        let whole = CPUBackend(), stepwise = CPUBackend(projectionBlockBytes: 1)
        for (m, c) in [(nil, nil), (masks, nil), (masks, clamp)] as [([CellMask]?, (h: [Float], c: [Float])?)] {
            for output in [OutputMode.sequence, .last] {
                for keepsHidden in [true, false] {
                    var job = try ForwardJob(network: network, inputs: inputs, output: output, masks: m, clamp: c)
                    job.keepsHidden = keepsHidden
                    let a = try whole.forward(job), b = try stepwise.forward(job)
                    #expect(a.shape == b.shape && a.outputs.count == b.outputs.count && a.hidden.count == b.hidden.count)
                    let finite = a.outputs.allSatisfy { $0.isFinite }
                    #expect(finite)
                    #expect(maxDifference(a.outputs, b.outputs) <= Tolerance.forward, "\(kind) masks \(m != nil) clamp \(c != nil) \(output)")
                    if !a.hidden.isEmpty { #expect(maxDifference(a.hidden, b.hidden) <= Tolerance.forward) }
                }
            }
        }
    }
}
