import NIOCore
import Foundation
import Inventory
import InventorySettings

/// A coding key for any field name, so bodies are read field by field and every problem is reported.
struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ string: String) { self.stringValue = string }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// Where a body's fields are read from, problems collected instead of stopping at the first: a decoder
/// (`FieldReader`), or a body in the plain subset of JSON (`PlainFields`). A body read from either is the same.
protocol FieldSource {
    /// The JSON pointer of the object read ("#", or "" for an element of a list, its caller prefixing it).
    var pointer: String { get }
    var problems: [Problem.FieldError] { get set }
    /// The field's value, nil when absent or null; a value of the wrong type or out of range is a problem.
    mutating func read<T: Decodable & PlainDecodable>(_ field: String, _ type: T.Type, expected: String) -> T?
}

extension FieldSource {
    mutating func fail(_ field: String, _ detail: String) {
        problems.append(.init(pointer: "\(pointer)/\(field)", detail: detail))
    }

    mutating func required<T: Decodable & PlainDecodable>(_ field: String, _ type: T.Type, expected: String) -> T? {
        let value = read(field, type, expected: expected)
        if value == nil { missing(field, expected: expected) }
        return value
    }

    /// A required field read as nil: a problem, unless its value was reported already.
    mutating func missing(_ field: String, expected: String) {
        if !problems.contains(where: { $0.pointer == "\(pointer)/\(field)" }) { fail(field, "is required (\(expected))") }
    }
}

/// Collects field problems while a body is read, instead of stopping at the first.
struct FieldReader {
    let container: KeyedDecodingContainer<AnyKey>
    let pointer: String
    var problems: [Problem.FieldError] = []

    init(decoder: any Decoder, pointer: String) throws {
        self.container = try decoder.container(keyedBy: AnyKey.self)
        self.pointer = pointer
    }

    /// The field's value, nil when absent or null; a value of the wrong type or out of range is a problem.
    mutating func read<T: Decodable>(_ field: String, _ type: T.Type, expected: String) -> T? {
        do {
            return try container.decodeIfPresent(T.self, forKey: AnyKey(field))
        } catch {
            fail(field, "must be \(expected)")
            return nil
        }
    }

    /// `read` of a field that must be there (of any decodable type: the other bodies read more than plain ones).
    mutating func required<T: Decodable>(_ field: String, _ type: T.Type, expected: String) -> T? {
        let value = read(field, type, expected: expected)
        if value == nil { missing(field, expected: expected) }
        return value
    }
}

extension FieldReader: FieldSource {}

/// A body the hot route reads from the plain subset of JSON when it can (`PlainJSON`), else with `JSONDecoder`.
protocol PlainBody: Decodable {
    /// The body `plain` holds, nil when it holds something the plain reading does not take.
    init?(plain: PlainJSON, limits: InputLimits)
}

/// The body of `POST /v1/reservations`, read so that every problem in it is reported at once.
struct ReserveBody: PlainBody, Equatable {
    var orderId: String?
    var bizId: String?
    var userId: String?
    var items: [ReserveItemBody] = []
    var ttlSeconds: Int?
    var shortage: ShortageMode?
    var dispense = false
    var problems: [Problem.FieldError] = []

    init(from decoder: any Decoder) throws {
        var reader = try FieldReader(decoder: decoder, pointer: "#")
        self.init(reading: &reader, limits: decoder.userInfo[.inputLimits] as? InputLimits ?? InputLimits())
    }

    init?(plain: PlainJSON, limits: InputLimits) {
        guard case .object(let fields) = plain else { return nil }
        var reader = PlainFields(fields, pointer: "#")
        self.init(reading: &reader, limits: limits)
        if reader.unsupported { return nil }
    }

