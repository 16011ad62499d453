/// One step of the schema: SQL, and for a step that derives rows from what is stored, the
/// code that writes them (in the same transaction), reporting progress through `log`.
struct Migration: Sendable {
    let sql: String
    var fill: (@Sendable (Database, _ log: (String) -> Void) throws -> Void)?
}

extension Migration: ExpressibleByStringLiteral {
    init(stringLiteral sql: String) { self.sql = sql }
}

/// The on-disk schema, as numbered migrations. `PRAGMA user_version` records how many have been
/// applied; a database newer than this code is refused rather than misread.
extension Database {
    static let migrations: [Migration] = [
        // 1: the memory space's settings and its memories.
        """
        CREATE TABLE space (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE memories (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            user TEXT NOT NULL,
            session TEXT,
            role TEXT,
            text TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            metadata TEXT NOT NULL,
            embedding BLOB NOT NULL
        );
        CREATE INDEX memories_by_user ON memories(user);
        """,
        // 2: the HNSW graph of a space created with `index = hnsw`: one row per node, written in
        // the transaction that writes the memory it indexes. `links` holds Int32s (see
        // HNSWNodeRecord): the level, then per layer a count and the neighbours' slots.
        """
        CREATE TABLE hnsw_nodes (
            slot INTEGER PRIMARY KEY,
            memory INTEGER NOT NULL UNIQUE REFERENCES memories(seq),
            links BLOB NOT NULL
        );
        """,
        // 3: an id is unique within its user, not across the space (one tenant's id must not
        // reach another's memory). The rows, and their seq (which graph nodes refer to), are kept;
        // the (user, id) index also serves the per-user queries the old user index did.
        """
        CREATE TABLE memories_v3 (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL,
            user TEXT NOT NULL,
            session TEXT,
            role TEXT,
            text TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            metadata TEXT NOT NULL,
            embedding BLOB NOT NULL,
            UNIQUE (user, id)
        );
        INSERT INTO memories_v3 (seq, id, user, session, role, text, created_at, metadata, embedding)
            SELECT seq, id, user, session, role, text, created_at, metadata, embedding FROM memories;
        DROP TABLE memories;
        ALTER TABLE memories_v3 RENAME TO memories;
        """,
        // 4: a user's memories in time order (`list`; its cursor is (created_at, seq)); `sessions`
        // and `forget` of a session read the user's rows through it too. One index, not one per
        // query: each costs every insert (a second one, by session, made a 100K import 10% slower).
        """
        CREATE INDEX memories_by_time ON memories(user, created_at);
        """,
        // 5: the embeddings of a long text's windows after the first (the first is the memory's
        // `embedding`), written and deleted in the same transactions as their memory.
        """
        CREATE TABLE memory_windows (
            memory INTEGER NOT NULL REFERENCES memories(seq),
            position INTEGER NOT NULL,
            embedding BLOB NOT NULL,
            PRIMARY KEY (memory, position)
        ) WITHOUT ROWID;
        """,
        // 6: who said a memory (a person's name), apart from its chat role; null in existing rows.
        """
        ALTER TABLE memories ADD COLUMN speaker TEXT;
        """,
        // 7: the keyword index, its words shared by all users (14 replaces it, and fills it).
        """
        CREATE VIRTUAL TABLE memory_terms USING fts5(
            scope, speaker, text, day, tokenize = 'porter unicode61 remove_diacritics 2');
        """,
        // 8: when a memory expires (unix ms; null: never), and the expiring ones in that order for
        // the purge.
        """
        ALTER TABLE memories ADD COLUMN expires_at INTEGER;
        CREATE INDEX memories_expiring ON memories(expires_at) WHERE expires_at IS NOT NULL;
        """,
        // 9: a user's pinned facts (metadata "pinned": true), which every prompt reads, without
        // reading the user's other memories.
        Migration(sql: "CREATE INDEX memories_pinned ON memories(user, created_at, seq) WHERE \(SQL.isPinned);"),
        // 10: how often a memory helped, and did not, as users said (`feedback`).
        """
        ALTER TABLE memories ADD COLUMN helped INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE memories ADD COLUMN unhelped INTEGER NOT NULL DEFAULT 0;
        """,
        // 11: every change of a memory's created_at, numbered (never reused) with the time it
        // had, kept while the memory is: a listing that began before a change keeps the memory
        // where it was (`ListCursor.change`), so it is returned once and nothing is skipped.
        // Triggers, so that every write that changes the time (update, a replacing add) records it.
        """
        CREATE TABLE memory_time_changes (
            change INTEGER PRIMARY KEY AUTOINCREMENT,
            memory INTEGER NOT NULL,
            old_created_at INTEGER NOT NULL
        );
        CREATE INDEX memory_time_changes_by_memory ON memory_time_changes(memory, change);
        CREATE TRIGGER memory_time_changed AFTER UPDATE OF created_at ON memories
            WHEN old.created_at IS NOT new.created_at
        BEGIN
            INSERT INTO memory_time_changes (memory, old_created_at) VALUES (old.seq, old.created_at);
        END;
        CREATE TRIGGER memory_time_changes_gone AFTER DELETE ON memories
        BEGIN
            DELETE FROM memory_time_changes WHERE memory = old.seq;
        END;
        """,
        // 12: when a memory holds (unix ms; null: from created_at, and open) and the memories it
        // replaced and was replaced by (`supersedes`): a successor's add closes its predecessor.
        """
        ALTER TABLE memories ADD COLUMN valid_from INTEGER;
        ALTER TABLE memories ADD COLUMN valid_to INTEGER;
        ALTER TABLE memories ADD COLUMN supersedes TEXT;
        ALTER TABLE memories ADD COLUMN superseded_by TEXT;
        """,
        // 13: where a memory came from (`sources`: turn ids, or any reference), in order, and
        // the memories that name a source, for a forget that takes what was derived from a turn.
        // A trigger deletes a memory's sources with it, whichever write deletes it.
        """
        CREATE TABLE memory_sources (
            memory INTEGER NOT NULL,
            position INTEGER NOT NULL,
            source TEXT NOT NULL,
            PRIMARY KEY (memory, position)
        ) WITHOUT ROWID;
        CREATE INDEX memory_sources_by_source ON memory_sources(source);
        CREATE TRIGGER memory_sources_gone AFTER DELETE ON memories
        BEGIN
            DELETE FROM memory_sources WHERE memory = old.seq;
        END;
        """,
        // 14: the keyword index (see KeywordIndex) with each user's words apart (the `scoped`
        // tokenizer), filled from the memories stored.
        Migration(
            sql: """
                DROP TABLE memory_terms;
                CREATE VIRTUAL TABLE memory_terms USING fts5(
                    scope, speaker, text, day, tokenize = '\(KeywordIndex.tokenizer)');
                """,
            fill: { database, log in try KeywordIndex.fill(database, log: log) }),
        // 15: the keyword index's merges take two segments of a level (see KeywordIndex.merge).
        Migration(stringLiteral: KeywordIndex.pairwiseMerges),
    ]

    /// Applies the migrations this database lacks, each in its own transaction.
    /// - Parameter log: Where a long migration reports its progress.
    func migrate(log: (String) -> Void = { _ in }) throws {
        let current = Int(try scalarInt("PRAGMA user_version"))
        guard current <= Self.migrations.count else {
            throw StoreError.incompatibleDatabase(
                "schema version \(current) is newer than this server's \(Self.migrations.count)")
        }
        for version in current..<Self.migrations.count {
            try transaction {
                try execute(Self.migrations[version].sql)
                try Self.migrations[version].fill?(self, log)
                try execute("PRAGMA user_version = \(version + 1)")
            }
        }
    }
}
