import Foundation
import Inventory
import InventoryTestSupport
import ModelCheck
import Testing

/// The quick model check of the test command: a few seeded programs against the real stores (on the cluster too
/// when the test command's cluster pass runs), and the reference model's own rules.
@Suite("Model check")
struct ModelCheckTests {
    @Test("seeded programs of calls and faults agree with the reference model", arguments: [1, 2, 3] as [UInt64])
    func quickRun(seed: UInt64) async throws {
        do {
            try await ModelCheck.check(seed: seed, steps: 150)
        } catch let counterexample as ModelCheck.Counterexample {
            Issue.record("\(counterexample)")
        }
    }

    @Test("sync mode: seeded programs agree with the reference model")
    func quickRunSync() async throws {
        do {
            try await ModelCheck.check(seed: 101, steps: 150, durability: .sync)
        } catch let counterexample as ModelCheck.Counterexample {
            Issue.record("\(counterexample)")
        }
    }

    @Test("seeds that found defects stay fixed (regressions)", arguments: [16, 2013, 20038] as [UInt64])
    func regressionSeeds(seed: UInt64) async throws {
        do {
            try await ModelCheck.check(seed: seed, steps: seed == 16 ? 200 : 300, features: [])
        } catch let counterexample as ModelCheck.Counterexample {
            Issue.record("\(counterexample)")
        }
    }

    /// The long cluster run's failures (session 12), replayed to just past the step that failed: 200004 step 225 (a
    /// part taken back before its item vanished: `reconcile --fix` counted a phantom hold; a worker kill decides by
    /// timing whether it shows, so RebuildDrainTests.undoOfAbsorbedEpochInFlight is its deterministic test) and 200064
    /// step 45 (a reserve of another body under a cancelled order's id after its directory vanished: the model's
    /// documented unspecified case). Cluster pass only.
    @Test(
        "cluster seeds that found a defect or a model gap stay passing (regressions)",
        .enabled(if: TestStores.clusterByDefault), arguments: [(200004, 230), (200064, 50)] as [(UInt64, Int)]
    )
    func clusterRegressionSeeds(seed: UInt64, steps: Int) async throws {
        do {
            // Without the faults added since (Redis full), which would move the steps that failed past the cut.
            try await ModelCheck.check(seed: seed, steps: steps, cluster: true, features: Features.all.subtracting(.redisFull))
        } catch let counterexample as ModelCheck.Counterexample {
            Issue.record("\(counterexample)")
        }
    }

    /// While Redis is full, what settles holds made before goes on: a script of those refused for memory fails the
    /// run, not only a retry after room came back (`Driver.settlingScriptRefused`).
    @Test("Redis full: holds made before are confirmed, cancelled, refunded and drained without waiting for room")
    func redisFullProgram() async throws {
        let program = Program(
            seed: 0,
            steps: [
                .setStock(sku: 1, stock: 10),
                .reserve(order: 0, lines: [Line(sku: 1, quantity: 2)], shortage: .reject),
                .reserve(order: 1, lines: [Line(sku: 1, quantity: 3)], shortage: .reject),
                .reserve(order: 2, lines: [Line(sku: 1, quantity: 1)], shortage: .reject),
                .fault(.drain), .reserve(order: 3, lines: [Line(sku: 1, quantity: 1)], shortage: .reject),
                .fault(.redisFull), .confirm(order: 0), .cancel(order: 1), .confirm(order: 2), .refund(order: 2),
                .fault(.drain), .cancel(order: 3), .reserve(order: 4, lines: [Line(sku: 1, quantity: 1)], shortage: .reject),
                .fault(.redisRoom),
            ],
            features: []
        )
        let failure = try await ModelCheck.failure(of: program)
        #expect(failure == nil, "\(failure.map { "\($0)" } ?? "")")
    }

