import CellAuditCore
@testable import CellAuditImport
import Foundation
import Testing
import TestSupport

/// torch.save files read natively (issue 30, item 1): every fixture of Tools/make_torch_fixtures.py
/// gives the network its safetensors twin gives, bit for bit; everything else is refused by name.
@Suite struct TorchSaveTests {
    static func path(_ name: String) -> String { Fixtures.path("torch/\(name)") }

    static func load(_ name: String, hints: ModelHints = ModelHints()) throws -> LoadedModel {
        try ModelImport.load(path(name), hints: hints)
    }

    static func refusal(_ name: String) -> String {
        do { _ = try load(name); return "loaded" } catch { return "\(error)" }
    }

    @Test(arguments: [("lstm2_f32.pt", "lstm2_f32.safetensors"), ("gru_f16.pt", "gru_f16.safetensors"),
                      ("rnn_bf16.pt", "rnn_bf16.safetensors"), ("lstm_f64.pt", "lstm_f64.safetensors"),
                      ("views.pt", "views.safetensors"), ("checkpoint.pt", "lstm2_f32.safetensors"),
                      ("parameters.pt", "lstm2_f32.safetensors")])
    func aTorchSaveFileReadsAsItsSafetensorsTwin(pt: String, twin: String) throws {
        #expect(FileFormat.sniff(Self.path(pt)) == .torchSave)
        let hints = ModelHints(nonlinearity: pt.hasPrefix("rnn") ? "tanh" : nil)
        let a = try Self.load(pt, hints: hints), b = try Self.load(twin, hints: hints)
        #expect(a.network == b.network)
        #expect(a.task == b.task && a.output == b.output && a.convention == b.convention)
        #expect(a.network.readout != nil)
        // The tensors themselves, not only the network built from them: names, dtypes, shapes and bytes.
        let tensors = try TorchSaveReader.tensors(Self.path(pt)), reference = try SafeTensorsFile(path: Self.path(twin))
        #expect(Set(tensors.tensors.keys) == Set(reference.tensors.keys))
        for (name, info) in reference.tensors {
            let mine = try tensors.info(name)
            #expect(mine.dtype == info.dtype && mine.shape == info.shape, "\(name)")
            try tensors.withBytes(name) { x in try reference.withBytes(name) { y in #expect(Array(x) == Array(y), "\(name)") } }
        }
    }

    /// A pickled module, a hostile global and the pre-1.6 format are refused by name; nothing runs.
    @Test func whatIsNotAStateDictIsRefusedByName() throws {
        let module = Self.refusal("whole_module.pt")
        #expect(module.contains("whole_module.pt") && module.contains("__main__.Net") && module.contains("state_dict()"), "\(module)")
        let hostile = Self.refusal("os_system.pt")
        #expect(hostile.contains("os_system.pt") && (hostile.contains("posix.system") || hostile.contains("os.system")), "\(hostile)")
        #expect(hostile.contains("never code"))
        let legacy = Self.refusal("legacy.pt")
        #expect(legacy.contains("legacy.pt") && legacy.contains("torch 1.6") && legacy.contains("re-save"), "\(legacy)")
    }

    /// Every truncation and thousands of byte flips of a real file load or fail with a clean
    /// error; none crashes or hangs (a trap here ends the test run).
    @Test func truncatedAndCorruptedFilesFailCleanly() throws {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: Self.path("views.pt")))
        var outcomes = (loaded: 0, refused: 0)
        let scratch = try Fixtures.scratch("torch-corrupt").appendingPathComponent("x.pt")
        func attempt(_ data: Data) {
            do {
                try data.write(to: scratch)
                let file = try TorchSaveReader.tensors(scratch.path)
                _ = try ModelFile.load(file: file, path: scratch.path)
                outcomes.loaded += 1
            } catch is FormatError { outcomes.refused += 1 } catch is ModelError { outcomes.refused += 1 } catch {
                Issue.record("not a clean error: \(type(of: error)) \(error)")
            }
        }
        for end in stride(from: 0, to: bytes.count, by: 97) { attempt(bytes.prefix(end)) }
        var rng = SeededGenerator(seed: 30)
        for _ in 0..<1500 {
            var copy = [UInt8](bytes)
            for _ in 0..<(1 + Int(rng.next() % 4)) { copy[Int(rng.next() % UInt64(copy.count))] = UInt8(truncatingIfNeeded: rng.next()) }
            attempt(Data(copy))
        }
        #expect(outcomes.refused > 0 && outcomes.loaded + outcomes.refused == (bytes.count + 96) / 97 + 1500)
    }

