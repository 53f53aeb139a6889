import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A tiny in-process stand-in for the service (NIOHTTP1 server, state in memory): enough of API v1 for the harness
/// to run every step of a phase against it. `oversell` turns off the stock check, `replayCreates` answers a replay
/// with a second 201: the bugs the harness must catch.
final class FakeInventoryServer: Sendable {
    struct Item {
        var available: Int64 = 0
        var reserved: Int64 = 0
    }

    struct Order {
        var body: Data
        var lines: [(key: String, quantity: Int64)]
        var status: String
    }

    struct State {
        var items: [String: Item] = [:]
        var orders: [String: Order] = [:]
    }

    let state = NIOLockedValueBox(State())
    let oversell: Bool
    let replayCreates: Bool
    private let group: MultiThreadedEventLoopGroup
    private let channel: Channel

    var port: Int { channel.localAddress!.port! }

    private init(group: MultiThreadedEventLoopGroup, channel: Channel, oversell: Bool, replayCreates: Bool) {
        self.group = group
        self.channel = channel
        self.oversell = oversell
        self.replayCreates = replayCreates
    }

    /// Starts a server on 127.0.0.1 (a free port), runs `body`, stops it.
    static func with<T>(
        oversell: Bool = false, replayCreates: Bool = false, _ body: (FakeInventoryServer) async throws -> T
    ) async throws -> T {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let box = NIOLockedValueBox<FakeInventoryServer?>(nil)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(FakeHandler(server: box.withLockedValue { $0! }))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let server = FakeInventoryServer(group: group, channel: channel, oversell: oversell, replayCreates: replayCreates)
        box.withLockedValue { $0 = server }
        do {
            let result = try await body(server)
            try await channel.close()
            try await group.shutdownGracefully()
            return result
        } catch {
            try? await channel.close()
            try? await group.shutdownGracefully()
            throw error
        }
    }

    func item(_ biz: String, _ sku: Int) -> Item? { state.withLockedValue { $0.items["\(biz)/\(sku)"] } }

    /// Answers one request: (status, extra headers, JSON body).
    func handle(method: HTTPMethod, path: String, body: Data) -> (Int, [(String, String)], String) {
        let parts = path.split(separator: "/").map(String.init)
        switch (method, parts.count) {
        case (.GET, 1) where parts[0] == "healthz":
            return (200, [], #"{"status":"ok"}"#)
        case (.PUT, 4) where parts[0] == "v1" && parts[1] == "stock":
            let stock = (try? JSONSerialization.jsonObject(with: body) as? [String: Any])?["stock"] as? Int ?? 0
            return state.withLockedValue { state in
                var item = state.items["\(parts[2])/\(parts[3])", default: Item()]
                item.available = Int64(stock) - item.reserved
                state.items["\(parts[2])/\(parts[3])"] = item
                return (200, [], #"{"available":\#(item.available),"reserved":\#(item.reserved)}"#)
            }
        case (.GET, 4) where parts[0] == "v1" && parts[1] == "stock":
            guard let item = state.withLockedValue({ $0.items["\(parts[2])/\(parts[3])"] }) else { return (404, [], "{}") }
            return (200, [], #"{"available":\#(item.available),"reserved":\#(item.reserved)}"#)
        case (.POST, 2) where parts == ["v1", "reservations"]:
            return reserve(body)
        case (.POST, 4) where parts[0] == "v1" && parts[1] == "reservations" && (parts[3] == "confirm" || parts[3] == "cancel"):
            return finish(order: parts[2], confirm: parts[3] == "confirm")
        case (.POST, 6) where parts[0] == "v1" && parts[1] == "businesses" && parts[3] == "reservations"
            && (parts[5] == "confirm" || parts[5] == "cancel"):
            return finish(order: parts[4], confirm: parts[5] == "confirm")
        default:
            return (404, [], "{}")
        }
    }

    private func reserve(_ body: Data) -> (Int, [(String, String)], String) {
        guard let json = try? JSONSerialization.jsonObject(with: body) as? [String: Any], let orderId = json["orderId"] as? String,
            let biz = json["bizId"] as? String, let items = json["items"] as? [[String: Any]]
        else { return (400, [], "{}") }
        let lines = items.map { (key: "\(biz)/\($0["skuId"] as? Int ?? 0)", quantity: Int64($0["quantity"] as? Int ?? 0)) }
        return state.withLockedValue { state in
            if let order = state.orders[orderId], !replayCreates {
                return order.body == body ? (200, [("Idempotent-Replayed", "true")], "{}") : (422, [], "{}")
            }
            for line in lines {
                guard let item = state.items[line.key] else { return (404, [], "{}") }
                if !oversell && item.available < line.quantity { return (409, [], "{}") }
            }
            for line in lines {
                state.items[line.key]!.available -= line.quantity
                state.items[line.key]!.reserved += line.quantity
            }
            state.orders[orderId] = Order(body: body, lines: lines, status: "reserved")
            return (201, [], "{}")
        }
    }

    private func finish(order orderId: String, confirm: Bool) -> (Int, [(String, String)], String) {
        state.withLockedValue { state in
            guard var order = state.orders[orderId] else { return (404, [], "{}") }
            if order.status == "reserved" {
                for line in order.lines {
                    state.items[line.key]!.reserved -= line.quantity
                    if !confirm { state.items[line.key]!.available += line.quantity }
                }
                order.status = confirm ? "confirmed" : "cancelled"
                state.orders[orderId] = order
            }
            return (200, [], "{}")
        }
    }
}

/// One connection of the fake server: collects a request, answers it.
final class FakeHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let server: FakeInventoryServer
    private var head: HTTPRequestHead?
    private var body = Data()

    init(server: FakeInventoryServer) { self.server = server }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = Data()
        case .body(let buffer):
            body.append(contentsOf: buffer.readableBytesView)
        case .end:
            guard let head else { return }
            let (status, extra, json) = server.handle(method: head.method, path: head.uri, body: body)
            var headers = HTTPHeaders([("Content-Type", "application/json"), ("Content-Length", String(json.utf8.count))])
            for (name, value) in extra { headers.add(name: name, value: value) }
            let response = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: headers)
            context.write(wrapOutboundOut(.head(response)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: json)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}
