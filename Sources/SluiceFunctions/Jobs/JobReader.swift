import SluiceHTTP

/// Who asks for a job, and so which jobs they may see: the jobs they created, or every job for
/// `admin` and the roles of ingest's `config.read_all_jobs`. A request the gateway did not
/// check (no caller) sees none.
public struct JobReader: Sendable {
    /// The creator key of the caller's own jobs (`jobs.created_by`); `nil` matches none.
    let owner: String?
    /// Whether every job is visible.
    let readsAll: Bool

    init(_ caller: Caller?, readAll roles: Set<String>) {
        owner = caller?.ownerKey
        readsAll = caller.map { $0.has("admin") || !$0.roles.isDisjoint(with: roles) } ?? false
    }
}
