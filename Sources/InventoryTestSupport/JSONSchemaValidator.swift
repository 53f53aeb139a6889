import Foundation

/// A JSON value, parsed exactly enough to check it against a JSON Schema: integers keep all their 64 bits, and
/// `true` is never the number 1.
public indirect enum JSONValue: Sendable, Equatable, Decodable, CustomStringConvertible {
    case null
    case bool(Bool)
    case integer(Int64)
    /// An integer above `Int64.max`.
    case unsigned(UInt64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .integer(value)
        } else if let value = try? container.decode(UInt64.self) {
            self = .unsigned(value)
        } else if let value = try? container.decode(Double.self) {
            self = .double(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    /// Parses JSON text (any value at the top, not only objects).
    public static func parse(_ data: Data) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: data)
    }

    public static func parse(_ text: String) throws -> JSONValue { try parse(Data(text.utf8)) }

    public subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    public var stringValue: String? {
        if case .string(let text) = self { return text }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    public var intValue: Int64? {
        switch self {
        case .integer(let value): return value
        case .double(let value) where value.rounded() == value && abs(value) < 9.0e18: return Int64(value)
        default: return nil
        }
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let values) = self { return values }
        return nil
    }

    public var objectValue: [String: JSONValue]? {
        if case .object(let members) = self { return members }
        return nil
    }

    var isNumber: Bool {
        switch self {
        case .integer, .unsigned, .double: return true
        default: return false
        }
    }

    var isInteger: Bool {
        switch self {
        case .integer, .unsigned: return true
        case .double(let value): return value.isFinite && value.rounded() == value
        default: return false
        }
    }

    /// The JSON Schema type names this value has ("integer" values are "number"s too).
    var typeNames: Set<String> {
        switch self {
        case .null: return ["null"]
        case .bool: return ["boolean"]
        case .integer, .unsigned: return ["integer", "number"]
        case .double: return isInteger ? ["integer", "number"] : ["number"]
        case .string: return ["string"]
        case .array: return ["array"]
        case .object: return ["object"]
        }
    }

    /// -1, 0 or 1 comparing two numbers exactly where both are integers; nil when either is not a number.
    static func compare(_ lhs: JSONValue, _ rhs: JSONValue) -> Int? {
        func sign<T: Comparable>(_ a: T, _ b: T) -> Int { a < b ? -1 : (a > b ? 1 : 0) }
        switch (lhs, rhs) {
        case (.integer(let a), .integer(let b)): return sign(a, b)
        case (.unsigned(let a), .unsigned(let b)): return sign(a, b)
        case (.unsigned, .integer): return 1
        case (.integer, .unsigned): return -1
        default:
            guard let a = lhs.doubleValue, let b = rhs.doubleValue else { return nil }
            return sign(a, b)
        }
    }

    private var doubleValue: Double? {
        switch self {
        case .integer(let value): return Double(value)
        case .unsigned(let value): return Double(value)
        case .double(let value): return value
        default: return nil
        }
    }

    /// JSON Schema equality: numbers by value, objects regardless of member order.
    func sameValue(_ other: JSONValue) -> Bool {
        if isNumber, other.isNumber { return Self.compare(self, other) == 0 }
        switch (self, other) {
        case (.array(let a), .array(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.sameValue($1) }
        case (.object(let a), .object(let b)):
            return a.count == b.count && a.allSatisfy { key, value in b[key].map { value.sameValue($0) } ?? false }
        default:
            return self == other
        }
    }

    public var description: String {
        switch self {
        case .null: return "null"
        case .bool(let value): return String(value)
        case .integer(let value): return String(value)
        case .unsigned(let value): return String(value)
        case .double(let value): return String(value)
        case .string(let value): return "\"\(value)\""
        case .array(let values): return "[" + values.map(\.description).joined(separator: ",") + "]"
        case .object(let members):
            return "{" + members.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",") + "}"
        }
    }
}

/// Checks JSON values against JSON Schema (2020-12, as OpenAPI 3.1 uses it), for the subset of keywords API
/// documents need. A keyword outside that subset is reported as an error rather than skipped, so a schema can
/// never look checked when it is not.
///
/// Assertions: `$ref` (local, `#/...`), `type` (a name or a list, so `["string", "null"]` is nullable), `enum`,
/// `const`, `properties`, `required`, `additionalProperties` (boolean or schema), `items`, `minItems`,
/// `maxItems`, `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `minLength`, `maxLength` (in
/// Unicode code points), `pattern` (unanchored, as in ECMA-262), `allOf`, `anyOf`, `oneOf`, `not`, and `format`
/// for `date-time`. Annotations (`description`, `title`, `default`, `examples`, `format` otherwise, `x-*`, …) are
/// ignored.
public struct JSONSchemaValidator: Sendable {
    /// The document `$ref`s point into.
    public let root: JSONValue

