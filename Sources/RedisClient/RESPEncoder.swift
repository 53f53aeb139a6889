import NIOCore

/// Encodes commands as RESP arrays of bulk strings.
///
/// Encoding is a few lines of byte copying, so it is done in Swift straight into the channel's buffer; decoding,
/// where the protocol's edge cases live, is hiredis' reader (see `HiredisReader`).
enum RESPEncoder {
    static func encode(_ arguments: [String], into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(ascii: "*"))
        writeDecimal(arguments.count, into: &buffer)
        for argument in arguments {
            buffer.writeInteger(UInt8(ascii: "$"))
            writeDecimal(argument.utf8.count, into: &buffer)
            buffer.writeString(argument)
            buffer.writeStaticString("\r\n")
        }
    }

    private static func writeDecimal(_ value: Int, into buffer: inout ByteBuffer) {
        buffer.writeString(String(value))
        buffer.writeStaticString("\r\n")
    }

    static func encodedSize(_ arguments: [String]) -> Int {
        var size = 16
        for argument in arguments { size += argument.utf8.count + 16 }
        return size
    }
}
