//! Row shapes. Field names are the column names; byte vectors are ciphertexts or hashes.

/// A `Debug` that shows only the named fields and `..`: for records that hold a secret, what is
/// derived from or sealed under one, a case reference or a case's details, so that a `?record`
/// in a log line or a panic message shows none of them.
macro_rules! debug_showing_only {
    ($record:ident { $($field:ident),* $(,)? }) => {
        impl std::fmt::Debug for $record {
            fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter
                    .debug_struct(stringify!($record))
                    $(.field(stringify!($field), &self.$field))*
                    .finish_non_exhaustive()
            }
        }
    };
}

/// The single `instance` row: created on first start, never changed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InstanceRecord {
    /// Salt of the receipt KDF (32 random bytes; not secret, but instance-specific).
    pub receipt_salt: Vec<u8>,
    /// The offline escrow key's `age1…` recipient. Its identity is never stored.
    pub escrow_recipient: String,
    /// Day of creation, `YYYY-MM-DD`.
    pub created_on: String,
}

/// A desk.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeskRecord {
    /// Random id.
    pub id: String,
    /// URL-safe name used by clients.
    pub slug: String,
    /// Display name.
    pub name: String,
}

/// A desk member's age recipient.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MemberRecipient {
    /// The reviewer's id.
    pub reviewer_id: String,
    /// The reviewer's `age1…` recipient.
    pub recipient: String,
}

/// The desk a report is filed to, and who on it receives a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeDesk {
    /// The desk's id.
    pub desk_id: String,
    /// Its active members, by reviewer id.
    pub members: Vec<MemberRecipient>,
}

/// The allowlisted plaintext of a case (DESIGN §4): coarse triage and statistics dimensions only.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CaseRecord {
    pub id: String,
    pub desk_id: String,
    pub key_epoch: i64,
    pub case_recipient: String,
    pub status: String,
    pub priority: String,
    pub incident_type: String,
    pub mechanism_kind: Option<String>,
    pub session_label: Option<String>,
    pub perpetrator_kind: Option<String>,
    pub incident_month: Option<String>,
    pub consent_ohchr: bool,
    pub consent_sg_report: String,
    pub consent_partners: bool,
    pub consent_statistics: bool,
    pub consent_contact: bool,
    pub received_on: String,
    pub updated_on: String,
}

/// The case key, sealed to one grantee at one epoch.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GrantRecord {
    pub case_id: String,
    /// `escrow` or `reviewer`.
    pub grantee_kind: String,
    /// The reviewer id, or `escrow`.
    pub grantee_id: String,
    pub epoch: i64,
    /// age ciphertext of the grant plaintext.
    pub ciphertext: Vec<u8>,
}

/// One item of a case thread.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EntryRecord {
    pub id: String,
    pub case_id: String,
    /// An [`crate::domain::EntryKind`] spelling.
    pub kind: String,
    /// `reporter`, or a reviewer id.
    pub author: String,
    pub epoch: i64,
    pub created_on: String,
    /// age ciphertext of the envelope.
    pub ciphertext: Vec<u8>,
}

/// The reporter's way back into the case.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReporterAccessRecord {
    /// Derived from the receipt; see [`crate::crypto::receipt`].
    pub lookup_id: Vec<u8>,
    pub case_id: String,
    /// The argon2id parameters that derived `lookup_id`.
    pub kdf_params: String,
    pub reporter_recipient: String,
    pub sealed_identity: Vec<u8>,
    pub failed_attempts: i64,
}

/// An idempotency record: the first answer, sealed under a key derived from the Idempotency-Key.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct IdempotencyRecord {
    /// SHA-256 of the key, for lookup.
    pub key_hash: Vec<u8>,
    pub sealed_response: Vec<u8>,
    /// Unix seconds, rounded up to a UTC midnight so as not to time-stamp the report.
    pub expires_at: i64,
}

/// Everything intake writes for one report, atomically.
#[derive(Clone)]
pub struct NewSealedCase {
    pub case: CaseRecord,
    pub grants: Vec<GrantRecord>,
    pub report: EntryRecord,
    pub reporter_access: ReporterAccessRecord,
    pub idempotency: Option<IdempotencyRecord>,
    /// Unix seconds at intake: an idempotency record that expired before it may be replaced.
    pub now: i64,
}

/// What an audit event says. No content, no address: who did what to which case, and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEvent {
    /// Unix seconds.
    pub occurred_at: i64,
    /// A reviewer id, `cli`, `system` …
    pub actor: String,
    /// A stable dotted name, e.g. `case.read.offline`.
    pub action: String,
    /// The case reference or account the action was about, if any.
    pub target: Option<String>,
    /// `success`, `refused`, `failure`.
    pub outcome: String,
}

/// A stored audit event with its place in the hash chain.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditEventRecord {
    pub sequence: i64,
    pub occurred_at: i64,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub previous_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// A reviewer account (allowlisted plaintext: DESIGN §4).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReviewerRecord {
    pub id: String,
    pub username: String,
    /// `admin`, `coordinator`, `reviewer` or `auditor`.
    pub role: String,
    /// `pending` (enrolled, TOTP not confirmed), `active` or `disabled`.
    pub status: String,
    /// The reviewer's `age1…` recipient: grants are sealed to it.
    pub recipient: String,
    pub created_on: String,
}

