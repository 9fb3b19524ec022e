import Sluice
import SluicePrivacy

/// The pipeline's masking, for functions that store personal data without passing it through
/// the stream stages: the `pii-mask` of validate's manifest (its `config.pii` operators and
/// user fields) and `SLUICE_PSEUDONYM_KEY`, so that a warehouse record replaced through the API,
/// or a call's subjects, get the same masks and pseudonyms as events that came through validate.
public enum PipelinePII {
    /// The function whose `config.pii` the pipeline's masking follows.
    public static let source = "validate"

    /// validate's `pii-mask`, built from its manifest in the functions folder (the defaults when
    /// the folder holds no validate manifest).
    /// - Throws: ``ManifestError`` when validate's `config.pii` is invalid, or the key is missing
    ///   or shorter than 16 bytes (`file` and `key` of the error name the function that needs it).
    public static func mask(setup: PipelineSetup) throws -> PIIMaskMiddleware {
        let validate = (try? setup.dependencies.manifests.load(source))
            ?? Manifest(name: source, handler: source, middleware: ["pii-mask"], file: setup.manifest.file)
        let key = setup.configuration.pseudonymKey
        do {
            return try PIIMaskMiddleware(manifest: validate, pseudonymKey: key)
        } catch {
            guard (key ?? "").utf8.count >= 16 else {
                throw ManifestError(.badValue, file: setup.manifest.file, key: "handler",
                                    message: "\(setup.manifest.name) masks personal data as validate does and needs SLUICE_PSEUDONYM_KEY of at least 16 bytes")
            }
            throw error
        }
    }
}
