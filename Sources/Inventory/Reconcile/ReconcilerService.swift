import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle

/// Runs the reconciler every interval inside the service. Only one reconciliation runs at a time across all
/// instances (the lease); an instance that finds the lease held skips that round.
public final class ReconcilerService: Service, Sendable {
    private let reconciler: Reconciler
    private let intervalSeconds: Int
    private let fix: Bool
    private let logger: Logger
    private let last = NIOLockedValueBox<ReconcileReport?>(nil)

    public init(reconciler: Reconciler, intervalSeconds: Int, fix: Bool, logger: Logger) {
        self.reconciler = reconciler
        self.intervalSeconds = intervalSeconds
        self.fix = fix
        self.logger = logger
    }

    /// The last completed reconciliation of this instance.
    public var lastReport: ReconcileReport? { last.withLockedValue { $0 } }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(self.intervalSeconds))
                if Task.isCancelled { break }
                do {
                    let report = try await self.reconciler.run(fix: self.fix)
                    self.last.withLockedValue { $0 = report }
                    self.logger.info(
                        "reconcile finished",
                        metadata: [
                            "items": "\(report.itemsChecked)", "differences": "\(report.differences.count)",
                            "fixed": "\(report.differences.filter(\.fixed).count)", "seconds": "\(report.seconds)",
                        ]
                    )
                } catch ReconcileError.leaseHeld {
                    self.logger.debug("reconcile skipped: another instance holds the lease")
                } catch let error as ReconcileError {
                    if case .leaseLost = error {
                        self.logger.warning("reconcile stopped mid-run: another instance took its lease", metadata: ["error": "\(error)"])
                    } else {
                        self.logger.warning("reconcile could not run", metadata: ["error": "\(error)"])
                    }
                } catch {
                    self.logger.warning("reconcile could not run", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}
