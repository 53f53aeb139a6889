import MySQLClient

/// MySQL access for the durable retry tasks (`compensation_tasks`): reversals of Redis changes that could not run
/// when first tried, kept per key prefix (one deployment's Redis) until the retrier runs them.
struct CompensationRepository: Sendable {
    let client: MySQLClient

    /// Stores a reversal that failed with `error`.
    func store(_ task: CompensationTask, keyPrefix: String, error: String) async throws {
        _ = try await client.query(
            "INSERT INTO compensation_tasks (kind, key_prefix, payload, last_error) VALUES (?, ?, ?, ?)",
            [.string(task.kind), .string(keyPrefix), .string(task.payload), .string(error)]
        )
    }

    /// The oldest `limit` tasks still pending for `keyPrefix` (or stored before tasks were kept per prefix: '').
    /// A row whose kind or payload no longer reads as a task is left out.
    func pending(keyPrefix: String, limit: Int) async throws -> [(id: Int64, task: CompensationTask)] {
        let result = try await client.query(
            """
            SELECT id, kind, payload FROM compensation_tasks
            WHERE status = 'PENDING' AND key_prefix IN ('', ?) ORDER BY id LIMIT ?
            """,
            [.string(keyPrefix), .int(Int64(limit))]
        )
        return result.rows.compactMap { row in
            guard let id = row.int64("id"),
                let task = CompensationTask(kind: row.string("kind") ?? "", payload: row.string("payload") ?? "")
            else { return nil }
            return (id, task)
        }
    }

    /// The task ran: done.
    func markDone(_ id: Int64) async throws {
        _ = try await client.query(
            "UPDATE compensation_tasks SET status = 'DONE', attempts = attempts + 1 WHERE id = ?", [.int(id)]
        )
    }

    /// The task failed again with `error`: counted, kept pending.
    func recordFailure(_ id: Int64, error: String) async throws {
        _ = try await client.query(
            "UPDATE compensation_tasks SET attempts = attempts + 1, last_error = ? WHERE id = ?", [.string(error), .int(id)]
        )
    }
}
