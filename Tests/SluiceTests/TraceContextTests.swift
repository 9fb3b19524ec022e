import HTTPTypes
import Testing
@testable import SluiceHTTP

@Suite("Trace context")
struct TraceContextTests {
    @Test func traceIDsAreASCIIHexOnly() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        #expect(TraceContext.traceID(fromTraceparent: "00-\(trace)-00f067aa0ba902b7-01") == trace)
        #expect(TraceContext.traceID(fromTraceparent: "00-\(trace.uppercased())-00f067aa0ba902b7-01") == trace, "lowercased")
        // Full-width digits are hex digits to Character.isHexDigit, but not to tracers or to the
        // database's trace_id check.
        let fullWidth = "４bf92f3577b34da6a3ce929d0e0e4736"
        #expect(TraceContext.traceID(fromTraceparent: "00-\(fullWidth)-00f067aa0ba902b7-01") == nil)
        #expect(TraceContext.validTraceparent("00-\(fullWidth)-00f067aa0ba902b7-01") == nil)
        #expect(TraceContext.validTraceID(fullWidth) == nil)
        #expect(TraceContext.traceID(fromTraceparent: "00-\(String(repeating: "0", count: 32))-00f067aa0ba902b7-01") == nil)
        #expect(TraceContext.validTraceparent("00-\(trace)-00f067aa0ba902b7-01") != nil)
        #expect(TraceContext.validTraceparent("00-\(trace.uppercased())-00f067aa0ba902b7-01") == nil)
        #expect(TraceContext.validTraceparent("00-\(trace)-0000000000000000-01") == nil)
        #expect(TraceContext.validTraceparent("00-\(trace)-00f067aa0ba902b7-0g") == nil)
        #expect(TraceContext.validTraceID(trace) == trace)
        #expect(TraceContext.validTraceID(trace.uppercased()) == nil)
    }

    @Test func aContinuedTraceKeepsTheIDWithANewSpan() {
        let trace = "0af7651916cd43dd8448eb211c80319c"
        let first = TraceContext.traceparent(traceID: trace), second = TraceContext.traceparent(traceID: trace)
        #expect(TraceContext.validTraceparent(first) == first)
        #expect(TraceContext.traceID(fromTraceparent: first) == trace)
        #expect(first != second)
        var headers = HTTPFields()
        headers[TraceContext.header] = first
        #expect(TraceContext.traceID(in: headers) == trace)
        #expect(TraceContext.traceID(in: HTTPFields()) == nil)
    }
}
