import Testing
@testable import SidecarServer

/// The pure end-of-exchange decisions, as tables.
@Suite("ExchangeEnding")
struct ExchangeEndingTests {
    @Test(arguments: [
        // requestEnded, clientKeepAlive, upstreamKeepAlive → reuseUpstream, client
        (true, true, true, true, ExchangeEnding.Client.keepAlive),
        (true, false, true, true, .close),
        (true, true, false, false, .keepAlive),
        (true, false, false, false, .close),
        (false, true, true, false, .close),      // upstream answered before the body finished: never reuse, close
        (false, false, false, false, .close),
    ])
    func afterUpstreamResponse(_ requestEnded: Bool, _ clientKeepAlive: Bool, _ upstreamKeepAlive: Bool,
                               _ reuse: Bool, _ client: ExchangeEnding.Client) {
        let ending = ExchangeEnding.afterUpstreamResponse(requestEnded: requestEnded, clientKeepAlive: clientKeepAlive,
                                                          upstreamKeepAlive: upstreamKeepAlive)
        #expect(ending == ExchangeEnding(reuseUpstream: reuse, client: client))
    }

    @Test(arguments: [
        // bodyPending, closeRequested, sizeLimit → client
        (false, false, false, ExchangeEnding.Client.keepAlive),
        (false, true, false, .close),
        (true, false, false, .drainThenKeepAlive),
        (true, true, false, .drainThenClose),
        (true, true, true, .close),     // 413/431: the rest is not read
        (false, false, true, .close),
    ])
    func afterLocalAnswer(_ bodyPending: Bool, _ closeRequested: Bool, _ sizeLimit: Bool, _ client: ExchangeEnding.Client) {
        #expect(ExchangeEnding.afterLocalAnswer(bodyPending: bodyPending, closeRequested: closeRequested, sizeLimit: sizeLimit) == client)
    }
}
