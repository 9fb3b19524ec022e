import HTTPTypes

/// The request headers the gateway hands a function: an allow-list of what functions read,
/// so that what a caller sends to the gateway alone (`Authorization`, `Cookie`,
/// `Proxy-Authorization`, any header a function might one day trust) never reaches a function
/// pod. The same list applies to an upstream and to a function hosted in the gateway's process.
///
/// `X-Sluice-Assertion` passes only because the gateway sets it after taking off the client's;
/// no other `X-Sluice-*` header passes.
public enum ForwardedHeaders {
    /// The names that pass, lowercase.
    public static let allowed: Set<String> = [
        // The body: its type (the upload's format, a multipart boundary), its length (the
        // upload limit), the file name an upload may carry, and an encoding, if any.
        "content-type", "content-length", "content-disposition", "content-encoding",
        // What the caller takes back.
        "accept", "accept-encoding", "accept-language",
        // W3C trace context and the gateway's request id.
        "traceparent", "tracestate", "x-request-id",
        // Where an upload's or an async call's end is announced.
        "x-callback-url",
        // The gateway's own assertion (a client's is removed before it is made).
        "x-sluice-assertion",
    ]

    /// `fields` less every header not in ``allowed``.
    public static func filter(_ fields: HTTPFields) -> HTTPFields {
        var kept = HTTPFields()
        for field in fields where allowed.contains(field.name.canonicalName) {
            kept.append(field)
        }
        return kept
    }
}
