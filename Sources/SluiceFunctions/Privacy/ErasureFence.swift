import SluicePostgres

/// The fence between an erasure and the stages that store a subject's events (load, quarantine):
/// an erased subject's events that were still on their way when the subject was erased are
/// never stored.
///
/// An erasure records the subject's pseudonym in `erasures` with its time. A stage that stores
/// events, in the transaction that writes them, leaves out each event whose subject is in
/// `erasures` when the event was received before the erasure, or when no consent was granted
/// to the subject (for any purpose) after the erasure; such events are dropped as `no_consent`.
///
/// The erasure and the stores are ordered by a transaction-scoped advisory lock: every store
/// takes it shared as its first statement, an erasure exclusively. An erasure therefore waits
/// for the stores in progress and then deletes what they wrote, and a store that starts during
/// an erasure waits for it and then sees its `erasures` row: no row is written between the
/// erasure's deletes and its commit.
public enum ErasureFence {
    /// The advisory lock's key (an arbitrary constant, the same in every process).
    public static let lockKey: Int64 = 0x511C_EE5A_5E

    /// Takes the fence's lock shared: the first statement of a transaction that stores events.
    public static func enter(on connection: PostgresConnection) throws(PostgresError) {
        try connection.query("SELECT pg_advisory_xact_lock_shared(\(lockKey)::bigint)")
    }

    /// Takes the fence's lock exclusively: the first statement of an erasure's transaction.
    public static func close(on connection: PostgresConnection) throws(PostgresError) {
        try connection.query("SELECT pg_advisory_xact_lock(\(lockKey)::bigint)")
    }

    /// The SQL condition under which an event received at `received` (a `timestamptz`
    /// expression) of the subject of the `erasures` row `e` is not stored.
    public static func condition(received: PostgresQuery) -> PostgresQuery {
        """
        (\(received) <= e.erased_at OR NOT EXISTS (
            SELECT 1 FROM consents c WHERE c.subject = e.subject AND c.granted AND c.updated_at > e.erased_at))
        """
    }
}
