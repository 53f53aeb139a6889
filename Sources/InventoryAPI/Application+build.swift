import Hummingbird
import HummingbirdTLS
import Inventory
import InventorySettings
import Logging
import Metrics
import Prometheus
import ServiceLifecycle

/// Builds the HTTP application the binary runs and the tests call, around an engine (HTTPS when the settings name a
/// certificate and key). A `WriteBackWorker` among
/// `services` is the one the status page reports on.
public func buildApplication(
    engine: any InventoryService,
    configuration: ServiceConfiguration,
    services: [any Service] = [],
    metrics: PrometheusCollectorRegistry? = nil,
    logger: Logger
) throws -> some ApplicationProtocol {
    let router = Router(context: BasicRequestContext.self, options: .autoGenerateHeadEndpoints)
    router.add(middleware: RequestIdMiddleware())
    router.add(middleware: KnownMethodMetricsMiddleware())
    if let hosts = configuration.effectiveAllowedHosts { router.add(middleware: BrowserGuardMiddleware(allowedHosts: hosts)) }
    // The token first: a wrong method on a known path tells a caller without one nothing (no 405 listing its methods).
    router.add(middleware: AccessMiddleware(tokens: configuration.tokens, openMetrics: configuration.openMetrics))
    router.add(middleware: MethodMiddleware(routes: InventoryRoutes.templates))
    let limiter = configuration.hotItemLimit > 0
        ? HotItemLimiter(limit: configuration.hotItemLimit, windowMilliseconds: configuration.hotItemWindowMilliseconds) : nil
    let admission = configuration.businessRateLimit > 0
        ? BusinessAdmission(rate: configuration.businessRateLimit, burst: configuration.businessBurst) : nil
    InventoryRoutes(
        engine: engine, limits: configuration.limits, limiter: limiter, admission: admission,
        bulk: BulkGate(concurrency: configuration.bulkConcurrency, share: Double(configuration.bulkSharePercent) / 100)
    ).register(on: router)
    StatusRoutes(engine: engine, worker: services.lazy.compactMap { $0 as? WriteBackWorker }.first).register(on: router)
    router.get("/metrics") { _, _ in
        guard let metrics else { throw Problem.notFound("metrics are not exported by this instance") }
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: metrics.emitToBuffer() + Array(ProcessMetrics.text().utf8)))
        )
    }
    let responder = ProblemResponder(inner: router.buildResponder(), routes: InventoryRoutes.templates, logger: logger)
    let http = SlowClientGuard.server(timeoutSeconds: configuration.httpIdleTimeoutSeconds, logger: logger)
    return Application(
        responder: responder,
        server: try configuration.serverTLS().map { try .tls(http, tlsConfiguration: $0) } ?? http,
        configuration: .init(address: .hostname(configuration.httpHost, port: configuration.httpPort), serverName: "inventoryd"),
        services: services,
        logger: logger
    )
}

extension InventoryRoutes {
    /// Every route, for telling 404 (no such path) from 405 (path exists, other method).
    static let templates: [(method: HTTPRequest.Method, path: [Substring])] = ([
        (.post, "/v1/reservations"), (.get, "/v1/reservations/:orderId"),
        (.post, "/v1/reservations/:orderId/confirm"), (.post, "/v1/reservations/:orderId/cancel"),
        (.post, "/v1/reservations/:orderId/refund"),
        (.post, "/v1/businesses/:bizId/reservations"), (.get, "/v1/businesses/:bizId/reservations/:orderId"),
        (.post, "/v1/businesses/:bizId/reservations/:orderId/confirm"),
        (.post, "/v1/businesses/:bizId/reservations/:orderId/cancel"),
        (.post, "/v1/businesses/:bizId/reservations/:orderId/refund"),
        (.get, "/v1/stock/:bizId/:skuId"), (.put, "/v1/stock/:bizId/:skuId"),
        (.post, "/v1/stock/:bizId/:skuId/adjustments"), (.put, "/v1/stock/:bizId/:skuId/pool"),
        (.get, "/v1/stock/:bizId/:skuId/pool"), (.post, "/v1/stock/:bizId/:skuId/codes"),
        (.get, "/v1/stock/:bizId/:skuId/codes"), (.get, "/healthz"), (.get, "/readyz"), (.get, "/openapi.json"), (.get, "/metrics"),
        (.get, "/"), (.get, "/v1/status"), (.get, "/v1/businesses/:bizId/status"),
    ] as [(HTTPRequest.Method, String)]).map { ($0.0, $0.1.split(separator: "/")) }
}

/// Sends swift-metrics to a Prometheus registry, with names and label names made valid for Prometheus
/// (Hummingbird's request metrics use dots). Call once per process.
public func bootstrapPrometheus() -> PrometheusCollectorRegistry {
    let registry = PrometheusCollectorRegistry()
    var factory = PrometheusMetricsFactory(registry: registry)
    factory.nameAndLabelSanitizer = { name, labels in
        func clean(_ text: String) -> String {
            String(text.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == ":" ? $0 : "_" })
        }
        return (clean(name), labels.map { (clean($0.0), $0.1) })
    }
    factory.defaultDurationHistogramBuckets = [
        .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
        .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .milliseconds(500), .seconds(1), .seconds(2), .seconds(5),
    ]
    factory.defaultValueHistogramBuckets = [1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000]
    MetricsSystem.bootstrap(factory)
    return registry
}
