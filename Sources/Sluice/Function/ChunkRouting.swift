/// Where a function's forwarded events go, chunk by chunk. The runtime asks it once per chunk
/// whose outcomes forward events without naming an output: Sluice's answer is the next function
/// of the chunk's dataset chain (`DatasetRouter`), so one set of functions serves every dataset,
/// each along its own chain.
public protocol ChunkRouting: Sendable {
    /// The streams (by name, before ``StreamKeys`` adds its prefix) that the events `function`
    /// forwards from `chunk` are appended to; `nil` when the manifest's `outputs` decide (the
    /// function is not in the chunk's chain, or is its last step).
    /// - Throws: a retryable error when the route cannot be read now, a permanent one when it can
    ///   never be followed (the chain names a function no manifest declares).
    func outputs(after function: String, for chunk: Chunk) async throws(FunctionError) -> [String]?
}
