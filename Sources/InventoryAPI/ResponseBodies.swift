import Foundation
import Inventory

/// A reservation as the API shows it.
struct ReservationBody: Encodable {
    struct Line: Encodable {
        let skuId: UInt64
        let requested: Int64
        let reserved: Int64
    }

    let orderId: String
    let bizId: String?
    let status: String
    let items: [Line]
    let expiresAt: String?
    let persisted: Bool

    init(_ reservation: Reservation) {
        orderId = reservation.orderId
        bizId = reservation.bizId.isEmpty ? nil : reservation.bizId
        status = reservation.status.rawValue
        items = reservation.lines.map { Line(skuId: $0.skuId, requested: $0.requested, reserved: $0.reserved) }
        expiresAt = reservation.expiresAtMilliseconds.map { milliseconds in
            Date(timeIntervalSince1970: Double(milliseconds) / 1000)
                .formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
        }
        persisted = reservation.persisted
    }
}

/// An item's stock as the API shows it.
struct StockLevelBody: Encodable {
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
    }
}

struct ReadinessBody: Encodable {
    let ready: Bool
    let redis: Bool
    let scripts: Bool
    let mysql: Bool
}
