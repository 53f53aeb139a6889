import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// A plain sequential HTTP/1.1 client for what happens around a phase: setting stock before it and reading it after.
/// Not on the measured path.
public struct SetupClient: Sendable {
    let group: EventLoopGroup
    let target: Target
    let address: SocketAddress?
    public let timeout: Duration

    /// A client of `target` on `group`; a request without an answer within `timeout` fails.
    public init(group: EventLoopGroup, target: Target, address: SocketAddress? = nil, timeout: Duration) {
        self.group = group
        self.target = target
        self.address = address
        self.timeout = timeout
    }

    /// An item's stock as the service shows it.
    struct StockLevel: Sendable, Decodable, Equatable {
        var available: Int64
        var reserved: Int64
    }

    /// Opens one connection for `body`, closed afterwards.
    public func withConnection<T: Sendable>(_ body: (SetupConnection) async throws -> T) async throws -> T {
        let bootstrap = ClientBootstrap(group: group).connectTimeout(.nanoseconds(timeout.nanoseconds))
        let initializer: @Sendable (Channel) -> EventLoopFuture<NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>> = {
            channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHTTPClientHandlers()
                return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
            }
        }
        let channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
        do {
            if let address {
                channel = try await bootstrap.connect(to: address, channelInitializer: initializer)
            } else {
                channel = try await bootstrap.connect(host: target.connectHost, port: target.port, channelInitializer: initializer)
            }
        } catch {
            throw SetupError("cannot connect to \(target.url): \(error)")
        }
        let rawChannel = channel.channel
        let target = self.target
        let timeout = self.timeout
        return try await channel.executeThenClose { inbound, outbound in
            let connection = SetupConnection(
                channel: rawChannel, target: target, timeout: timeout, iterator: inbound.makeAsyncIterator(), outbound: outbound
            )
            return try await body(connection)
        }
    }

    /// Runs `work` for every index in `0..<count` over up to `parallel` connections; results in index order.
    func forEach<T: Sendable>(
        _ count: Int, parallel: Int, _ work: @escaping @Sendable (SetupConnection, Int) async throws -> T
    ) async throws -> [T] {
        let workers = Swift.max(1, Swift.min(parallel, count))
        return try await withThrowingTaskGroup(of: [(Int, T)].self) { group in
            for worker in 0..<workers {
                group.addTask {
                    try await withConnection { connection in
                        var results: [(Int, T)] = []
                        for index in stride(from: worker, to: count, by: workers) {
                            results.append((index, try await work(connection, index)))
                        }
                        return results
                    }
                }
            }
            var all: [(Int, T)] = []
            for try await part in group { all += part }
            return all.sorted { $0.0 < $1.0 }.map(\.1)
        }
    }
}

/// One open setup connection: one request at a time.
public final class SetupConnection {
    private let channel: Channel
    private let target: Target
    private let timeout: Duration
    private var iterator: NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>

    init(
        channel: Channel, target: Target, timeout: Duration,
        iterator: NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator,
        outbound: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>
    ) {
        self.channel = channel
        self.target = target
        self.timeout = timeout
        self.iterator = iterator
        self.outbound = outbound
    }

    /// Sends one request and collects its answer. A request without an answer within the timeout closes the
    /// connection and throws.
    public func request(_ method: HTTPMethod, _ path: String, json: String? = nil) async throws -> (status: Int, body: String) {
        try await request(method, path, body: json, contentType: "application/json")
    }

    /// Sends one request with a body of any content type (`text/plain` for a code upload) and collects its answer.
    public func request(
        _ method: HTTPMethod, _ path: String, body text: String?, contentType: String
    ) async throws -> (status: Int, body: String) {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: target.hostHeader)
        var body: ByteBuffer?
        if let text {
            let buffer = channel.allocator.buffer(string: text)
            headers.add(name: "Content-Type", value: contentType)
            headers.add(name: "Content-Length", value: String(buffer.readableBytes))
            body = buffer
        } else if method == .POST || method == .PUT {
            headers.add(name: "Content-Length", value: "0")
        }
        let uri = target.basePath + path
        let channel = self.channel
        let watchdog = channel.eventLoop.scheduleTask(in: .nanoseconds(timeout.nanoseconds)) { channel.close(promise: nil) }
        defer { watchdog.cancel() }
        try await outbound.write(.head(HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: headers)))
        if let body { try await outbound.write(.body(.byteBuffer(body))) }
        try await outbound.write(.end(nil))
        var status = 0
        var collected = ByteBuffer()
        while let part = try await iterator.next() {
            switch part {
            case .head(let head): status = Int(head.status.code)
            case .body(var chunk): collected.writeBuffer(&chunk)
            case .end: return (status, String(buffer: collected))
            }
        }
        throw SetupError("\(method) \(target.url)\(path): connection closed without an answer (timeout \(DurationText.format(timeout)))")
    }

    /// PUT /v1/stock/{biz}/{sku} {"stock": N}.
    func setStock(biz: String, sku: Int, stock: Int64) async throws {
        let path = "/v1/stock/\(biz)/\(sku)"
        let (status, body) = try await request(.PUT, path, json: "{\"stock\":\(stock)}")
        guard (200..<300).contains(status) else { throw SetupError("PUT \(path) answered \(status): \(body)") }
    }

    /// GET /v1/stock/{biz}/{sku}.
    func stock(biz: String, sku: Int) async throws -> SetupClient.StockLevel {
        let path = "/v1/stock/\(biz)/\(sku)"
        let (status, body) = try await request(.GET, path)
        guard status == 200 else { throw SetupError("GET \(path) answered \(status): \(body)") }
        do {
            return try JSONDecoder().decode(SetupClient.StockLevel.self, from: Data(body.utf8))
        } catch {
            throw SetupError("GET \(path): unreadable answer: \(body)")
        }
    }
}

/// Setting up or checking a phase failed (not a measurement).
public struct SetupError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