    init<Source: FieldSource>(reading reader: inout Source, limits: InputLimits) {
        if let orderId = reader.required("orderId", String.self, expected: "a string of \(Patterns.orderIdRule)") {
            if Patterns.isOrderId(orderId) { self.orderId = orderId } else {
                reader.fail("orderId", "must be \(Patterns.orderIdRule)")
            }
        }
        if let bizId = reader.read("bizId", String.self, expected: "a string of \(Patterns.bizIdRule)") {
            if Patterns.isBizId(bizId) { self.bizId = bizId } else { reader.fail("bizId", "must be \(Patterns.bizIdRule)") }
        }
        if let userId = reader.read("userId", String.self, expected: "a string of 1-64 characters") {
            if userId.isEmpty || userId.utf8.count > 64 || userId.contains("|") {
                reader.fail("userId", "must be 1-64 characters, without '|'")
            } else {
                self.userId = userId
            }
        }
        if let items = reader.required("items", [ReserveItemBody].self, expected: "an array of {skuId, quantity}") {
            if items.isEmpty || items.count > limits.maxItems {
                reader.fail("items", "must hold 1 to \(limits.maxItems) items")
            }
            var seen = Set<UInt64>()
            for (index, item) in items.enumerated() {
                reader.problems.append(contentsOf: item.problems(at: "#/items/\(index)", limits: limits))
                if let sku = item.skuId, !seen.insert(sku).inserted {
                    reader.fail("items/\(index)/skuId", "skuId \(sku) appears more than once")
                }
            }
            self.items = items
        }
        if let ttl = reader.read("ttlSeconds", Int.self, expected: "an integer from 1 to \(limits.maxTTLSeconds)") {
            if (1...limits.maxTTLSeconds).contains(ttl) { ttlSeconds = ttl } else {
                reader.fail("ttlSeconds", "must be an integer from 1 to \(limits.maxTTLSeconds)")
            }
        }
        if let dispense = reader.read("dispense", Bool.self, expected: "true or false") { self.dispense = dispense }
        let modes = ShortageMode.allCases.map(\.rawValue).joined(separator: ", ")
        if let mode = reader.read("shortage", String.self, expected: "one of \(modes)") {
            if let parsed = ShortageMode(rawValue: mode) { shortage = parsed } else {
                reader.fail("shortage", "must be one of \(modes)")
            }
        }
        problems = reader.problems
    }
}

/// One element of `items`. Never throws: an element that is not an object is recorded as a problem.
struct ReserveItemBody: Decodable, PlainDecodable, Equatable {
    var skuId: UInt64?
    var quantity: Int64?
    var codes: [String]?
    var raw: [Problem.FieldError] = []
    var notAnObject = false

    init(from decoder: any Decoder) throws {
        guard var reader = try? FieldReader(decoder: decoder, pointer: "") else {
            self.init(notAnObject: ())
            return
        }
        self.init(reading: &reader)
    }

    private init(notAnObject: Void) { self.notAnObject = true }

    /// Nil for an element that is not an object, or holds what the plain reading does not take.
    init?(plain: PlainJSON) {
        guard case .object(let fields) = plain else { return nil }
        var reader = PlainFields(fields, pointer: "")
        self.init(reading: &reader)
        if reader.unsupported { return nil }
    }

    init<Source: FieldSource>(reading reader: inout Source) {
        skuId = reader.required("skuId", UInt64.self, expected: "an integer from 1 to \(Int64.max)")
        quantity = reader.required("quantity", Int64.self, expected: "a positive integer")
        codes = reader.read("codes", [String].self, expected: "an array of codes")
        raw = reader.problems
    }

    func problems(at pointer: String, limits: InputLimits) -> [Problem.FieldError] {
        if notAnObject { return [.init(pointer: pointer, detail: "must be an object {skuId, quantity}")] }
        var result = raw.map { Problem.FieldError(pointer: pointer + $0.pointer, detail: $0.detail) }
        if let skuId, skuId == 0 || skuId > UInt64(Int64.max) {
            result.append(.init(pointer: pointer + "/skuId", detail: "must be an integer from 1 to \(Int64.max)"))
        }
        if let quantity, !(1...limits.maxQuantity).contains(quantity) {
            result.append(.init(pointer: pointer + "/quantity", detail: "must be an integer from 1 to \(limits.maxQuantity)"))
        }
        if let codes {
            if let quantity, codes.count != quantity {
                result.append(.init(pointer: pointer + "/codes", detail: "must name exactly `quantity` codes, one per unit"))
            }
            if Set(codes).count != codes.count {
                result.append(.init(pointer: pointer + "/codes", detail: "must not name a code twice"))
            }
            for (index, code) in codes.enumerated() where !Patterns.isOrderId(code) {
                result.append(.init(pointer: pointer + "/codes/\(index)", detail: "must be \(Patterns.codeRule)"))
            }
        }
        return result
    }
}

/// The body of `PUT /v1/stock/{bizId}/{skuId}`.
struct StockBody: Decodable {
    /// A per-user window of at most a year.
    static let maxUserWindowSeconds: Int64 = 366 * 86_400

    var settings: StockSettings?
    var problems: [Problem.FieldError] = []

