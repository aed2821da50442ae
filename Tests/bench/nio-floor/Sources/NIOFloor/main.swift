// A TCP relay on SwiftNIO, one upstream connection per client connection, bytes passed through untouched: no HTTP
// parsing, no headers, no token, no pool. What it costs per request is what the event loop, the channel pipeline and
// the socket I/O of NIO cost a proxy before any proxying work — the floor under the sidecar (Tests/bench/nio-floor.sh).
//   NIOFloor LISTEN_PORT UPSTREAM_PORT      (one event-loop thread, 127.0.0.1)
import Dispatch
import NIOCore
import NIOPosix

/// Relays reads of one channel as writes on its partner, flushing once per read burst, with backpressure.
final class RelayHandler: ChannelDuplexHandler, @unchecked Sendable {
    typealias InboundIn = NIOAny
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    var partner: RelayHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil; partner = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) { partner?.context?.write(data, promise: nil) }
    func channelReadComplete(context: ChannelHandlerContext) { partner?.context?.flush() }
    func channelInactive(context: ChannelHandlerContext) { partner?.context?.close(promise: nil) }
    func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let partner, partner.pendingRead {
            partner.pendingRead = false
            partner.context?.read()
        }
    }

    func read(context: ChannelHandlerContext) {
        if partner?.context?.channel.isWritable ?? true { context.read() } else { pendingRead = true }
    }
}

let args = CommandLine.arguments
guard args.count == 3, let listenPort = Int(args[1]), let upstreamPort = Int(args[2]) else {
    print("usage: NIOFloor LISTEN_PORT UPSTREAM_PORT")
    exit(2)
}
let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let buffers = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 1024, maximum: 65536)  // as the sidecar's
let server = try ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 1024)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
    .childChannelOption(.autoRead, value: false)
    .childChannelOption(.recvAllocator, value: buffers)
    .childChannelInitializer { client in
        let clientSide = RelayHandler()
        let connect = ClientBootstrap(group: client.eventLoop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.recvAllocator, value: buffers)
            .channelInitializer { upstream in
                upstream.eventLoop.makeCompletedFuture {
                    let upstreamSide = RelayHandler()
                    upstreamSide.partner = clientSide
                    clientSide.partner = upstreamSide
                    try upstream.pipeline.syncOperations.addHandler(upstreamSide)
                }
            }
            .connect(host: "127.0.0.1", port: upstreamPort)
        return client.pipeline.addHandler(clientSide).flatMap { connect }.map { _ in
            _ = client.setOption(.autoRead, value: true)
        }.flatMapErrorThrowing { error in
            client.close(promise: nil)
            throw error
        }
    }
    .bind(host: "127.0.0.1", port: listenPort).wait()
print("nio-floor relay listening on \(server.localAddress!) -> 127.0.0.1:\(upstreamPort)")
// SIGINT/SIGTERM exit the process (callgrind writes its counts at exit; a signal's default action kills it first).
// The handler is `@Sendable`: a closure in top-level code is otherwise main-actor isolated, and Swift 6 traps when
// Dispatch runs it on a worker thread (SIGILL in `dispatch_assert_queue`, exit 132).
signal(SIGINT, SIG_IGN)
signal(SIGTERM, SIG_IGN)
let stops = [SIGINT, SIGTERM].map { DispatchSource.makeSignalSource(signal: $0, queue: .global()) }
for source in stops {
    source.setEventHandler { @Sendable in exit(0) }
    source.resume()
}
try server.closeFuture.wait()
