import SluicePostgres

extension EnrichFunction {
    /// The lookup tables enrich reads.
    /// Its parts of the pipeline's migrations (``PipelineSchema``): versions are shared by
    /// every owner and never renumbered.
    static let schema: [Migration] = [
        Migration(version: 3, name: "lookups", sql: """
            -- Lookup tables of the enrich stage, seeded here; operators add rows with SQL.
            CREATE TABLE lookup_countries (
                code text PRIMARY KEY CHECK (code ~ '^[A-Z]{2}$'),
                name text NOT NULL
            );
            INSERT INTO lookup_countries (code, name) VALUES
                ('AR', 'Argentina'), ('AT', 'Austria'), ('AU', 'Australia'), ('BE', 'Belgium'),
                ('BR', 'Brazil'), ('CA', 'Canada'), ('CH', 'Switzerland'), ('CN', 'China'),
                ('CZ', 'Czechia'), ('DE', 'Germany'), ('DK', 'Denmark'), ('EG', 'Egypt'),
                ('ES', 'Spain'), ('FI', 'Finland'), ('FR', 'France'), ('GB', 'United Kingdom'),
                ('GR', 'Greece'), ('HU', 'Hungary'), ('ID', 'Indonesia'), ('IE', 'Ireland'),
                ('IL', 'Israel'), ('IN', 'India'), ('IT', 'Italy'), ('JP', 'Japan'),
                ('KE', 'Kenya'), ('KR', 'South Korea'), ('MX', 'Mexico'), ('NG', 'Nigeria'),
                ('NL', 'Netherlands'), ('NO', 'Norway'), ('NZ', 'New Zealand'), ('PL', 'Poland'),
                ('PT', 'Portugal'), ('RO', 'Romania'), ('SE', 'Sweden'), ('SG', 'Singapore'),
                ('TR', 'Türkiye'), ('UA', 'Ukraine'), ('US', 'United States'), ('ZA', 'South Africa');
            CREATE TABLE lookup_device_classes (
                device_type  text PRIMARY KEY,
                device_class text NOT NULL
            );
            INSERT INTO lookup_device_classes (device_type, device_class) VALUES
                ('mobile', 'handheld'), ('tablet', 'handheld'), ('desktop', 'computer'),
                ('laptop', 'computer'), ('tv', 'living_room'), ('console', 'living_room'),
                ('watch', 'wearable'), ('iot', 'embedded');
            """),
    ]
}
