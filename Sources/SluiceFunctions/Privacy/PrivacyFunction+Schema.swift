import SluicePostgres

extension PrivacyFunction {
    /// Consents, the audit log and erasures.
    /// Its parts of the pipeline's migrations (``PipelineSchema``): versions are shared by
    /// every owner and never renumbered.
    static let schema: [Migration] = [
        Migration(version: 9, name: "privacy", sql: """
            -- Consent per subject and purpose. subject is the keyed pseudonym of the user id (the
            -- form the warehouse holds), never the id itself; purpose '*' is every purpose (an
            -- erasure records one). Of a subject's row for the purpose and its '*' row, the one
            -- changed last decides.
            CREATE TABLE consents (
                subject     text NOT NULL,
                purpose     text NOT NULL,
                granted     boolean NOT NULL,
                source      text NOT NULL CHECK (source IN ('api', 'erasure')),
                updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
                PRIMARY KEY (subject, purpose)
            );
            -- Who read or changed what through the API, and every consent change, erasure and
            -- dead-letter redrive. subject is a pseudonym too. Append-only: the triggers below
            -- refuse UPDATE, DELETE and TRUNCATE, whoever asks.
            CREATE TABLE audit_log (
                id          bigserial PRIMARY KEY,
                at          timestamptz NOT NULL DEFAULT clock_timestamp(),
                actor       text NOT NULL,
                action      text NOT NULL,
                resource    text NOT NULL,
                subject     text,
                request_id  text,
                status      integer,
                detail      jsonb
            );
            CREATE INDEX audit_log_actor ON audit_log (actor, id);
            CREATE INDEX audit_log_action ON audit_log (action, id);
            CREATE INDEX audit_log_subject ON audit_log (subject, id) WHERE subject IS NOT NULL;
            CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
            END $$;
            CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
                FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
            CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
                FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
            """),
        Migration(version: 12, name: "erasure by pseudonym", sql: """
            -- Erased subjects and when: the load and quarantine stages check it in the
            -- transaction that writes, so the events of a subject erased while they were on their
            -- way are never stored (a grant recorded after the erasure lets later events through).
            CREATE TABLE erasures (
                subject    text PRIMARY KEY CHECK (subject ~ '^u_[a-p]{32}$'),
                erased_at  timestamptz NOT NULL DEFAULT clock_timestamp()
            );
            """),
    ]
}
