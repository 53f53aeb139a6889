import MySQLClient

/// One reconciliation as `reconcile_results` records it (by `inventoryd reconcile` or the periodic run inside
/// `serve`, whichever instance ran it): what the status page shows as "last reconcile".
public struct ReconcileSummary: Sendable, Equatable {
    /// The row's id: later runs have larger ids.
    public let id: Int64
    public let startedAtMilliseconds: Int64
    /// When the run ended; nil for a row written before it finished.
    public let finishedAtMilliseconds: Int64?
    public let itemsChecked: Int64
    /// Differences found (confirmed with the stock row locked); 0 is a clean run.
    public let differences: Int64

    public init(
        id: Int64, startedAtMilliseconds: Int64, finishedAtMilliseconds: Int64?, itemsChecked: Int64, differences: Int64
    ) {
        self.id = id
        self.startedAtMilliseconds = startedAtMilliseconds
        self.finishedAtMilliseconds = finishedAtMilliseconds
        self.itemsChecked = itemsChecked
        self.differences = differences
    }

    /// The latest recorded run; nil when there is none. The times are read with the session's time zone, the
    /// one `NOW(3)` wrote them in.
    static func latest(in mysql: MySQLClient) async throws -> ReconcileSummary? {
        let result = try await mysql.query(
            """
            SELECT id, CAST(UNIX_TIMESTAMP(started_at) * 1000 AS SIGNED) AS started_ms,
                   CAST(UNIX_TIMESTAMP(finished_at) * 1000 AS SIGNED) AS finished_ms, items_checked, differences
            FROM reconcile_results ORDER BY id DESC LIMIT 1
            """
        )
        guard let row = result.rows.first, let id = row.int64("id"), let started = row.int64("started_ms") else {
            return nil
        }
        return ReconcileSummary(
            id: id, startedAtMilliseconds: started, finishedAtMilliseconds: row.int64("finished_ms"),
            itemsChecked: row.int64("items_checked") ?? 0, differences: row.int64("differences") ?? 0
        )
    }
}
