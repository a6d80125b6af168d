-- The tamper-evident audit log (issue 3, item 8): append-only, hash-chained, with no content and
-- no IP address. audit_head holds the last sequence and hash; appending updates it first, which
-- locks the row before anything is read, so concurrent appends serialise cleanly.

CREATE TABLE audit_head (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    sequence BIGINT NOT NULL,
    hash BYTEA NOT NULL
);

INSERT INTO audit_head (id, sequence, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

CREATE TABLE audit_events (
    sequence BIGINT PRIMARY KEY,
    occurred_at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    outcome TEXT NOT NULL,
    previous_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL
);
