import MySQLClient

/// MySQL's side of the drain marks (migrations/0017): per shard, how many transactions have recorded its Redis
/// changes. A transaction that records some locks their rows (`lock`), has Redis raise its marks past those counts
/// (`BatchFences.raiseDrainMarks`, before its COMMIT) and counts itself (`advance`): Redis's mark is then never below
/// MySQL's unless Redis went back in time.
enum DrainMarkSQL {
    /// Locks the rows of `marks` (each made at 0 when missing; in key order, so concurrent transactions lock in one
    /// order) and returns their counts.
    static func lock(_ marks: [String], on connection: MySQLConnection) throws -> [String: Int64] {
        let marks = Set(marks).sorted()
        guard !marks.isEmpty else { return [:] }
        // ON DUPLICATE KEY UPDATE takes the existing row's exclusive lock (INSERT IGNORE would take a shared one, and
        // two transactions upgrading theirs would deadlock).
        _ = try connection.query(
            "INSERT INTO drain_marks (mark, seq) VALUES \(tuples(marks.count, "(?, 0)")) ON DUPLICATE KEY UPDATE seq = seq",
            marks.map { .string($0) }
        )
        return try counts(marks, on: connection, locking: true)
    }

    /// The counts of `marks` (a mark without a row is left out: 0). Without `locking`, read as committed: a
    /// transaction raises Redis's mark before it commits MySQL's, so a Redis mark read after this is at least the
    /// count read unless Redis went back in time.
    static func counts(_ marks: [String], on connection: MySQLConnection, locking: Bool = false) throws -> [String: Int64] {
        guard !marks.isEmpty else { return [:] }
        let rows = try connection.query(
            "SELECT mark, seq FROM drain_marks WHERE mark IN (\(tuples(marks.count, "?")))" + (locking ? " FOR UPDATE" : ""),
            marks.map { .string($0) }
        ).rows
        var counts: [String: Int64] = [:]
        for row in rows {
            if let mark = row.string("mark"), let seq = row.int64("seq") { counts[mark] = seq }
        }
        return counts
    }

    /// Counts this transaction in each of `marks` (locked by `lock`).
    static func advance(_ marks: [String], on connection: MySQLConnection) throws {
        let marks = Set(marks).sorted()
        guard !marks.isEmpty else { return }
        _ = try connection.query(
            "UPDATE drain_marks SET seq = seq + 1 WHERE mark IN (\(tuples(marks.count, "?")))", marks.map { .string($0) }
        )
    }
}
