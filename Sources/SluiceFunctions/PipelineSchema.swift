import SluicePostgres

/// The pipeline's PostgreSQL schema: every owner's migrations, which the migrator applies in
/// version order. A version may have parts from several owners (a change that touched several
/// tables at once); they run in one transaction, in this list's order. Test-only tables are
/// not here: the test functions create their own (``SinkFunction``).
public enum PipelineSchema {
    public static let migrations: [Migration] =
        JobStore.schema + EnrichFunction.schema + LoadFunction.schema + QuarantineFunction.schema + CallsFunction.schema
        + RollupRefresher.schema + PrivacyFunction.schema + NotifyFunction.schema + DatasetStore.schema

    /// The newest version of this build.
    public static var latestVersion: Int { migrations.map(\.version).max() ?? 0 }
}
