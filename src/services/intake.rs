//! Filing a report (issue 2, item 6): seal it the moment it is parsed, write it in one
//! transaction, and answer a retried request with the first answer.

use std::sync::Arc;

use age::secrecy::SecretString;
use anyhow::Context;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{Vault, hex};
use crate::crypto::case_key::{CaseIdentity, seal_grant};
use crate::crypto::envelope::{EnvelopeBinding, seal_envelope};
use crate::crypto::kdf::Argon2Params;
use crate::crypto::pool::PoolError;
use crate::crypto::receipt::{InstanceSalt, derive_receipt_keys, seal_new_reporter_identity};
use crate::crypto::symmetric::SymmetricKey;
use crate::domain::{CaseRef, CaseStatus, EntryId, EntryKind, IdempotencyKey, ReceiptCode, Report};
use crate::storage::{
    CaseRecord, EntryRecord, GrantRecord, IdempotencyRecord, MemberRecipient, NewSealedCase,
    ReporterAccessRecord, StoreError,
};

/// The answer to a filed report.
pub struct FiledReport {
    pub case_ref: CaseRef,
    /// Shown once to the reporter; never stored in clear.
    pub receipt: SecretString,
    /// True when this answers a retry of an earlier request with the same Idempotency-Key.
    pub replayed: bool,
}

/// Why a report was not filed.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The report names a desk that does not exist.
    #[error("unknown desk")]
    UnknownDesk,
    /// The Idempotency-Key was used before for a different report.
    #[error("the idempotency key was used for a different report")]
    IdempotencyKeyReused,
    /// Too many reports are being sealed right now.
    #[error("intake is saturated")]
    Saturated,
    /// Anything else: nothing was written.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for IntakeError {
    fn from(error: StoreError) -> Self {
        Self::Internal(error.into())
    }
}

/// The grantee id of the escrow key's grant.
pub const ESCROW_GRANTEE: &str = "escrow";
/// Who wrote the report entry.
pub const REPORTER_AUTHOR: &str = "reporter";

impl Vault {
    /// The desks a report may be addressed to, for the intake form.
    pub async fn intake_desks(&self) -> Result<Vec<crate::storage::DeskRecord>, StoreError> {
        self.store.desks().await
    }

    /// Files a validated report. With an Idempotency-Key, a retry returns the first answer; a
    /// different report under the same key is refused.
    pub async fn file_report(
        &self,
        report: Report,
        idempotency_key: Option<IdempotencyKey>,
    ) -> Result<FiledReport, IntakeError> {
        let report_json = serialise_exactly(&report)?;
        let report_digest: [u8; 32] = Sha256::digest(report_json.as_slice()).into();
        let now = super::unix_now();
        let idempotency = idempotency_key
            .map(|key| Arc::new(IdempotencySeal::derive(&key, &self.instance.receipt_salt)));
        if let Some(seal) = &idempotency
            && let Some(record) = self.store.idempotency_record(&seal.key_hash, now).await?
        {
            return seal.replay(&record, &report_digest);
        }
        let desk = self
            .store
            .intake_desk(report.desk().as_str())
            .await?
            .ok_or(IntakeError::UnknownDesk)?;
        let job = IntakeJob {
            report,
            report_json,
            report_digest,
            desk_id: desk.desk_id,
            members: desk.members,
            escrow: self.instance.escrow_recipient.clone(),
            salt: self.instance.receipt_salt.clone(),
            argon2: self.argon2,
            idempotency: idempotency.clone(),
            now,
            expires_at: expiry(now, self.idempotency_ttl_hours),
        };
        let sealed = self
            .intake_crypto
            .run(move || seal_intake(job))
            .await
            .map_err(|error| match error {
                PoolError::Saturated => IntakeError::Saturated,
                PoolError::Aborted => IntakeError::Internal(error.into()),
            })??;
        match self.store.insert_sealed_case(&sealed.rows).await {
            Ok(()) => Ok(FiledReport {
                case_ref: sealed.case_ref,
                receipt: sealed.receipt.formatted(),
                replayed: false,
            }),
            // A concurrent retry with the same key won the race: answer as it did.
            Err(StoreError::Conflict("idempotency_key")) => {
                let seal = idempotency.context("an idempotency conflict without a key")?;
                let record = self
                    .store
                    .idempotency_record(&seal.key_hash, now)
                    .await?
                    .context("the conflicting idempotency record vanished")?;
                seal.replay(&record, &report_digest)
            }
            Err(error) => Err(IntakeError::Internal(
                anyhow::Error::new(error).context("could not store the sealed case"),
            )),
        }
    }
}

/// Serialises the report into a buffer of exactly the right size: a growing buffer would leave
/// unwiped copies of the text behind.
fn serialise_exactly(report: &Report) -> Result<Zeroizing<Vec<u8>>, IntakeError> {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, report).context("could not serialise the report")?;
    let mut json = Zeroizing::new(Vec::with_capacity(counter.0));
    serde_json::to_writer(&mut *json, report).context("could not serialise the report")?;
    Ok(json)
}

