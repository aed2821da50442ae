/// How an exchange ends, decided as a pure value (tested without a channel): whether the upstream connection goes
/// back to its pool, and what happens to the client connection.
struct ExchangeEnding: Equatable {
    enum Client: Equatable {
        /// Ready for the next request.
        case keepAlive
        /// Close once the response is written.
        case close
        /// The request body is still arriving: read and drop it, then keep the connection.
        case drainThenKeepAlive
        /// Read and drop the rest of the body, then close (closing with unread bytes would make the kernel reset
        /// the connection and the client could lose the answer).
        case drainThenClose
    }

    let reuseUpstream: Bool
    let client: Client

    /// The upstream's response has ended. Its connection is reusable only after a complete request and a
    /// keep-alive response; a client still sending a body the upstream did not wait for is closed.
    static func afterUpstreamResponse(requestEnded: Bool, clientKeepAlive: Bool, upstreamKeepAlive: Bool) -> ExchangeEnding {
        let reuse = requestEnded && upstreamKeepAlive
        guard requestEnded else { return ExchangeEnding(reuseUpstream: reuse, client: .close) }
        return ExchangeEnding(reuseUpstream: reuse, client: clientKeepAlive ? .keepAlive : .close)
    }

    /// The sidecar answered from the head (401/403/400, health, preflight, forward-auth) or from a size limit
    /// (413/431: `sizeLimit`, the rest of the request is not read). `closeRequested`: the answer carries
    /// `Connection: close` (the client asked for it, or the answer chose it).
    static func afterLocalAnswer(bodyPending: Bool, closeRequested: Bool, sizeLimit: Bool) -> Client {
        if sizeLimit { return .close }
        if bodyPending { return closeRequested ? .drainThenClose : .drainThenKeepAlive }
        return closeRequested ? .close : .keepAlive
    }
}
