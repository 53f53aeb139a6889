/// Limits of the API's inputs, from the design.
public struct InputLimits: Sendable {
    public var maxItems = 50
    public var maxQuantity: Int64 = 1_000_000
    public var maxStock: Int64 = 1_000_000_000_000
    public var maxTTLSeconds = 86_400
    public var maxBodyBytes = 64 * 1024
    /// A code upload (`POST /v1/stock/{bizId}/{skuId}/codes`) may be larger: up to this many bytes.
    public var maxCodeUploadBytes = 8 * 1024 * 1024

    public init() {}
}
