/// How a code pool hands out its codes.
public enum CodePoolKind: String, Sendable, CaseIterable {
    /// Each code is handed out once: usable, held by a reservation, or used. The item's stock is its codes.
    case oneTime = "one_time"
    /// Codes may be handed out again; a hold counts stock but uses no code.
    case reusable
    /// Every unit carries the same code (the batch number); only the count matters.
    case batch

    /// The spelling of the MySQL column.
    var column: String { rawValue.uppercased() }

    init?(column: String) { self.init(rawValue: column.lowercased()) }
}

/// A stock item's code pool settings.
public struct CodePool: Sendable, Equatable {
    public let kind: CodePoolKind
    /// An offline pool hands out nothing.
    public let online: Bool
    /// No new holds from this moment on (Unix milliseconds); nil for never.
    public let expiresAtMilliseconds: Int64?
    /// The code of every unit of a batch pool.
    public let batchCode: String?
    /// At most this many units (codes) per user: the item's per-user limit (0 for none). Nil in a change leaves
    /// it as it is.
    public let maxPerUser: Int64?

    public init(
        kind: CodePoolKind, online: Bool = true, expiresAtMilliseconds: Int64? = nil, batchCode: String? = nil,
        maxPerUser: Int64? = nil
    ) {
        self.kind = kind
        self.online = online
        self.expiresAtMilliseconds = expiresAtMilliseconds
        self.batchCode = batchCode
        self.maxPerUser = maxPerUser
    }

    /// The item hash fields of `set_pool.lua` / `init_item.lua`: kind, status, expiry, batch code.
    var scriptArguments: [String] {
        [kind.rawValue, online ? "online" : "offline", String(expiresAtMilliseconds ?? 0), batchCode ?? ""]
    }
}

/// What loading codes did.
public struct CodeLoadOutcome: Sendable, Equatable {
    /// Codes new to the pool, now usable.
    public let added: Int
    /// Codes of the upload the pool had already, or that the upload repeated: skipped.
    public let duplicates: Int

    public init(added: Int, duplicates: Int) {
        self.added = added
        self.duplicates = duplicates
    }
}

/// A pool's unused codes, read a page at a time (`InventoryEngine.exportCodes`).
public struct CodeExport: Sendable {
    let read: @Sendable (_ page: ([String]) async throws -> Void) async throws -> Void

    public init(_ read: @escaping @Sendable (_ page: ([String]) async throws -> Void) async throws -> Void) {
        self.read = read
    }

    /// Calls `page` with each page of codes, in the store's order.
    public func forEachPage(_ page: ([String]) async throws -> Void) async throws {
        try await read(page)
    }
}
