import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Inventory
import InventoryTestSupport
import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import InventoryAPI

/// Code exports and uploads run a bounded number at a time (issue 22: no single request stalls the others).
@Suite("Bulk gate", .timeLimit(.minutes(1)))
struct BulkGateTests {
    /// Holds a place of `gate` until `release` is called: the work of a long export.
    final class Holder: Sendable {
        let task: Task<Void, any Error>
        private let signal: AsyncStream<Void>.Continuation

        init(_ gate: BulkGate, order: (@Sendable () -> Void)? = nil) {
            let (stream, signal) = AsyncStream<Void>.makeStream()
            self.signal = signal
            task = Task {
                try await gate.run {
                    order?()
                    for await _ in stream { break }
                }
            }
        }

        func release() async throws {
            signal.yield()
            signal.finish()
            try await task.value
        }
    }

    @Test("runs `concurrency` at a time; the rest wait in order; past the queue there is no room")
    func placesAndQueue() async throws {
        let gate = BulkGate(concurrency: 1, queueLimit: 2)
        let order = Order()
        let first = Holder(gate) { order.append(1) }
        try await waitFor("the first holds the place") { gate.load == (1, 0) }
        let second = Holder(gate) { order.append(2) }
        try await waitFor("the second waits") { gate.load == (1, 1) }
        let third = Holder(gate) { order.append(3) }
        try await waitFor("the third waits") { gate.load == (1, 2) }
        #expect(gate.hasRoom == false, "one running and two waiting fill a gate of 1 + 2")
        try await first.release()
        try await waitFor("the second runs after the first") { order.values == [1, 2] }
        #expect(gate.load == (1, 1))
        #expect(gate.hasRoom)
        try await second.release()
        try await third.release()
        #expect(order.values == [1, 2, 3])
        #expect(gate.load == (0, 0))
    }

    @Test("over HTTP: with the gate full, an export and an upload are 429 bulk-busy and change nothing; then they run")
    func httpRefusal() async throws {
        try await TestStores.with { stores in
            let item = stores.item(1)
            _ = try await stores.engine.setPool(item, CodePool(kind: .oneTime))
            _ = try await stores.engine.loadCodes(item, ["A-1", "A-2"])
            let gate = BulkGate(concurrency: 1, queueLimit: 0)
            let router = Router(context: BasicRequestContext.self)
            InventoryRoutes(engine: stores.engine, bulk: gate).register(on: router)
            try await Application(router: router).test(.router) { client in
                let busy = Holder(gate)
                try await waitFor("the held export has the place") { gate.load == (1, 0) }
                let path = "/v1/stock/\(stores.bizId)/1/codes"
                let export = try await client.execute(uri: path, method: .get)
                let upload = try await client.execute(
                    uri: path, method: .post, headers: [.contentType: "text/plain"], body: ByteBuffer(string: "B-1\nB-2\n")
                )
                for response in [export, upload] {
                    #expect(response.status == .tooManyRequests)
                    #expect(response.headers[.retryAfter] == "1")
                    #expect(String(buffer: response.body).contains("bulk-busy"))
                }
                try await busy.release()
                let after = try await client.execute(uri: path, method: .get)
                #expect(after.status == .ok)
                #expect(Set(String(buffer: after.body).split(separator: "\n").map(String.init)) == ["A-1", "A-2"], "the upload loaded nothing")
                let loaded = try await client.execute(
                    uri: path, method: .post, headers: [.contentType: "text/plain"], body: ByteBuffer(string: "B-1\nB-2\n")
                )
                #expect(loaded.status == .ok)
                #expect(gate.load == (0, 0))
            }
        }
    }
}

/// The order in which held places began.
final class Order: Sendable {
    private let box = NIOLockedValueBox<[Int]>([])
    func append(_ value: Int) { box.withLockedValue { $0.append(value) } }
    var values: [Int] { box.withLockedValue { $0 } }
}
