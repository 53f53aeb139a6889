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

    /// A clock the test moves: the gate's rests advance it instead of sleeping.
    final class TestClock: Sendable {
        private let box = NIOLockedValueBox<(now: UInt64, rests: [UInt64])>((1_000_000_000, []))
        var now: UInt64 { box.withLockedValue { $0.now } }
        var rests: [UInt64] { box.withLockedValue { $0.rests } }
        func advance(_ nanoseconds: UInt64) { box.withLockedValue { $0.now += nanoseconds } }
        func rest(_ nanoseconds: UInt64) {
            box.withLockedValue {
                $0.rests.append(nanoseconds)
                $0.now += nanoseconds
            }
        }
        func gate(concurrency: Int = 1, share: Double) -> BulkGate {
            BulkGate(concurrency: concurrency, share: share, now: { self.now }, rest: { self.rest($0) })
        }
    }

    @Test("a place rests after its work: held d, it rests d × (1 − share) / share; a waiter that takes it waits too")
    func placeRests() async throws {
        let ms: UInt64 = 1_000_000
        let clock = TestClock()
        let gate = clock.gate(share: 0.25)
        // Work of 100 ms: the next taker waits 300 ms first (a quarter of the place's time is bulk work).
        _ = try await gate.run { clock.advance(100 * ms) }
        #expect(clock.rests == [])
        let start = clock.now
        let began = await gate.enter()
        #expect(clock.rests == [300 * ms])
        #expect(began == start + 300 * ms)
        // A taker that came after the rest ended does not wait.
        clock.advance(10 * ms)
        gate.leave(since: began)
        clock.advance(40 * ms)
        let next = await gate.enter()
        #expect(clock.rests == [300 * ms], "10 ms held, 30 ms rest: over before the taker came")
        gate.leave(since: next)

        // A waiter queued behind the work gets the place, then waits for its rest.
        let queued = clock.gate(share: 0.5)
        let holder = Holder(queued)
        try await waitFor("the holder has the place") { queued.load == (1, 0) }
        let waiter = Task { await queued.enter() }
        try await waitFor("the waiter waits") { queued.load == (1, 1) }
        clock.advance(20 * ms)
        let before = clock.now
        try await holder.release()
        let waited = await waiter.value
        #expect(clock.rests.last == 20 * ms, "held 20 ms at a share of 1/2: 20 ms of rest")
        #expect(waited == before + 20 * ms)
        queued.leave(since: waited)
        #expect(queued.load == (0, 0))
    }

    /// Two places: each keeps its own rest. (Before, a place's rest was written over another's: a request took the
    /// busy place's passed rest and started at once, and the free place did bulk work half the time, not a quarter.)
    @Test("with two places, each rests after its own work; a cancelled rest does not shorten the next one")
    func twoPlacesRestApart() async throws {
        let ms: UInt64 = 1_000_000
        let clock = TestClock()
        let gate = clock.gate(concurrency: 2, share: 0.25)
        let longStart = await gate.enter()  // a long hold on one place
        let short = await gate.enter()  // 10 ms on the other
        clock.advance(10 * ms)
        gate.leave(since: short)
        // The next request takes the place that just did 10 ms of work: 30 ms of rest first.
        let next = await gate.enter()
        #expect(clock.rests == [30 * ms])
        #expect(next == longStart + 40 * ms)
        gate.leave(since: next)
        gate.leave(since: longStart)

        // A request whose rest was cut short (its task cancelled: the wait returns at once, the clock does not move)
        // counts its work from the rest's end: the place's next rest is not earlier than the one it had.
        let cut = TestClock()
        let cancelled = BulkGate(concurrency: 1, share: 0.25, now: { cut.now }, rest: { _ in })
        _ = try await cancelled.run { cut.advance(100 * ms) }  // a rest until 300 ms from now
        let restEnds = cut.now + 300 * ms
        let began = await cancelled.enter()
        #expect(began == restEnds)
        cancelled.leave(since: began)  // at once
        let after = await cancelled.enter()
        #expect(after >= restEnds)
        cancelled.leave(since: after)
    }

    @Test("a rest is at most 5 s, however long the place was held")
    func restIsBounded() async throws {
        let clock = TestClock()
        let gate = clock.gate(share: 0.01)
        _ = try await gate.run { clock.advance(60_000_000_000) }
        _ = await gate.enter()
        #expect(clock.rests == [BulkGate.maxRest])
    }

    @Test("at a share of 100 % a place never rests")
    func fullShare() async throws {
        let clock = TestClock()
        let gate = clock.gate(share: 1)
        for _ in 0..<3 { _ = try await gate.run { clock.advance(50_000_000) } }
        #expect(clock.rests == [])
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
