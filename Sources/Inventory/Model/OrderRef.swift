/// An order's identity. Orders are scoped by business: two businesses may both have an order "1001", and one
/// business can neither see, change nor block the other's.
///
/// Redis knows an order by its `name` (its keys, the scripts' arguments, the outbox events, the expiry and pending
/// indexes); MySQL by the pair (`biz_id`, `order_id`). The name of an order of business `default` is its orderId, as
/// it was before orders were scoped, so the keys of orders under way stay valid across the upgrade; any other
/// business's is `bizId/orderId`. '/' is in neither alphabet (orderId `A-Za-z0-9._:-`, bizId `a-z0-9_-`), so a name
/// reads back into exactly one pair.
public struct OrderRef: Sendable, Hashable, CustomStringConvertible {
    /// The business of an order that names none (the API's old order paths, a reserve without `bizId`).
    public static let defaultBusiness = "default"

    public let bizId: String
    public let orderId: String

    public init(bizId: String, orderId: String) {
        self.bizId = bizId
        self.orderId = orderId
    }

    /// Reads an order's Redis name back.
    public init(name: String) {
        if let slash = name.firstIndex(of: "/") {
            self.init(bizId: String(name[..<slash]), orderId: String(name[name.index(after: slash)...]))
        } else {
            self.init(bizId: Self.defaultBusiness, orderId: name)
        }
    }

    /// The order's name in Redis: `orderId` for business `default`, `bizId/orderId` otherwise.
    public var name: String { bizId == Self.defaultBusiness ? orderId : "\(bizId)/\(orderId)" }

    public var description: String { name }
}