/// Expiry of an idempotency record, rounded up to the next UTC midnight so that it does not
/// time-stamp the report more precisely than `received_on` (a record lives one to two days).
fn expiry(now: i64, ttl_hours: u32) -> i64 {
    const DAY: i64 = 86_400;
    let expires = now + i64::from(ttl_hours) * 3600;
    (expires + DAY - 1) / DAY * DAY
}

/// The lookup hash and the sealing key of one Idempotency-Key (DESIGN §3, "Idempotent intake
/// without a stored receipt").
struct IdempotencySeal {
    key_hash: [u8; 32],
    key: SymmetricKey,
}

impl IdempotencySeal {
    fn derive(key: &IdempotencyKey, salt: &InstanceSalt) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"incident-vault/idempotency/lookup/v1\0");
        hasher.update(key.as_bytes());
        Self {
            key_hash: hasher.finalize().into(),
            key: SymmetricKey::derive(
                key.as_bytes(),
                &salt.0,
                "incident-vault/idempotency/seal/v1",
            ),
        }
    }

    /// The stored answer: `case_ref \n receipt digits \n report digest (hex)`.
    fn seal(&self, case_ref: &CaseRef, receipt: &ReceiptCode, report_digest: &[u8; 32]) -> Vec<u8> {
        // Written into a buffer of the exact size: `format!` would grow its String by doubling
        // and leave a freed, unwiped copy of the receipt behind.
        let digest = hex(report_digest);
        let length = case_ref.as_str().len() + 1 + receipt.digits().len() + 1 + digest.len();
        let mut plaintext = Zeroizing::new(String::with_capacity(length));
        for part in [case_ref.as_str(), "\n", receipt.digits(), "\n", &digest] {
            plaintext.push_str(part);
        }
        debug_assert_eq!(plaintext.capacity(), length);
        self.key.seal(&self.key_hash, plaintext.as_bytes())
    }

    fn replay(
        &self,
        record: &IdempotencyRecord,
        report_digest: &[u8; 32],
    ) -> Result<FiledReport, IntakeError> {
        let plaintext = self
            .key
            .open(&self.key_hash, &record.sealed_response)
            .context("could not open a stored idempotent answer")?;
        let text =
            std::str::from_utf8(&plaintext).context("a stored idempotent answer is not text")?;
        let mut lines = text.split('\n');
        let (Some(case_ref), Some(digits), Some(digest), None) =
            (lines.next(), lines.next(), lines.next(), lines.next())
        else {
            return Err(anyhow::anyhow!("a stored idempotent answer is malformed").into());
        };
        if digest != hex(report_digest) {
            return Err(IntakeError::IdempotencyKeyReused);
        }
        let receipt = ReceiptCode::parse(digits).context("a stored receipt is malformed")?;
        Ok(FiledReport {
            case_ref: CaseRef::parse(case_ref).context("a stored case reference is malformed")?,
            receipt: receipt.formatted(),
            replayed: true,
        })
    }
}

/// What the sealing job needs: owned, so it can cross to the crypto pool's threads.
struct IntakeJob {
    report: Report,
    report_json: Zeroizing<Vec<u8>>,
    report_digest: [u8; 32],
    desk_id: String,
    members: Vec<MemberRecipient>,
    escrow: age::x25519::Recipient,
    salt: InstanceSalt,
    argon2: Argon2Params,
    idempotency: Option<Arc<IdempotencySeal>>,
    now: i64,
    expires_at: i64,
}

struct SealedIntake {
    case_ref: CaseRef,
    receipt: ReceiptCode,
    rows: NewSealedCase,
}

