import Foundation

/// A JSON object from a user's file, read strictly: a key the file format does not have is an
/// error naming it and the accepted ones, a value of the wrong type names its key and the type
/// expected, and "not valid JSON" is said only of text that is not JSON. Used by stimulus files
/// and class-threshold files; `fail` makes each format's own error.
public struct JSONInput {
    public let values: [String: Any]
    /// What the object is, for messages: "stimuli.json" or "stimuli.json, stimuli[3]".
    public let context: String
    let fail: (String) -> Error

    /// Reads the file at `path` as one JSON object whose keys must be among `accepted`.
    public static func object(path: String, what: String, accepted: [String], fail: @escaping (String) -> Error) throws -> JSONInput {
        let name = (path as NSString).lastPathComponent
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw fail("\(name): no such \(what)") }
        guard !isDirectory.boolValue else { throw fail("\(name) is a directory, not a \(what)") }
        InputFiles.record(path)
        guard let data = FileManager.default.contents(atPath: path) else { throw fail("\(name): cannot read the \(what)") }
        let parsed: Any
        do { parsed = try JSONSerialization.jsonObject(with: data) } catch {
            throw fail("\(name) is not valid JSON")
        }
        if let duplicate = SafeTensorsFile.duplicateTopLevelKey(data) { throw fail("\(name): the key '\(duplicate)' appears twice") }
        guard let object = parsed as? [String: Any] else { throw fail("\(name): a \(what) is a JSON object ({…}), got \(kind(of: parsed))") }
        return try JSONInput(object, context: name, accepted: accepted, fail: fail)
    }

    public init(_ values: [String: Any], context: String, accepted: [String], fail: @escaping (String) -> Error) throws {
        self.values = values; self.context = context; self.fail = fail
        if let unknown = values.keys.sorted().first(where: { !accepted.contains($0) }) {
            throw fail("\(context): unknown key '\(unknown)' (accepted: \(accepted.joined(separator: ", ")))")
        }
    }

    /// A number, nil when absent.
    public func number(_ key: String) throws -> Double? {
        guard let value = values[key] else { return nil }
        guard let n = value as? NSNumber, !Self.isBool(value) else { throw wrongType(key, "a number", value) }
        return n.doubleValue
    }

    /// A number that must fit a 32-bit float (finite there too).
    public func float(_ key: String) throws -> Float? {
        guard let d = try number(key) else { return nil }
        return try Self.float(d, key: key, context: context, fail: fail)
    }

    /// A whole number, nil when absent.
    public func integer(_ key: String) throws -> Int? {
        guard let d = try number(key) else { return nil }
        guard d == d.rounded(), abs(d) < 9.0e15 else { throw fail("\(context): '\(key)' must be a whole number, got \(d)") }
        return Int(d)
    }

    /// A list of numbers, each fitting a 32-bit float; nil when absent.
    public func floats(_ key: String) throws -> [Float]? {
        guard let value = values[key] else { return nil }
        guard let list = value as? [Any] else { throw wrongType(key, "a list of numbers", value) }
        return try list.enumerated().map { i, item in
            guard let n = item as? NSNumber, !Self.isBool(item) else { throw wrongType("\(key)[\(i)]", "a number", item) }
            return try Self.float(n.doubleValue, key: "\(key)[\(i)]", context: context, fail: fail)
        }
    }

    public func string(_ key: String) throws -> String? {
        guard let value = values[key] else { return nil }
        guard let s = value as? String else { throw wrongType(key, "a string", value) }
        return s
    }

    /// A list of objects, each read strictly with `accepted` keys.
    public func objects(_ key: String, accepted: [String]) throws -> [JSONInput]? {
        guard let value = values[key] else { return nil }
        guard let list = value as? [Any] else { throw wrongType(key, "a list of objects", value) }
        return try list.enumerated().map { i, item in
            guard let object = item as? [String: Any] else { throw wrongType("\(key)[\(i)]", "an object", item) }
            return try JSONInput(object, context: "\(context), \(key)[\(i)]", accepted: accepted, fail: fail)
        }
    }

    func wrongType(_ key: String, _ expected: String, _ value: Any) -> Error {
        fail("\(context): '\(key)' must be \(expected), got \(Self.kind(of: value))")
    }

    static func float(_ d: Double, key: String, context: String, fail: (String) -> Error) throws -> Float {
        guard d.isFinite else { throw fail("\(context): '\(key)' is not a finite number") }
        let f = Float(d)
        guard f.isFinite else { throw fail("\(context): '\(key)' = \(d) does not fit a 32-bit float (largest \(Float.greatestFiniteMagnitude))") }
        return f
    }

    /// JSON true/false: Foundation hands them over as NSNumbers of ObjC type "c" (char).
    static func isBool(_ value: Any) -> Bool {
        guard let n = value as? NSNumber else { return false }
        return String(cString: n.objCType) == "c"
    }

    static func kind(of value: Any) -> String {
        switch value {
        case is String: return "a string"
        case _ where isBool(value): return "true/false"
        case is NSNumber: return "a number"
        case is [Any]: return "a list"
        case is [String: Any]: return "an object"
        case is NSNull: return "null"
        default: return "\(type(of: value))"
        }
    }
}
