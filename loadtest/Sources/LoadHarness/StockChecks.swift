/// One verdict of the correctness checks.
public struct CheckResult: Sendable, Codable, Equatable {
    public var phase: String
    public var name: String
    public var passed: Bool
    public var detail: String

    public init(phase: String, name: String, passed: Bool, detail: String) {
        self.phase = phase
        self.name = name
        self.passed = passed
        self.detail = detail
    }
}

/// An item's stock read from the service after a phase.
public struct StockObservation: Sendable, Codable, Equatable {
    public var available: Int64
    public var reserved: Int64

    public init(available: Int64, reserved: Int64) {
        self.available = available
        self.reserved = reserved
    }
}

/// The correctness rules a phase must keep, on the harness's own ledger and on what the service shows after.
///
/// Every bound allows the item's `uncertain` quantity: a request without an answer may or may not have been applied.
public enum StockChecks {
    /// Successes never exceed the stock: what is held at once (201s minus what was given back by cancel or expiry)
    /// is at most the stock set. Without cancel or expiry this is plainly `201 quantity ≤ stock`.
    public static func oversell(_ ledger: ItemLedger) -> String? {
        let outstanding = ledger.held - ledger.cancelled - ledger.expiring
        guard outstanding - ledger.uncertain > ledger.stock else { return nil }
        return "held \(outstanding) (201s \(ledger.held), cancelled \(ledger.cancelled), expiring \(ledger.expiring)) "
            + "> stock \(ledger.stock)"
    }

    /// Nothing is created or lost: available + reserved + confirmed == the stock set.
    public static func conservation(_ ledger: ItemLedger, _ observed: StockObservation) -> String? {
        let total = observed.available + observed.reserved + ledger.confirmed
        guard abs(total - ledger.stock) > ledger.uncertain else { return nil }
        return "available \(observed.available) + reserved \(observed.reserved) + confirmed \(ledger.confirmed) = \(total)"
            + " ≠ stock \(ledger.stock)" + (ledger.uncertain > 0 ? " (± \(ledger.uncertain) unknown)" : "")
    }

    /// Reserved is what the harness still holds: 201s minus confirmed, cancelled and expired.
    public static func reserved(_ ledger: ItemLedger, _ observed: StockObservation) -> String? {
        guard abs(observed.reserved - ledger.expectedReserved) > ledger.uncertain else { return nil }
        return "reserved \(observed.reserved) ≠ expected \(ledger.expectedReserved) (201s \(ledger.held) − confirmed "
            + "\(ledger.confirmed) − cancelled \(ledger.cancelled) − expired \(ledger.expiring))"
            + (ledger.uncertain > 0 ? " (± \(ledger.uncertain) unknown)" : "")
    }

    /// True when every observed item already shows its expected reserved quantity (the drain can stop).
    static func settled(_ ledgers: [ItemLedger], _ observed: [StockObservation]) -> Bool {
        zip(ledgers, observed).allSatisfy { reserved($0, $1) == nil }
    }

    /// The checks of a phase over all its items, one result per rule (failures name up to five items).
    public static func evaluate(
        phase: String, ledgers: [ItemLedger], observed: [StockObservation]?, replayCreated: Int = 0, replayUnmarked: Int = 0,
        drained: Double? = nil
    ) -> [CheckResult] {
        func rule(_ name: String, _ problem: (Int) -> String?, passDetail: String) -> CheckResult {
            var failures: [String] = []
            var failed = 0
            for index in ledgers.indices {
                if let message = problem(index) {
                    failed += 1
                    if failures.count < 5 { failures.append("sku \(index + 1): \(message)") }
                }
            }
            if failed == 0 { return CheckResult(phase: phase, name: name, passed: true, detail: passDetail) }
            let more = failed > failures.count ? "; and \(failed - failures.count) more items" : ""
            return CheckResult(phase: phase, name: name, passed: false, detail: failures.joined(separator: "; ") + more)
        }
        let held = ledgers.reduce(0) { $0 + $1.held }
        let stock = ledgers.reduce(0) { $0 + $1.stock }
        let uncertain = ledgers.reduce(0) { $0 + $1.uncertain }
        let itemsText = ledgers.count == 1 ? "1 item" : "\(ledgers.count) items"
        var results = [
            rule("no oversell", { oversell(ledgers[$0]) }, passDetail: "\(itemsText): 201 quantity \(held), stock \(stock)")
        ]
        if let observed {
            results.append(
                rule("stock conserved", { conservation(ledgers[$0], observed[$0]) },
                    passDetail: "\(itemsText): available + reserved + confirmed == stock set")
            )
            let drainText = drained.map { String(format: " (settled after %.1fs)", $0) } ?? ""
            results.append(
                rule("reserved settles", { reserved(ledgers[$0], observed[$0]) },
                    passDetail: "\(itemsText): reserved == 201s − confirmed − cancelled − expired\(drainText)")
            )
        }
        if replayCreated > 0 || replayUnmarked > 0 {
            results.append(
                CheckResult(
                    phase: phase, name: "replays", passed: replayCreated == 0 && replayUnmarked == 0,
                    detail: "\(replayCreated) replays answered 201 (a second reservation), \(replayUnmarked) answered 200 "
                        + "without Idempotent-Replayed"
                )
            )
        }
        if uncertain > 0 {
            results.append(
                CheckResult(
                    phase: phase, name: "unknown outcomes", passed: true,
                    detail: "\(uncertain) quantity had no answer or a 5xx; the checks above allow that much either way"
                )
            )
        }
        return results
    }
}
