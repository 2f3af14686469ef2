import CellAuditCore
import CellAuditOpenCL
import Foundation
import Testing
import TestSupport

/// The backends relevance is checked on: the CPU reference, and OpenCL where a device is.
private func relevanceBackends() throws -> [any ComputeBackend] {
    var list: [any ComputeBackend] = [CPUBackend()]
    if OpenCLTestSupport.enabled { list.append(try OpenCLBackend(device: try OpenCLTestSupport.device(), canaryPadding: 17)) }
    return list
}

/// The largest |got − want| relative to the scale of `want` (its largest |value|), and whether
/// every element lies within `relative`·scale + `absolute`.
private func agreement(_ got: [Float], _ want: [Float], relative: Float, absolute: Float) -> (worst: Float, ok: Bool) {
    precondition(got.count == want.count)
    let scale = want.map(abs).max() ?? 0
    var worst: Float = 0, ok = true
    for (g, w) in zip(got, want) {
        let d = abs(g - w)
        if !(d <= relative * scale + absolute) { ok = false }
        worst = max(worst, scale > 0 ? d / scale : d)
    }
    return (worst, ok)
}

@Suite("Relevance (LRP, METHOD.md §7)")
struct RelevanceTests {
    /// Fixture models with references from Tools/relevance_reference.py (PyTorch autograd on the
    /// graph with detached gates and linearised signal activations).
    static let references = ["digits_lstm8", "digits_lstm32x2", "digits_gru16", "digits_gru16_onnx_lbr0", "digits_rnn16",
                             "relevance_rnn_relu_x2", "relevance_gru_x2", "flipflop_rnn32", "flipflop_gru32"]

    @Test("ε → 0, bias factor 0: LRP equals PyTorch's gradient × input with detached gates", arguments: references)
    func matchesAutodiff(_ name: String) throws {
        let reference = try SafeTensorsFile(path: Fixtures.path("relevance/\(name).safetensors"))
        let loaded = try ModelFile.load(Fixtures.path("\(name).safetensors"))
        let dataName = try #require(reference.metadata["data"])
        let data = try Dataset.load(Fixtures.path(dataName))
        let targets = try reference.integers("target"), n = targets.count
        let t = data.inputs.steps, w = data.inputs.width
        let inputs = try SequenceBatch(count: n, steps: t, width: w, values: Array(data.inputs.values[0..<(n * t * w)]))
        let job = try RelevanceJob(network: loaded.network, inputs: inputs, output: loaded.output, targets: targets,
                                   rule: .lrp(epsilon: 0, biasFactor: 0))
        for backend in try relevanceBackends() {
            let result = try backend.relevance(job)
            let score = agreement(result.score, try reference.floats("score"), relative: 1e-5, absolute: 1e-6)
            #expect(score.ok, "\(name) on \(backend.identity): score off by \(score.worst) of its scale")
            // Per sequence: every value within 1e-4 of the sequence's largest |relevance| (+1e-6).
            let refInput = try reference.floats("input"), refCells = try reference.floats("cells")
            let perInput = t * w, perCells = t * loaded.network.cellCount
            var worstInput: Float = 0, worstCells: Float = 0
            for s in 0..<n {
                let a = agreement(Array(result.input[(s * perInput)..<((s + 1) * perInput)]),
                                  Array(refInput[(s * perInput)..<((s + 1) * perInput)]), relative: 1e-4, absolute: 1e-6)
                let b = agreement(Array(result.cellRelevance[(s * perCells)..<((s + 1) * perCells)]),
                                  Array(refCells[(s * perCells)..<((s + 1) * perCells)]), relative: 1e-4, absolute: 1e-6)
                #expect(a.ok && b.ok, "\(name) on \(backend.identity), sequence \(s): input off by \(a.worst), cells by \(b.worst)")
                worstInput = max(worstInput, a.worst); worstCells = max(worstCells, b.worst)
            }
            print("relevance \(name) \(backend.identity.kind): worst input \(worstInput), cells \(worstCells)")
        }
    }
}
