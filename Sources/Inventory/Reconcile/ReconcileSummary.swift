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
}
