/// The requests that go out of Sluice: each through the policy, to the addresses it checked.
extension OutboundPolicy {
    /// POSTs `body` to `url`: checked, resolved, each address checked and pinned, no redirect
    /// followed (a 3xx is answered as it is), no proxy. Answers whatever status the server gave.
    /// - Throws: a ``Refusal`` (nothing was sent), or a ``CurlError``.
    public func post(_ url: String, headers: [String], body: [UInt8], timeout: Duration, connectTimeout: Duration = .seconds(5)) async throws -> HTTPAnswer {
        let destination = try await destination(url)
        return try await Curl.post(url: destination.target.requestURL, headers: headers, body: body, timeout: timeout,
                                   connectTimeout: connectTimeout, resolve: destination.pins)
    }

    /// Sends one message over SMTP to `url` (`smtp://` or `smtps://`, a scheme of this
    /// policy), its host checked, resolved and pinned like ``post(_:headers:body:timeout:connectTimeout:)``'s.
    /// - Throws: a ``Refusal`` (nothing was sent), or a ``CurlError``.
    public func sendMail(_ url: String, from: String, to: [String], message: [UInt8], tls: Curl.MailTLS, timeout: Duration,
                         caFile: String? = nil) async throws {
        let destination = try await destination(url)
        try await Curl.sendMail(url: destination.target.requestURL, from: from, to: to, message: message, tls: tls, timeout: timeout,
                                caFile: caFile, resolve: destination.pins)
    }
}
