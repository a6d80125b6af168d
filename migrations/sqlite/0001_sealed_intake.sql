-- The sealed intake (issue 2). Plaintext columns follow the allowlist of DESIGN §4; everything
-- else is an age ciphertext (BLOB). Days are 'YYYY-MM-DD' text, months 'YYYY-MM'.

CREATE TABLE instance (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    receipt_salt BLOB NOT NULL,
    escrow_recipient TEXT NOT NULL,
    created_on TEXT NOT NULL
) STRICT;

CREATE TABLE desks (
    id TEXT PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    created_on TEXT NOT NULL
) STRICT;

-- The minimal reviewer row that intake needs to grant desk members; login material comes later.
CREATE TABLE reviewers (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    status TEXT NOT NULL,
    recipient TEXT NOT NULL,
    created_on TEXT NOT NULL
) STRICT;

CREATE TABLE desk_members (
    desk_id TEXT NOT NULL REFERENCES desks (id),
    reviewer_id TEXT NOT NULL REFERENCES reviewers (id),
    role TEXT NOT NULL,
    PRIMARY KEY (desk_id, reviewer_id)
) STRICT;

CREATE TABLE cases (
    id TEXT PRIMARY KEY,
    desk_id TEXT NOT NULL REFERENCES desks (id),
    key_epoch INTEGER NOT NULL,
    case_recipient TEXT NOT NULL,
    status TEXT NOT NULL,
    priority TEXT NOT NULL,
    incident_type TEXT NOT NULL,
    mechanism_kind TEXT,
    session_label TEXT,
    perpetrator_kind TEXT,
    incident_month TEXT,
    consent_ohchr INTEGER NOT NULL,
    consent_sg_report TEXT NOT NULL,
    consent_partners INTEGER NOT NULL,
    consent_statistics INTEGER NOT NULL,
    consent_contact INTEGER NOT NULL,
    received_on TEXT NOT NULL,
    updated_on TEXT NOT NULL
) STRICT;

CREATE INDEX cases_by_desk_and_day ON cases (desk_id, received_on DESC);

CREATE TABLE grants (
    case_id TEXT NOT NULL REFERENCES cases (id),
    grantee_kind TEXT NOT NULL,
    grantee_id TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    ciphertext BLOB NOT NULL,
    PRIMARY KEY (case_id, grantee_kind, grantee_id, epoch)
) STRICT;

CREATE TABLE entries (
    id TEXT PRIMARY KEY,
    case_id TEXT NOT NULL REFERENCES cases (id),
    kind TEXT NOT NULL,
    author TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    created_on TEXT NOT NULL,
    ciphertext BLOB NOT NULL
) STRICT;

CREATE INDEX entries_by_case ON entries (case_id);

CREATE TABLE reporter_access (
    lookup_id BLOB PRIMARY KEY,
    case_id TEXT NOT NULL REFERENCES cases (id),
    kdf_params TEXT NOT NULL,
    reporter_recipient TEXT NOT NULL,
    sealed_identity BLOB NOT NULL,
    failed_attempts INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE idempotency_records (
    key_hash BLOB PRIMARY KEY,
    sealed_response BLOB NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;

CREATE INDEX idempotency_by_expiry ON idempotency_records (expires_at);