    /// The fuzzer's finding (CI, stop 32): a ZIP64 directory whose offsets pass Int64.max made the
    /// previous ZIP library trap (SIGILL). libzip's consistency checks refuse it, and every
    /// directory field set to all ones is refused too.
    @Test func hostileZipDirectoriesAreRefused() throws {
        #expect(throws: FormatError.self) { _ = try TorchSaveReader.tensors(Fixtures.path("fuzz/zip64_offset_past_int64.pt")) }
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Self.path("views.pt"))))
        let scratch = try Fixtures.scratch("torch-zip-directory").appendingPathComponent("x.pt")
        // torch writes a ZIP64 end-of-central-directory record (PK\x06\x06) before the classic one:
        // its entry counts, directory size and directory offset (8 bytes each), set to 0xFF… or
        // 0x7F… in turn, as the fuzzer did.
        let record = try #require((0...(bytes.count - 56)).reversed().first { Array(bytes[$0..<($0 + 4)]) == [0x50, 0x4B, 0x06, 0x06] })
        var refused = 0
        for field in [24, 32, 40, 48] {
            for top: UInt8 in [0xFF, 0x7F] {
                var copy = bytes
                for i in 0..<8 { copy[record + field + i] = i == 7 ? top : 0xFF }
                try Data(copy).write(to: scratch)
                do { _ = try TorchSaveReader.tensors(scratch.path) } catch is FormatError { refused += 1 }
            }
        }
        #expect(refused == 8)
    }

    /// The pickle machine on hand-written hostile pickles: each is refused with its reason.
    @Test(arguments: [
        ([0x80, 0x02] + Array("cos\nsystem\n".utf8) + [0x2E], "os.system"),
        ([0x80, 0x02, 0x58, 0xFF, 0xFF, 0xFF, 0x7F, 0x61], "truncated"),
        ([0x80, 0x02, 0x68, 0x05, 0x2E], "never stored"),
        ([0x80, 0x02, 0x8A, 0x09, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0x2E], "64 bits"),
        ([0x80, 0x02, 0x7D, 0x4B, 0x01, 0x4B, 0x02, 0x73, 0x2E], "keys are strings"),
        ([0x80, 0x02, 0x81, 0x2E], "NEWOBJ"),
        ([0x80, 0x02, 0x29, 0x29, 0x2E], "STOP with 2"),
        ([0x80, 0x09, 0x2E], "protocol 9"),
        ([0x80, 0x02] + [UInt8](repeating: 0x28, count: 200_000) + [0x2E], "STOP with 0"),
        ([0x80, 0x02, 0x4E, 0x4E, 0x86, 0x51, 0x2E], "persistent id"),
    ] as [([UInt8], String)])
    func hostilePicklesAreRefused(bytes: [UInt8], words: String) {
        var reader = PickleReader(Data(bytes))
        do { _ = try reader.read(); Issue.record("read \(bytes.prefix(12))") } catch {
            #expect("\(error)".contains(words), "\(error)")
        }
    }

    /// A view that reaches past its storage is refused, naming the tensor and the storage.
    @Test func aViewOutsideItsStorageIsRefused() throws {
        let storage = TorchStorageRef(key: "0", dtype: .F32, count: 6)
        let fail = { (p: String) in FormatError(file: "m.pt", p) }
        let inside = TorchTensorRef(storage: storage, offset: 2, shape: [2, 2], strides: [1, 2])
        let bytes = Data((0..<6).flatMap { withUnsafeBytes(of: Float($0).bitPattern.littleEndian, Array.init) })
        let read = try TorchSaveReader.contiguous(inside, storage: bytes, tensor: "w", fail)
        #expect(read.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) } == [2, 4, 3, 5])
        for bad in [TorchTensorRef(storage: storage, offset: 3, shape: [2, 2], strides: [1, 2]),
                    TorchTensorRef(storage: storage, offset: -1, shape: [2], strides: [1]),
                    TorchTensorRef(storage: storage, offset: 0, shape: [2, Int.max], strides: [1, 1])] {
            #expect(throws: FormatError.self) { try TorchSaveReader.contiguous(bad, storage: bytes, tensor: "w", fail) }
        }
    }
}
