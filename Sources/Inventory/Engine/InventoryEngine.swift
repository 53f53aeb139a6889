import Dispatch
import Foundation
import Logging
import Metrics
import MySQLClient
import NIOConcurrencyHelpers
import RedisClient

/// What the engine has done that is not visible in the stores, for metrics and tests.
public struct EngineCounters: Sendable, Equatable {
    /// Stock items this process rebuilt in Redis from MySQL (the init path).
    public var itemRebuilds = 0
}

/// When a reserve answers.
public enum Durability: String, Sendable {
    /// After Redis has held the stock and appended the journal event (fastest; on a Redis crash at most the AOF
    /// fsync window is lost, stock and event together).
    case async
    /// After the journal row is committed in MySQL as well, through group-committed batches.
    case sync
}

/// Settings of the engine, each with a default that works locally.
public struct EngineConfiguration: Sendable {
    public var durability: Durability
    /// Hold time of a reservation that does not say (`ttlSeconds`).
    public var defaultTTLSeconds: Int
    /// How long orders and de-duplication keys outlive their hold, so replays and late cancels are recognised.
    public var retentionSeconds: Int
    /// TTL of item hashes, extended while the item is being reserved; 0 keeps them until deleted. An item that
    /// expires is rebuilt from MySQL on its next use.
    public var itemTTLSeconds: Int
    public var keys: KeyLayout
    /// Lifetime of an item's init lock: a holder that died is taken over after this.
    public var initLockMilliseconds: Int64 = 5000
    /// How long a caller waits for another caller's rebuild of an item before answering 503.
    public var initWaitMilliseconds: Int64 = 3000
    /// How long a call that met Redis behind MySQL's drain marks (`DrainFloors`) waits for the check and the forget
    /// before answering 503; the check goes on.
    public var drainCheckWaitMilliseconds: Int64 = 3000
    /// The most records (live holds, codes, per-user counts) one script of a rebuild writes (`ItemRebuilder.write`:
    /// restamp_holds.lua and fill_part.lua for each part but the last, init_item.lua with the last): in one script an
    /// item with 20,000 live holds stopped Redis for 0.24 s, a pool of 200,000 codes for 0.2 s.
    public var rebuildChunk = 1000
    /// Redis Cluster: how long a reserve of several parts may take to hold them all; a reserve still under way
    /// after this (its caller crashed) is given up by the expiry sweeper, which takes its parts back.
    public var reserveDeadlineMilliseconds: Int64 = 10_000
    /// The most codes one code pool may have: an upload past it is refused whole (409). It bounds what one pool
    /// costs: its code set in Redis, a rebuild's read of it, a reusable pool's hold.
    public var maxPoolCodes = 200_000
    /// How long "MySQL has no such item" is remembered in Redis (`KeyLayout.absent`). An item made in MySQL behind
    /// the service's back (not by a PUT or a pool, which delete the entry) is found after this at the latest.
    public var absentMilliseconds: Int64 = 2_000
    /// How long after its Redis half (measured from before it was asked for) an adjustment's MySQL half may still
    /// commit; past it the transaction rolls back instead. Well inside a fence's lifetime (lua/lib/fence.lua, 60 s),
    /// after which a retry may take the half over and reverse it should its own MySQL half fail: a commit landing
    /// after that left Redis without a change MySQL has. (Not a setting: tests shorten it.)
    public var adjustmentCommitDeadline = Duration.seconds(50)
    /// This instance's clock (Unix ms). Nothing that decides a hold's fate reads it: deadlines, per-user windows
    /// and lock times come from Redis (`TIME` inside the scripts, `redisNow()`), so instances whose clocks differ
    /// agree. It stamps what only this instance sees (journal commit times, the write-back lag). Tests skew it.
    public var clock: @Sendable () -> Int64 = InventoryEngine.nowMilliseconds

    public init(
        durability: Durability = .async, defaultTTLSeconds: Int = 1800, retentionSeconds: Int = 86_400,
        itemTTLSeconds: Int = 7 * 86_400, keys: KeyLayout = KeyLayout()
    ) {
        self.durability = durability
        self.defaultTTLSeconds = defaultTTLSeconds
        self.retentionSeconds = retentionSeconds
        self.itemTTLSeconds = itemTTLSeconds
        self.keys = keys
    }
}

/// The reservation engine: every change of stock in Redis goes through one of its Lua scripts; stock
/// administration also writes MySQL, the system of record, and reverses the Redis half when that fails.
public final class InventoryEngine: Sendable {
    public let configuration: EngineConfiguration
    /// Redis, the scripts and the ways to run them (`EngineStores`).
    let stores: EngineStores
    /// The one init path (`ItemRebuilder`).
    let rebuilder: ItemRebuilder
    let stockRepository: StockRepository
    let codePools: CodePoolRepository
    let journal: JournalRepository
    let compensations: CompensationRepository
    let committer: JournalCommitter
    let mysql: MySQLClient
    /// Where orders live and what decides their state: the topology, chosen here once (`OrderPlacement`).
    let placement: any OrderPlacement
    /// The reservation flows over the collaborators they use (`OrderReader`, `SyncJournal`, `Compensator`), made once
    /// here: a reserve does not build them again.
    let reservations: Reservations

