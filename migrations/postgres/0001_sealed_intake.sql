-- The sealed intake (issue 2). Plaintext columns follow the allowlist of DESIGN §4; everything
-- else is an age ciphertext (BYTEA). Days are 'YYYY-MM-DD' text, months 'YYYY-MM'.

CREATE TABLE instance (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    receipt_salt BYTEA NOT NULL,
    escrow_recipient TEXT NOT NULL,
    created_on TEXT NOT NULL
);

CREATE TABLE desks (
    id TEXT PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    created_on TEXT NOT NULL
);

-- The minimal reviewer row that intake needs to grant desk members; login material comes later.
CREATE TABLE reviewers (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    status TEXT NOT NULL,
    recipient TEXT NOT NULL,
    created_on TEXT NOT NULL
);

CREATE TABLE desk_members (
    desk_id TEXT NOT NULL REFERENCES desks (id),
    reviewer_id TEXT NOT NULL REFERENCES reviewers (id),
    role TEXT NOT NULL,
    PRIMARY KEY (desk_id, reviewer_id)
);

CREATE TABLE cases (
    id TEXT PRIMARY KEY,
    desk_id TEXT NOT NULL REFERENCES desks (id),
    key_epoch BIGINT NOT NULL,
    case_recipient TEXT NOT NULL,
    status TEXT NOT NULL,
    priority TEXT NOT NULL,
    incident_type TEXT NOT NULL,
    mechanism_kind TEXT,
    session_label TEXT,
    perpetrator_kind TEXT,
    incident_month TEXT,
    consent_ohchr BOOLEAN NOT NULL,
    consent_sg_report TEXT NOT NULL,
    consent_partners BOOLEAN NOT NULL,
    consent_statistics BOOLEAN NOT NULL,
    consent_contact BOOLEAN NOT NULL,
    received_on TEXT NOT NULL,
    updated_on TEXT NOT NULL
);

CREATE INDEX cases_by_desk_and_day ON cases (desk_id, received_on DESC);

CREATE TABLE grants (
    case_id TEXT NOT NULL REFERENCES cases (id),
    grantee_kind TEXT NOT NULL,
    grantee_id TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    ciphertext BYTEA NOT NULL,
    PRIMARY KEY (case_id, grantee_kind, grantee_id, epoch)
);

CREATE TABLE entries (
    id TEXT PRIMARY KEY,
    case_id TEXT NOT NULL REFERENCES cases (id),
    kind TEXT NOT NULL,
    author TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    created_on TEXT NOT NULL,
    ciphertext BYTEA NOT NULL
);

CREATE INDEX entries_by_case ON entries (case_id);

CREATE TABLE reporter_access (
    lookup_id BYTEA PRIMARY KEY,
    case_id TEXT NOT NULL REFERENCES cases (id),
    kdf_params TEXT NOT NULL,
    reporter_recipient TEXT NOT NULL,
    sealed_identity BYTEA NOT NULL,
    failed_attempts BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE idempotency_records (
    key_hash BYTEA PRIMARY KEY,
    sealed_response BYTEA NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX idempotency_by_expiry ON idempotency_records (expires_at);
