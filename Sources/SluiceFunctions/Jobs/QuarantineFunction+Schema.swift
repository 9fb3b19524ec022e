import SluicePostgres

extension QuarantineFunction {
    /// The `quarantine` table.
    /// Its parts of the pipeline's migrations (``PipelineSchema``): versions are shared by
    /// every owner and never renumbered.
    static let schema: [Migration] = [
        Migration(version: 5, name: "pipeline", sql: """
            -- Events that could not be processed, with why and where. One row per quarantined
            -- event: (stream, entry, position) is the event's place in the quarantine stream,
            -- so a redelivered entry writes nothing twice.
            CREATE TABLE quarantine (
                id          bigserial PRIMARY KEY,
                job_id      uuid,
                function    text NOT NULL,
                reason      text NOT NULL,
                line        integer,
                raw         text NOT NULL,
                stream      text NOT NULL,
                entry_id    text NOT NULL,
                position    integer NOT NULL,
                created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
                UNIQUE (stream, entry_id, position)
            );
            CREATE INDEX quarantine_job ON quarantine (job_id);
            """),
        Migration(version: 12, name: "erasure by pseudonym", sql: """
            -- Erasure deletes by equality on the subject's pseudonym, never by a search of the
            -- text. A quarantine row's subject is the pseudonym at its event's user fields,
            -- filled when quarantine writes it (NULL for a record that did not parse: its user
            -- id cannot be told).
            ALTER TABLE quarantine ADD COLUMN subject text CHECK (subject ~ '^u_[a-p]{32}$');
            CREATE INDEX quarantine_subject ON quarantine (subject) WHERE subject IS NOT NULL;
            -- Backfill: rows quarantined by a stage hold the event as JSON, its user id already a
            -- pseudonym (quarantine's pii-mask); rows whose text is not a JSON object keep NULL.
            DO $$
            DECLARE
                r record;
                j jsonb;
                who text;
            BEGIN
                FOR r IN SELECT id, raw FROM quarantine WHERE raw LIKE '{%' LOOP
                    BEGIN
                        j := r.raw::jsonb;
                    EXCEPTION WHEN others THEN
                        CONTINUE;
                    END;
                    IF jsonb_typeof(j) <> 'object' THEN CONTINUE; END IF;
                    who := COALESCE(
                        CASE WHEN jsonb_typeof(j -> 'user') = 'object' THEN j -> 'user' ->> 'id' END,
                        j ->> 'user_id');
                    IF who ~ '^u_[a-p]{32}$' THEN
                        UPDATE quarantine SET subject = who WHERE id = r.id;
                    END IF;
                END LOOP;
            END $$;
            """),
        Migration(version: 14, name: "datasets", sql: """
            -- The field a record was quarantined for (a column of its dataset), and the dataset.
            ALTER TABLE quarantine ADD COLUMN field text, ADD COLUMN dataset text;
            """),
    ]
}
