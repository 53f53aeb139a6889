import Foundation
import Inventory
import InventoryTestSupport

/// A second business beside the program's: before the program it holds one unit for each of the program's first
/// orders, under the same orderIds, on an item of its own, written back to MySQL; at the end every one of them must
/// be exactly as it was (held, one unit, its journal row RESERVED, its item's stock untouched). Orders are scoped by
/// business: whatever the program does to its orders (and the faults do to Redis) must not reach these, nor these
/// count in the program's numbers, which the other checks keep exact.
extension Driver {
    /// The bystander business: the program's own with a suffix.
    var bystander: String { stores.bizId + "-by" }

    /// Its item: one of its own, never named by the program.
    static let bystanderSku: UInt64 = 1
    static let bystanderStock: Int64 = 100
    /// How many of the program's orders the bystander shadows at most.
    static let bystanderOrders = 8

    /// The program's first distinct order numbers (those its steps name, in order).
    static func shadowed(_ program: Program) -> [Int] {
        var seen: [Int] = []
        func add(_ orders: [Int]) {
            for order in orders where !seen.contains(order) && seen.count < bystanderOrders { seen.append(order) }
        }
        func visit(_ step: Step) {
            switch step {
            case .reserve(let order, _, _, _), .confirm(let order), .cancel(let order), .refund(let order), .read(let order):
                add([order])
            case .burst(let orders, _), .burstWhileRedisRestarts(let orders, _), .burstThroughKilledService(let orders, _, _):
                add(orders)
            case .onSecondInstance(let inner):
                visit(inner)
            default:
                break
            }
        }
        program.steps.forEach(visit)
        return seen
    }

    /// Holds the bystander's orders and writes them back (so that no fault of the program can lose them).
    func startBystander(_ orders: [Int]) async throws {
        let item = StockItemID(bizId: bystander, skuId: Self.bystanderSku)
        _ = try await stores.engine.setStock(item, StockSettings(stock: Self.bystanderStock))
        for order in orders {
            let command = ReserveCommand(
                orderId: orderId(order), bizId: bystander, userId: nil, items: [.init(skuId: Self.bystanderSku, quantity: 1)],
                ttlSeconds: 3600, shortage: .reject
            )
            guard case .created = try await stores.engine.reserve(command) else {
                throw CheckFailed(message: "the bystander's order \(orderId(order)) was not held")
            }
        }
        guard try await stores.drainWithWorker() else { throw CheckFailed(message: "the bystander's holds did not drain") }
    }

    /// The bystander's orders, item and journal rows are exactly as it left them.
    func checkBystander(_ orders: [Int]) async throws {
        let item = StockItemID(bizId: bystander, skuId: Self.bystanderSku)
        let held = Int64(orders.count)
        let level = try await retrying { try await stores.engine.stock(item) }
        if (level.available, level.reserved) != (Self.bystanderStock - held, held) {
            throw CheckFailed(
                message: "the bystander's item is \(level.available)/\(level.reserved); it holds \(held) of \(Self.bystanderStock)"
            )
        }
        for order in orders {
            let reservation = try await retrying { try await stores.engine.reservation(orderId: orderId(order), bizId: bystander) }
            if reservation.status != .reserved || reservation.lines.map(\.reserved) != [1] || reservation.bizId != bystander {
                throw CheckFailed(message: "the bystander's order \(orderId(order)) is \(reservation)")
            }
        }
        let rows = try await afterOutage { try await stores.journalRows(of: bystander) }
        let expected = orders.map {
            JournalLine(orderId: orderId($0), skuId: Self.bystanderSku, quantity: 1, status: "RESERVED")
        }.sorted { $0.orderId < $1.orderId }
        if rows.sorted(by: { $0.orderId < $1.orderId }) != expected {
            throw CheckFailed(message: "the bystander's journal rows are \(rows); expected \(expected)")
        }
        let report = try await afterOutage { try await stores.reconciler().run(.business(bystander)) }
        if !report.clean { throw CheckFailed(message: "reconcile of the bystander: \(report.differences)") }
    }
}
