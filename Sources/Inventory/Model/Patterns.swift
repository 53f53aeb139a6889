/// The shapes of identifiers the API accepts: order ids, codes, business names.
public enum Patterns {
    // The checks are @inlinable: callers in other modules (the API's routes, a code upload's every line) get them
    // specialized for their own collection type, instead of a generic loop calling through witness tables per
    // byte (a third of an 8 MiB upload's parse before; RESULTS.md session 17).

    /// 1-64 of `A-Za-z0-9._:-`.
    @inlinable
    public static func isOrderId(_ text: some StringProtocol) -> Bool {
        isOrderIdBytes(text.utf8)
    }

    /// `isOrderId` over bytes (a line of an upload, before it becomes a string).
    @inlinable
    public static func isOrderIdBytes(_ bytes: some Collection<UInt8>) -> Bool {
        !bytes.isEmpty && bytes.count <= 64
            && bytes.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                    UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"),
                    UInt8(ascii: "-"):
                    return true
                default: return false
                }
            }
    }

    /// 1-32 of `a-z0-9_-`.
    @inlinable
    public static func isBizId(_ text: some StringProtocol) -> Bool {
        !text.isEmpty && text.utf8.count <= 32
            && text.utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"),
                    UInt8(ascii: "-"):
                    return true
                default: return false
                }
            }
    }

    public static let orderIdRule = "1-64 characters of A-Z a-z 0-9 . _ : -"
    /// Codes of a code pool follow the orderId rule: they travel in the scripts' '|' and ',' separated lists.
    public static let codeRule = orderIdRule
    public static let bizIdRule = "1-32 characters of a-z 0-9 _ -"
}
