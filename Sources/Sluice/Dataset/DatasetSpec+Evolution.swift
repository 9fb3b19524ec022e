extension DatasetSpec {
    /// One change to a dataset's table.
    public enum TableChange: Sendable, Equatable {
        /// A new column (always nullable in the table: `required` is checked by validate, so
        /// that rows loaded before it stay).
        case addColumn(Column)
        /// An existing column's type changes (`USING column::type`).
        case changeType(column: String, from: FieldType, to: FieldType)
        /// A new index.
        case addIndex([String])
    }

    /// The changes that turn the table of `old` into the table of `self`.
    ///
    /// Allowed at any time: a new optional column, a type that widens (``FieldType/widens(_:)``),
    /// a required column made optional, a new index, new or changed fields that load into the
    /// same columns. A change that would break rows already loaded (a new required column, a
    /// narrower type, an optional column made required, a column removed) is refused with the
    /// column named, unless `migration` is true: then a new required column is required of new
    /// records only, a type is changed by a cast of every row (which fails if a row does not
    /// fit), and a removed column stays in the table, no longer loaded. The name, the table and
    /// the key never change.
    /// - Throws: ``DatasetError`` (`schema_incompatible`).
    public func changes(from old: DatasetSpec, migration: Bool = false) throws(DatasetError) -> [TableChange] {
        guard name == old.name else { throw DatasetError(.incompatible, key: "name", "a dataset's name cannot change") }
        guard table == old.table else { throw DatasetError(.incompatible, key: "table", "a dataset's table cannot change") }
        guard key == old.key else {
            throw DatasetError(.incompatible, key: "key", "a dataset's key cannot change (it is the table's primary key)", column: key.first)
        }
        var changes: [TableChange] = []
        for column in old.columns where self.column(column.name) == nil && !migration {
            throw DatasetError(.incompatible, key: "fields", "the column '\(column.name)' would be removed; its rows keep it (declare a migration to stop loading it)",
                               column: column.name)
        }
        for column in columns {
            guard let before = old.column(column.name) else {
                if column.required && !migration {
                    throw DatasetError(.incompatible, key: "fields", "the new column '\(column.name)' is required, which the rows already loaded are not; add it as optional, or declare a migration",
                                       column: column.name)
                }
                changes.append(.addColumn(column))
                continue
            }
            if before.type != column.type && key.contains(column.name) {
                throw DatasetError(.incompatible, key: "fields", "the key column '\(column.name)' cannot change its type (it is the table's primary key)", column: column.name)
            }
            if before.type != column.type {
                if !column.type.widens(before.type) && !migration {
                    throw DatasetError(.incompatible, key: "fields", "the column '\(column.name)' would narrow from \(before.type.rawValue) to \(column.type.rawValue), which rows already loaded may not fit; declare a migration to convert them",
                                       column: column.name)
                }
                changes.append(.changeType(column: column.name, from: before.type, to: column.type))
            }
            if column.required && !before.required && !migration {
                throw DatasetError(.incompatible, key: "fields", "the column '\(column.name)' would become required, which rows already loaded may not be; declare a migration",
                                   column: column.name)
            }
        }
        for index in indexes where !old.indexes.contains(index) { changes.append(.addIndex(index)) }
        return changes
    }
}