    var keys: KeyLayout { configuration.keys }
    var redis: any RedisRouter { stores.redis }
    var runner: RedisScriptRunner { stores.runner }
    var scripts: InventoryScripts { stores.scripts }
    var logger: Logger { stores.logger }

    public init(
        redis: any RedisRouter,
        mysql: MySQLClient,
        scripts: InventoryScripts,
        configuration: EngineConfiguration = EngineConfiguration(),
        logger: Logger
    ) {
        let stores = EngineStores(configuration: configuration, redis: redis, scripts: scripts, logger: logger)
        self.stores = stores
        self.mysql = mysql
        self.stockRepository = StockRepository(client: mysql)
        self.rebuilder = ItemRebuilder(stores: stores, stockRepository: stockRepository)
        self.codePools = CodePoolRepository(client: mysql)
        self.journal = JournalRepository(client: mysql)
        self.compensations = CompensationRepository(client: mysql)
        self.committer = JournalCommitter(
            journal: journal, fences: stores.batchFences
        )
        self.configuration = configuration
        let placement = Self.placement(for: configuration.keys)
        self.placement = placement
        let compensator = Compensator(stores: stores, rebuilder: rebuilder, repository: compensations, journal: journal)
        let orders = OrderReader(stores: stores, rebuilder: rebuilder, journal: journal, codePools: codePools, placement: placement)
        self.reservations = Reservations(
            stores: stores, rebuilder: rebuilder, orders: orders,
            syncJournal: SyncJournal(stores: stores, committer: committer, journal: journal, compensator: compensator, orders: orders),
            compensator: compensator, journal: journal, placement: placement
        )
        // A script that finds Redis below a floor has every shard's mark checked (the journal's connections, not the
        // caller's: `stores` is passed in, so the check keeps no engine alive).
        let journal = self.journal
        stores.floors.install { stores in _ = try await stores.forgetIfWentBack(marks: stores.keys.drainMarks, journal: journal) }
    }

    /// Loads the scripts into Redis (SCRIPT LOAD), so a broken script fails the start, not a request, and reads the drain
    /// floors (`DrainFloors`).
    /// Also makes every shard's generation marker that is missing (see `Reservations.askJournal`), so that a cancel made before
    /// any reserve in a shard is guarded by one; MySQL that cannot be asked leaves that to the first reserve.
    public func loadScripts() async throws {
        try await redisCall { try await self.runner.load(self.scripts.all) }
        await markOutboxesIntact()
        // The drain floors from MySQL before the first request (then `EngineLoop.drainFloors`, about once a second).
        do {
            try await refreshDrainFloors()
        } catch {
            logger.warning("drain floors not read at start; read about once a second from now", metadata: ["error": "\(error)"])
        }
        for shard in 0..<keys.shards {
            do {
                try await reservations.makeGeneration(shard: shard)
            } catch {
                logger.warning(
                    "generation marker not made at start; the first reserve of its shard makes it",
                    metadata: ["shard": "\(shard)", "error": "\(error)"]
                )
                break
            }
        }
    }

    // The operations are in InventoryEngine+*.swift, one file per concern.

    /// Runs one call of a script and decodes its reply (Scripts/: one typed call per script).
    func run<Call: ScriptCall>(_ call: Call) async throws -> Call.Reply { try await stores.run(call) }

    /// Runs a call of a script that changes items, its missing items rebuilt first (`ItemRebuilder.run(onItems:)`):
    /// the one place an item found missing by a script is handled.
    func run<Call: ItemScriptCall>(onItems call: Call) async throws -> Call.Reply { try await rebuilder.run(onItems: call) }

    func redisCall<T>(_ body: () async throws -> T) async throws -> T { try await stores.redisCall(body) }

    func mapMySQL(_ error: any Error) -> InventoryError { stores.mapMySQL(error) }

    /// The wall clock of this process (Unix ms): the default of `EngineConfiguration.clock`.
    public static func nowMilliseconds() -> Int64 {
        Int64(Date().timeIntervalSince1970 * 1000)
    }

    /// The `now` argument that makes a script read Redis's own clock (lua/lib/clock.lua).
    static let redisTime = ""

    /// Redis's clock (Unix ms), read on the node of `routingKey`: the one clock every instance shares, for the
    /// decisions the engine makes outside a script (is a hold due, which per-user window is current).
    public func redisNow(routingKey: String? = nil) async throws -> Int64 { try await stores.redisNow(routingKey: routingKey) }
}

extension Array {
    subscript(safe index: Int) -> Element? {
        indices.contains(index) ? self[index] : nil
    }
}
