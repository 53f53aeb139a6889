import Foundation
import Logging
import MySQLClient

/// Brings the database schema up to date by applying the numbered SQL files (`NNNN_name.sql`) of a directory that
/// the database has not recorded in `schema_migrations` yet, in numeric order.
///
/// Each file is a list of statements, each ending with `;` at the end of a line. MySQL commits every DDL statement
/// by itself, so a file is not atomic: write statements that can run again (`CREATE TABLE IF NOT EXISTS`), and a
/// run that died half-way through a file is finished by the next run.
public struct Migrator: Sendable {
    /// The MySQL named lock that serialises concurrent runs (several instances starting at once).
    static let lockName = "inventory_migrate"
    static let lockTimeoutSeconds: Int64 = 30

    private let client: MySQLClient
    private let directory: String
    private let logger: Logger

    /// Creates a migrator for the SQL files in `directory`, by default the repository's `migrations/` folder or
    /// `$INVENTORY_MIGRATIONS_DIR`.
    public init(
        client: MySQLClient,
        directory: String = ProjectFiles.directory("migrations", environmentVariable: "INVENTORY_MIGRATIONS_DIR"),
        logger: Logger
    ) {
        self.client = client
        self.directory = directory
        self.logger = logger
    }

    /// Creates a migrator for the SQL files in the directory at `directory`.
    public init(client: MySQLClient, directory: URL, logger: Logger) {
        self.init(client: client, directory: directory.path, logger: logger)
    }

    /// Applies every migration not applied yet and returns the file names applied by this call (empty when the
    /// schema was already current). Holds a MySQL named lock throughout, so concurrent runs apply each file once.
    public func migrate() async throws -> [String] {
        try await client.withConnection { [directory, logger] connection in
            // Reading the files here keeps that blocking I/O on the client's thread pool too.
            let migrations = try Self.migrations(in: directory)
            return try Self.holdingLock(on: connection) {
                try connection.execute(
                    """
                    CREATE TABLE IF NOT EXISTS schema_migrations (
                        version    VARCHAR(191) NOT NULL,
                        applied_at DATETIME(3)  NOT NULL,
                        PRIMARY KEY (version)
                    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
                    """
                )
                let recorded = Set(
                    try connection.query("SELECT version FROM schema_migrations").rows.compactMap { $0.string("version") }
                )
                var appliedNow: [String] = []
                for migration in migrations where !recorded.contains(migration.name) {
                    for (index, statement) in migration.statements.enumerated() {
                        do {
                            try connection.execute(statement)
                        } catch {
                            throw MigrationError.statementFailed(file: migration.name, statement: index + 1, underlying: error)
                        }
                    }
                    _ = try connection.query(
                        "INSERT INTO schema_migrations (version, applied_at) VALUES (?, NOW(3))",
                        [.string(migration.name)]
                    )
                    logger.info("applied migration", metadata: ["migration": "\(migration.name)"])
                    appliedNow.append(migration.name)
                }
                return appliedNow
            }
        }
    }

    // MARK: - Files

    struct Migration: Equatable {
        let version: Int
        let name: String
        let statements: [String]
    }

    static func migrations(in directory: String) throws -> [Migration] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw MigrationError.unreadableDirectory(directory, underlying: error)
        }
        var byVersion: [Int: String] = [:]
        for name in names {
            guard let version = version(of: name) else { continue }
            if let other = byVersion[version] {
                throw MigrationError.duplicateVersion(other, name)
            }
            byVersion[version] = name
        }
        return try byVersion.sorted { $0.key < $1.key }.map { version, name in
            let path = URL(fileURLWithPath: directory).appendingPathComponent(name).path
            let text: String
            do {
                text = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw MigrationError.unreadableDirectory(path, underlying: error)
            }
            return Migration(version: version, name: name, statements: statements(in: text))
        }
    }

    /// The number of a migration file named `NNNN_anything.sql`; nil for any other file.
    static func version(of name: String) -> Int? {
        let parts = name.split(separator: "_", maxSplits: 1)
        guard name.hasSuffix(".sql"), parts.count == 2, parts[0].count == 4,
            parts[0].allSatisfy({ $0.isASCII && $0.isNumber })
        else {
            return nil
        }
        return Int(parts[0])
    }

    /// Splits a file into statements at lines ending with `;`, dropping the `;` and chunks that hold only
    /// comments: the server rejects an empty query.
    static func statements(in text: String) -> [String] {
        var statements: [String] = []
        var lines: [Substring] = []
        func flush() {
            let meaningful = lines.contains { line in
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                return !trimmed.isEmpty && !trimmed.hasPrefix("--") && !trimmed.hasPrefix("#")
            }
            if meaningful {
                statements.append(lines.joined(separator: "\n"))
            }
            lines.removeAll()
        }
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.hasSuffix(";") {
                lines.append(Substring(trimmed.dropLast()))
                flush()
            } else {
                lines.append(line)
            }
        }
        flush()
        return statements
    }

    // MARK: - Lock

    private static func holdingLock<T>(on connection: MySQLConnection, _ body: () throws -> T) throws -> T {
        let result = try connection.query(
            "SELECT GET_LOCK(?, ?) AS acquired",
            [.string(lockName), .int(lockTimeoutSeconds)]
        )
        guard result.rows.first?.int64("acquired") == 1 else {
            throw MigrationError.lockNotAcquired(lockName, timeoutSeconds: lockTimeoutSeconds)
        }
        // A connection that dies mid-run releases the lock with its session, so only the normal path needs this.
        defer { _ = try? connection.query("SELECT RELEASE_LOCK(?)", [.string(lockName)]) }
        return try body()
    }
}

/// Why migrations could not be applied.
public enum MigrationError: Error, CustomStringConvertible {
    /// The migrations directory or one of its files could not be read.
    case unreadableDirectory(String, underlying: any Error)
    /// Two files share a number, so their order is undefined.
    case duplicateVersion(String, String)
    /// Another run held the migration lock for longer than the timeout.
    case lockNotAcquired(String, timeoutSeconds: Int64)
    /// A statement failed; `statement` counts from 1 within the file.
    case statementFailed(file: String, statement: Int, underlying: any Error)

    /// A description for logs and the `migrate` command's output.
    public var description: String {
        switch self {
        case .unreadableDirectory(let path, let error):
            return "cannot read migrations at \(path): \(error)"
        case .duplicateVersion(let first, let second):
            return "migrations \(first) and \(second) have the same number"
        case .lockNotAcquired(let name, let timeout):
            return "could not take the MySQL lock '\(name)' within \(timeout) s: is another migration running?"
        case .statementFailed(let file, let statement, let error):
            return "migration \(file), statement \(statement), failed: \(error)"
        }
    }
}
