import InventoryTestSupport
import MySQLClient
import RedisClient

@testable import Inventory

/// A second instance (an adjustment's attempt, a call that meets Redis gone back) on a MySQL connection through a fault
/// proxy (so its MySQL work can be held), beside the test's own stores; with `heldRedis`, its Redis too (the stores
/// must then be on the single Redis); `configure` changes its engine's configuration. `body` gets the attempt's engine
/// and the proxies.
func withHeldAttempt(
    _ stores: TestStores, heldRedis: Bool = false, configure: (inout EngineConfiguration) -> Void = { _ in },
    _ body: (InventoryEngine, FaultProxy, FaultProxy?) async throws -> Void
) async throws {
    var settings = stores.mysql.configuration
    let proxy = try await FaultProxy.start(upstreamHost: settings.host, upstreamPort: settings.port)
    settings.port = proxy.port
    settings.poolSize = 1
    // A held request waits for as long as the test does meanwhile (a rebuild, a reconciler run): on a busy machine
    // that can take seconds, which must not time the attempt out.
    settings.readTimeoutSeconds = 120
    let client = MySQLClient(configuration: settings, logger: stores.logger)
    let address = TestStores.redisAddress()
    let redisProxy = heldRedis ? try await FaultProxy.start(upstreamHost: address.host, upstreamPort: address.port) : nil
    let redis: any RedisRouter = redisProxy.map { redisProxy in
        RedisClient(
            configuration: RedisConfiguration(
                host: address.host, port: redisProxy.port, connections: 1, commandTimeoutMilliseconds: 120_000,
                database: TestStores.redisTestDatabase()
            ),
            logger: stores.logger
        )
    } ?? stores.redis
    var configuration = stores.engine.configuration
    configure(&configuration)
    let attempt = InventoryEngine(
        redis: redis, mysql: client, scripts: try InventoryScripts.load(), configuration: configuration, logger: stores.logger
    )
    func close() async {
        proxy.release()
        redisProxy?.release()
        await client.shutdown()
        await proxy.close()
        await redisProxy?.close()
    }
    do {
        try await attempt.loadScripts()
        try await body(attempt, proxy, redisProxy)
    } catch {
        await close()
        throw error
    }
    await close()
}
