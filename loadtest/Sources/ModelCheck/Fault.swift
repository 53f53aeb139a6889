import Inventory

/// State that vanishes, and what runs beside the clients.
public enum Fault: Sendable, Equatable, CustomStringConvertible {
    /// The item hash is gone (its TTL ran out, Redis evicted it, an operator deleted it).
    case deleteItem(sku: UInt64)
    /// A hold's reserve key is gone.
    case deleteReserveKey(order: Int, sku: UInt64)
    /// An order's hash is gone (on a cluster, its part holding the item).
    case deleteOrder(order: Int, sku: UInt64)
    /// An adjustment's de-duplication key is gone (retention over).
    case deleteAdjustmentKey(sku: UInt64, id: Int)
    /// An item's code set is gone (the item is then not whole, and is rebuilt with its codes).
    case deleteCodeSet(sku: UInt64)
    /// An item's per-user usage hash is gone (the item is then not whole, and is rebuilt with each user's count).
    case deleteUsage(sku: UInt64)
    /// Every shard's generation marker is gone: the service takes it for a Redis data loss (a reserve of an order
    /// Redis does not know asks the journal first), nothing else changes.
    case deleteGenerationMarkers
    /// A shard's expiry index is gone (the sweeper's journal pass is the net; the program expires holds itself).
    case deleteExpiryIndex(shard: Int)
    /// On a cluster, an order's directory is gone (its parts stay); on one Redis there is none.
    case deleteDirectory(order: Int)
    /// The write-back worker runs until the outbox is empty.
    case drain
    /// The outbox is drained, then Redis loses every key of the service (FLUSHALL, a failover to an empty replica).
    case drainThenLoseEverything
    /// `reconcile --fix` during traffic.
    case reconcileFix
    /// Redis is killed (SIGKILL) and started again from its append-only file (fsync'd at every write: nothing
    /// acknowledged is lost, and the scripts must be loaded again).
    case redisRestart
    /// A write-back worker process (`inventoryd worker`, batches of 2) starts on the outbox and is killed (SIGKILL)
    /// `afterMilliseconds / 10` ms after it first applied something, somewhere in its work: what it applied stays applied, what it read and did not
    /// acknowledge stays pending, and the next drain (the same consumer, restarted) must finish it.
    case workerKilled(afterMilliseconds: Int)
    /// MariaDB becomes unreachable (open connections cut, new ones refused) until `mysqlUp`, or until a call has
    /// answered 503 as often as a client retries: the client then keeps retrying while it comes back.
    case mysqlDown
    /// MariaDB is reachable again.
    case mysqlUp
    /// Redis is full (`maxmemory` below its use, `noeviction`) until `redisRoom`, or until a call has answered 503 as
    /// often as a client retries: what settles holds goes on, what would make something new waits (README "Redis full").
    case redisFull
    /// Redis has room again.
    case redisRoom
    /// Time passes: the step waits until Redis's clock is past the deadline of every short-lived hold made so far.
    case deadlinesPass
    /// The expiry sweeper's work: each hold whose deadline passed (at the last `deadlinesPass`) and that is still
    /// reserved is expired.
    case expireDue
    /// A copy of Redis is kept as it is now (a replica that will fall behind, a snapshot): `goBack` returns to it.
    case copyRedis
    /// The outbox is drained, then Redis goes back to the last copy (`copyRedis`; a drain only without one). Nothing
    /// checks it at once: the next call finds it out itself (the drain floors, lua/lib/floor.lua), and what MySQL
    /// recorded since the copy makes the service forget Redis, as after a data loss, before that call acts on it. The
    /// second instance's worker checked the marks after the drain (about once a second in a service).
    case goBack

    public var description: String {
        switch self {
        case .deleteItem(let sku): "DEL item \(sku)"
        case .deleteReserveKey(let order, let sku): "DEL reserve key o\(order)/\(sku)"
        case .deleteAdjustmentKey(let sku, let id): "DEL adj key \(sku)/a\(id)"
        case .deleteOrder(let order, let sku): "DEL order o\(order) (part of \(sku))"
        case .deleteCodeSet(let sku): "DEL code set \(sku)"
        case .deleteUsage(let sku): "DEL usage hash \(sku)"
        case .deleteGenerationMarkers: "DEL the generation markers"
        case .deleteExpiryIndex(let shard): "DEL expiry index of shard \(shard)"
        case .deleteDirectory(let order): "DEL directory of o\(order)"
        case .drain: "drain"
        case .drainThenLoseEverything: "drain, then lose everything"
        case .reconcileFix: "reconcile --fix"
        case .redisRestart: "Redis killed (SIGKILL) and restarted"
        case .workerKilled(let after): "worker process killed (SIGKILL) \(after / 10) ms into its work"
        case .mysqlDown: "MariaDB down"
        case .mysqlUp: "MariaDB up"
        case .redisFull: "Redis full"
        case .redisRoom: "Redis has room again"
        case .deadlinesPass: "time passes (the short-lived holds' deadlines)"
        case .expireDue: "expire the holds whose deadline passed"
        case .copyRedis: "Redis copied (a replica that falls behind)"
        case .goBack: "drain, then Redis goes back to its copy (a failover to that replica), unchecked"
        }
    }
}
