-- The tamper-evident audit log (issue 3, item 8): append-only, hash-chained, with no content and
-- no IP address. audit_head holds the last sequence and hash; appending updates it first, which
-- takes the write lock before anything is read, so concurrent appends serialise cleanly.

CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    sequence INTEGER NOT NULL,
    hash BLOB NOT NULL
) STRICT;

INSERT INTO audit_head (id, sequence, hash) VALUES (1, 0, zeroblob(32));

CREATE TABLE audit_events (
    sequence INTEGER PRIMARY KEY,
    occurred_at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    outcome TEXT NOT NULL,
    previous_hash BLOB NOT NULL,
    hash BLOB NOT NULL
) STRICT;
