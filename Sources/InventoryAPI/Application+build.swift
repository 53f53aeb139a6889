import Hummingbird
import Inventory
import Logging
import ServiceLifecycle

/// Builds the HTTP application the binary runs and the tests call, around an engine.
public func buildApplication(
    engine: any InventoryService,
    configuration: ServiceConfiguration,
    services: [any Service] = [],
    logger: Logger
) -> some ApplicationProtocol {
    let router = Router(context: BasicRequestContext.self)
    InventoryRoutes(engine: engine, limits: configuration.limits).register(on: router)
    let responder = ProblemResponder(inner: router.buildResponder(), routes: InventoryRoutes.templates, logger: logger)
    return Application(
        responder: responder,
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
        (.get, "/v1/stock/:bizId/:skuId"), (.put, "/v1/stock/:bizId/:skuId"),
        (.post, "/v1/stock/:bizId/:skuId/adjustments"), (.get, "/healthz"), (.get, "/readyz"),
    ] as [(HTTPRequest.Method, String)]).map { ($0.0, $0.1.split(separator: "/")) }
}
