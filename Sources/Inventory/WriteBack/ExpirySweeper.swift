import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle

/// Releases holds that were not confirmed in time: every interval it takes each shard's expired orders from
/// the expiry index and rolls them back (reason `expired`). A hold is therefore counted as reserved at most one
/// interval (plus one sweep's work) past its deadline.
///
/// Each shard is swept by one instance at a time, the holder of its lease (`prefix:{sN}:sweep:lease`, renewed every
/// sweep, lapsing after `leaseMilliseconds`): several instances racing for the same orders was wasted work. When the
/// holder stops, another takes the shard over once the lease lapses (a few seconds more for those holds).
public final class ExpirySweeper: Service, Sendable {
    private let engine: InventoryEngine
    private let intervalMilliseconds: Int
    private let batch: Int
    private let logger: Logger
    private let expiredCount = NIOLockedValueBox(0)
    /// This sweeper's name in the shards' leases.
    private let owner = "sweeper-\(UInt64.random(in: 1...UInt64.max))"
    /// How long a shard's lease lasts without renewal.
    private let leaseMilliseconds: Int
    /// The journal row the next journal sweep goes on after (0: from the start).
    private let journalCursor = NIOLockedValueBox<Int64>(0)
    /// Pages of `batch` journal lines one journal sweep reads at most.
    static let journalPages = 4

    /// - Parameter leaseMilliseconds: how long a shard's lease lasts without renewal (nil: 5 intervals, at least 5 s).
    public init(
        engine: InventoryEngine, intervalMilliseconds: Int = 1000, batch: Int = 500, leaseMilliseconds: Int? = nil,
        logger: Logger
    ) {
        self.engine = engine
        self.intervalMilliseconds = intervalMilliseconds
        self.leaseMilliseconds = leaseMilliseconds ?? max(5_000, 5 * intervalMilliseconds)
        self.batch = batch
        self.logger = logger
    }

    /// Holds expired by this sweeper so far.
    public var expired: Int { expiredCount.withLockedValue { $0 } }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            var round = 0
            while !Task.isCancelled {
                await self.sweepOnce()
                round += 1
                // Every minute or so, also the journal's view: holds whose Redis order or index entry was lost.
                if round % max(1, 60_000 / max(self.intervalMilliseconds, 1)) == 0 {
                    await self.sweepJournal()
                }
                try? await Task.sleep(for: .milliseconds(self.intervalMilliseconds))
            }
        }
    }

    /// Expires orders the journal holds RESERVED past their deadline plus `graceMilliseconds` (by then the Redis
    /// index should have handled them): the net under holds whose Redis state was lost. Only those of `bizId` when
    /// given (a test sharing the database with others). Returns how many expired.
    @discardableResult
    public func sweepJournal(graceMilliseconds: Int64 = 60_000, bizId: String? = nil) async -> Int {
        var expired = 0
        // Page after page: orders that cannot be expired yet (their Redis deadline later than the journal's) stay
        // RESERVED, and a first page read again and again would never reach those after them. At most `journalPages`
        // pages a call (the sweep of the index waits meanwhile): the first page from the start (lines that fell due
        // since, or whose expiry failed for a moment, are not left until a wrap-around), the others from where the
        // last call stopped; past the last page the next call starts over.
        var afterRow: Int64 = 0
        for page in 0..<Self.journalPages where !Task.isCancelled {
            if page == 1 { afterRow = max(afterRow, journalCursor.withLockedValue { $0 }) }
            let read: (orders: [String], lastRow: Int64?)
            do {
                read = try await engine.staleJournalHolds(graceMilliseconds: graceMilliseconds, limit: batch, bizId: bizId, afterRow: afterRow)
            } catch {
                logger.warning("expiry sweep could not read the journal", metadata: ["error": "\(error)"])
                break
            }
            for orderId in read.orders where !Task.isCancelled {
                if (try? await engine.expire(named: orderId)) == true { expired += 1 }
            }
            afterRow = read.lastRow ?? 0
            if read.lastRow == nil { break }
        }
        journalCursor.withLockedValue { [afterRow] in $0 = afterRow }
        if expired > 0 {
            logger.warning("expired holds found only through the journal", metadata: ["orders": "\(expired)"])
        }
        expiredCount.withLockedValue { $0 += expired }
        return expired
    }

    /// One pass over every shard; returns how many holds it expired. A cancelled task (the service shutting down)
    /// stops after the order at hand: a backlog of expired holds (thousands, after the service was down) must not
    /// hold up a shutdown until it is worked off.
    @discardableResult
    public func sweepOnce() async -> Int {
        var total = 0
        defer {
            expiredCount.withLockedValue { $0 += total }
            InventoryMetrics.expired.increment(by: total)
        }
        for shard in 0..<engine.configuration.keys.shards where !Task.isCancelled {
            do {
                guard try await engine.sweepLease(shard: shard, owner: owner, milliseconds: leaseMilliseconds) else { continue }
            } catch {
                logger.warning("expiry sweep could not take its lease", metadata: ["shard": "\(shard)", "error": "\(error)"])
                continue
            }
            while !Task.isCancelled {
                let orders: [String]
                do {
                    // Redis's clock, not this instance's: an instance whose clock is ahead must not pick holds early
                    // (rollback.lua checks the deadline against the same clock again).
                    let now = try await engine.redisNow(routingKey: engine.configuration.keys.expiryIndexes[shard])
                    orders = try await engine.expiredOrders(shard: shard, nowMilliseconds: now, limit: batch)
                } catch {
                    logger.warning("expiry sweep could not read its index", metadata: ["error": "\(error)"])
                    return total
                }
                var handled = 0
                for orderId in orders where !Task.isCancelled {
                    do {
                        if try await engine.expire(named: orderId) { total += 1 }
                        handled += 1
                    } catch {
                        logger.warning("expiry of an order failed", metadata: ["orderId": "\(orderId)", "error": "\(error)"])
                    }
                }
                // A full batch means more may be waiting, unless this one made no progress (store trouble).
                if orders.count < batch || handled == 0 { break }
            }
        }
        if engine.placement.leavesReservesUnderWay && !Task.isCancelled { await sweepAbandoned() }
        return total
    }

    /// Redis Cluster: gives up on reserves of several parts still under way past their deadline (their callers
    /// stopped half-way) and takes their parts back. Returns how many. `nowMilliseconds` nil: Redis's clock (the
    /// deadlines were set by it, lua/dir_open.lua). One order that fails is logged and skipped: the others of its
    /// shard are still given up (it is tried again next sweep).
    @discardableResult
    public func sweepAbandoned(nowMilliseconds: Int64? = nil) async -> Int {
        var total = 0
        for shard in 0..<engine.configuration.keys.shards where !Task.isCancelled {
            let orders: [String]
            do {
                let pending = engine.configuration.keys.pendingIndex(shard: shard)
                let now: Int64
                if let nowMilliseconds { now = nowMilliseconds } else { now = try await engine.redisNow(routingKey: pending) }
                orders = try await engine.abandonedReserves(shard: shard, nowMilliseconds: now, limit: batch)
            } catch {
                logger.warning("unfinished reserves could not be read", metadata: ["error": "\(error)"])
                continue
            }
            for orderId in orders where !Task.isCancelled {
                do {
                    if try await engine.abandon(named: orderId) { total += 1 }
                } catch {
                    logger.warning(
                        "giving up on an unfinished reserve failed", metadata: ["orderId": "\(orderId)", "error": "\(error)"]
                    )
                }
            }
        }
        return total
    }
}