    init(from decoder: any Decoder) throws {
        var reader = try FieldReader(decoder: decoder, pointer: "#")
        let limits = decoder.userInfo[.inputLimits] as? InputLimits ?? InputLimits()
        let range = "an integer from 0 to \(limits.maxStock)"
        let stock = reader.required("stock", Int64.self, expected: range)
        if let stock, !(0...limits.maxStock).contains(stock) { reader.fail("stock", "must be \(range)") }
        let infinite = reader.read("infinite", Bool.self, expected: "true or false")
        let danger = reader.read("dangerNum", Int64.self, expected: range)
        if let danger, !(0...limits.maxStock).contains(danger) { reader.fail("dangerNum", "must be \(range)") }
        let backorder = reader.read("backorderLimit", Int64.self, expected: range)
        if let backorder, !(0...limits.maxStock).contains(backorder) {
            reader.fail("backorderLimit", "must be \(range)")
        }
        let userLimit = reader.read("perUserLimit", Int64.self, expected: range)
        if let userLimit, !(0...limits.maxStock).contains(userLimit) { reader.fail("perUserLimit", "must be \(range)") }
        let windowRange = "an integer from 0 to \(StockBody.maxUserWindowSeconds) (seconds)"
        let window = reader.read("perUserWindowSeconds", Int64.self, expected: windowRange)
        if let window, !(0...StockBody.maxUserWindowSeconds).contains(window) {
            reader.fail("perUserWindowSeconds", "must be \(windowRange)")
        }
        problems = reader.problems
        if problems.isEmpty, let stock {
            settings = StockSettings(
                stock: stock, infinite: infinite, dangerNum: danger, backorderLimit: backorder, userLimit: userLimit,
                userWindowSeconds: window
            )
        }
    }
}

/// The body of `POST /v1/stock/{bizId}/{skuId}/adjustments`.
struct AdjustmentBody: Decodable {
    var adjustment: StockAdjustment?
    var problems: [Problem.FieldError] = []

    init(from decoder: any Decoder) throws {
        var reader = try FieldReader(decoder: decoder, pointer: "#")
        let limits = decoder.userInfo[.inputLimits] as? InputLimits ?? InputLimits()
        let id = reader.required("adjustmentId", String.self, expected: "a string of \(Patterns.orderIdRule)")
        if let id, !Patterns.isOrderId(id) { reader.fail("adjustmentId", "must be \(Patterns.orderIdRule)") }
        let range = "a non-zero integer from -\(limits.maxStock) to \(limits.maxStock)"
        let delta = reader.required("delta", Int64.self, expected: range)
        if let delta, delta == 0 || !(-limits.maxStock...limits.maxStock).contains(delta) {
            reader.fail("delta", "must be \(range)")
        }
        let reason = reader.read("reason", String.self, expected: "a string of at most 32 characters")
        // '|' separates the request's fingerprint; a control character (a tab) would break the retry task that
        // stores it (tab-separated) and has no business in a ledger's reason.
        if let reason, reason.isEmpty || reason.utf8.count > 32 || reason.contains("|")
            || reason.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
        {
            reader.fail("reason", "must be 1-32 characters, without '|' or control characters")
        }
        problems = reader.problems
        if problems.isEmpty, let id, let delta {
            adjustment = StockAdjustment(adjustmentId: id, delta: delta, reason: reason)
        }
    }
}

extension CodingUserInfoKey {
    static let inputLimits = CodingUserInfoKey(rawValue: "inventory.inputLimits")!
}

/// The body of `PUT /v1/stock/{bizId}/{skuId}/pool`.
struct PoolBody: Decodable {
    static let kinds = ["one-time": CodePoolKind.oneTime, "reusable": .reusable, "batch": .batch]

    var pool: CodePool?
    var problems: [Problem.FieldError] = []

