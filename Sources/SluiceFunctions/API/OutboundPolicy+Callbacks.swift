import Sluice
import SluiceHTTP
import SluiceNotify

extension OutboundPolicy {
    /// The policy `SLUICE_CALLBACK_ALLOW_HOSTS` sets, from the process's runtime configuration.
    init(configuration: RuntimeConfiguration) {
        self.init(allowedHosts: configuration.callbackAllowHosts)
    }

    /// A caller's callback URL (an upload's, an async call's) once checked by ``accept(_:)``
    /// (form, address literal in any spelling, and the addresses a name resolves to now);
    /// `400 invalid_callback_url` with `reason` (the refusal's code) when the policy refuses it.
    /// The URL is stored as given and checked again when it is sent to.
    func acceptCallback(_ url: String) async throws -> String {
        do {
            return try await accept(url).url
        } catch let refusal as Refusal {
            throw Problem(.badRequest, code: "invalid_callback_url", detail: refusal.detail, extra: ["reason": .string(refusal.rawValue)])
        }
    }
}
