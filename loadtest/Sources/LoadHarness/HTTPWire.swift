import NIOCore

/// The measured path's HTTP/1.1 codec: requests written as bytes, answers parsed just far enough for a load test
/// (status, keep-alive, `Idempotent-Replayed`, where the body ends).
///
/// Profiling the first version, built on NIOHTTP1's encoder and llhttp decoder, showed about 8 µs of harness CPU per
/// request against wrk's 1 µs; on a 2-core machine shared with the server that CPU comes out of the server's
/// throughput. This codec builds no header dictionaries and no strings per answer. The setup client and the tests'
/// server use NIOHTTP1.
struct ParsedResponse: Equatable {
    var status: Int
    var keepAlive: Bool
    var replayed: Bool
}

/// An answer that is not HTTP/1.x as the harness understands it.
struct ResponseParseError: Error, Equatable, CustomStringConvertible {
    var description: String
}

/// Incremental parser of HTTP/1.x responses: feed it bytes as they arrive, it calls back once per complete answer.
/// Bodies are skipped, delimited by Content-Length or chunked encoding (or the connection's end when neither).
struct ResponseParser {
    private enum State {
        case head
        case body(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkTrailer
        case untilClose
    }

    private var state = State.head
    private var current = ParsedResponse(status: 0, keepAlive: true, replayed: false)
    /// Bytes of an incomplete head or chunk-size line, kept until the rest arrives.
    private var pending: ByteBuffer?
    /// Heads larger than this are refused (the service's answers are a few hundred bytes).
    static let maxHeadBytes = 64 * 1024

    init() {}

    /// True while an answer that ends with the connection is being read.
    var readsUntilClose: Bool { if case .untilClose = state { true } else { false } }

    /// Consumes `input` entirely, calling `onResponse` for each answer completed.
    mutating func feed(_ input: ByteBuffer, _ onResponse: (ParsedResponse) -> Void) throws(ResponseParseError) {
        var buffer: ByteBuffer
        if var pending {
            var input = input
            pending.writeBuffer(&input)
            buffer = pending
            self.pending = nil
        } else {
            buffer = input
        }
        while buffer.readableBytes > 0 {
            switch state {
            case .head:
                guard let parsed = try Self.parseHead(&buffer) else {
                    guard buffer.readableBytes <= Self.maxHeadBytes else { throw ResponseParseError(description: "head too large") }
                    pending = buffer
                    return
                }
                let (response, framing) = parsed
                if (100..<200).contains(response.status) { continue }
                current = response
                switch framing {
                case .length(0):
                    onResponse(current)
                case .length(let length):
                    state = .body(remaining: length)
                case .chunked:
                    state = .chunkSize
                case .untilClose:
                    current.keepAlive = false
                    state = .untilClose
                }
            case .body(let remaining):
                let take = Swift.min(remaining, buffer.readableBytes)
                buffer.moveReaderIndex(forwardBy: take)
                if take == remaining {
                    state = .head
                    onResponse(current)
                } else {
                    state = .body(remaining: remaining - take)
                }
            case .chunkSize:
                guard let line = Self.readLine(&buffer) else {
                    guard buffer.readableBytes <= 1024 else { throw ResponseParseError(description: "chunk size line too long") }
                    pending = buffer
                    return
                }
                let hex = line.split(separator: UInt8(ascii: ";"), maxSplits: 1, omittingEmptySubsequences: false)[0]
                guard let size = Self.hexValue(hex) else { throw ResponseParseError(description: "bad chunk size") }
                state = size == 0 ? .chunkTrailer : .chunkData(remaining: size + 2)
            case .chunkData(let remaining):
                let take = Swift.min(remaining, buffer.readableBytes)
                buffer.moveReaderIndex(forwardBy: take)
                state = take == remaining ? .chunkSize : .chunkData(remaining: remaining - take)
            case .chunkTrailer:
                guard let line = Self.readLine(&buffer) else {
                    guard buffer.readableBytes <= Self.maxHeadBytes else { throw ResponseParseError(description: "trailer too large") }
                    pending = buffer
                    return
                }
                if line.isEmpty {
                    state = .head
                    onResponse(current)
                }
            case .untilClose:
                buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
            }
        }
    }

    /// The connection ended: completes an answer delimited by the close, or says an answer was cut short.
    mutating func finish(_ onResponse: (ParsedResponse) -> Void) -> Bool {
        defer { state = .head; pending = nil }
        switch state {
        case .untilClose:
            onResponse(current)
            return true
        case .head:
            return pending == nil
        default:
            return false
        }
    }

    private enum Framing: Equatable {
        case length(Int)
        case chunked
        case untilClose
    }

