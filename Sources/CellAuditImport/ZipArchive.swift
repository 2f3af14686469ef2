import CLibZip
import CellAuditCore
import Foundation

/// A ZIP archive opened read-only through libzip with its consistency checks on (`ZIP_CHECKCONS`:
/// the central directory must agree with every local header and lie inside the file), so a
/// truncated, corrupted or hostile archive is an error naming the file, never a trap or a read
/// outside the file. Members are read whole, stored or deflated, with their CRC checked; a member
/// is never read past the size its directory entry declares.
///
/// Used for `.npz` datasets, torch.save archives and Keras 3 `.keras` files.
public final class ZipArchive {
    /// One file in the archive (directories are left out).
    public struct Member: Sendable, Equatable {
        /// The path inside the archive, as stored.
        public let name: String
        /// The uncompressed size in bytes, as the central directory declares it.
        public let size: Int
        let index: UInt64
    }

    /// The archive's file name, for messages.
    public let fileName: String
    /// Every file member, in directory order.
    public let members: [Member]
    private let handle: OpaquePointer

    /// Opens `path`.
    /// - Throws: `FormatError` naming the file: not a ZIP archive, inconsistent or truncated, a
    ///   member name given twice.
    public init(path: String) throws {
        fileName = (path as NSString).lastPathComponent
        var code: Int32 = 0
        guard let archive = zip_open(path, ZIP_RDONLY | ZIP_CHECKCONS, &code) else {
            var error = zip_error_t()
            zip_error_init_with_code(&error, code)
            defer { zip_error_fini(&error) }
            throw FormatError(file: fileName, "not a readable ZIP archive: \(String(cString: zip_error_strerror(&error)))")
        }
        handle = archive
        var found: [Member] = []
        var seen = Set<String>()
        let count = zip_get_num_entries(archive, 0)
        guard count >= 0 else { zip_discard(archive); throw FormatError(file: fileName, "not a readable ZIP archive") }
        for index in 0..<UInt64(count) {
            var stat = zip_stat_t()
            zip_stat_init(&stat)
            guard zip_stat_index(archive, index, 0, &stat) == 0, let cName = stat.name,
                  stat.valid & UInt64(ZIP_STAT_SIZE) != 0, stat.size <= UInt64(Int.max) else {
                zip_discard(archive)
                throw FormatError(file: fileName, "ZIP directory entry \(index) is unreadable")
            }
            let name = String(cString: cName)
            if name.hasSuffix("/") { continue }
            guard seen.insert(name).inserted else {
                zip_discard(archive)
                throw FormatError(file: fileName, "the archive holds '\(name)' twice")
            }
            found.append(Member(name: name, size: Int(stat.size), index: index))
        }
        members = found
    }

    deinit { zip_discard(handle) }

    /// The member stored under exactly `name`.
    public subscript(name: String) -> Member? { members.first { $0.name == name } }

    /// The member's bytes.
    /// - Parameter limit: the largest size accepted (a member declaring more is refused before any
    ///   allocation).
    /// - Throws: `FormatError` naming the file and member: over the limit, damaged data, a CRC
    ///   mismatch, fewer or more bytes than declared.
    public func read(_ member: Member, limit: Int) throws -> Data {
        guard member.size <= limit else {
            throw FormatError(file: fileName, "'\(member.name)' declares \(member.size) bytes, more than the \(limit) accepted")
        }
        let stream = try stream(member)
        let data = try stream.read(member.size)
        try stream.finish()
        return data
    }

    /// Opens `member` for reading forward from its start, a piece at a time (`MemberStream`):
    /// how a large `.npz` dataset is read without holding it.
    /// - Throws: `FormatError` naming the file and member when it cannot be opened.
    public func stream(_ member: Member) throws -> MemberStream { try MemberStream(archive: self, member: member) }

    /// A member read forward, stored or deflated. Its CRC is checked when `finish` reads to its end.
    public final class MemberStream {
        /// Bytes read (or skipped) so far.
        public private(set) var position = 0
        public let member: Member
        private let archive: ZipArchive   // kept open while this reads from it
        private let file: OpaquePointer

        init(archive: ZipArchive, member: Member) throws {
            self.archive = archive
            self.member = member
            guard let file = zip_fopen_index(archive.handle, member.index, 0) else {
                throw FormatError(file: archive.fileName, "'\(member.name)' cannot be opened: \(String(cString: zip_strerror(archive.handle)))")
            }
            self.file = file
        }

        deinit { zip_fclose(file) }

        private func fail(_ problem: String) -> FormatError { FormatError(file: archive.fileName, "'\(member.name)' \(problem)") }

        /// The next `count` bytes (fewer only where the member ends first).
        /// - Throws: `FormatError` for damaged data or a member shorter than it declares.
        public func read(_ count: Int) throws -> Data {
            let wanted = min(count, member.size - position)
            var data = Data(count: wanted)
            var filled = 0
            while filled < wanted {
                let got = data.withUnsafeMutableBytes { raw in zip_fread(file, raw.baseAddress! + filled, zip_uint64_t(wanted - filled)) }
                if got < 0 { throw fail("cannot be read (damaged or truncated archive?): \(String(cString: zip_file_strerror(file)))") }
                if got == 0 { throw fail("ends after \(position + filled) of \(member.size) bytes (truncated?)") }
                filled += Int(got)
            }
            position += wanted
            return data
        }

        /// Reads past the next `count` bytes.
        public func skip(_ count: Int) throws {
            var left = count
            while left > 0 { let piece = try read(min(left, 1 << 20)); guard !piece.isEmpty else { return }; left -= piece.count }
        }

        /// Reads to the member's end and checks it there: its CRC, and nothing past its declared size.
        /// - Throws: `FormatError` for a CRC mismatch or extra bytes.
        public func finish() throws {
            try skip(member.size - position)
            var extra: UInt8 = 0
            let tail = zip_fread(file, &extra, 1)
            if tail < 0 { throw fail("fails its check (damaged data?): \(String(cString: zip_file_strerror(file)))") }
            if tail > 0 { throw fail("holds more bytes than it declares (damaged or altered data?)") }
        }
    }
}
