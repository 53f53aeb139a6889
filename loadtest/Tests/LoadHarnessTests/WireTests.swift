import NIOCore
import Testing

@testable import LoadHarness

@Suite("HTTP/1.1 wire codec of the measured path")
struct WireTests {
    func parse(_ chunks: [String]) throws -> [ParsedResponse] {
        var parser = ResponseParser()
        var responses: [ParsedResponse] = []
        for chunk in chunks { try parser.feed(ByteBuffer(string: chunk)) { responses.append($0) } }
        return responses
    }

    static let created = "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n{\"status\":\"x\"}"
    static let replay = "HTTP/1.1 200 OK\r\nidempotent-replayed: true\r\ncontent-length: 2\r\n\r\n{}"
    static let chunked = "HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\na;x=y\r\n0123456789\r\n0\r\n\r\n"

    @Test("status, keep-alive, Idempotent-Replayed; Content-Length and chunked bodies")
    func answers() throws {
        let responses = try parse([Self.created + Self.replay + Self.chunked])
        #expect(
            responses == [
                ParsedResponse(status: 201, keepAlive: true, replayed: false),
                ParsedResponse(status: 200, keepAlive: true, replayed: true),
                ParsedResponse(status: 409, keepAlive: true, replayed: false),
            ]
        )
    }

    @Test("answers split at every byte give the same result")
    func everySplit() throws {
        let text = Self.created + Self.replay + Self.chunked
        let bytes = Array(text.utf8)
        for cut in 1..<bytes.count {
            let first = String(decoding: bytes[..<cut], as: UTF8.self)
            let second = String(decoding: bytes[cut...], as: UTF8.self)
            #expect(try parse([first, second]).map(\.status) == [201, 200, 409], "cut at \(cut)")
        }
        #expect(try parse(text.map { String($0) }).count == 3)
    }

    @Test("Connection: close, HTTP/1.0, 100 Continue, 204 without a body, a body delimited by the close")
    func framing() throws {
        #expect(try parse(["HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"])[0].keepAlive == false)
        #expect(try parse(["HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"])[0].keepAlive == false)
        #expect(try parse(["HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"])[0].keepAlive)
        #expect(try parse(["HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"]).map(\.status) == [204])
        var parser = ResponseParser()
        var responses: [ParsedResponse] = []
        try parser.feed(ByteBuffer(string: "HTTP/1.1 200 OK\r\n\r\nsome body")) { responses.append($0) }
        #expect(responses.isEmpty && parser.readsUntilClose)
        #expect(parser.finish { responses.append($0) })
        #expect(responses == [ParsedResponse(status: 200, keepAlive: false, replayed: false)])
    }

    @Test("garbage is a protocol error; a cut answer is reported at the close")
    func errors() throws {
        #expect(throws: ResponseParseError.self) { try parse(["SSH-2.0-OpenSSH\r\n\r\n"]) }
        #expect(throws: ResponseParseError.self) { try parse(["HTTP/1.1 2x0 OK\r\n\r\n"]) }
        #expect(throws: ResponseParseError.self) { try parse(["HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n"]) }
        var parser = ResponseParser()
        try parser.feed(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")) { _ in }
        #expect(parser.finish { _ in } == false)
    }

    @Test("requests: reserve JSON with its Content-Length, confirm/cancel paths, a fixed healthz")
    func requests() throws {
        let renderer = RequestRenderer(target: try Target.parse("http://127.0.0.1:8090/api"), bizId: "lt1")
        let job = Job(orderId: "o-1", lines: [OrderLine(item: 0, quantity: 1), OrderLine(item: 4, quantity: 2)], plan: .reserve,
                      ttlSeconds: 1)
        let body = #"{"orderId":"o-1","bizId":"lt1","items":[{"skuId":1,"quantity":1},{"skuId":5,"quantity":2}],"ttlSeconds":1}"#
        let reserve = String(buffer: renderer.request(.reserve, job, allocator: ByteBufferAllocator()))
        #expect(
            reserve == "POST /api/v1/reservations HTTP/1.1\r\nHost: 127.0.0.1:8090\r\nContent-Type: application/json\r\n"
                + "Content-Length: \(body.utf8.count)\r\n\r\n" + body
        )
        #expect(String(buffer: renderer.request(.replay, job, allocator: ByteBufferAllocator())) == reserve)
        #expect(
            String(buffer: renderer.request(.cancel, job, allocator: ByteBufferAllocator()))
                == "POST /api/v1/businesses/lt1/reservations/o-1/cancel HTTP/1.1\r\nHost: 127.0.0.1:8090\r\nContent-Length: 0\r\n\r\n"
        )
        #expect(
            String(buffer: renderer.request(.healthz, job, allocator: ByteBufferAllocator()))
                == "GET /api/healthz HTTP/1.1\r\nHost: 127.0.0.1:8090\r\n\r\n"
        )
    }
}
