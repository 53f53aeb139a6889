import Foundation
import Logging
import ServiceLifecycle

/// Gives memory the process freed back to the system: every interval, `malloc_trim(0)` when the resident size grew.
///
/// glibc's allocator keeps what the program frees for its next allocations, in one arena per thread that allocated
/// (up to 8 per core): a burst of large buffers (a code upload, an export page, a big answer) leaves the resident
/// size at the burst's peak for good, since an arena only shrinks from its top. `malloc_trim` returns the free pages
/// of every arena (madvise), so the resident size follows what the process holds, not the largest burst it ever had.
/// Where glibc's `malloc_trim` is not there (another C library), this does nothing.
public struct MemoryReturner: Service {
    private typealias Trim = @convention(c) (Int) -> Int32
    /// glibc's `malloc_trim`, which Swift's Glibc module does not import.
    nonisolated(unsafe) private static let trim: Trim? = dlsym(nil, "malloc_trim").map { unsafeBitCast($0, to: Trim.self) }

    private let interval: Duration
    private let logger: Logger

    public init(intervalSeconds: Int, logger: Logger) {
        self.interval = .seconds(max(intervalSeconds, 1))
        self.logger = logger
    }

    /// Resident growth (bytes) since the last trim that makes the next one worth its cost.
    static let growth = 16 << 20

    /// The process's resident size from /proc/self/statm (nil where there is none).
    static func residentBytes() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .ascii) else { return nil }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Whether this C library can give memory back.
    public static var available: Bool { trim != nil }

    /// Returns free memory once; true when the allocator gave some back.
    @discardableResult
    public static func returnFreeMemory() -> Bool {
        guard let trim else { return false }
        return trim(0) == 1
    }

    public func run() async throws {
        guard Self.available else {
            // Returning would end the service group (and the server with it): wait for the shutdown instead.
            logger.info("malloc_trim is not available: freed memory stays with the allocator")
            try? await gracefulShutdown()
            return
        }
        await cancelWhenGracefulShutdown {
            // A trim walks every arena under its lock (a few ms after a burst, well under one when little is free):
            // it runs only when the resident size is `growth` above the lowest it was after a trim (or at start), so
            // a steady service is not trimmed, and a trim that ran mid-burst does not raise the bar.
            var floor = Self.residentBytes() ?? 0
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                if Task.isCancelled { break }
                guard let resident = Self.residentBytes(), resident > floor + Self.growth else { continue }
                let start = ContinuousClock.now
                let returned = Self.returnFreeMemory()
                let took = (ContinuousClock.now - start).components
                let milliseconds = Double(took.seconds) * 1000 + Double(took.attoseconds) / 1e15
                floor = min(floor, Self.residentBytes() ?? resident)
                logger.debug(
                    "returned free memory to the system",
                    metadata: [
                        "returned": "\(returned)", "ms": "\(String(format: "%.2f", milliseconds))",
                        "residentBefore": "\(resident)", "residentAfter": "\(Self.residentBytes() ?? 0)",
                    ]
                )
            }
        }
    }
}