    @Test("the shortest program of a defect found on the cluster stays fixed (seed 200001: an empty part's hash lost)")
    func emptyPartProgram() async throws {
        let program = Program(
            seed: 200001,
            steps: [
                .confirm(order: 310), .setStock(sku: 1, stock: 0),
                .reserve(order: 317, lines: [Line(sku: 1, quantity: 1)], shortage: .reject), .setStock(sku: 3, stock: 28),
                .onSecondInstance(.cancel(order: 320)),
                .onSecondInstance(.reserve(order: 322, lines: [Line(sku: 1, quantity: 4), Line(sku: 3, quantity: 3)], shortage: .partial)),
                .fault(.mysqlUp), .fault(.deleteOrder(order: 322, sku: 1)), .confirm(order: 319), .confirm(order: 321),
                .onSecondInstance(.setStock(sku: 3, stock: 30)), .confirm(order: 322),
            ],
            features: .all
        )
        let failure = try await ModelCheck.failure(of: program, cluster: true)
        #expect(failure == nil, "\(failure.map { "\($0)" } ?? "")")
    }

    @Test("the shortest program of a defect found on the cluster stays fixed (seed 32: a cancel after a late confirm expired the order answered 409)")
    func cancelAfterLateConfirmProgram() async throws {
        let program = Program(
            seed: 32,
            steps: [
                .onSecondInstance(.setStock(sku: 2, stock: 25)),
                .onSecondInstance(.reserve(order: 102, lines: [Line(sku: 2, quantity: 2)], shortage: .partial, options: .shortLived)),
                .fault(.deadlinesPass), .lateCall(cancel: false), .cancel(order: 102),
            ],
            features: .all
        )
        let failure = try await ModelCheck.failure(of: program, cluster: true)
        #expect(failure == nil, "\(failure.map { "\($0)" } ?? "")")
    }

    /// A sold retry after retention beside its ended earlier order, then one part of the order lost: the lost part comes
    /// back as the earlier order's lines (item 1), the surviving part stays the retry's (item 3, of which the retry got
    /// none), and the refund gives back and moves in the journal each part's own (README "Model check", known limits).
    /// The model expected the whole earlier order (3 units of item 3) and failed here; the service was as now.
    @Test("cluster seed 698302's shortest program: a part of a sold retry lost comes back as the earlier order's part")
    func lostPartOfSoldRetryProgram() async throws {
        let lines = [Line(sku: 1, quantity: 4), Line(sku: 3, quantity: 3)]
        let program = Program(
            seed: 698302,
            steps: [
                .setStock(sku: 3, stock: 11), .setUserLimit(sku: 1, limit: 6),
                .onSecondInstance(.reserve(order: 0, lines: lines, shortage: .partial, options: [.dispense, .shortLived])),
                .adjust(sku: 3, id: 0, delta: -3), .adjust(sku: 3, id: 1, delta: -5),
                .retryAfterRetention(order: 0, lines: lines, shortage: .partial, options: [.dispense, .shortLived], confirm: true),
                .fault(.deleteOrder(order: 0, sku: 1)), .refund(order: 0),
            ],
            features: .all
        )
        let failure = try await ModelCheck.failure(of: program, cluster: true)
        #expect(failure == nil, "\(failure.map { "\($0)" } ?? "")")
    }

    /// Retries after retention whose item is rebuilt before the worker takes them back: of an order still held (the
    /// rebuild counts the journal's row once, re-stamped: the take-back gives nothing back) and of an order that ended
    /// (the rebuild counts the duplicate, a hold of its own: taken back, or sold). Before, the first gave the earlier
    /// hold back (2 units sold twice) and the second gave back or sold units the item did not count.
    @Test("retries after retention with their item rebuilt before the worker: nothing given back or sold that is not counted")
    func rebuiltRetriesProgram() async throws {
        let two = [Line(sku: 3, quantity: 2)]
        let program = Program(
            seed: 0,
            steps: [
                .setStock(sku: 3, stock: 12),
                .reserve(order: 0, lines: two, shortage: .reject),
                .retryAfterRetention(order: 0, lines: two, shortage: .reject, options: [], confirm: false, rebuild: true),
                .reserve(order: 1, lines: two, shortage: .reject), .cancel(order: 1),
                .retryAfterRetention(order: 1, lines: two, shortage: .reject, options: [], confirm: false, rebuild: true),
                .reserve(order: 2, lines: two, shortage: .reject), .confirm(order: 2),
                .retryAfterRetention(order: 2, lines: two, shortage: .reject, options: [], confirm: true, rebuild: true),
                .reserve(order: 3, lines: [Line(sku: 3, quantity: 6)], shortage: .reject),
            ],
            features: .all
        )
        let failure = try await ModelCheck.failure(of: program)
        #expect(failure == nil, "\(failure.map { "\($0)" } ?? "")")
    }