/// The key work of intake, per DESIGN §3: receipt KDF, a fresh case identity, the sealed report,
/// one grant per desk member and one to escrow; then the case identity is dropped (zeroized).
fn seal_intake(job: IntakeJob) -> Result<SealedIntake, IntakeError> {
    const EPOCH: u32 = 1;
    let receipt = ReceiptCode::generate();
    let receipt_keys =
        derive_receipt_keys(&receipt, &job.salt, &job.argon2).context("the receipt KDF failed")?;
    let case_ref = CaseRef::generate();
    let reporter = seal_new_reporter_identity(&receipt_keys, &case_ref);

    let entry_id = EntryId::generate();
    let case_identity = CaseIdentity::generate();
    let case_recipient = case_identity.recipient();
    let binding = EnvelopeBinding {
        case: &case_ref,
        entry: &entry_id,
        kind: EntryKind::Report,
    };
    let envelope = seal_envelope(
        binding,
        &job.report_json,
        &[case_recipient.as_age_recipient()],
    )
    .context("could not seal the report")?;

    let mut grants = Vec::with_capacity(job.members.len() + 1);
    let escrow_grant = seal_grant(&case_identity, &case_ref, EPOCH, &job.escrow)
        .context("could not seal the escrow grant")?;
    grants.push(grant_row(
        &case_ref,
        "escrow",
        ESCROW_GRANTEE,
        EPOCH,
        escrow_grant,
    ));
    for member in &job.members {
        let Ok(recipient) = member.recipient.parse::<age::x25519::Recipient>() else {
            tracing::error!(reviewer = %member.reviewer_id, "skipping a desk member whose stored recipient is corrupt");
            continue;
        };
        let grant = seal_grant(&case_identity, &case_ref, EPOCH, &recipient)
            .context("could not seal a member grant")?;
        grants.push(grant_row(
            &case_ref,
            "reviewer",
            &member.reviewer_id,
            EPOCH,
            grant,
        ));
    }
    drop(case_identity);

    let today = super::today();
    let report = &job.report;
    let consent = report.consent();
    let idempotency = job.idempotency.as_ref().map(|seal| IdempotencyRecord {
        key_hash: seal.key_hash.to_vec(),
        sealed_response: seal.seal(&case_ref, &receipt, &job.report_digest),
        expires_at: job.expires_at,
    });
    let rows = NewSealedCase {
        case: CaseRecord {
            id: case_ref.to_string(),
            desk_id: job.desk_id,
            key_epoch: i64::from(EPOCH),
            case_recipient: case_recipient.to_string(),
            status: CaseStatus::New.as_str().to_owned(),
            priority: "normal".to_owned(),
            incident_type: report.incident_type().as_str().to_owned(),
            mechanism_kind: report.mechanism_kind().map(|kind| kind.as_str().to_owned()),
            session_label: report.session_label(),
            perpetrator_kind: report
                .perpetrator_kind()
                .map(|kind| kind.as_str().to_owned()),
            incident_month: report.incident_month().map(str::to_owned),
            consent_ohchr: consent.share_with_ohchr,
            consent_sg_report: consent.sg_report.as_str().to_owned(),
            consent_partners: consent.share_with_partners,
            consent_statistics: consent.aggregate_statistics,
            consent_contact: consent.contact.allowed,
            received_on: today.clone(),
            updated_on: today.clone(),
        },
        grants,
        report: EntryRecord {
            id: entry_id.to_string(),
            case_id: case_ref.to_string(),
            kind: EntryKind::Report.as_str().to_owned(),
            author: REPORTER_AUTHOR.to_owned(),
            epoch: i64::from(EPOCH),
            created_on: today,
            ciphertext: envelope,
        },
        reporter_access: ReporterAccessRecord {
            lookup_id: receipt_keys.lookup_id.to_vec(),
            case_id: case_ref.to_string(),
            kdf_params: job.argon2.encode(),
            reporter_recipient: reporter.recipient,
            sealed_identity: reporter.sealed_identity,
            failed_attempts: 0,
        },
        idempotency,
        now: job.now,
    };
    Ok(SealedIntake {
        case_ref,
        receipt,
        rows,
    })
}

fn grant_row(
    case_ref: &CaseRef,
    kind: &str,
    grantee: &str,
    epoch: u32,
    ciphertext: Vec<u8>,
) -> GrantRecord {
    GrantRecord {
        case_id: case_ref.to_string(),
        grantee_kind: kind.to_owned(),
        grantee_id: grantee.to_owned(),
        epoch: i64::from(epoch),
        ciphertext,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    #[test]
    fn expiry_is_rounded_up_to_midnight() {
        assert_eq!(expiry(86_400 * 10 + 1, 24), 86_400 * 12);
        assert_eq!(expiry(86_400 * 10, 24), 86_400 * 11);
    }

    #[test]
    fn a_receipt_replayed_from_the_seal_is_the_one_sealed() {
        let key = IdempotencyKey::parse("0b6f3c2e-4a8d-4f7e-9c1a-2d3e4f5a6b7c").unwrap();
        let seal = IdempotencySeal::derive(&key, &InstanceSalt([3; 32]));
        let (case_ref, receipt) = (CaseRef::generate(), ReceiptCode::generate());
        let record = IdempotencyRecord {
            key_hash: seal.key_hash.to_vec(),
            sealed_response: seal.seal(&case_ref, &receipt, &[9; 32]),
            expires_at: 0,
        };
        let replayed = seal.replay(&record, &[9; 32]).unwrap();
        assert_eq!(replayed.case_ref, case_ref);
        assert_eq!(
            replayed.receipt.expose_secret(),
            receipt.formatted().expose_secret()
        );
        assert!(matches!(
            seal.replay(&record, &[8; 32]),
            Err(IntakeError::IdempotencyKeyReused)
        ));
    }
}
