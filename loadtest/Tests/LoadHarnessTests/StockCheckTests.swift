import Testing

@testable import LoadHarness

@Suite("No-oversell and stock checks")
struct StockCheckTests {
    let stock = ItemLedger(stock: 1000)

    @Test("successes up to the stock pass; one more fails")
    func oversell() {
        #expect(StockChecks.oversell(stock.with(held: 1000)) == nil)
        let message = StockChecks.oversell(stock.with(held: 1001))
        #expect(message?.contains("> stock 1000") == true)
    }

    @Test("stock given back by cancel and expiry may be reserved again")
    func released() {
        #expect(StockChecks.oversell(stock.with(held: 1300, cancelled: 200, expiring: 100)) == nil)
        #expect(StockChecks.oversell(stock.with(held: 1301, cancelled: 200, expiring: 100)) != nil)
        // Confirmed stock is gone for good.
        #expect(StockChecks.oversell(stock.with(held: 1001, confirmed: 500)) != nil)
    }

    @Test("unknown outcomes are the tolerance, either way")
    func uncertainty() {
        #expect(StockChecks.oversell(stock.with(held: 1002, uncertain: 2)) == nil)
        #expect(StockChecks.oversell(stock.with(held: 1003, uncertain: 2)) != nil)
        let ledger = stock.with(held: 10, uncertain: 1)
        #expect(StockChecks.reserved(ledger, StockObservation(available: 989, reserved: 11)) == nil)
        #expect(StockChecks.reserved(ledger, StockObservation(available: 988, reserved: 12)) != nil)
    }

    @Test("after the run: available + reserved + confirmed == stock, reserved == what is still held")
    func afterTheRun() {
        let ledger = stock.with(held: 700, confirmed: 400, cancelled: 100, expiring: 50)
        // Held now: 700 − 400 − 100 − 50 = 150; available: 1000 − 400 − 150 = 450.
        #expect(ledger.expectedReserved == 150)
        let good = StockObservation(available: 450, reserved: 150)
        #expect(StockChecks.conservation(ledger, good) == nil)
        #expect(StockChecks.reserved(ledger, good) == nil)
        // Expired holds not swept yet: reserved too high, conservation still holds.
        let unswept = StockObservation(available: 400, reserved: 200)
        #expect(StockChecks.conservation(ledger, unswept) == nil)
        #expect(StockChecks.reserved(ledger, unswept) != nil)
        #expect(!StockChecks.settled([ledger], [unswept]))
        #expect(StockChecks.settled([ledger], [good]))
        // Stock created from nothing.
        #expect(StockChecks.conservation(ledger, StockObservation(available: 451, reserved: 150)) != nil)
    }

    @Test("evaluate: one result per rule, failures name the items")
    func evaluate() {
        let ledgers = [stock.with(held: 1000), stock.with(held: 1005), stock.with(held: 3)]
        let observed = [
            StockObservation(available: 0, reserved: 1000), StockObservation(available: -5, reserved: 1005),
            StockObservation(available: 997, reserved: 3),
        ]
        let results = StockChecks.evaluate(phase: "hot", ledgers: ledgers, observed: observed)
        #expect(results.map(\.name) == ["no oversell", "stock conserved", "reserved settles"])
        #expect(results.map(\.passed) == [false, true, true])
        #expect(results[0].detail.hasPrefix("sku 2: held 1005"))
        let replays = StockChecks.evaluate(phase: "retry", ledgers: [stock], observed: nil, replayCreated: 1)
        #expect(replays.map(\.name) == ["no oversell", "replays"])
        #expect(replays[1].passed == false)
    }
}

@Suite("Reconciler check")
struct ReconcileCheckTests {
    @Test("the reconcile command's exit status decides the check; a command that cannot run fails it")
    func exitStatus() {
        #expect(Harness.reconcile("/bin/true", biz: "b", phase: "p").passed)
        let failed = Harness.reconcile("/bin/false", biz: "b", phase: "p")
        #expect(!failed.passed)
        #expect(failed.detail.hasPrefix("exit 1"))
        #expect(!Harness.reconcile("/nonexistent/inventoryd", biz: "b", phase: "p").passed)
    }
}
