import Sluice
import SluiceHTTP
import SluiceNotify

extension CallbackURLPolicy {
    /// The policy `SLUICE_CALLBACK_ALLOW_HOSTS` sets, from the process's runtime configuration.
    init(resources: Resources) {
        self.init(allowedHosts: resources.get(RuntimeConfiguration.self)?.callbackAllowHosts ?? [])
    }

    /// A caller's callback URL (an upload's, an async call's) once checked; `400
    /// invalid_callback_url` with `reason` when the policy refuses it.
    func accept(_ url: String) throws(Problem) -> String {
        do {
            return try check(url).url
        } catch {
            throw Problem(.badRequest, code: "invalid_callback_url", detail: error.detail, extra: ["reason": .string(error.rawValue)])
        }
    }
}
