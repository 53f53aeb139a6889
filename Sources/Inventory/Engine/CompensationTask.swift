import Logging

/// A reversal of a Redis change, stored in MySQL (`compensation_tasks`) when it could not run at once.
public enum CompensationTask: Sendable, Equatable, CustomStringConvertible {
    /// Reverse a stock delta in Redis, once (the marker key makes a retry harmless), if the item still has the mark
    /// the delta was made in (`token`, 'mark@ms', lua/lib/fence.lua; a bare epoch in a task stored before marks; ""
    /// for any): an
    /// item rebuilt or repaired since never counted it. `settings`: the item's
    /// settings the change made ('field=old>new,...'), put back with it where they are still what it wrote.
    /// `surplus`: an adjustment's half whose MySQL half found the adjustment there from another attempt; `half`: the
    /// half's name when `token` is not it (a retry took the half over); `source`: the adjustment's ledger source,
    /// whose row decides when its key cannot ("" for a PUT, and in tasks stored before it was kept; lua/undo_stock.lua).
    /// `givenUp`: a PUT whose COMMIT got no answer: MySQL may have the change all the same, so the half goes onto the
    /// item's stale list as given up (lua/lib/fence.lua) in the same step as its reversal, not closed.
    case undoStock(
        itemKey: String, adjustmentKey: String, delta: Int64, fingerprint: String, marker: String, token: String,
        settings: String = "", surplus: Bool = false, half: String = "", source: String = "", givenUp: Bool = false
    )
    /// Take back the hold of one reserve event; `earlierEventId` is the reserve event whose journal row it
    /// duplicates ("" when none).
    case undoReserve(orderId: String, bizId: String, eventId: String, lines: String, earlierEventId: String)

    /// Takes back what `lines` held for the reserve event `eventId` ("sku:reserved[:epoch],...": `epochs`, by SKU, the
    /// epoch of its item each line was held in, as the event records it; none in tasks stored before they were kept).
    static func undoReserve(
        orderId: String, bizId: String, eventId: String, lines: [ReservationLine], earlierEventId: String = "",
        epochs: [UInt64: String] = [:]
    ) -> Self {
        .undoReserve(
            orderId: orderId, bizId: bizId, eventId: eventId,
            lines: lines.map { line in "\(line.skuId):\(line.reserved)" + (epochs[line.skuId].map { ":" + $0 } ?? "") }
                .joined(separator: ","),
            earlierEventId: earlierEventId
        )
    }

    var kind: String {
        switch self {
        case .undoStock: return "undo_stock"
        case .undoReserve: return "undo_reserve"
        }
    }

    /// Tab-separated fields; none of them can hold a tab (keys, ids and numbers).
    var payload: String {
        switch self {
        case .undoStock(
            let itemKey, let adjustmentKey, let delta, let fingerprint, let marker, let token, let settings, let surplus,
            let half, let source, let givenUp
        ):
            // (The eleventh field only when given up: a binary from before it reads ten at most, and skips what it
            // cannot read, which would stall its retrier on a page of them.)
            return ([
                itemKey, adjustmentKey, String(delta), fingerprint, marker, token, settings, surplus ? "surplus" : "", half,
                source,
            ] + (givenUp ? ["given-up"] : [])).joined(separator: "\t")
        case .undoReserve(let orderId, let bizId, let eventId, let lines, let earlierEventId):
            return [orderId, bizId, eventId, lines, earlierEventId].joined(separator: "\t")
        }
    }

    init?(kind: String, payload: String) {
        let fields = payload.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
        switch (kind, fields.count) {
        case ("undo_stock", 5...11):
            guard let delta = Int64(fields[2]) else { return nil }
            self = .undoStock(
                itemKey: fields[0], adjustmentKey: fields[1], delta: delta, fingerprint: fields[3], marker: fields[4],
                token: fields.count > 5 ? fields[5] : "", settings: fields.count > 6 ? fields[6] : "",
                surplus: fields.count > 7 && fields[7] == "surplus", half: fields.count > 8 ? fields[8] : "",
                source: fields.count > 9 ? fields[9] : "", givenUp: fields.count > 10 && fields[10] == "given-up"
            )
        case ("undo_reserve", 4), ("undo_reserve", 5):
            self = .undoReserve(
                orderId: fields[0], bizId: fields[1], eventId: fields[2], lines: fields[3],
                earlierEventId: fields.count > 4 ? fields[4] : ""
            )
        default:
            return nil
        }
    }

    public var description: String { "\(kind) \(payload.replacingOccurrences(of: "\t", with: " "))" }
}
