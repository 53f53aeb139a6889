import Logging

/// The request id and order id of the request a task is serving, carried in task-locals so that every log line
/// written while serving it (in the API, the engine, the clients) names them, without passing loggers around.
public enum RequestMetadata {
    @TaskLocal public static var requestId: String?
    @TaskLocal public static var orderId: String?

    /// Adds `requestId` and `orderId` to every log line of a logger bootstrapped with it.
    public static let provider = Logger.MetadataProvider {
        var metadata: Logger.Metadata = [:]
        if let requestId { metadata["requestId"] = "\(requestId)" }
        if let orderId { metadata["orderId"] = "\(orderId)" }
        return metadata
    }
}
