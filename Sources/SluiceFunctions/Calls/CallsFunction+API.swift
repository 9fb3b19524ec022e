import Sluice
import SluiceHTTP

extension CallsFunction {
    /// The public routes of asynchronous invocation, as the OpenAPI document describes them.
    public static let operations: [APIOperation] = [
        APIOperation(
            "POST", "/api/v1/functions/{name}/async", id: "invokeAsync",
            summary: "Invoke an event function asynchronously; its outcomes go to X-Callback-Url when done", tag: "functions",
            parameters: [
                .init("name", in: .path, description: "The event function (a folder of functions/).", schema: ["type": "string", "pattern": "^[a-z0-9_-]{1,64}$"]),
                .init("X-Callback-Url", in: .header, description: "Where the outcomes are POSTed when the call is done (retried with backoff; public addresses only, no redirect followed).",
                      schema: ["type": "string", "format": "uri"]),
            ],
            requestBody: [("application/json", ["type": "array", "items": APISchemas.ref("Event"), "maxItems": 10000])],
            responses: [
                .init("202", "Queued; Location names the call.", content: [("application/json", APISchemas.ref("CallAccepted"))],
                      headers: ["Location": "/api/v1/calls/{id}"]),
                .problem("400", "Not a JSON array of events, or X-Callback-Url is refused (invalid_callback_url, with reason): not an absolute http(s) URL, or one naming a loopback, private, link-local or reserved address in any spelling."),
                .problem("404", "No event function has this name."),
                .problem("413", "The body is larger than 8 MB."),
                .notJSON,
                .problem("503", "The call store is not reachable; try again."),
            ]),
        APIOperation(
            "GET", "/api/v1/calls/{id}", id: "getCall", summary: "An asynchronous call: its state, outcomes and callback delivery", tag: "functions",
            parameters: [.init("id", in: .path, description: "The call id.", schema: APISchemas.jobID)],
            responses: [
                .json("200", "The call.", APISchemas.ref("Call")),
                .problem("404", "No call has this id."),
                .problem("503", "The call store is not reachable; try again."),
            ]),
    ]
}
