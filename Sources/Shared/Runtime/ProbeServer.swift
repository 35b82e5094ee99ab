import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import ServiceLifecycle

/// `/healthz`, `/readyz` and `/metrics` on a bare NIO HTTP/1.1 server. Its event loop is NIO's own thread, so the
/// probes answer even while the cooperative pool is busy.
public final class ProbeServer: Service, Sendable {
    private let host: String
    private let port: Int
    private let health: WorkerHealth
    private let registry: PrometheusCollectorRegistry
    private let logger: Logger
    private let startedAt = ContinuousClock.now

    /// A server for `health` and `registry` on `host:port` (port 0 picks a free one).
    public init(host: String = "0.0.0.0", port: Int, health: WorkerHealth, registry: PrometheusCollectorRegistry, logger: Logger) {
        self.host = host
        self.port = port
        self.health = health
        self.registry = registry
        self.logger = logger
    }

    /// Binds, serves until graceful shutdown, then closes.
    public func run() async throws {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                channel.pipeline.configureHTTPServerPipeline().flatMapThrowing {
                    try channel.pipeline.syncOperations.addHandler(ProbeHandler(server: self))
                }
            }
            .bind(host: host, port: port)
            .get()
        logger.info("probe server listening", metadata: ["http.port": "\(channel.localAddress?.port ?? port)"])
        try? await gracefulShutdown()
        try await channel.close()
    }

    /// The answer to `GET path`: status, content type, body.
    func respond(to path: String) -> (HTTPResponseStatus, String, [UInt8]) {
        switch path {
        case "/healthz":
            let alive = health.isAlive(startedAt: startedAt)
            return (alive ? .ok : .serviceUnavailable, "text/plain", Array((alive ? "ok\n" : "poll loop stalled\n").utf8))
        case "/readyz":
            let checks = health.readiness()
            let ready = checks.allSatisfy(\.ok)
            var fields = checks.map { "\"\($0.check)\":\($0.ok)" }
            let reasons = checks.compactMap { check in check.reason.map { (check.check, JSONValue.string($0)) } }
            if !reasons.isEmpty {
                fields.append("\"reasons\":" + String(decoding: JSONValue.object(Dictionary(uniqueKeysWithValues: reasons)).encoded(), as: UTF8.self))
            }
            let body = "{" + fields.joined(separator: ",") + "}\n"
            return (ready ? .ok : .serviceUnavailable, "application/json", Array(body.utf8))
        case "/metrics":
            var buffer: [UInt8] = []
            registry.emit(into: &buffer)
            return (.ok, "text/plain; version=0.0.4", buffer)
        default:
            return (.notFound, "text/plain", Array("not found\n".utf8))
        }
    }
}

/// Answers each request from ``ProbeServer/respond(to:)``.
private final class ProbeHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let server: ProbeServer
    private var path = "/"
    private var keepAlive = false

    init(server: ProbeServer) {
        self.server = server
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            path = String(head.uri.split(separator: "?", maxSplits: 1).first ?? "/")
            keepAlive = head.isKeepAlive
        case .body:
            break
        case .end:
            let (status, contentType, body) = server.respond(to: path)
            var headers = HTTPHeaders()
            headers.add(name: "content-type", value: contentType)
            headers.add(name: "content-length", value: String(body.count))
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
            let keepAlive = self.keepAlive
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
                if !keepAlive { channel.close(promise: nil) }
            }
        }
    }
}