    init(from decoder: any Decoder) throws {
        var reader = try FieldReader(decoder: decoder, pointer: "#")
        let kindNames = Self.kinds.keys.sorted().joined(separator: ", ")
        let kindText = reader.required("kind", String.self, expected: "one of \(kindNames)")
        let kind = kindText.flatMap { Self.kinds[$0] }
        if kindText != nil, kind == nil { reader.fail("kind", "must be one of \(kindNames)") }
        let status = reader.read("status", String.self, expected: "online or offline")
        if let status, status != "online", status != "offline" { reader.fail("status", "must be online or offline") }
        let expiresText = reader.read("expiresAt", String.self, expected: "an RFC 3339 date-time")
        let expires = expiresText.flatMap(Timestamp.milliseconds(rfc3339:))
        if expiresText != nil, expires == nil { reader.fail("expiresAt", "must be an RFC 3339 date-time") }
        let batchCode = reader.read("batchCode", String.self, expected: "a code of \(Patterns.codeRule)")
        if let batchCode, !Patterns.isOrderId(batchCode) { reader.fail("batchCode", "must be \(Patterns.codeRule)") }
        if kind == .batch, batchCode == nil { reader.fail("batchCode", "is required for a batch pool") }
        if let kind, kind != .batch, batchCode != nil { reader.fail("batchCode", "is only for a batch pool") }
        let limits = decoder.userInfo[.inputLimits] as? InputLimits ?? InputLimits()
        let perUser = reader.read("maxPerUser", Int64.self, expected: "an integer from 0 to \(limits.maxStock)")
        if let perUser, !(0...limits.maxStock).contains(perUser) {
            reader.fail("maxPerUser", "must be an integer from 0 to \(limits.maxStock)")
        }
        problems = reader.problems
        if problems.isEmpty, let kind {
            pool = CodePool(
                kind: kind, online: status != "offline", expiresAtMilliseconds: expires, batchCode: batchCode,
                maxPerUser: perUser
            )
        }
    }
}

/// A code upload: one code per line (CR LF or LF; blank lines skipped), each of `Patterns.codeRule`. A code the
/// upload repeats is counted once; every invalid line is reported by its number, and then nothing is loaded.
struct CodeUpload {
    var codes: [String] = []
    var repeated = 0
    var problems: [Problem.FieldError] = []

    static let maxCodes = 100_000
    /// Problems reported at most: parsing stops at the hundredth (the upload is refused anyway).
    static let maxProblems = 100

    /// Reads one code per line (`\n` or `\r\n`; blank lines skipped) straight from the bytes, de-duplicating as it
    /// goes, and stops at the first limit it reaches: past `maxCodes` distinct codes, or at `maxProblems` invalid
    /// lines. An upload refused for either costs no more than reading that far.
    init(_ bytes: ByteBuffer) {
        var seen = Set<String>()
        bytes.withUnsafeReadableBytes { buffer in
            // Room for every line up front (counted with memchr, cheap beside the parse), up to the limit: growing
            // the set on the way rehashed every code already in it, again and again.
            var lines = 1
            var at = 0
            while at < buffer.count, lines <= Self.maxCodes,
                let found = memchr(buffer.baseAddress! + at, Int32(UInt8(ascii: "\n")), buffer.count - at)
            {
                lines += 1
                at = buffer.baseAddress!.distance(to: UnsafeRawPointer(found)) + 1
            }
            seen.reserveCapacity(min(lines, Self.maxCodes + 1))
            codes.reserveCapacity(min(lines, Self.maxCodes + 1))
            var lineStart = 0
            var lineNumber = 0
            while lineStart < buffer.count {
                // memchr: the next line end without a per-byte loop in Swift.
                let rest = buffer.count - lineStart
                let found = memchr(buffer.baseAddress! + lineStart, Int32(UInt8(ascii: "\n")), rest)
                let lineEnd = found.map { buffer.baseAddress!.distance(to: UnsafeRawPointer($0)) } ?? buffer.count
                lineNumber += 1
                var length = lineEnd - lineStart
                if length > 0, buffer[lineStart + length - 1] == UInt8(ascii: "\r") { length -= 1 }
                let line = UnsafeRawBufferPointer(rebasing: buffer[lineStart..<(lineStart + length)])
                lineStart = lineEnd + 1
                if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }) { continue }
                guard Patterns.isOrderIdBytes(line) else {
                    problems.append(
                        .init(pointer: "#/lines/\(lineNumber)", detail: "line \(lineNumber): a code must be \(Patterns.codeRule)")
                    )
                    if problems.count >= Self.maxProblems { return }
                    continue
                }
                let code = String(decoding: line, as: UTF8.self)
                if seen.insert(code).inserted {
                    codes.append(code)
                    if codes.count > Self.maxCodes {
                        problems.append(.init(pointer: "#/lines", detail: "at most \(Self.maxCodes) codes per upload"))
                        return
                    }
                } else {
                    repeated += 1
                }
            }
        }
        if codes.isEmpty, problems.isEmpty {
            problems.append(.init(pointer: "#/lines", detail: "the upload holds no code"))
        }
    }
}
