import CellAuditCore
import CellAuditImport
import CLibFuzzer
import Foundation

/// One fuzz input: the first byte picks the reader (even: safetensors, then the model loader on
/// what it parsed; odd: ONNX), the rest is the file. Every failure must be a `FormatError` or a
/// `ModelError`; anything else, and any crash, is a finding.
/// Built with `-sanitize=fuzzer` by `Tools/fuzz.sh`, libFuzzer calls this for every input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    guard count > 0 else { return 0 }
    let data = Data(bytes: start + 1, count: count - 1)
    do {
        if start[0] % 2 == 0 {
            let file = try SafeTensorsFile(data: data, path: "fuzz.safetensors")
            _ = try ModelFile.load(file: file, path: "fuzz.safetensors")
        } else {
            _ = try ONNXModel.load(data: data, path: "fuzz.onnx")
        }
    } catch is FormatError {
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
