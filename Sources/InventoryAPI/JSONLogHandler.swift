import Foundation
import Logging

/// One JSON object per log line on standard output: `ts`, `level`, `label`, `msg`, then the metadata (the
/// request and order ids among them). What log collectors parse without configuration.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String

    public init(label: String, metadataProvider: Logger.MetadataProvider?) {
        self.label = label
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = metadata
        if let provided = metadataProvider?.get() { fields.merge(provided) { _, new in new } }
        if let extra = event.metadata { fields.merge(extra) { _, new in new } }
        var writer = JSONWriter(capacity: 256)
        writer.beginObject()
        writer.field("ts", Timestamp.rfc3339(milliseconds: Int64(Date().timeIntervalSince1970 * 1000)))
        writer.field("level", event.level.rawValue)
        writer.field("label", label)
        writer.field("msg", event.message.description)
        for (key, value) in fields.sorted(by: { $0.key < $1.key }) {
            writer.field(key, "\(value)")
        }
        writer.endObject()
        var buffer = writer.buffer
        buffer.writeString("\n")
        let line = Data(buffer.readableBytesView)
        Self.output.lock()
        FileHandle.standardOutput.write(line)
        Self.output.unlock()
    }

    /// Keeps lines from concurrent threads whole.
    private static let output = NSLock()
}
