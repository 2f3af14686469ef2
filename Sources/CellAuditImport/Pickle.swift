import CellAuditCore
import Foundation

/// A value of the restricted pickle language `PickleReader` accepts: what a `torch.save`d state
/// dict is built from, and nothing that runs code.
public indirect enum PickleValue: Sendable {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case tuple([PickleValue])
    case list(PickleList)
    case dict(PickleDict)
    /// A callable the allow-list admits (`module.name`), before it is applied by REDUCE.
    case global(module: String, name: String)
    /// A tensor storage named by a persistent id: `('storage', torch.<Type>Storage, key, location, numel)`.
    case storage(TorchStorageRef)
    /// A tensor rebuilt by `torch._utils._rebuild_tensor_v2` (or `_rebuild_parameter`).
    case tensor(TorchTensorRef)

    var kindName: String {
        switch self {
        case .none: "None"
        case .bool: "a bool"
        case .int: "an int"
        case .float: "a float"
        case .string: "a string"
        case .tuple: "a tuple"
        case .list: "a list"
        case .dict: "a dict"
        case .global(let m, let n): "\(m).\(n)"
        case .storage: "a storage"
        case .tensor: "a tensor"
        }
    }
}

/// A pickled list; a reference type, because the pickle machine appends to a list after it has
/// been memoized and the memo must see the appends.
public final class PickleList: @unchecked Sendable {
    public var items: [PickleValue] = []
}

/// A pickled dict or `collections.OrderedDict`, keys in insertion order (string keys only:
/// a state dict's keys are tensor names).
public final class PickleDict: @unchecked Sendable {
    public var keys: [String] = []
    public var values: [String: PickleValue] = [:]
    func set(_ key: String, _ value: PickleValue) {
        if values.updateValue(value, forKey: key) == nil { keys.append(key) }
    }
}

/// Where a tensor's elements live: the archive member `data/<key>` holding `count` elements of `dtype`.
public struct TorchStorageRef: Sendable, Equatable {
    public var key: String
    public var dtype: DType
    public var count: Int
}

/// A strided view of a storage (`torch._utils._rebuild_tensor_v2`'s arguments).
public struct TorchTensorRef: Sendable, Equatable {
    public var storage: TorchStorageRef
    /// In elements of the storage's dtype.
    public var offset: Int
    public var shape: [Int]
    /// In elements.
    public var strides: [Int]
}

/// The smallest strict reader of Python pickles (protocols 2–5) that reads what
/// `torch.load(weights_only=True)` reads of a state dict: ints, floats, strings, bools, None,
/// tuples, lists, dicts, `collections.OrderedDict`, tensor storages (`torch.FloatStorage`,
/// `HalfStorage`, `BFloat16Storage`, `DoubleStorage` and the integer and bool storages) and tensors
/// (`torch._utils._rebuild_tensor_v2`, `_rebuild_parameter`). Every other global is refused by name
/// before anything is called (nothing is ever called: REDUCE on an allowed global builds a value);
/// every other opcode is refused by its name. The reader is iterative, so hostile nesting cannot
/// exhaust the call stack, and every length is checked against the bytes that remain.
/// Opcodes: Python's `Lib/pickletools.py`.
public struct PickleReader {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Storage type names and their element types (torch/storage.py's legacy typed storages).
    static let storageTypes: [String: DType] = [
        "FloatStorage": .F32, "DoubleStorage": .F64, "HalfStorage": .F16, "BFloat16Storage": .BF16,
        "LongStorage": .I64, "IntStorage": .I32, "ShortStorage": .I16, "CharStorage": .I8, "ByteStorage": .U8, "BoolStorage": .BOOL,
    ]
    static let allowedGlobals = Set(["collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter"])
        .union(storageTypes.keys.map { "torch.\($0)" })

    /// The most values the stack, the memo and a container may hold together, and the deepest
    /// nesting of marks: far beyond any state dict, small enough that a hostile file cannot make
    /// the reader allocate more than a few hundred megabytes.
    static let maxItems = 1 << 22

    private let bytes: [UInt8]
    private var position = 0

    public init(_ data: Data) { bytes = [UInt8](data) }

    private func fail(_ problem: String) -> Failure { Failure(description: problem) }

    private mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, n <= bytes.count - position else {
            throw fail("the pickle ends inside an opcode's argument at byte \(position) (truncated?)")
        }
        defer { position += n }
        return bytes[position..<(position + n)]
    }

