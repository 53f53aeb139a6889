/// Redis Cluster's mapping of keys to its 16384 slots: CRC16 (the XMODEM variant: polynomial 0x1021, initial value
/// 0) of the key, or of its hash tag when it has one, modulo 16384. The hash tag is what lies between the first `{`
/// and the first `}` after it, when that is not empty; keys with the same tag share a slot, which is how one
/// script's keys are kept together.
public enum HashSlot {
    /// Slots of a cluster.
    public static let count = 16384

    /// The slot of `key`.
    public static func of(_ key: String) -> Int {
        let bytes = Array(key.utf8)
        return Int(crc16(hashed(bytes)) % UInt16(count))
    }

    /// The part of the key that is hashed: its tag, or all of it.
    static func hashed(_ bytes: [UInt8]) -> ArraySlice<UInt8> {
        guard let open = bytes.firstIndex(of: UInt8(ascii: "{")),
            let close = bytes[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1
        else {
            return bytes[...]
        }
        return bytes[(open + 1)..<close]
    }

    /// CRC16/XMODEM, bit by bit (keys are short; a table would buy little).
    static func crc16(_ bytes: ArraySlice<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc ^= UInt16(byte) << 8
            for _ in 0..<8 {
                crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1
            }
        }
        return crc
    }
}
