import Logging
import MySQLClient
import RedisClient

/// Orders as Redis holds them (one hash, or a cluster's directory and parts), and an order restored from the journal when Redis lost it.
extension InventoryEngine {
    struct StoredOrder {
        let orderId: String
        let bizId: String
        let status: ReservationStatus
        let linesText: String
        /// The codes held per line ("" when no line's item has a code pool).
        var codesText = ""
        let expiresAt: Int64?
        /// The shard the order (or this part of it) is kept in.
        var shard = 0
        /// Redis Cluster: the order's parts, and the state its directory has decided; nil on a single Redis.
        var parts: [StoredOrder]?
        var directoryState: ReservationStatus?

        var lines: [ReservationLine] { ReservationLine.parse(linesText, codes: codesText) }
        /// Whether any line held stock, and so has a journal row.
        var holdsStock: Bool { lines.contains { $0.reserved > 0 } }
        /// What a transition runs a script on: each part, or the order itself.
        var pieces: [StoredOrder] { parts ?? [self] }

        /// Whether the journal has it is not known from Redis: nil, not a guess.
        /// `orderId` here is the order's Redis name (`OrderRef.name`); the answer carries the business's own id.
        func reservation(status: ReservationStatus) -> Reservation {
            let ref = OrderRef(name: orderId)
            return Reservation(
                orderId: ref.orderId, bizId: ref.bizId, status: status, lines: lines, expiresAtMilliseconds: expiresAt,
                persisted: nil
            )
        }

        /// A cluster order from its directory's state and its parts: lines in the parts' order, the state the parts
        /// agree on (the directory's while they do not: a transition under way).
        static func merged(orderId: String, bizId: String, state: ReservationStatus, parts: [StoredOrder]) -> StoredOrder {
            let statuses = Set(parts.map(\.status))
            let withCodes = parts.contains { !$0.codesText.isEmpty }
            let codes = parts.map { part -> String in
                guard withCodes, part.codesText.isEmpty else { return part.codesText }
                return Array(repeating: "", count: part.lines.count).joined(separator: ",")
            }
            return StoredOrder(
                orderId: orderId, bizId: bizId, status: statuses.count == 1 ? statuses.first! : state,
                linesText: parts.map(\.linesText).filter { !$0.isEmpty }.joined(separator: ","),
                codesText: withCodes ? codes.joined(separator: ",") : "",
                expiresAt: parts.compactMap(\.expiresAt).min(), shard: 0, parts: parts, directoryState: state
            )
        }
    }

    /// Set by the public order operations (`confirm(orderId:bizId:)`, …): the order read must be the business's
    /// own. An order written before orders were scoped kept its bare orderId as its name whatever its business: read
    /// for business `default`, one whose hash names another business is not found (404, nothing recorded). The sweeper's own steps (expiry,
    /// giving up reserves) run without it, so such an order still expires.
    enum OwnerCheck {
        @TaskLocal static var active = false
    }

    /// Throws `notFound` when the owner check is on and a stored order's business (`biz` of its hash or directory)
    /// is another than the name's: the caller must neither read it nor record anything over it (a cancel of an
    /// "unknown" order would otherwise decide the other business's directory).
    static func checkOwner(_ orderId: String, storedBiz: String) throws {
        guard OwnerCheck.active, !storedBiz.isEmpty, storedBiz != OrderRef(name: orderId).bizId else { return }
        throw InventoryError.notFound
    }

    /// Where orders are read and restored (`OrderReader`).
    var orders: OrderReader { reservations.orders }
}