    private mutating func unsigned(_ n: Int) throws -> UInt64 {
        try take(n).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }

    private mutating func line() throws -> String {
        guard let end = bytes[position...].firstIndex(of: 0x0A), end - position <= 256 else {
            throw fail("a GLOBAL opcode's name is not a line of at most 256 bytes")
        }
        defer { position = end + 1 }
        return String(decoding: bytes[position..<end], as: UTF8.self)
    }

    private mutating func text(_ n: Int) throws -> String {
        guard let s = String(validating: try take(n), as: UTF8.self) else { throw fail("a string is not valid UTF-8") }
        return s
    }

    /// Runs the pickle to its STOP and returns the value it built.
    /// - Throws: `PickleReader.Failure` naming the refused global or opcode, or the malformation.
    public mutating func read() throws -> PickleValue {
        var stack: [PickleValue] = []
        var marks: [Int] = []
        var memo: [Int: PickleValue] = [:]
        func pop() throws -> PickleValue {
            guard let v = stack.popLast() else { throw fail("an opcode at byte \(position) needs a value and the stack is empty") }
            return v
        }
        func popMark() throws -> [PickleValue] {
            guard let m = marks.popLast(), m <= stack.count else { throw fail("an opcode at byte \(position) needs a MARK and there is none") }
            defer { stack.removeSubrange(m...) }
            return Array(stack[m...])
        }
        func remember(_ index: Int) throws {
            guard let top = stack.last else { throw fail("PUT with an empty stack") }
            guard memo.count < Self.maxItems else { throw fail("more than \(Self.maxItems) memo entries") }
            memo[index] = top
        }
        func recall(_ index: Int) throws {
            guard let v = memo[index] else { throw fail("GET of memo entry \(index), which was never stored") }
            stack.append(v)
        }
        func setItems(_ pairs: [PickleValue], into target: PickleValue) throws {
            guard case .dict(let dict) = target else { throw fail("SETITEM on \(target.kindName), not a dict") }
            guard pairs.count % 2 == 0 else { throw fail("SETITEMS with an odd number of values") }
            for i in stride(from: 0, to: pairs.count, by: 2) {
                guard case .string(let key) = pairs[i] else { throw fail("a dict key is \(pairs[i].kindName); a state dict's keys are strings") }
                dict.set(key, pairs[i + 1])
            }
        }
        while true {
            guard stack.count + marks.count < Self.maxItems else { throw fail("more than \(Self.maxItems) values on the stack") }
            let at = position
            let op = try take(1).first!
            switch op {
            case 0x80: // PROTO
                let version = try take(1).first!
                guard (2...5).contains(version) else { throw fail("pickle protocol \(version); torch.save writes 2 (up to 5 is read)") }
            case 0x95: _ = try take(8) // FRAME: a length hint only
            case 0x2E: // STOP
                guard stack.count == 1, marks.isEmpty else { throw fail("STOP with \(stack.count) values on the stack") }
                return stack[0]
            case 0x28: marks.append(stack.count) // MARK
            case 0x4E: stack.append(.none) // NONE
            case 0x88: stack.append(.bool(true)) // NEWTRUE
            case 0x89: stack.append(.bool(false)) // NEWFALSE
            case 0x4B: stack.append(.int(Int(try unsigned(1)))) // BININT1
            case 0x4D: stack.append(.int(Int(try unsigned(2)))) // BININT2
            case 0x4A: stack.append(.int(Int(Int32(truncatingIfNeeded: try unsigned(4))))) // BININT
            case 0x8A: // LONG1
                let n = Int(try unsigned(1))
                guard n <= 8 else { throw fail("an integer of \(n) bytes (more than 64 bits)") }
                let raw = try take(n)
                var value: Int64 = 0
                for (i, b) in raw.enumerated() { value |= Int64(b) << (8 * Int64(i)) }
                if n > 0, n < 8, raw.last! & 0x80 != 0 { value -= Int64(1) << (8 * Int64(n)) }
                stack.append(.int(Int(value)))
            case 0x47: // BINFLOAT, big-endian
                let raw = try take(8)
                stack.append(.float(Double(bitPattern: raw.reduce(UInt64(0)) { $0 << 8 | UInt64($1) })))
            case 0x58: stack.append(.string(try text(Int(try unsigned(4))))) // BINUNICODE
            case 0x8C: stack.append(.string(try text(Int(try unsigned(1))))) // SHORT_BINUNICODE
            case 0x8D: // BINUNICODE8
                let n = try unsigned(8)
                guard n <= UInt64(bytes.count) else { throw fail("a string of \(n) bytes in a pickle of \(bytes.count)") }
                stack.append(.string(try text(Int(n))))
            case 0x29: stack.append(.tuple([])) // EMPTY_TUPLE
            case 0x85: stack.append(.tuple([try pop()])) // TUPLE1
            case 0x86: let b = try pop(), a = try pop(); stack.append(.tuple([a, b])) // TUPLE2
            case 0x87: let c = try pop(), b = try pop(), a = try pop(); stack.append(.tuple([a, b, c])) // TUPLE3
            case 0x74: stack.append(.tuple(try popMark())) // TUPLE
            case 0x5D: stack.append(.list(PickleList())) // EMPTY_LIST
            case 0x61, 0x65: // APPEND, APPENDS
                let items = op == 0x61 ? [try pop()] : try popMark()
                guard case .list(let list) = stack.last else { throw fail("APPEND to \(stack.last?.kindName ?? "nothing"), not a list") }
                guard list.items.count + items.count <= Self.maxItems else { throw fail("a list of more than \(Self.maxItems) items") }
                list.items += items
            case 0x7D: stack.append(.dict(PickleDict())) // EMPTY_DICT
            case 0x73: // SETITEM
                let value = try pop(), key = try pop()
                guard let target = stack.last else { throw fail("SETITEM with no dict") }
                try setItems([key, value], into: target)
            case 0x75: // SETITEMS
                let pairs = try popMark()
                guard let target = stack.last else { throw fail("SETITEMS with no dict") }
                try setItems(pairs, into: target)
            case 0x71: try remember(Int(try unsigned(1))) // BINPUT
            case 0x72: try remember(Int(try unsigned(4))) // LONG_BINPUT
            case 0x94: try remember(memo.count) // MEMOIZE
            case 0x68: try recall(Int(try unsigned(1))) // BINGET
            case 0x6A: try recall(Int(try unsigned(4))) // LONG_BINGET
            case 0x30: _ = try pop() // POP
            case 0x32: stack.append(try pop()); stack.append(stack.last!) // DUP
            case 0x63: // GLOBAL "module\nname\n"
                let module = try line(), name = try line()
                stack.append(try global(module, name))
            case 0x93: // STACK_GLOBAL
                guard case .string(let name) = try pop(), case .string(let module) = try pop() else {
                    throw fail("STACK_GLOBAL needs two strings")
                }
                stack.append(try global(module, name))
            case 0x51: // BINPERSID
                stack.append(try persistent(try pop()))
            case 0x52: // REDUCE
                let args = try pop(), callable = try pop()
                stack.append(try reduce(callable, args))
            case 0x62: // BUILD: an OrderedDict's instance state (a state dict's `_metadata`) is not needed
                let state = try pop()
                guard case .dict = stack.last, case .dict = state else {
                    throw fail("BUILD of \(stack.last?.kindName ?? "nothing") with \(state.kindName): CellAudit reads tensors and dicts only")
                }
            default:
                throw fail("opcode 0x\(String(op, radix: 16)) at byte \(at) is outside what a state dict uses (\(Self.opcodeName(op)))")
            }
        }
    }

