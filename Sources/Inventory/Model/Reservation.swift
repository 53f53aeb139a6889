/// A request to hold stock for one order.
public struct ReserveCommand: Sendable {
    /// One requested line.
    public struct Item: Sendable, Equatable {
        public let skuId: UInt64
        public let quantity: Int64
        /// Specific codes of the item's code pool, one per unit; empty to let the pool choose.
        public let codes: [String]

        public init(skuId: UInt64, quantity: Int64, codes: [String] = []) {
            self.skuId = skuId
            self.quantity = quantity
            self.codes = codes
        }
    }

    /// The business's own id of the order (orders are scoped by business: `OrderRef`).
    public let orderId: String
    public let bizId: String
    public let userId: String?
    public let items: [Item]
    public let ttlSeconds: Int
    public let shortage: ShortageMode
    /// Hold and confirm at once (allocate and use): the order is confirmed when it is answered.
    public let dispense: Bool
    /// The order's name in Redis (`OrderRef.name`), made once: the reserve path names the order several times.
    let orderName: String

    public init(
        orderId: String, bizId: String, userId: String?, items: [Item], ttlSeconds: Int, shortage: ShortageMode,
        dispense: Bool = false
    ) {
        self.orderId = orderId
        self.bizId = bizId
        self.userId = userId
        self.items = items
        self.ttlSeconds = ttlSeconds
        self.shortage = shortage
        self.dispense = dispense
        self.orderName = OrderRef(bizId: bizId, orderId: orderId).name
    }

    /// The order this reserve holds for.
    public var order: OrderRef { OrderRef(bizId: bizId, orderId: orderId) }

    /// What makes two requests "the same body" for idempotency: the fields that change what is held, with the
    /// items in a canonical order so that listing them differently is still the same request.
    public var fingerprint: String {
        let lines = items.sorted { $0.skuId < $1.skuId }.map { item in
            item.codes.isEmpty ? "\(item.skuId)x\(item.quantity)" : "\(item.skuId)x\(item.quantity)=\(item.codes.joined(separator: "|"))"
        }.joined(separator: ",")
        return "\(bizId)|\(userId ?? "")|\(shortage.rawValue)|\(ttlSeconds)|\(lines)\(dispense ? "|dispense" : "")"
    }
}

/// One line of a reservation: what was asked and what is held.
public struct ReservationLine: Sendable, Equatable {
    public let skuId: UInt64
    public let requested: Int64
    public let reserved: Int64
    /// The codes held, for an item with a code pool (empty otherwise).
    public var codes: [String] = []

    public init(skuId: UInt64, requested: Int64, reserved: Int64, codes: [String] = []) {
        self.skuId = skuId
        self.requested = requested
        self.reserved = reserved
        self.codes = codes
    }

    /// Parses the lines and the codes held per line (`c1|c2,,c3`, "" when no line has a pool).
    static func parse(_ text: String, codes: String) -> [ReservationLine] {
        var lines = parse(text)
        guard !codes.isEmpty else { return lines }
        for (index, held) in codes.split(separator: ",", omittingEmptySubsequences: false).enumerated()
        where index < lines.count {
            lines[index].codes = held.split(separator: "|").map(String.init)
        }
        return lines
    }

    /// Parses the scripts' `sku:requested:reserved,...` form.
    static func parse(_ text: String) -> [ReservationLine] {
        text.split(separator: ",").compactMap { part in
            let fields = part.split(separator: ":")
            guard fields.count == 3, let sku = UInt64(fields[0]), let requested = Int64(fields[1]),
                let reserved = Int64(fields[2])
            else { return nil }
            return ReservationLine(skuId: sku, requested: requested, reserved: reserved)
        }
    }
}

/// An order's hold on stock, as Redis knows it.
public struct Reservation: Sendable, Equatable {
    /// The business's own id of the order (`bizId` is its business).
    public let orderId: String
    public let bizId: String
    public let status: ReservationStatus
    public let lines: [ReservationLine]
    /// Milliseconds since 1970 when an unconfirmed hold is released; nil for a cancel of an unknown order.
    public let expiresAtMilliseconds: Int64?
    /// Whether the task journal rows are committed in MySQL; nil when that could not be found out (MySQL down).
    public let persisted: Bool?

    public init(
        orderId: String,
        bizId: String,
        status: ReservationStatus,
        lines: [ReservationLine],
        expiresAtMilliseconds: Int64?,
        persisted: Bool?
    ) {
        self.orderId = orderId
        self.bizId = bizId
        self.status = status
        self.lines = lines
        self.expiresAtMilliseconds = expiresAtMilliseconds
        self.persisted = persisted
    }

    func with(persisted: Bool?) -> Reservation {
        Reservation(
            orderId: orderId, bizId: bizId, status: status, lines: lines, expiresAtMilliseconds: expiresAtMilliseconds,
            persisted: persisted
        )
    }
}

/// How a reserve ended when it did not fail.
public enum ReserveOutcome: Sendable, Equatable {
    /// Held now.
    case created(Reservation)
    /// The same order with the same body was reserved before; this is what it holds.
    case replayed(Reservation)
}

/// How a confirm, cancel or refund ended when it did not fail.
public struct TransitionOutcome: Sendable, Equatable {
    public let reservation: Reservation
    /// True when the order was already in the target state, so nothing changed.
    public let replayed: Bool

    public init(reservation: Reservation, replayed: Bool) {
        self.reservation = reservation
        self.replayed = replayed
    }
}
