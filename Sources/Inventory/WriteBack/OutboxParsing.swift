import RedisClient

extension OutboxEvent {
    /// Reads an outbox entry as the scripts write it: `type`, `order`, `biz`, `user`, `items` (`sku:qty,...`),
    /// `epochs` (the items' epochs, in the same order), `expires_at`, `at`, `reserve_event`. Nil for an entry that is not an event (or was deleted: no fields).
    static func parse(stream: String, id: String, fields: [RedisValue]) -> OutboxEvent? {
        var values: [String: String] = [:]
        var index = 0
        while index + 1 < fields.count {
            values[fields[index].text ?? ""] = fields[index + 1].text ?? ""
            index += 2
        }
        guard let kindText = values["type"], let kind = Kind(rawValue: kindText), let orderId = values["order"] else {
            return nil
        }
        let epochs = (values["epochs"] ?? "").split(separator: ",", omittingEmptySubsequences: false)
        let lines = (values["items"] ?? "").split(separator: ",").enumerated().compactMap { index, part -> Line? in
            let pieces = part.split(separator: ":")
            guard pieces.count == 2, let sku = UInt64(pieces[0]), let quantity = Int64(pieces[1]) else { return nil }
            return Line(skuId: sku, quantity: quantity, epoch: index < epochs.count ? String(epochs[index]) : "")
        }
        let user = values["user"].flatMap { $0.isEmpty ? nil : $0 }
        return OutboxEvent(
            id: id, stream: stream, kind: kind, orderId: orderId, bizId: values["biz"] ?? "", userId: user,
            lines: lines, expiresAtMilliseconds: values["expires_at"].flatMap { Int64($0) },
            atMilliseconds: values["at"].flatMap { Int64($0) } ?? 0,
            reserveEventId: values["reserve_event"]
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