/// A reviewer's login material: nothing here opens anything without the password, the recovery
/// code or a session token.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReviewerSecretsRecord {
    pub reviewer_id: String,
    pub kdf_params: String,
    pub password_salt: Vec<u8>,
    pub login_verifier: Vec<u8>,
    pub sealed_identity: Vec<u8>,
    pub sealed_totp: Vec<u8>,
    pub totp_last_step: Option<i64>,
    pub recovery_salt: Vec<u8>,
    pub recovery_sealed_identity: Option<Vec<u8>>,
    pub must_change_password: bool,
    pub failed_logins: i64,
    pub locked_until: i64,
    /// The TOTP secret sealed under the recovery key: the second factor still works when the
    /// recovery code replaces a forgotten password.
    pub recovery_sealed_totp: Option<Vec<u8>>,
}

debug_showing_only!(ReviewerSecretsRecord { reviewer_id });

/// A single-use enrolment token: the first-start setup code, or an admin's invitation.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EnrolmentRecord {
    /// SHA-256 of the token; the token itself is never stored.
    pub token_hash: Vec<u8>,
    /// `setup` or `invitation`.
    pub kind: String,
    /// The role the new account gets.
    pub role: String,
    /// Space-separated `desk_id:desk_role` pairs the account joins.
    pub desk_ids: String,
    /// Set once the token was redeemed with a password, before TOTP is confirmed.
    pub reviewer_id: Option<String>,
    /// The TOTP secret awaiting confirmation, sealed under a key derived from the token.
    pub pending_totp: Option<Vec<u8>>,
    pub expires_at: i64,
    pub spent: bool,
    /// The username an invitation is for; `None` for the setup code.
    pub username: Option<String>,
}

/// A change of a reviewer's password-derived secrets (see
/// [`crate::storage::Store::replace_login_secrets`]).
pub struct SecretsChange<'a> {
    pub secrets: &'a ReviewerSecretsRecord,
    /// The verifier the change was checked against; refused if it changed meanwhile.
    pub expected_verifier: &'a [u8],
    /// The request's time, for the lock-out re-check.
    pub now: i64,
    /// The session a recovery opens; `None` for a password change.
    pub new_session: Option<&'a SessionRecord>,
    /// The TOTP time step a recovery spends with the change, refused if it (or a later one) was
    /// spent meanwhile; `None` for a password change.
    pub totp_step: Option<i64>,
}

/// What redeeming an enrolment token writes (see [`crate::storage::Store::redeem_enrolment`]).
pub struct Redemption<'a> {
    /// SHA-256 of the token.
    pub token_hash: &'a [u8],
    /// The request's time: the token must not have expired by then.
    pub now: i64,
    /// The pending account an earlier redemption of the same token made, which this one
    /// replaces: the answer to that one (TOTP link, recovery code) may never have arrived.
    pub replacing: Option<&'a str>,
    pub reviewer: &'a ReviewerRecord,
    pub secrets: &'a ReviewerSecretsRecord,
    /// The TOTP secret sealed under the token, until the first code confirms it.
    pub pending_totp: &'a [u8],
    /// `(desk_id, desk_role)` pairs the account joins.
    pub memberships: &'a [(String, String)],
}

/// A reviewer session: found by the token's hash; its identity copy opens only with the token.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRecord {
    pub token_hash: Vec<u8>,
    pub reviewer_id: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub sealed_identity: Vec<u8>,
    /// When the password was last re-entered in this session (step-up), Unix seconds.
    pub stepped_up_at: Option<i64>,
}

debug_showing_only!(SessionRecord {
    reviewer_id,
    expires_at
});

/// Filters and paging of the triage list. `None` means "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaseFilter {
    pub status: Option<String>,
    pub incident_type: Option<String>,
    pub mechanism_kind: Option<String>,
    pub desk_id: Option<String>,
    /// Inclusive `YYYY-MM-DD` bounds on the day received.
    pub received_from: Option<String>,
    pub received_until: Option<String>,
    /// Keyset paging: only cases strictly after this (received_on, id) in newest-first order.
    pub after: Option<(String, String)>,
    pub limit: i64,
}

/// A reviewer's membership of a desk.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeskMemberRecord {
    pub desk_id: String,
    pub reviewer_id: String,
    /// A [`crate::domain::DeskRole`] spelling.
    pub role: String,
}

/// A change of an account's role or status by an admin. `None` leaves the value as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountChange {
    pub role: Option<String>,
    pub status: Option<String>,
}

