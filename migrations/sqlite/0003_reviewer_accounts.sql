-- Reviewer accounts (issue 3): login material beside the reviewers row, enrolment tokens, and
-- sessions. Everything secret is sealed: the identity under the password-derived wrap key, the
-- TOTP secret under the same key, a second identity copy under the recovery code, and per-session
-- copies under keys derived from tokens that only clients hold.

CREATE TABLE reviewer_secrets (
    reviewer_id TEXT PRIMARY KEY REFERENCES reviewers (id),
    kdf_params TEXT NOT NULL,
    password_salt BLOB NOT NULL,
    login_verifier BLOB NOT NULL,
    sealed_identity BLOB NOT NULL,
    sealed_totp BLOB NOT NULL,
    totp_last_step INTEGER,
    recovery_salt BLOB NOT NULL,
    recovery_sealed_identity BLOB,
    must_change_password INTEGER NOT NULL DEFAULT 0,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE enrolments (
    token_hash BLOB PRIMARY KEY,
    kind TEXT NOT NULL,
    role TEXT NOT NULL,
    desk_ids TEXT NOT NULL,
    reviewer_id TEXT REFERENCES reviewers (id),
    -- Between redeeming and confirming: the TOTP secret, sealed under a key derived from the
    -- enrolment token, which the client presents at both steps.
    pending_totp BLOB,
    expires_at INTEGER NOT NULL,
    spent INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE sessions (
    token_hash BLOB PRIMARY KEY,
    reviewer_id TEXT NOT NULL REFERENCES reviewers (id),
    created_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    sealed_identity BLOB NOT NULL
) STRICT;

CREATE INDEX sessions_by_reviewer ON sessions (reviewer_id);
CREATE INDEX grants_by_grantee ON grants (grantee_kind, grantee_id, case_id);
