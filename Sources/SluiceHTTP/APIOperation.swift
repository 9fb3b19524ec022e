import Sluice

/// One HTTP route of the public API as a function declares it: what it takes and what it
/// answers. The gateway's OpenAPI document is written from these, and the gateway refuses to
/// start when its manifest routes a path no function describes, so the two cannot drift.
///
/// Schemas are JSON Schema objects as OpenAPI 3.0 reads them; `{"$ref": "#/components/schemas/X"}`
/// names a schema of the document's components.
public struct APIOperation: Sendable, Equatable {
    public struct Parameter: Sendable, Equatable {
        public enum Location: String, Sendable { case path, query, header }
        public var name: String
        public var location: Location
        public var required: Bool
        public var description: String
        public var schema: JSONValue

        public init(_ name: String, in location: Location, required: Bool = false, description: String, schema: JSONValue) {
            self.name = name
            self.location = location
            self.required = required || location == .path
            self.description = description
            self.schema = schema
        }
    }

    public struct Response: Sendable, Equatable {
        /// `200`, `404`, … or `default`.
        public var status: String
        public var description: String
        /// Media type → schema; empty for a response without a body.
        public var content: [(String, JSONValue)]
        public var headers: [String: String]

        public init(_ status: String, _ description: String, content: [(String, JSONValue)] = [], headers: [String: String] = [:]) {
            self.status = status
            self.description = description
            self.content = content
            self.headers = headers
        }

        /// A JSON answer.
        public static func json(_ status: String, _ description: String, _ schema: JSONValue) -> Response {
            Response(status, description, content: [("application/json", schema)])
        }

        /// A problem answer.
        /// `415 unsupported_media_type` of a route that takes JSON only.
        public static let notJSON = problem("415", "The body is not sent as application/json (unsupported_media_type).")

        public static func problem(_ status: String, _ description: String) -> Response {
            Response(status, description, content: [("application/problem+json", ["$ref": "#/components/schemas/Problem"])])
        }

        public static func == (lhs: Response, rhs: Response) -> Bool {
            lhs.status == rhs.status && lhs.description == rhs.description && lhs.headers == rhs.headers
                && lhs.content.map(\.0) == rhs.content.map(\.0) && lhs.content.map(\.1) == rhs.content.map(\.1)
        }
    }

    public var method: String
    public var path: String
    public var operationID: String
    public var summary: String
    public var tag: String
    public var parameters: [Parameter]
    /// Media type → schema of the request body; empty when the route takes none.
    public var requestBody: [(String, JSONValue)]
    public var responses: [Response]

    public init(_ method: String, _ path: String, id: String, summary: String, tag: String, parameters: [Parameter] = [],
                requestBody: [(String, JSONValue)] = [], responses: [Response]) {
        self.method = method
        self.path = path
        self.operationID = id
        self.summary = summary
        self.tag = tag
        self.parameters = parameters
        self.requestBody = requestBody
        self.responses = responses
    }

    public static func == (lhs: APIOperation, rhs: APIOperation) -> Bool {
        lhs.method == rhs.method && lhs.path == rhs.path && lhs.operationID == rhs.operationID && lhs.summary == rhs.summary
            && lhs.tag == rhs.tag && lhs.parameters == rhs.parameters && lhs.responses == rhs.responses
            && lhs.requestBody.map(\.0) == rhs.requestBody.map(\.0) && lhs.requestBody.map(\.1) == rhs.requestBody.map(\.1)
    }
}