    public init(root: JSONValue) {
        self.root = root
    }

    static let annotations: Set<String> = [
        "description", "title", "default", "examples", "example", "deprecated", "readOnly", "writeOnly", "$comment",
        "format", "contentMediaType", "contentEncoding", "externalDocs",
    ]

    /// Every problem of `instance` against `schema`, each as "<location>: <what>"; empty when it is valid.
    public func errors(_ instance: JSONValue, against schema: JSONValue, at location: String = "$") -> [String] {
        var errors: [String] = []
        check(instance, schema, location, &errors, depth: 0)
        return errors
    }

    public func isValid(_ instance: JSONValue, against schema: JSONValue) -> Bool {
        errors(instance, against: schema).isEmpty
    }

    /// The value a local `$ref` (`#/components/schemas/X`) points at.
    public func resolve(reference: String) -> JSONValue? {
        guard reference == "#" || reference.hasPrefix("#/") else { return nil }
        var node = root
        for token in reference.dropFirst(2).split(separator: "/", omittingEmptySubsequences: false) where !token.isEmpty {
            let key = token.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            switch node {
            case .object(let members):
                guard let next = members[key] else { return nil }
                node = next
            case .array(let values):
                guard let index = Int(key), values.indices.contains(index) else { return nil }
                node = values[index]
            default:
                return nil
            }
        }
        return node
    }

