import CellAuditCore
import CellAuditOpenCL
import Foundation
import OpenCLKit
import Synchronization
import Testing
import TestSupport

func stepJob(cells: Int, amplitudes: [Float], seed: UInt64, probe: Probe = .h,
             timing: StepTiming? = nil) throws -> StepTrajectoryJob {
    let network = try LSTMNetwork.random(seed: seed, inputSize: 5, hiddenSizes: [cells], scale: 3)
    return try StepTrajectoryJob(cells: try DecoupledCells(layer: network.layers[0]), amplitudes: amplitudes,
                                 timing: try timing ?? StepTiming(preSteps: 20, window: 160), probe: probe)
}

@Suite(.enabled(if: OpenCLTestSupport.enabled, "no OpenCL device (set CELLAUDIT_REQUIRE_OPENCL=1 to fail instead)"))
struct CrossBackendTests {
    @Test(arguments: [7, 93, 144], Probe.allCases)
    func stepTrajectoriesAgree(cells: Int, probe: Probe) throws {
        let opencl = try OpenCLBackend(device: try OpenCLTestSupport.device(), canaryPadding: 61)
        let cpu = CPUBackend()
        let amplitudes: [Float] = [-4, -0.37, 0.0625, 1, 2.9]
        let job = try stepJob(cells: cells, amplitudes: amplitudes, seed: UInt64(cells), probe: probe)
        let a = try opencl.stepTrajectories(job)
        let b = try cpu.stepTrajectories(job)
        #expect(a.cellCount == cells && a.stimulusCount == amplitudes.count && a.stepCount == 180)
        #expect(a.values.allSatisfy { $0.isFinite })
        let worst = zip(a.values, b.values).map { abs($0 - $1) }.max()!
        #expect(worst <= Tolerance.trajectory, "max |opencl - cpu| = \(worst)")
        // Not a vacuous agreement: the cells respond, differently per amplitude.
        #expect(b.values.contains { abs($0) > 0.05 })
        #expect(b.series(cell: 0, stimulus: 0) != b.series(cell: 0, stimulus: 3))
    }

    @Test func autoFallsBackToCPUWithOneWarningWhenTheDeviceFailsAtRunTime() throws {
        let warnings = Mutex<[String]>([])
        let device = try OpenCLTestSupport.device()
        let backend = try BackendSelection.make(.auto, deviceIndex: device.index) { line in
            warnings.withLock { $0.append(line) }
        }
        #expect(backend.identity.kind == .opencl)
        let job = try stepJob(cells: 9, amplitudes: [0.5, 1], seed: 3)
        let (first, second) = try CLFaults.with(call: "clEnqueueNDRangeKernel", failingWith: .outOfResources) {
            (try backend.stepTrajectories(job), try backend.stepTrajectories(job))
        }
        #expect(first == second)
        #expect(first == (try CPUBackend().stepTrajectories(job)))
        #expect(backend.identity.kind == .cpu)
        let lines = warnings.withLock { $0 }
        #expect(lines.count == 1)
        #expect(lines.first?.contains("CL_OUT_OF_RESOURCES") == true)
    }

    @Test func explicitOpenCLRefusesAMissingDevice() throws {
        let count = try OpenCL.devices().count
        let error = try #require(throws: BackendError.self) {
            try BackendSelection.make(.opencl, deviceIndex: count + 3) { _ in }
        }
        #expect("\(error)".contains("--device \(count + 3)"))
    }
}

@Test func cpuBackendIsDeterministicAndMatchesAScalarLoop() throws {
    let job = try stepJob(cells: 11, amplitudes: [-1, 0.5], seed: 5, timing: try StepTiming(preSteps: 3, window: 17))
    let out = try CPUBackend(threads: 3).stepTrajectories(job)
    #expect(out == (try CPUBackend(threads: 1).stepTrajectories(job)))
    // Cell 4, stimulus 1, written out by hand from METHOD.md §1.
    let p = job.cells
    var h: Float = 0, c: Float = 0
    for t in 0..<20 {
        let u: Float = t >= 3 ? 0.5 : 0
        let i = sigmoid(p.w(.input, 4) * u + p.r(.input, 4) * h + p.b(.input, 4))
        let f = sigmoid(p.w(.forget, 4) * u + p.r(.forget, 4) * h + p.b(.forget, 4))
        let g = tanh(p.w(.cell, 4) * u + p.r(.cell, 4) * h + p.b(.cell, 4))
        let o = sigmoid(p.w(.output, 4) * u + p.r(.output, 4) * h + p.b(.output, 4))
        c = f * c + i * g
        h = o * tanh(c)
        #expect(abs(out.series(cell: 4, stimulus: 1)[out.series(cell: 4, stimulus: 1).startIndex + t] - h) <= 1e-6)
    }
}

@Test func backendChoiceComesFromFlagThenEnvironment() throws {
    #expect(try BackendChoice.resolve(flag: nil, environment: [:]) == .auto)
    #expect(try BackendChoice.resolve(flag: nil, environment: ["CELLAUDIT_BACKEND": "cpu"]) == .cpu)
    #expect(try BackendChoice.resolve(flag: "opencl", environment: ["CELLAUDIT_BACKEND": "cpu"]) == .opencl)
    #expect(throws: BackendError.self) { try BackendChoice.resolve(flag: nil, environment: ["CELLAUDIT_BACKEND": "gpu"]) }
}

@Test func jobsRefuseImpossibleParameters() throws {
    let cells = try DecoupledCells(layer: try LSTMLayer.random(inputSize: 2, hiddenSize: 3, using: &SeededGenerator.test))
    #expect(throws: StimulusError.self) { try StepTiming(preSteps: -1, window: 10) }
    #expect(throws: StimulusError.self) { try StepTiming(preSteps: 0, window: 0) }
    #expect(throws: StimulusError.self) { try StepTrajectoryJob(cells: cells, amplitudes: [], timing: StepTiming()) }
    #expect(throws: StimulusError.self) { try StepTrajectoryJob(cells: cells, amplitudes: [.nan], timing: StepTiming()) }
    var bad = cells
    bad.parameters[5] = .infinity
    #expect(throws: ModelError.self) { try StepTrajectoryJob(cells: bad, amplitudes: [1], timing: StepTiming()) }
}

extension SeededGenerator {
    nonisolated(unsafe) static var test = SeededGenerator(seed: 99)
}
