import CLibCrypto
import Foundation

/// SHA-256 (FIPS 180-4) through OpenSSL's EVP interface: the content hashes that tie a shard to
/// its model, stimulus bank and files (docs/METHOD.md §9). Feed bytes with `update`, read the
/// lowercase hex digest once with `finish`.
public final class ContentHash {
    private let context: OpaquePointer

    /// - Throws: `FormatError` if OpenSSL cannot set up a SHA-256 context (out of memory).
    public init() throws {
        guard let context = EVP_MD_CTX_new(), EVP_DigestInit_ex(context, EVP_sha256(), nil) == 1 else {
            throw FormatError(file: "sha256", "OpenSSL could not start a SHA-256 digest")
        }
        self.context = context
    }

    deinit { EVP_MD_CTX_free(context) }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        EVP_DigestUpdate(context, base, bytes.count)
    }

    public func update(_ text: String) { Array(text.utf8).withUnsafeBytes { update($0) } }

    /// Array contents, prefixed by their element count so that [a, b] + [c] and [a] + [b, c] differ.
    public func update<T: BitwiseCopyable>(_ values: [T]) {
        withUnsafeBytes(of: UInt64(values.count).littleEndian) { update($0) }
        values.withUnsafeBytes { update($0) }
    }

    /// The digest as 64 lowercase hex digits. The hash cannot be fed afterwards.
    public func finish() -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        EVP_DigestFinal_ex(context, &digest, &length)
        return digest.prefix(Int(length)).map { String(format: "%02x", $0) }.joined()
    }

    /// The SHA-256 of a file's bytes, read in 4 MiB blocks.
    /// - Throws: `FormatError` naming the file if it cannot be opened or read.
    public static func file(_ path: String) throws -> String {
        let name = (path as NSString).lastPathComponent
        guard let handle = FileHandle(forReadingAtPath: path) else { throw FormatError(file: name, "cannot open to hash it") }
        defer { try? handle.close() }
        let hash = try ContentHash()
        while true {
            let block: Data?
            do { block = try handle.read(upToCount: 4 << 20) } catch {
                throw FormatError(file: name, "cannot read: \(fileErrorReason(error))")
            }
            guard let block, !block.isEmpty else { break }
            block.withUnsafeBytes { hash.update($0) }
        }
        return hash.finish()
    }

    /// The SHA-256 of a string's UTF-8 bytes.
    public static func of(_ text: String) throws -> String {
        let hash = try ContentHash()
        hash.update(text)
        return hash.finish()
    }
}

extension RecurrentNetwork {
    /// SHA-256 of what the network computes: cell kind, sizes, the GRU's reset placement, an LSTM's peepholes, every
    /// weight and bias bit for bit, and the readout. Two files that load to the same network
    /// (a state dict and its ONNX export, say) have the same hash; any changed weight changes it.
    public func contentHash() throws -> String {
        let hash = try ContentHash()
        hash.update("cellaudit-network/1 \(kind.rawValue) \(layers.count)\n")
        // Forward-only stacks hash as they always have; a reverse direction and the level grouping
        // (and a bidirectional readout's reading) are added where they exist.
        if !isForwardOnly { hash.update("levels \(levels.map { $0.map(String.init).joined(separator: ",") }.joined(separator: ";"))\n") }
        for layer in layers {
            if layer.direction != .forward { hash.update("direction \(layer.direction.rawValue)\n") }
            hash.update("\(layer.inputSize) \(layer.hiddenSize) \(layer.resetAfter)\n")
            hash.update(layer.W); hash.update(layer.R); hash.update(layer.b); hash.update(layer.hiddenBiasN)
            if layer.hasPeephole { hash.update("peephole\n"); hash.update(layer.peephole) }
        }
        if let readout {
            hash.update("readout \(readout.outputs)\n")
            if !isForwardOnly { hash.update("reading \(readout.reading.rawValue)\n") }
            hash.update(readout.V); hash.update(readout.a)
        } else {
            hash.update("no readout\n")
        }
        return hash.finish()
    }
}

extension LoadedModel {
    /// `RecurrentNetwork.contentHash()`, with the token embedding's size and every value where the
    /// model has one (a model without one hashes as its network).
    public func contentHash() throws -> String {
        let network = try self.network.contentHash()
        guard let embedding else { return network }
        let hash = try ContentHash()
        hash.update("cellaudit-model/1 \(network) embedding \(embedding.vocabularySize) \(embedding.width)\n")
        hash.update(embedding.table)
        return hash.finish()
    }
}