    /// An ended order's retry after Redis lost its data, its item rebuilt before the worker: the rebuild must not count
    /// the retry's hold (its epoch began before the streams were made again, so the worker leaves it out as stale).
    /// Before, the rebuild counted it and nothing ever gave it back (reserved 6 after the drain).
    @Test("cluster seed 698307's shortest program: a retry after a loss of Redis's data, its item rebuilt before the worker")
    func retryAfterLossRebuiltProgram() async throws {
        let rebuild = true
        let program = Program(
            seed: 698307,
            steps: [
                .onSecondInstance(.setStock(sku: 5, stock: 9)), .read(order: 6), .confirm(order: 32), .fault(.deleteItem(sku: 3)),
                .burstThroughKilledService(orders: [33, 34, 35, 36], lines: [Line(sku: 1, quantity: 2)], afterMilliseconds: 5),
                .reserve(order: 4000006, lines: [Line(sku: 5, quantity: 6)], shortage: .backorder),
                .retryAfterRetention(order: 4000002, lines: [Line(sku: 5, quantity: 3)], shortage: .partial, options: .dispense, confirm: true),
                .onSecondInstance(.cancel(order: 54)), .fault(.redisRoom), .refund(order: 57),
                .onSecondInstance(.confirm(order: 4000006)), .confirm(order: 1000059), .read(order: 58), .confirm(order: 53),
                .fault(.drainThenLoseEverything), .fault(.workerKilled(afterMilliseconds: 0)), .cancel(order: 54),
                .onSecondInstance(.confirm(order: 93)), .onSecondInstance(.adjust(sku: 5, id: 500000, delta: 8)),
                .fault(.deleteReserveKey(order: 91, sku: 3)),
                .retryAfterRetention(order: 4000006, lines: [Line(sku: 5, quantity: 6)], shortage: .backorder, options: [], confirm: false, rebuild: rebuild),
            ],
            features: .all
        )
        let failure = try await ModelCheck.failure(of: program, cluster: true)
        #expect(failure == nil, "\(failure.map { "\($0)" } ?? "")")
    }

    /// The shortest programs of defects seed 1 found on one Redis (session 11), on whichever topology the pass uses.
    static let seedOnePrograms: [String: [Step]] = [
        "the code export after the code set vanished listed no codes": [
            .setOneTimePool(sku: 4), .uploadCodes(sku: 4, codes: (0..<8).map { "c\($0)" }),
            .fault(.deleteCodeSet(sku: 4)),
        ],
        "a usage hash deleted alone let a user buy past a lifetime limit": [
            .setStock(sku: 3, stock: 30), .setUserLimit(sku: 1, limit: 6),
            .reserve(order: 12, lines: [Line(sku: 1, quantity: 4)], shortage: .reject, options: .dispense),
            .fault(.deleteUsage(sku: 1)),
            .onSecondInstance(
                .reserve(
                    order: 21, lines: [Line(sku: 1, quantity: 4), Line(sku: 3, quantity: 2)], shortage: .backorder,
                    options: .dispense
                )
            ),
        ],
    ]

    @Test("the shortest programs of defects seed 1 found stay fixed", arguments: seedOnePrograms.keys.sorted())
    func seedOneProgram(defect: String) async throws {
        let program = Program(seed: 1, steps: Self.seedOnePrograms[defect]!, features: .all)
        let failure = try await ModelCheck.failure(of: program)
        #expect(failure == nil, "\(defect): \(failure.map { "\($0)" } ?? "")")
    }