    /// Parses a complete head at the reader index (and moves past it), or returns nil when it is not all here yet.
    private static func parseHead(_ buffer: inout ByteBuffer) throws(ResponseParseError) -> (ParsedResponse, Framing)? {
        let result: Result<(ParsedResponse, Framing, Int)?, ResponseParseError> = buffer.withUnsafeReadableBytes { bytes in
            guard let end = headEnd(bytes) else { return .success(nil) }
            // "HTTP/1.1 200 ..."
            guard end >= 12, bytes[0] == UInt8(ascii: "H"), bytes[1] == UInt8(ascii: "T"), bytes[2] == UInt8(ascii: "T"),
                bytes[3] == UInt8(ascii: "P"), bytes[4] == UInt8(ascii: "/"), bytes[5] == UInt8(ascii: "1"),
                bytes[6] == UInt8(ascii: "."), bytes[8] == UInt8(ascii: " ")
            else { return .failure(ResponseParseError(description: "not an HTTP/1.x status line")) }
            let minor = bytes[7]
            var status = 0
            for index in 9..<12 {
                let digit = bytes[index]
                guard digit >= UInt8(ascii: "0") && digit <= UInt8(ascii: "9") else {
                    return .failure(ResponseParseError(description: "bad status code"))
                }
                status = status * 10 + Int(digit - UInt8(ascii: "0"))
            }
            var keepAlive = minor != UInt8(ascii: "0")
            var replayed = false
            var contentLength: Int?
            var chunked = false
            // Header lines: from after the status line to the blank line.
            var lineStart = 0
            while lineStart < end && !(bytes[lineStart] == 13 && lineStart + 1 < end && bytes[lineStart + 1] == 10) {
                lineStart += 1
            }
            lineStart += 2
            while lineStart < end {
                var lineEnd = lineStart
                while lineEnd < end && bytes[lineEnd] != 13 { lineEnd += 1 }
                if lineEnd == lineStart { break }
                var colon = lineStart
                while colon < lineEnd && bytes[colon] != UInt8(ascii: ":") { colon += 1 }
                guard colon < lineEnd else { return .failure(ResponseParseError(description: "header line without a colon")) }
                var valueStart = colon + 1
                while valueStart < lineEnd && (bytes[valueStart] == 32 || bytes[valueStart] == 9) { valueStart += 1 }
                var valueEnd = lineEnd
                while valueEnd > valueStart && (bytes[valueEnd - 1] == 32 || bytes[valueEnd - 1] == 9) { valueEnd -= 1 }
                let name = UnsafeRawBufferPointer(rebasing: bytes[lineStart..<colon])
                let value = UnsafeRawBufferPointer(rebasing: bytes[valueStart..<valueEnd])
                if equalsIgnoringCase(name, "content-length") {
                    var length = 0
                    guard !value.isEmpty, value.count <= 15 else {
                        return .failure(ResponseParseError(description: "bad Content-Length"))
                    }
                    for digit in value {
                        guard digit >= UInt8(ascii: "0") && digit <= UInt8(ascii: "9") else {
                            return .failure(ResponseParseError(description: "bad Content-Length"))
                        }
                        length = length * 10 + Int(digit - UInt8(ascii: "0"))
                    }
                    contentLength = length
                } else if equalsIgnoringCase(name, "transfer-encoding") {
                    chunked = containsIgnoringCase(value, "chunked")
                } else if equalsIgnoringCase(name, "connection") {
                    if containsIgnoringCase(value, "close") { keepAlive = false }
                    if containsIgnoringCase(value, "keep-alive") { keepAlive = true }
                } else if equalsIgnoringCase(name, "idempotent-replayed") {
                    replayed = equalsIgnoringCase(value, "true")
                }
                lineStart = lineEnd + 2
            }
            let response = ParsedResponse(status: status, keepAlive: keepAlive, replayed: replayed)
            let framing: Framing
            if (100..<200).contains(status) || status == 204 || status == 304 {
                framing = .length(0)
            } else if chunked {
                framing = .chunked
            } else if let contentLength {
                framing = .length(contentLength)
            } else {
                framing = .untilClose
            }
            return .success((response, framing, end + 4))
        }
        switch result {
        case .failure(let error):
            throw error
        case .success(nil):
            return nil
        case .success(let (response, framing, consumed)?):
            buffer.moveReaderIndex(forwardBy: consumed)
            return (response, framing)
        }
    }

    /// Index of the "\r\n\r\n" that ends the head, if present.
    private static func headEnd(_ bytes: UnsafeRawBufferPointer) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for index in 0...(bytes.count - 4)
        where bytes[index + 3] == 10 && bytes[index + 2] == 13 && bytes[index + 1] == 10 && bytes[index] == 13 {
            return index
        }
        return nil
    }

    private static func readLine(_ buffer: inout ByteBuffer) -> [UInt8]? {
        guard let view = buffer.readableBytesView.firstIndex(of: 10) else { return nil }
        let length = view - buffer.readerIndex + 1
        var line = buffer.readBytes(length: length)!
        line.removeLast()
        if line.last == 13 { line.removeLast() }
        return line
    }

    private static func hexValue(_ digits: ArraySlice<UInt8>) -> Int? {
        var trimmed = digits
        while trimmed.last == 32 || trimmed.last == 9 { trimmed.removeLast() }
        guard !trimmed.isEmpty, trimmed.count <= 15 else { return nil }
        var value = 0
        for digit in trimmed {
            let nibble: Int
            switch digit {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = Int(digit - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = Int(digit - UInt8(ascii: "a")) + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): nibble = Int(digit - UInt8(ascii: "A")) + 10
            default: return nil
            }
            value = value * 16 + nibble
        }
        return value
    }

    private static func lower(_ byte: UInt8) -> UInt8 {
        byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte + 32 : byte
    }

    private static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ text: StaticString) -> Bool {
        guard bytes.count == text.utf8CodeUnitCount else { return false }
        let expected = UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)
        for index in 0..<bytes.count where lower(bytes[index]) != expected[index] { return false }
        return true
    }

    private static func containsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ text: StaticString) -> Bool {
        let count = text.utf8CodeUnitCount
        guard bytes.count >= count else { return false }
        let expected = UnsafeRawBufferPointer(start: text.utf8Start, count: count)
        outer: for start in 0...(bytes.count - count) {
            for index in 0..<count where lower(bytes[start + index]) != expected[index] { continue outer }
            return true
        }
        return false
    }
}
