/// Compensation (`Compensator`).
extension InventoryEngine {
    var compensator: Compensator { reservations.compensator }

    /// Reverses a Redis stock change whose MySQL half failed (`Compensator.undoStock`).
    func undoStock(
        itemKey: String, delta: Int64, adjustmentKey: String?, fingerprint: String, token: String, settings: String = ""
    ) async {
        await compensator.undoStock(
            itemKey: itemKey, delta: delta, adjustmentKey: adjustmentKey, fingerprint: fingerprint, token: token,
            settings: settings
        )
    }

    /// Runs a reversal now, or stores it as a retry task (`Compensator.compensate`).
    @discardableResult
    func compensate(_ task: CompensationTask, storingFailure: Bool = true, routine: Bool = false) async -> Bool {
        await compensator.compensate(task, storingFailure: storingFailure, routine: routine)
    }

    /// Runs stored retry tasks, oldest first; returns how many succeeded now.
    public func retryCompensations(limit: Int = 100) async throws -> Int {
        try await compensator.retryCompensations(limit: limit)
    }
}
