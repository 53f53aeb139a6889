import Inventory
import NIOConcurrencyHelpers
import NIOCore

/// An in-process limit on reservations per stock item per short window (10 ms by default): past it, a reserve
/// is answered 429 with `Retry-After` at once instead of queueing on Redis behind one flooded item. Off unless
/// `INVENTORY_HOT_ITEM_LIMIT` is set. Per instance: N instances admit N × the limit.
public final class HotItemLimiter: Sendable {
    private struct Window {
        var start: UInt64
        var count: Int
    }

    private let limit: Int
    private let windowNanoseconds: UInt64
    private let windows = NIOLockedValueBox<[StockItemID: Window]>([:])

    /// - Parameters:
    ///   - limit: reservations admitted per item per window.
    ///   - windowMilliseconds: window length.
    public init(limit: Int, windowMilliseconds: Int) {
        self.limit = limit
        self.windowNanoseconds = UInt64(max(windowMilliseconds, 1)) * 1_000_000
    }

    /// Whether every item may take one more reservation now; counts them when they may.
    public func admit(_ items: [StockItemID], now: UInt64 = NIODeadline.now().uptimeNanoseconds) -> Bool {
        windows.withLockedValue { windows in
            let current = now - now % windowNanoseconds
            for item in items {
                if let window = windows[item], window.start == current, window.count >= limit { return false }
            }
            for item in items {
                if var window = windows[item], window.start == current {
                    window.count += 1
                    windows[item] = window
                } else {
                    windows[item] = Window(start: current, count: 1)
                }
            }
            // Items of past windows are forgotten in bulk, so the table stays the size of the hot set.
            if windows.count > 10_000 {
                windows = windows.filter { $0.value.start == current }
            }
            return true
        }
    }
}
