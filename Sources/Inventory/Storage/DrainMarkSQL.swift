import MySQLClient

extension MySQLSession {
    /// The marks' part of a transaction that records Redis changes of their shards, just before its COMMIT: locks their
    /// rows (`DrainMarkSQL.lock`), has Redis raise them (`BatchFences.raiseDrainMarks`), checking beside them the other
    /// marks of the same Redis (`BatchFences.marks(checkedBeside:)`: on a single Redis every other shard's, read without
    /// a lock, since its raise draws the next value of one drain sequence for all of them: a Redis gone back on another
    /// shard must not have that sequence lifted past what MySQL recorded there), and records the values it got.
    /// Throws `RedisWentBack` (nothing raised) when Redis is behind on any of them.
    func raiseDrainMarks(_ marks: [String], fences: any BatchFences) async throws {
        guard !marks.isEmpty else { return }
        let beside = fences.marks(checkedBeside: marks)
        let (locked, others) = try await perform { connection in try DrainMarkSQL.lock(marks, reading: beside, on: connection) }
        let raised = try await fences.raiseDrainMarks(locked, checking: others)
        try await perform { connection in try DrainMarkSQL.record(raised, on: connection) }
    }
}

/// MySQL's side of the drain marks (migrations/0017): per shard, the value Redis handed the last transaction that
/// recorded the shard's Redis changes. A transaction that records some locks their rows (`lock`), has Redis raise its
/// marks (`BatchFences.raiseDrainMarks`, before its COMMIT) and records the values it got (`record`): Redis's mark is
/// then never below MySQL's unless Redis went back in time.
enum DrainMarkSQL {
    /// Locks the rows of `marks` (each made at 0 when missing; in key order, so concurrent transactions lock in one
    /// order) and returns their values. Every transaction takes them last, just before its COMMIT: one holding a mark
    /// row never waits for another row, so marks close no cycle of locks.
    static func lock(_ marks: [String], on connection: MySQLConnection) throws -> [String: Int64] {
        try lock(marks, reading: [], on: connection).locked
    }

    /// `lock(marks)`, and beside it the values of `others` (`counts`, no lock), read by the same statement: two
    /// statements in all. The transaction runs at READ COMMITTED (every caller's): a plain read returns the latest
    /// committed values, which for the rows it has just locked nobody else can change.
    static func lock(
        _ marks: [String], reading others: [String], on connection: MySQLConnection
    ) throws -> (locked: [String: Int64], others: [String: Int64]) {
        guard connection.transactionIsolation == .readCommitted else {
            throw MySQLError(
                code: .queryFailed, message: "drain marks are locked only in a READ COMMITTED transaction (their read relies on it)"
            )
        }
        let marks = Set(marks).sorted()
        guard !marks.isEmpty else { return ([:], try counts(others, on: connection)) }
        // The row made on a shard's first transaction, and locked in one statement: ON DUPLICATE KEY UPDATE takes an
        // existing row's exclusive lock (INSERT IGNORE would take a shared one, and two transactions upgrading theirs
        // would deadlock; a SELECT … FOR UPDATE of a missing row takes a gap lock under REPEATABLE READ, and two such
        // transactions inserting the row deadlocked).
        _ = try connection.query(
            "INSERT INTO drain_marks (mark, seq) VALUES \(tuples(marks.count, "(?, 0)")) ON DUPLICATE KEY UPDATE seq = seq",
            marks.map { .string($0) }
        )
        // Not `counts`' text (ORDER BY): statements are prepared per text, and the test proxies recognise the check's
        // read of the marks (`counts`) by its text, sent only where it is not prepared yet.
        let values = try read(marks + others.filter { !marks.contains($0) }, on: connection, ordered: true)
        let locking = Set(marks)
        return (values.filter { locking.contains($0.key) }, values.filter { !locking.contains($0.key) })
    }

    /// The values of `marks` (a mark without a row is left out: 0), by a consistent read, which every caller makes
    /// under READ COMMITTED or alone (the latest committed values): a transaction raises Redis's mark before it
    /// commits MySQL's, so a Redis mark read after this is at least the value read unless Redis went back in time.
    static func counts(_ marks: [String], on connection: MySQLConnection) throws -> [String: Int64] {
        try read(marks, on: connection, ordered: false)
    }

    private static func read(_ marks: [String], on connection: MySQLConnection, ordered: Bool) throws -> [String: Int64] {
        guard !marks.isEmpty else { return [:] }
        let rows = try connection.query(
            "SELECT mark, seq FROM drain_marks WHERE mark IN (\(tuples(marks.count, "?")))" + (ordered ? " ORDER BY mark" : ""),
            marks.map { .string($0) }
        ).rows
        var counts: [String: Int64] = [:]
        for row in rows {
            if let mark = row.string("mark"), let seq = row.int64("seq") { counts[mark] = seq }
        }
        return counts
    }

    /// Records the values Redis raised the marks to (`BatchFences.raiseDrainMarks`; rows locked by `lock`).
    static func record(_ values: [String: Int64], on connection: MySQLConnection) throws {
        let marks = values.keys.sorted()
        guard !marks.isEmpty else { return }
        _ = try connection.query(
            "UPDATE drain_marks SET seq = CASE mark \(tuples(marks.count, "WHEN ? THEN ?", separator: " ")) END "
                + "WHERE mark IN (\(tuples(marks.count, "?")))",
            marks.flatMap { [MySQLValue.string($0), .int(values[$0] ?? 0)] } + marks.map { .string($0) }
        )
    }
}
