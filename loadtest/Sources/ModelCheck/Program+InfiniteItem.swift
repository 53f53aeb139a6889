import Inventory
import LoadHarness

/// The steps of `Features.infiniteItem`: item 5 never runs out (a hold takes nothing from its stock, a sale takes its
/// units from its on-hand stock). Its orders (numbered from `Features.firstInfiniteOrder`, some with a line of a drawn
/// item too) are held in every shortage mode, confirmed, cancelled and refunded; its stock is set and adjusted (adjustments retried); it is
/// made finite and infinite again (refused while it holds more than its stock); its item and adjustment keys vanish. Drawn from a
/// generator of their own, so that the other steps of a seed stay as drawn.
struct InfiniteItemSteps {
    private var random: SplitMix64
    private var nextOrder = Features.firstInfiniteOrder
    private var nextAdjustment = Features.firstInfiniteAdjustment
    /// Whether the last flip asked for "never runs out" (a flip the service refused leaves the item as it was; the
    /// next one asks the other way again).
    private var infinite = true
    /// Each adjustment's delta, for its retries.
    private var deltas: [Int: Int64] = [:]

    init(seed: UInt64) {
        random = SplitMix64(seed: seed ^ 0x1AF1_A17E_0000_5EED)
    }

    /// The item's first steps: its stock, then "never runs out".
    static let setUp: [Step] = [
        .setStock(sku: Features.infiniteItem, stock: 10), .setInfinite(sku: Features.infiniteItem, infinite: true),
    ]

    /// A step of the item's own now and then (nil: none this time).
    mutating func next() -> Step? {
        let item = Features.infiniteItem
        let roll = Int.random(in: 0..<100, using: &random)
        let quantity = Int64.random(in: 1...12, using: &random)
        let recent = Int.random(in: max(Features.firstInfiniteOrder, nextOrder - 5)...nextOrder, using: &random)
        let shortage: ShortageMode = [.reject, .partial, .backorder][Int.random(in: 0..<3, using: &random)]
        let other = Program.items.randomElement(using: &random)!
        let stock = Int64.random(in: 0...20, using: &random)
        var delta = Int64.random(in: -6...8, using: &random)
        if delta == 0 { delta = 2 }
        let adjusted = Int.random(in: Features.firstInfiniteAdjustment...nextAdjustment, using: &random)
        switch roll {
        case 0..<4:
            defer { nextOrder += 1 }
            return .reserve(order: nextOrder, lines: [Line(sku: item, quantity: quantity)], shortage: shortage)
        case 4:
            // with a line of a drawn item (items in the order of their numbers, as a client would send them)
            defer { nextOrder += 1 }
            let lines = [Line(sku: other, quantity: min(quantity, 3)), Line(sku: item, quantity: quantity)]
            return .reserve(order: nextOrder, lines: lines, shortage: shortage == .backorder ? .reject : shortage)
        case 5..<8: return .confirm(order: recent)
        case 8..<10: return .cancel(order: recent)
        case 10: return .refund(order: recent)
        case 11: return .read(order: recent)
        case 12: return .setStock(sku: item, stock: stock)
        case 13:
            defer { nextAdjustment += 1 }
            deltas[nextAdjustment] = delta
            return .adjust(sku: item, id: nextAdjustment, delta: delta)
        case 14..<16:
            infinite.toggle()
            return .setInfinite(sku: item, infinite: infinite)
        case 16: return .fault(.deleteItem(sku: item))
        case 17: return .fault(.deleteAdjustmentKey(sku: item, id: adjusted))
        case 18: return deltas[adjusted].map { .adjust(sku: item, id: adjusted, delta: $0) }
        default: return nil
        }
    }
}
