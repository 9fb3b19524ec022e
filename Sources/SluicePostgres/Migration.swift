/// One versioned schema change.
public struct Migration: Sendable {
    /// Applied in increasing order; never reuse or renumber one that has shipped.
    public var version: Int
    /// A short name, recorded in the ledger.
    public var name: String
    /// Fixed SQL (several statements allowed). Runs in one transaction with its ledger row.
    public var sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }
}
