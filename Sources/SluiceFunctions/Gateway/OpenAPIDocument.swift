import Sluice
import SluiceHTTP

/// The OpenAPI 3.0 document of the public API, written from the operations the functions
/// describe and the gateway's routes (who may call what).
public enum OpenAPIDocument {
    /// The gateway's own route.
    public static let operation = APIOperation(
        "GET", "/api/v1/openapi.json", id: "openapi", summary: "This document", tag: "meta",
        responses: [.json("200", "The OpenAPI 3 document of every route.", ["type": "object", "additionalProperties": true])])

    public struct MissingOperation: Error, CustomStringConvertible {
        public var method: String
        public var path: String
        public var description: String { "no function describes \(method) \(path)" }
    }

    /// The document for `policy`'s routes. Every route must have an operation.
    public static func build(policy: GatewayPolicy, operations: [APIOperation]) throws -> JSONValue {
        var byRoute: [String: APIOperation] = [:]
        for operation in operations + [Self.operation] { byRoute["\(operation.method) \(operation.path)"] = operation }
        var paths: [(String, JSONObject)] = []
        for route in policy.routes {
            guard let operation = byRoute["\(route.method) \(route.path)"] else {
                throw MissingOperation(method: route.method, path: route.path)
            }
            var entry = describe(operation)
            var responses = entry["responses"]?.objectValue ?? [:]
            if route.isPublic {
                entry["security"] = .array([])
            } else {
                entry["security"] = [["bearer": []]]
                entry["x-roles"] = .array(route.roles.sorted().map { .string($0) })
                let roles = route.roles.sorted().joined(separator: ", ")
                entry["description"] = .string("Needs one of the roles: \(roles).")
                responses["401"] = response(.init("401", "The bearer token is missing or not valid.",
                                                  content: problemContent, headers: ["WWW-Authenticate": "Bearer realm=\"sluice\", error=\"invalid_token\""]))
                responses["403"] = response(.problem("403", "The token has none of the roles: \(roles)."))
                responses["429"] = response(.init("429", "The caller's rate limit is spent.", content: problemContent,
                                                  headers: ["Retry-After": "Seconds until a request may pass.", "RateLimit-Limit": "The bucket's size.",
                                                            "RateLimit-Remaining": "Requests left now.", "RateLimit-Reset": "Seconds until the bucket is full."]))
            }
            responses["default"] = response(.problem("default", "Any other failure, the gateway's own included (502 upstream_unavailable, 503, 504 upstream_timeout)."))
            entry["responses"] = .object(responses)
            if let index = paths.firstIndex(where: { $0.0 == route.path }) {
                paths[index].1[route.method.lowercased()] = .object(entry)
            } else {
                paths.append((route.path, [route.method.lowercased(): .object(entry)]))
            }
        }
        var pathsObject = JSONObject()
        for (path, item) in paths { pathsObject[path] = .object(item) }
        let tags = Set(policy.routes.compactMap { byRoute["\($0.method) \($0.path)"]?.tag }).sorted()
        return [
            "openapi": "3.0.3",
            "info": [
                "title": "Sluice",
                "version": "1.0.0",
                "description": "Upload events, follow jobs and read what was loaded. Errors are application/problem+json with a stable `code`. Every route but this document needs a bearer JWT whose roles the route lists.",
            ],
            "servers": [["url": "/"]],
            "tags": .array(tags.map { ["name": .string($0)] }),
            "paths": .object(pathsObject),
            "components": [
                "schemas": .object(APISchemas.components),
                "securitySchemes": ["bearer": ["type": "http", "scheme": "bearer", "bearerFormat": "JWT"]],
            ],
        ]
    }

    static let problemContent: [(String, JSONValue)] = [("application/problem+json", APISchemas.ref("Problem"))]

    static func describe(_ operation: APIOperation) -> JSONObject {
        var entry: JSONObject = [
            "operationId": .string(operation.operationID),
            "summary": .string(operation.summary),
            "tags": [.string(operation.tag)],
        ]
        if !operation.parameters.isEmpty {
            entry["parameters"] = .array(operation.parameters.map { parameter in
                ["name": .string(parameter.name), "in": .string(parameter.location.rawValue), "required": .bool(parameter.required),
                 "description": .string(parameter.description), "schema": parameter.schema]
            })
        }
        if !operation.requestBody.isEmpty {
            var content = JSONObject()
            for (type, schema) in operation.requestBody { content[type] = ["schema": schema] }
            entry["requestBody"] = ["required": true, "content": .object(content)]
        }
        var responses = JSONObject()
        for item in operation.responses { responses[item.status] = response(item) }
        entry["responses"] = .object(responses)
        return entry
    }

    static func response(_ item: APIOperation.Response) -> JSONValue {
        var object: JSONObject = ["description": .string(item.description)]
        if !item.content.isEmpty {
            var content = JSONObject()
            for (type, schema) in item.content { content[type] = ["schema": schema] }
            object["content"] = .object(content)
        }
        if !item.headers.isEmpty {
            var headers = JSONObject()
            for (name, description) in item.headers.sorted(by: { $0.key < $1.key }) {
                headers[name] = ["description": .string(description), "schema": ["type": "string"]]
            }
            object["headers"] = .object(headers)
        }
        return .object(object)
    }
}