/// A re-keying of a case after a revoke: the revoked reviewer's grants go, and a new epoch's key
/// is granted to everyone who keeps access.
#[derive(Clone)]
pub struct Rekey {
    pub case_id: String,
    /// The epoch the caller saw; the write is refused if the case moved on meanwhile.
    pub from_epoch: i64,
    pub to_epoch: i64,
    pub new_recipient: String,
    /// Whose grants are deleted.
    pub revoked_reviewer: String,
    /// The reviewer grantees the caller expects to keep their grant rows; refused if it changed
    /// meanwhile.
    pub remaining_reviewers: Vec<String>,
    /// The new epoch's grants: the escrow grant, and one per remaining reviewer whose account
    /// is active (a reviewer grant whose account is not active when written is left out).
    pub grants: Vec<GrantRecord>,
}

/// An account and its login material, read together in one query.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ReviewerWithSecrets {
    #[sqlx(flatten)]
    pub reviewer: ReviewerRecord,
    #[sqlx(flatten)]
    pub secrets: ReviewerSecretsRecord,
}

// A receipt's lookup id is what an offline guess of the receipt is checked against, and case
// references stay out of the log: these records show neither (see `debug_showing_only`).

debug_showing_only!(CaseRecord { key_epoch, status });

debug_showing_only!(GrantRecord {
    grantee_kind,
    epoch
});

debug_showing_only!(EntryRecord { kind, epoch });

debug_showing_only!(Rekey {
    from_epoch,
    to_epoch
});

debug_showing_only!(ReporterAccessRecord {
    kdf_params,
    failed_attempts
});

debug_showing_only!(IdempotencyRecord { expires_at });

debug_showing_only!(NewSealedCase {
    case,
    reporter_access,
    idempotency
});

debug_showing_only!(EnrolmentRecord {
    kind,
    role,
    expires_at,
    spent
});

#[cfg(test)]
mod tests {
    use super::*;

    /// A lookup id, a key hash or a token hash, and what is sealed under them, never appear in
    /// a record's `Debug` (in any of the spellings a `{:?}` of bytes takes).
    #[test]
    fn the_debug_of_records_leaves_out_secrets_case_references_and_details() {
        let marker = vec![0xA5_u8; 32];
        let spellings = |bytes: &[u8]| {
            [
                format!("{bytes:?}"),
                format!("{}", bytes[0]),
                format!("{:x}", bytes[0]),
            ]
        };
        let access = ReporterAccessRecord {
            lookup_id: marker.clone(),
            case_id: "K7QM-3XTA-9PWD".into(),
            kdf_params: "argon2id$v=19$m=19456,t=2,p=1".into(),
            reporter_recipient: "age1reporter".into(),
            sealed_identity: marker.clone(),
            failed_attempts: 0,
        };
        let idempotency = IdempotencyRecord {
            key_hash: marker.clone(),
            sealed_response: marker.clone(),
            expires_at: 0,
        };
        let enrolment = EnrolmentRecord {
            token_hash: marker.clone(),
            kind: "setup".into(),
            role: "admin".into(),
            desk_ids: String::new(),
            reviewer_id: None,
            pending_totp: Some(marker.clone()),
            expires_at: 0,
            spent: false,
            username: None,
        };
        let case = CaseRecord {
            id: "K7QM-3XTA-9PWD".into(),
            desk_id: "desk".into(),
            key_epoch: 1,
            case_recipient: "age1case".into(),
            status: "new".into(),
            priority: "normal".into(),
            incident_type: "photographing".into(),
            mechanism_kind: Some("upr".into()),
            session_label: Some("UPR 45".into()),
            perpetrator_kind: Some("gongo_representative".into()),
            incident_month: None,
            consent_ohchr: false,
            consent_sg_report: "no".into(),
            consent_partners: false,
            consent_statistics: false,
            consent_contact: false,
            received_on: "2026-11-29".into(),
            updated_on: "2026-11-29".into(),
        };
        let grant = GrantRecord {
            case_id: "K7QM-3XTA-9PWD".into(),
            grantee_kind: "escrow".into(),
            grantee_id: "escrow".into(),
            epoch: 1,
            ciphertext: marker.clone(),
        };
        let entry = EntryRecord {
            id: "7W2Q0H8M4T1C9D5E".into(),
            case_id: "K7QM-3XTA-9PWD".into(),
            kind: "report".into(),
            author: "reporter".into(),
            epoch: 1,
            created_on: "2026-11-29".into(),
            ciphertext: marker.clone(),
        };
        let sealed = NewSealedCase {
            case: case.clone(),
            grants: vec![grant.clone()],
            report: entry.clone(),
            reporter_access: access.clone(),
            idempotency: Some(idempotency.clone()),
            now: 0,
        };
        let case_shown = format!("{case:?}");
        for detail in ["UPR 45", "gongo", "photographing"] {
            assert!(!case_shown.contains(detail), "{case_shown}");
        }
        assert!(!format!("{entry:?}").contains("7W2Q"));
        for shown in [
            format!("{access:?}"),
            format!("{idempotency:?}"),
            format!("{enrolment:?}"),
            case_shown.clone(),
            format!("{grant:?}"),
            format!("{entry:?}"),
            format!("{sealed:?}"),
        ] {
            for spelling in spellings(&marker) {
                assert!(!shown.contains(&spelling), "{shown}");
            }
            assert!(!shown.contains("K7QM"), "{shown}");
        }
    }
}
