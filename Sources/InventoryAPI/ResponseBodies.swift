import Foundation
import Inventory

/// A body the API answers with, written by hand (see `JSONWriter`).
protocol ResponseBody {
    func write(to writer: inout JSONWriter)
}

/// A reservation as the API shows it.
struct ReservationBody: ResponseBody {
    struct Line {
        let skuId: UInt64
        let requested: Int64
        let reserved: Int64
        let codes: [String]
    }

    let orderId: String
    let bizId: String?
    let status: String
    let items: [Line]
    let expiresAt: String?
    let persisted: Bool?

    init(_ reservation: Reservation) {
        orderId = reservation.orderId
        bizId = reservation.bizId.isEmpty ? nil : reservation.bizId
        status = reservation.status.rawValue
        items = reservation.lines.map {
            Line(skuId: $0.skuId, requested: $0.requested, reserved: $0.reserved, codes: $0.codes)
        }
        expiresAt = reservation.expiresAtMilliseconds.map(Timestamp.rfc3339(milliseconds:))
        persisted = reservation.persisted
    }

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("orderId", orderId)
        if let bizId { writer.field("bizId", bizId) }
        writer.field("status", status)
        writer.beginArray("items")
        for line in items {
            writer.beginObject()
            writer.field("skuId", line.skuId)
            writer.field("requested", line.requested)
            writer.field("reserved", line.reserved)
            if !line.codes.isEmpty {
                writer.beginArray("codes")
                for code in line.codes { writer.element(code) }
                writer.endArray()
            }
            writer.endObject()
        }
        writer.endArray()
        writer.field("expiresAt", expiresAt)
        if let persisted { writer.field("persisted", persisted) } else { writer.field("persisted", nil as String?) }
        writer.endObject()
    }
}

/// An item's stock as the API shows it.
struct StockLevelBody: ResponseBody {
    let bizId: String
    let skuId: UInt64
    let available: Int64
    let reserved: Int64
    let onHand: Int64
    let soldOut: Bool
    let infinite: Bool
    let dangerNum: Int64
    let lowStock: Bool
    let backorderLimit: Int64
    let perUserLimit: Int64
    let perUserWindowSeconds: Int64

    init(_ level: StockLevel) {
        bizId = level.item.bizId
        skuId = level.item.skuId
        available = level.available
        reserved = level.reserved
        onHand = level.onHand
        soldOut = level.soldOut
        infinite = level.infinite
        dangerNum = level.dangerNum
        lowStock = level.lowStock
        backorderLimit = level.backorderLimit
        perUserLimit = level.userLimit
        perUserWindowSeconds = level.userWindowSeconds
    }

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("bizId", bizId)
        writer.field("skuId", skuId)
        writer.field("available", available)
        writer.field("reserved", reserved)
        writer.field("onHand", onHand)
        writer.field("soldOut", soldOut)
        writer.field("infinite", infinite)
        writer.field("dangerNum", dangerNum)
        writer.field("lowStock", lowStock)
        writer.field("backorderLimit", backorderLimit)
        writer.field("perUserLimit", perUserLimit)
        writer.field("perUserWindowSeconds", perUserWindowSeconds)
        writer.endObject()
    }
}

struct ReadinessBody: ResponseBody {
    let ready: Bool
    let checks: [(name: String, ok: Bool)]

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("ready", ready)
        for check in checks { writer.field(check.name, check.ok) }
        writer.endObject()
    }
}

/// A code pool as the API shows it.
struct PoolAnswer: ResponseBody {
    let item: StockItemID
    let pool: CodePool

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("bizId", item.bizId)
        writer.field("skuId", item.skuId)
        writer.field("kind", PoolBody.kinds.first { $0.value == pool.kind }?.key ?? pool.kind.rawValue)
        writer.field("status", pool.online ? "online" : "offline")
        writer.field("expiresAt", pool.expiresAtMilliseconds.map(Timestamp.rfc3339(milliseconds:)))
        writer.field("batchCode", pool.batchCode)
        writer.field("maxPerUser", pool.maxPerUser ?? 0)
        writer.endObject()
    }
}

/// What a code upload did.
struct CodeLoadBody: ResponseBody {
    let outcome: CodeLoadOutcome

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("added", Int64(outcome.added))
        writer.field("duplicates", Int64(outcome.duplicates))
        writer.endObject()
    }
}
