import Foundation
import LoadHarness

/// The kinds of key the `key-del` faults delete: every key of one item, one order or one of its marks that a
/// script reads (see `KeyLayout`). Streams, expiry indexes, directories and the generation markers are left alone.
public enum KeyKind: String, Sendable, Codable, CaseIterable {
    case item, order, reserve, rollback, users, codes, adjustment

    /// The kind of a key of the service's layout; nil for a key this fault leaves alone.
    init?(key: String) {
        if key.contains(":rsv:") {
            self = .reserve
        } else if key.contains(":rbk:") {
            self = .rollback
        } else if key.contains(":adj:") {
            self = .adjustment
        } else if key.contains(":order:") {
            self = .order
        } else if key.hasSuffix(":item") {
            self = .item
        } else if key.hasSuffix(":users") {
            self = .users
        } else if key.hasSuffix(":codes") {
            self = .codes
        } else {
            return nil
        }
    }
}

/// Deletes single keys of one business line while the load runs, a few a second: each time a kind is drawn among
/// the kinds present (so the few item hashes are hit as often as the thousands of orders), then a key of it.
/// Every key deleted is written to `logPath` with its time, to replay a failure.
struct KeyDeleter {
    let redis: PrivateRedis
    /// Keys containing this (the business id: in item keys, and in order ids, which start with it).
    let bizId: String
    /// The kinds to delete.
    let kinds: Set<KeyKind>
    let start: ContinuousClock.Instant
    let logPath: String

    /// Deletes `count` keys, `perSecond` a second (fewer when a SCAN takes longer); returns how many of each kind,
    /// and when each was deleted (seconds since `start`).
    func run(count: Int, perSecond: Int, random: inout SplitMix64) async throws -> ([KeyKind: Int], [Double]) {
        var deleted: [KeyKind: Int] = [:]
        var times: [Double] = []
        var lines: [String] = []
        for _ in 0..<count {
            var byKind: [KeyKind: [String]] = [:]
            for key in try redis.keys(matching: "inv:*\(bizId)*") {
                if let kind = KeyKind(key: key), kinds.contains(kind) { byKind[kind, default: []].append(key) }
            }
            let kinds = KeyKind.allCases.filter { byKind[$0] != nil }
            if !kinds.isEmpty {
                let kind = kinds[Int(random.next() % UInt64(kinds.count))]
                let keys = byKind[kind] ?? []
                let key = keys[Int(random.next() % UInt64(keys.count))]
                let removed = try redis.delete(key)
                deleted[kind, default: 0] += removed
                times.append((ContinuousClock.now - start).seconds)
                lines.append(String(format: "%.3f", times.last ?? 0) + " \(kind.rawValue) \(removed) \(key)")
            }
            try await Task.sleep(for: .milliseconds(1000 / max(1, perSecond)))
        }
        append(lines)
        return (deleted, times)
    }

    /// Deletes every key of the kinds at once; returns how many of each kind, and when.
    func deleteAll() throws -> ([KeyKind: Int], [Double]) {
        var deleted: [KeyKind: Int] = [:]
        var lines: [String] = []
        for key in try redis.keys(matching: "inv:*\(bizId)*") {
            guard let kind = KeyKind(key: key), kinds.contains(kind) else { continue }
            let removed = try redis.delete(key)
            deleted[kind, default: 0] += removed
            lines.append(String(format: "%.3f", (ContinuousClock.now - start).seconds) + " \(kind.rawValue) \(removed) \(key)")
        }
        append(lines)
        return (deleted, [(ContinuousClock.now - start).seconds])
    }

    private func append(_ lines: [String]) {
        if !FileManager.default.fileExists(atPath: logPath) { FileManager.default.createFile(atPath: logPath, contents: nil) }
        guard let handle = FileHandle(forWritingAtPath: logPath) else { return }
        handle.seekToEndOfFile()
        handle.write(Data(lines.map { $0 + "\n" }.joined().utf8))
        try? handle.close()
    }
}

/// Stock adjustments beside the load, so that the adjustment keys exist: on a random item -1, then (when that
/// was applied) +1, so the stock ends where it was set and on-hand is never above it. Each is retried with its
/// id until it gets a definite answer, as an operator's tool would.
struct Adjuster: Sendable {
    let client: SetupClient
    let bizId: String
    let items: Int
    let ledger: Ledger
    let stop: StopFlag
    let retryLimit: Duration

    /// Runs until `stop`; returns the pairs applied.
    func run(seed: UInt64) async -> Int {
        var random = SplitMix64(seed: seed)
        var pairs = 0
        while !stop.isSet {
            let sku = 1 + Int(random.next() % UInt64(items))
            let id = "\(bizId)-adj-\(pairs)-\(random.next() % 1_000_000)"
            let down = await send(sku: sku, id: id + "-down", delta: -1)
            if down == 200 {
                let up = await send(sku: sku, id: id + "-up", delta: 1)
                if up == 200 { pairs += 1 } else if let up { ledger.violation("adjustment +1 \(id): \(up)") }
            } else if let down, down != 409 {
                ledger.violation("adjustment -1 \(id): \(down)")
            }
            try? await Task.sleep(for: .milliseconds(250))
        }
        return pairs
    }

    /// The definite answer (anything but 5xx, 429 or no answer), nil when the retries ran out (counted as given up).
    private func send(sku: Int, id: String, delta: Int) async -> Int? {
        let started = ContinuousClock.now
        var last: Int?
        while ContinuousClock.now - started < retryLimit {
            do {
                let status = try await client.withConnection { connection in
                    try await connection.request(
                        .POST, "/v1/stock/\(bizId)/\(sku)/adjustments",
                        json: #"{"adjustmentId":"\#(id)","delta":\#(delta),"reason":"fault suite"}"#
                    ).status
                }
                ledger.answered(status)
                last = status
                if status < 500 && status != 429 { return status }
            } catch {
                last = nil
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
        ledger.abandoned("adjustment \(id) \(delta) (last answer \(last.map(String.init) ?? "none"))")
        return nil
    }
}

extension PrivateRedis {
    /// Every key matching `pattern`, on every node (SCAN).
    func keys(matching pattern: String) throws -> [String] {
        let cli = try Tools.find("redis-cli")
        var keys: [String] = []
        for port in ports {
            let output = try Tools.run(cli, ["-p", String(port), "--scan", "--pattern", pattern])
            keys += output.split(separator: "\n").map(String.init)
        }
        return keys
    }

    /// Deletes one key (on the node serving it); returns how many were deleted (0 if it was gone already).
    func delete(_ key: String) throws -> Int {
        let output = try Tools.run(try Tools.find("redis-cli"), (clustered ? ["-c"] : []) + ["-p", String(port), "DEL", key])
        return Int(output.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }
}