    private func global(_ module: String, _ name: String) throws -> PickleValue {
        let full = "\(module).\(name)"
        guard Self.allowedGlobals.contains(full) else {
            throw fail("it names the global '\(full)', which torch.load(weights_only=True) refuses too: CellAudit reads tensors, dicts and numbers only, never code")
        }
        return .global(module: module, name: name)
    }

    /// `('storage', torch.<Type>Storage, key, location, numel)`.
    private func persistent(_ pid: PickleValue) throws -> PickleValue {
        guard case .tuple(let t) = pid, t.count == 5, case .string("storage") = t[0], case .global("torch", let typeName) = t[1],
              let dtype = Self.storageTypes[typeName], case .string(let key) = t[2], case .string = t[3], case .int(let count) = t[4] else {
            throw fail("a persistent id that is not ('storage', torch.<Type>Storage, key, location, numel)")
        }
        guard count >= 0, !key.isEmpty, key.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else {
            throw fail("storage '\(key)' has a malformed key or a negative size")
        }
        return .storage(TorchStorageRef(key: key, dtype: dtype, count: count))
    }

    private func reduce(_ callable: PickleValue, _ args: PickleValue) throws -> PickleValue {
        guard case .global(let module, let name) = callable, case .tuple(let a) = args else {
            throw fail("REDUCE of \(callable.kindName) with \(args.kindName)")
        }
        switch "\(module).\(name)" {
        case "collections.OrderedDict":
            guard a.isEmpty else { throw fail("OrderedDict built from arguments; torch.save writes it empty, then its items") }
            return .dict(PickleDict())
        case "torch._utils._rebuild_parameter":
            guard a.count >= 1, case .tensor = a[0] else { throw fail("_rebuild_parameter without a tensor") }
            return a[0]
        case "torch._utils._rebuild_tensor_v2":
            // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
            guard a.count >= 4, case .storage(let storage) = a[0], case .int(let offset) = a[1],
                  case .tuple(let size) = a[2], case .tuple(let stride) = a[3] else {
                throw fail("_rebuild_tensor_v2 with arguments other than (storage, offset, size, stride, …)")
            }
            let shape = try size.map { v -> Int in guard case .int(let n) = v else { throw fail("a tensor size that is not an int") }; return n }
            let strides = try stride.map { v -> Int in guard case .int(let n) = v else { throw fail("a tensor stride that is not an int") }; return n }
            guard shape.count == strides.count else { throw fail("a tensor with \(shape.count) sizes and \(strides.count) strides") }
            return .tensor(TorchTensorRef(storage: storage, offset: offset, shape: shape, strides: strides))
        default:
            throw fail("REDUCE of '\(module).\(name)'")
        }
    }

    /// Names of the opcodes a refusal may mention (pickletools' names).
    static func opcodeName(_ op: UInt8) -> String {
        let names: [UInt8: String] = [
            0x69: "INST: builds an object", 0x6F: "OBJ: builds an object", 0x81: "NEWOBJ: builds an object", 0x92: "NEWOBJ_EX: builds an object",
            0x50: "PERSID", 0x63: "GLOBAL", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 0x42: "BINBYTES", 0x43: "SHORT_BINBYTES",
            0x8E: "BINBYTES8", 0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER", 0x90: "EMPTY_SET",
            0x91: "ADDITEMS", 0x8F: "FROZENSET", 0x54: "BINSTRING", 0x55: "SHORT_BINSTRING", 0x49: "INT", 0x4C: "LONG",
            0x8B: "LONG4", 0x46: "FLOAT", 0x53: "STRING", 0x56: "UNICODE", 0x64: "DICT", 0x6C: "LIST", 0x70: "PUT", 0x67: "GET",
            0x31: "POP_MARK",
        ]
        return names[op] ?? "not a pickle opcode"
    }
}
