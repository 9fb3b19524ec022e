import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A minimal HTTP client for the tests.
enum HTTP {
    struct Response: Sendable {
        let status: Int
        let body: Data
        let headers: [String: String]
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    static let session: URLSession = {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = 120
        return URLSession(configuration: configuration)
    }()

    /// Sends a request. Unless `headers` names `X-Sluice-Assertion` (an empty value sends none),
    /// the request carries the assertion the gateway would make for it (``TestCaller``), so a
    /// test may call a function's own port as the gateway does; a gateway drops it.
    static func request(_ method: String, _ url: String, body: Data? = nil, headers: [String: String] = [:]) async throws -> Response {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = method
        request.httpBody = body
        if !headers.keys.contains(where: { $0.lowercased() == TestCaller.header.lowercased() }) {
            request.setValue(TestCaller.assertion(method: method, url: url, body: Array(body ?? Data())), forHTTPHeaderField: TestCaller.header)
        }
        for (name, value) in headers where !value.isEmpty || name.lowercased() != TestCaller.header.lowercased() {
            request.setValue(value, forHTTPHeaderField: name)
        }
        let (data, response) = try await session.data(for: request)
        let http = response as! HTTPURLResponse
        var fields: [String: String] = [:]
        for (key, value) in http.allHeaderFields {
            if let key = key as? String, let value = value as? String { fields[key.lowercased()] = value }
        }
        return Response(status: http.statusCode, body: data, headers: fields)
    }
}
