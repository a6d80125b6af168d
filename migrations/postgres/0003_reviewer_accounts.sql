-- Reviewer accounts (issue 3): login material beside the reviewers row, enrolment tokens, and
-- sessions. Everything secret is sealed: the identity under the password-derived wrap key, the
-- TOTP secret under the same key, a second identity copy under the recovery code, and per-session
-- copies under keys derived from tokens that only clients hold.

CREATE TABLE reviewer_secrets (
    reviewer_id TEXT PRIMARY KEY REFERENCES reviewers (id),
    kdf_params TEXT NOT NULL,
    password_salt BYTEA NOT NULL,
    login_verifier BYTEA NOT NULL,
    sealed_identity BYTEA NOT NULL,
    sealed_totp BYTEA NOT NULL,
    totp_last_step BIGINT,
    recovery_salt BYTEA NOT NULL,
    recovery_sealed_identity BYTEA,
    must_change_password BOOLEAN NOT NULL DEFAULT FALSE,
    failed_logins BIGINT NOT NULL DEFAULT 0,
    locked_until BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE enrolments (
    token_hash BYTEA PRIMARY KEY,
    kind TEXT NOT NULL,
    role TEXT NOT NULL,
    desk_ids TEXT NOT NULL,
    reviewer_id TEXT REFERENCES reviewers (id),
    -- Between redeeming and confirming: the TOTP secret, sealed under a key derived from the
    -- enrolment token, which the client presents at both steps.
    pending_totp BYTEA,
    expires_at BIGINT NOT NULL,
    spent BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE sessions (
    token_hash BYTEA PRIMARY KEY,
    reviewer_id TEXT NOT NULL REFERENCES reviewers (id),
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    sealed_identity BYTEA NOT NULL
);

CREATE INDEX sessions_by_reviewer ON sessions (reviewer_id);
CREATE INDEX grants_by_grantee ON grants (grantee_kind, grantee_id, case_id);
