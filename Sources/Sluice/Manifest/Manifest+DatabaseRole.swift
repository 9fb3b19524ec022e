extension Manifest {
    /// The PostgreSQL role of function `function` (`sluice migrate --roles` makes it; the
    /// rendered deployments log in as it): `sluice_` and the function's name.
    public static func databaseRole(for function: String) -> String { "sluice_" + function }

    /// This function's PostgreSQL role (``databaseRole(for:)``).
    public var databaseRole: String { Self.databaseRole(for: name) }
}