    private func check(_ instance: JSONValue, _ schema: JSONValue, _ at: String, _ errors: inout [String], depth: Int) {
        guard depth < 64 else {
            errors.append("\(at): schema nesting too deep (a $ref cycle?)")
            return
        }
        let keywords: [String: JSONValue]
        switch schema {
        case .bool(true): return
        case .bool(false):
            errors.append("\(at): no value is allowed here")
            return
        case .object(let members): keywords = members
        default:
            errors.append("\(at): the schema is not an object or boolean: \(schema)")
            return
        }
        for (keyword, value) in keywords.sorted(by: { $0.key < $1.key }) {
            if keyword.hasPrefix("x-") || (Self.annotations.contains(keyword) && keyword != "format") { continue }
            switch keyword {
            case "$ref":
                guard let reference = value.stringValue, let target = resolve(reference: reference) else {
                    errors.append("\(at): unresolvable $ref \(value)")
                    continue
                }
                check(instance, target, at, &errors, depth: depth + 1)
            case "type":
                let names = value.arrayValue?.compactMap(\.stringValue) ?? value.stringValue.map { [$0] } ?? []
                if names.isEmpty { errors.append("\(at): bad type keyword \(value)") }
                if instance.typeNames.isDisjoint(with: names) {
                    errors.append("\(at): \(instance) is not of type \(names.joined(separator: " or "))")
                }
            case "enum":
                guard let options = value.arrayValue else {
                    errors.append("\(at): bad enum keyword")
                    continue
                }
                if !options.contains(where: { $0.sameValue(instance) }) {
                    errors.append("\(at): \(instance) is not one of \(value)")
                }
            case "const":
                if !value.sameValue(instance) { errors.append("\(at): \(instance) is not \(value)") }
            case "properties":
                guard case .object(let members) = instance else { continue }
                for (name, propertySchema) in value.objectValue ?? [:] {
                    if let member = members[name] {
                        check(member, propertySchema, "\(at).\(name)", &errors, depth: depth + 1)
                    }
                }
            case "required":
                guard case .object(let members) = instance else { continue }
                for name in value.arrayValue?.compactMap(\.stringValue) ?? [] where members[name] == nil {
                    errors.append("\(at): the member \(name) is required")
                }
            case "additionalProperties":
                guard case .object(let members) = instance else { continue }
                let declared = Set(keywords["properties"]?.objectValue?.keys.map { $0 } ?? [])
                for (name, member) in members.sorted(by: { $0.key < $1.key }) where !declared.contains(name) {
                    if value == .bool(false) {
                        errors.append("\(at): the member \(name) is not allowed")
                    } else {
                        check(member, value, "\(at).\(name)", &errors, depth: depth + 1)
                    }
                }
            case "items":
                guard case .array(let elements) = instance else { continue }
                for (index, element) in elements.enumerated() {
                    check(element, value, "\(at)[\(index)]", &errors, depth: depth + 1)
                }
            case "minItems", "maxItems":
                guard case .array(let elements) = instance else { continue }
                guard let bound = value.intValue else {
                    errors.append("\(at): bad \(keyword) keyword")
                    continue
                }
                if keyword == "minItems" ? elements.count < bound : elements.count > bound {
                    errors.append("\(at): \(elements.count) items, \(keyword) is \(bound)")
                }
            case "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum":
                guard instance.isNumber else { continue }
                guard let order = JSONValue.compare(instance, value) else {
                    errors.append("\(at): bad \(keyword) keyword")
                    continue
                }
                let fails =
                    switch keyword {
                    case "minimum": order < 0
                    case "maximum": order > 0
                    case "exclusiveMinimum": order <= 0
                    default: order >= 0
                    }
                if fails { errors.append("\(at): \(instance) breaks \(keyword) \(value)") }
            case "minLength", "maxLength":
                guard case .string(let text) = instance else { continue }
                guard let bound = value.intValue else {
                    errors.append("\(at): bad \(keyword) keyword")
                    continue
                }
                let length = text.unicodeScalars.count
                if keyword == "minLength" ? length < bound : length > bound {
                    errors.append("\(at): \(instance) has \(length) characters, \(keyword) is \(bound)")
                }
            case "pattern":
                guard case .string(let text) = instance else { continue }
                guard let pattern = value.stringValue, let regex = try? NSRegularExpression(pattern: pattern) else {
                    errors.append("\(at): bad pattern \(value)")
                    continue
                }
                if regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) == nil {
                    errors.append("\(at): \(instance) does not match \(pattern)")
                }
            case "format":
                guard value.stringValue == "date-time", case .string(let text) = instance else { continue }
                if !Self.isDateTime(text) { errors.append("\(at): \(instance) is not an RFC 3339 date-time") }
            case "allOf", "anyOf", "oneOf":
                guard let branches = value.arrayValue, !branches.isEmpty else {
                    errors.append("\(at): bad \(keyword) keyword")
                    continue
                }
                let results = branches.map { branch in
                    var found: [String] = []
                    check(instance, branch, at, &found, depth: depth + 1)
                    return found
                }
                let passing = results.filter(\.isEmpty).count
                switch keyword {
                case "allOf":
                    errors.append(contentsOf: results.flatMap { $0 })
                case "anyOf":
                    if passing == 0 {
                        errors.append("\(at): matches none of anyOf: " + results.map { $0.joined(separator: "; ") }.joined(separator: " | "))
                    }
                default:
                    if passing != 1 {
                        errors.append(
                            "\(at): matches \(passing) of oneOf, must match exactly 1"
                                + (passing == 0 ? ": " + results.map { $0.joined(separator: "; ") }.joined(separator: " | ") : "")
                        )
                    }
                }
            case "not":
                var found: [String] = []
                check(instance, value, at, &found, depth: depth + 1)
                if found.isEmpty { errors.append("\(at): \(instance) must not match \(value)") }
            default:
                errors.append("\(at): the keyword \(keyword) is not supported by this validator")
            }
        }
    }

    static let assertions: Set<String> = [
        "$ref", "type", "enum", "const", "properties", "required", "additionalProperties", "items", "minItems",
        "maxItems", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern",
        "allOf", "anyOf", "oneOf", "not",
    ]

    /// Keywords anywhere in `schema` (and the schemas inside it) that this validator does not check, and
    /// patterns it cannot compile, each as "<location>: <keyword>".
    public func unsupportedKeywords(in schema: JSONValue, at location: String = "$") -> [String] {
        guard case .object(let keywords) = schema else { return [] }
        var found: [String] = []
        for (keyword, value) in keywords.sorted(by: { $0.key < $1.key }) {
            if keyword.hasPrefix("x-") || Self.annotations.contains(keyword) { continue }
            guard Self.assertions.contains(keyword) else {
                found.append("\(location): \(keyword)")
                continue
            }
            switch keyword {
            case "properties":
                for (name, property) in value.objectValue ?? [:] {
                    found += unsupportedKeywords(in: property, at: "\(location).properties.\(name)")
                }
            case "items", "additionalProperties", "not":
                found += unsupportedKeywords(in: value, at: "\(location).\(keyword)")
            case "allOf", "anyOf", "oneOf":
                for (index, branch) in (value.arrayValue ?? []).enumerated() {
                    found += unsupportedKeywords(in: branch, at: "\(location).\(keyword)[\(index)]")
                }
            case "pattern":
                if (try? NSRegularExpression(pattern: value.stringValue ?? "(")) == nil {
                    found.append("\(location): pattern \(value) does not compile")
                }
            default:
                break
            }
        }
        return found
    }

    static func isDateTime(_ text: String) -> Bool {
        let pattern = #"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"#
        guard let regex = try? NSRegularExpression(pattern: pattern),
            regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
        else { return false }
        let digits = text.split(whereSeparator: { !$0.isNumber }).prefix(6).compactMap { Int($0) }
        guard digits.count == 6 else { return false }
        return (1...12).contains(digits[1]) && (1...31).contains(digits[2]) && digits[3] < 24 && digits[4] < 60
            && digits[5] < 61
    }
}