    @Test("the added features leave a seed's drawn steps as they were (seeds found before them still replay)")
    func featuresKeepTheSteps() {
        let basic = Program.generate(seed: 7, count: 600, features: [])
        let full = Program.generate(seed: 7, count: 600, features: .all)
        let unwrapped = full.steps.compactMap { step -> Step? in
            // a reserve varied by the features was drawn as a plain one (backorder replaces reject)
            func plain(_ step: Step) -> Step {
                if case .burstWhileRedisRestarts(let orders, let lines) = step { return .burst(orders: orders, lines: lines) }
                if case .burstThroughKilledService(let orders, let lines, _) = step { return .burst(orders: orders, lines: lines) }
                guard case .reserve(let order, let lines, let shortage, _) = step else { return step }
                return .reserve(order: order, lines: lines, shortage: shortage == .backorder ? .reject : shortage)
            }
            // the code pool's and the infinite item's steps are their own: on their items, or on their orders
            func pools(_ step: Step) -> Bool {
                switch step {
                case .setOneTimePool, .uploadCodes, .fault(.deleteCodeSet), .fault(.deleteUsage), .fault(.deleteGenerationMarkers),
                    .fault(.deleteExpiryIndex), .fault(.deleteDirectory):
                    return true
                case .setStock(let sku, _), .fault(.deleteItem(let sku)), .adjust(let sku, _, _),
                    .fault(.deleteAdjustmentKey(let sku, _)):
                    return sku == Features.codeItem || sku == Features.infiniteItem
                case .setInfinite: return true
                case .reserve(let order, _, _, _), .confirm(let order), .cancel(let order), .refund(let order),
                    .read(let order):
                    return order >= Features.firstCodeOrder && order < 1_000_000_000
                case .onSecondInstance(let inner): return pools(inner)
                default: return false
                }
            }
            if pools(step) { return nil }
            switch step {
            case .onSecondInstance(let inner): return plain(inner)
            case .fault(.mysqlDown), .fault(.mysqlUp), .fault(.deadlinesPass), .fault(.expireDue), .fault(.redisRestart),
                .fault(.workerKilled), .fault(.copyRedis), .fault(.goBack), .fault(.redisFull), .fault(.redisRoom), .lateCall,
                .setUserLimit, .setBackorderLimit, .retryAfterRetention:
                return nil
            default: return plain(step)
            }
        }
        #expect(unwrapped.count < basic.steps.count)
        #expect(Array(basic.steps.prefix(unwrapped.count)) == unwrapped)
        // (and the retention feature draws its step)
        #expect(full.steps.contains { if case .retryAfterRetention = $0 { true } else { false } })
        #expect(full.steps.contains { if case .onSecondInstance = $0 { true } else { false } })
        #expect(full.steps.contains(.fault(.mysqlDown)))
        #expect(full.steps.contains(.fault(.deadlinesPass)))
        #expect(full.steps.contains(.fault(.redisRestart)))
        #expect(full.steps.contains(.fault(.copyRedis)) && full.steps.contains(.fault(.goBack)))
        #expect(full.steps.contains { if case .fault(.workerKilled) = $0 { true } else { false } })
        #expect(full.steps.contains(.fault(.redisFull)) && full.steps.contains(.fault(.redisRoom)))
        #expect(full.ownsRedis && !basic.ownsRedis)
        #expect(full.steps.contains { if case .burstThroughKilledService = $0 { true } else { false } })
        #expect(full.steps.contains { if case .uploadCodes = $0 { true } else { false } })
        #expect(full.steps.contains(.setInfinite(sku: Features.infiniteItem, infinite: false)))
        #expect(full.steps.contains { step in
            if case .reserve(_, let lines, _, _) = step { lines.contains { !$0.codes.isEmpty } } else { false }
        })
        let variants = full.steps.compactMap { step -> (ShortageMode, ReserveOptions)? in
            if case .reserve(_, _, let shortage, let options) = step { return (shortage, options) }
            if case .onSecondInstance(.reserve(_, _, let shortage, let options)) = step { return (shortage, options) }
            return nil
        }
        #expect(variants.contains { $0.0 == .backorder })
        #expect(variants.contains { $0.1.contains(.dispense) })
        #expect(variants.contains { $0.1.contains(.shortLived) })
    }

    @Test("a seed is one program: the same steps every time, and another seed another program")
    func seedsReplay() {
        #expect(Program.generate(seed: 7, count: 200).steps == Program.generate(seed: 7, count: 200).steps)
        #expect(Program.generate(seed: 7, count: 200).steps != Program.generate(seed: 8, count: 200).steps)
    }

    @Test("the model: a hold takes units, a cancel gives them back, a confirm sells them, a refund restocks them")
    func modelRules() {
        var model = ReferenceModel()
        _ = model.setStock(sku: 1, stock: 5)
        let line = Line(sku: 1, quantity: 3)
        #expect(model.reserve(order: 1, lines: [line], shortage: .reject) == .reservation(
            status: .reserved, lines: [ReservationLine(skuId: 1, requested: 3, reserved: 3)], replayed: false
        ))
        #expect(model.reserve(order: 2, lines: [line], shortage: .reject) == .failure(.insufficientStock))
        #expect(model.reserve(order: 2, lines: [line], shortage: .partial) == .reservation(
            status: .reserved, lines: [ReservationLine(skuId: 1, requested: 3, reserved: 2)], replayed: false
        ))
        #expect(model.level(sku: 1) == .level(available: 0, reserved: 5))
        #expect(model.setStock(sku: 1, stock: 4) == .failure(.belowReserved))
        _ = model.cancel(order: 2)
        #expect(model.reserve(order: 2, lines: [line], shortage: .partial) == .failure(.orderClosed))
        _ = model.confirm(order: 1)
        #expect(model.level(sku: 1) == .level(available: 2, reserved: 0))
        #expect(model.cancel(order: 1) == .failure(.invalidState))
        _ = model.refund(order: 1)
        #expect(model.level(sku: 1) == .level(available: 5, reserved: 0))
        #expect(model.adjust(sku: 1, id: 1, delta: -5) == .level(available: 0, reserved: 0))
        #expect(model.adjust(sku: 1, id: 1, delta: -4) == .failure(.idempotencyConflict))
        #expect(model.cancel(order: 9) == .reservation(status: .cancelled, lines: [], replayed: false))
        #expect(model.reserve(order: 9, lines: [line], shortage: .reject) == .failure(.orderClosed))
    }

    @Test("a burst whose answers fit no serialisation is caught")
    func burstCheck() {
        var model = ReferenceModel()
        _ = model.setStock(sku: 1, stock: 4)
        let line = Line(sku: 1, quantity: 2)
        var over = model
        #expect(over.acceptBurst(orders: [1, 2, 3], line: line, held: [1: true, 2: true, 3: true]) != nil)
        var refusedWithRoom = model
        #expect(refusedWithRoom.acceptBurst(orders: [1, 2, 3], line: line, held: [1: true, 2: false, 3: false]) != nil)
        #expect(model.acceptBurst(orders: [1, 2, 3], line: line, held: [1: true, 2: false, 3: true]) == nil)
        #expect(model.level(sku: 1) == .level(available: 0, reserved: 4))
    }
}

extension ModelCheckTests {
    /// Cluster seed 200064's failure at step 45 "shrank" to a one-step program failing for another reason (an HTTP
    /// burst before any PUT finds no items): the shrinker kept any failure. It keeps only the same step's now.
    @Test("shrinking keeps a candidate only when it fails at the same step as the original (or both in the final checks)")
    func shrinkKeepsTheSameFailure() {
        let target = Step.fault(.reconcileFix)
        let candidate = Program(seed: 1, steps: [.setStock(sku: 1, stock: 3), .fault(.drain), .fault(.reconcileFix)])
        #expect(ModelCheck.sameFailure(.init(step: 2, message: "item 1 differs"), in: candidate, as: target))
        #expect(!ModelCheck.sameFailure(.init(step: 1, message: "another"), in: candidate, as: target))
        #expect(!ModelCheck.sameFailure(.init(step: nil, message: "journal differs"), in: candidate, as: target))
        #expect(ModelCheck.sameFailure(.init(step: nil, message: "journal differs"), in: candidate, as: nil))
        #expect(!ModelCheck.sameFailure(.init(step: 7, message: "out of range"), in: candidate, as: target))
    }
}
