import CellAuditCore
import CellAuditImport
import CLibFuzzer
import Foundation

/// One fuzz input: the first byte picks the reader (modulo 4 — 0: safetensors, then the model
/// loader on what it parsed; 1: ONNX; 2: the restricted pickle reader and the state-dict
/// extraction behind it; 3: a whole torch.save archive, through a scratch file as users give
/// it), the rest is the file. Every failure must be a `FormatError`, a `ModelError` or a pickle
/// refusal; anything else, and any crash, is a finding.
/// Built with `-sanitize=fuzzer` by `Tools/fuzz.sh`, libFuzzer calls this for every input.
/// Where selector 3 writes its archive (one per process).
let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("cellaudit-fuzz-\(getpid()).pt")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    guard count > 0 else { return 0 }
    let data = Data(bytes: start + 1, count: count - 1)
    do {
        switch start[0] % 4 {
        case 0:
            let file = try SafeTensorsFile(data: data, path: "fuzz.safetensors")
            _ = try ModelFile.load(file: file, path: "fuzz.safetensors")
        case 1:
            _ = try ONNXModel.load(data: data, path: "fuzz.onnx")
        case 2:
            var reader = PickleReader(data)
            _ = try TorchSaveReader.stateDict(try reader.read()) { FormatError(file: "fuzz.pkl", $0) }
        default:
            try data.write(to: scratch)
            _ = try TorchSaveReader().load(scratch.path, hints: ModelHints())
        }
    } catch is FormatError {
    } catch is PickleReader.Failure {
    } catch is ModelError {
    } catch {
        fatalError("an error that is not a clean FormatError or ModelError: \(type(of: error)): \(error)")
    }
    return 0
}

#if CELLAUDIT_FUZZ
/// Under the fuzzer SwiftPM still links the program's entry point as `CellAuditFuzz_main`: hand
/// the arguments to libFuzzer's driver.
@_cdecl("CellAuditFuzz_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments) { data, size in
        guard let data else { return 0 }
        return fuzzOne(data, size)
    }
}
#else
/// Without the fuzzer: runs every file named on the command line through `fuzzOne` (a corpus
/// replay), so findings stay regression tests.
@main
struct FuzzReplay {
    static func main() {
        var n = 0
        for path in CommandLine.arguments.dropFirst() {
            guard var bytes = FileManager.default.contents(atPath: path).map([UInt8].init) else {
                FileHandle.standardError.write(Data("cannot read \(path)\n".utf8)); continue
            }
            if bytes.isEmpty { bytes = [0] }
            _ = bytes.withUnsafeBufferPointer { fuzzOne($0.baseAddress!, $0.count) }
            n += 1
        }
        print("replayed \(n) inputs")
    }
}
#endif
