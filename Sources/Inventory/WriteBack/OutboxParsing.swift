import RedisClient

extension OutboxEvent {
    /// Reads an outbox entry as the scripts write it: `type`, `order`, `biz`, `user`, `items` (`sku:qty,...`),
    /// `epochs` (the items' epochs, in the same order), `expires_at`, `at`, `reserve_event`, `codes`, `fp` (reserve: the
    /// request's fingerprint). Nil for an entry that is not an event (or was deleted: no fields).
    static func parse(stream: String, id: String, fields: [RedisValue]) -> OutboxEvent? {
        // One pass over the pairs, no dictionary: the worker parses every entry of every batch.
        var kind: Kind?
        var orderId: String?
        var bizId = ""
        var user: String?
        var items = ""
        var epochs = ""
        var expiresAt: Int64?
        var at: Int64 = 0
        var reserveEvent: String?
        var codes = ""
        var fingerprint: String?
        var index = 0
        while index + 1 < fields.count {
            let value = fields[index + 1].text ?? ""
            switch fields[index].text ?? "" {
            case "type": kind = Kind(rawValue: value)
            case "order": orderId = value
            case "biz": bizId = value
            case "user": user = value.isEmpty ? nil : value
            case "items": items = value
            case "epochs": epochs = value
            case "expires_at": expiresAt = Int64(value)
            case "at": at = Int64(value) ?? 0
            case "reserve_event": reserveEvent = value
            case "codes": codes = value
            case "fp": fingerprint = value
            default: break
            }
            index += 2
        }
        guard let kind, let orderName = orderId else { return nil }
        // The event names the order as Redis does (`OrderRef.name`); MySQL keeps the business and its own id. An
        // event that names no business (a cancel of an order that never reserved) takes the name's.
        let order = OrderRef(name: orderName)
        if bizId.isEmpty { bizId = order.bizId }
        let epochList = epochs.split(separator: ",", omittingEmptySubsequences: false)
        // codes: per line of `items`, '|'-separated, lines ','-separated; absent for events without codes
        let codeList = codes.isEmpty ? [] : codes.split(separator: ",", omittingEmptySubsequences: false)
        let lines = items.split(separator: ",").enumerated().compactMap { index, part -> Line? in
            let pieces = part.split(separator: ":")
            guard pieces.count == 2, let sku = UInt64(pieces[0]), let quantity = Int64(pieces[1]) else { return nil }
            return Line(
                skuId: sku, quantity: quantity, epoch: index < epochList.count ? String(epochList[index]) : "",
                codes: index < codeList.count ? codeList[index].split(separator: "|").map(String.init) : []
            )
        }
        return OutboxEvent(
            id: id, stream: stream, kind: kind, orderId: order.orderId, bizId: bizId, userId: user, lines: lines,
            expiresAtMilliseconds: expiresAt, atMilliseconds: at, reserveEventId: reserveEvent,
            requestFingerprint: fingerprint, orderName: orderName
        )
    }

    /// Entries of an XREADGROUP / XAUTOCLAIM reply: `[[id, [field, value, ...]], ...]`. An entry deleted while
    /// pending comes back with no fields: it is returned with a nil event, to be acknowledged.
    static func entries(stream: String, _ reply: RedisValue) -> [(id: String, event: OutboxEvent?)] {
        (reply.array ?? []).compactMap { entry in
            guard let parts = entry.array, let id = parts.first?.text else { return nil }
            let fields = parts.count > 1 ? parts[1].array ?? [] : []
            return (id, parse(stream: stream, id: id, fields: fields))
        }
    }
}
