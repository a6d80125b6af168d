//! The use cases. Each ties storage and crypto together; routes call these and nothing below.

pub mod accounts;
pub mod admin;
pub mod audit;
pub mod cases;
pub mod grants;
pub mod instance;
pub mod intake;
pub mod offline;

use std::sync::Arc;

use crate::crypto::kdf::Argon2Params;
use crate::crypto::pool::CryptoPool;
use crate::storage::Store;

pub use instance::InstanceKeys;

/// Everything a use case needs: the store, the crypto gates and the instance keys. Shared by all
/// HTTP workers.
pub struct Vault {
    pub store: Arc<dyn Store>,
    /// Sealing anonymous reports (one argon2id each).
    pub intake_crypto: CryptoPool,
    /// What anyone may start without a session: login, recovery and enrolment KDFs.
    pub login_crypto: CryptoPool,
    /// Work inside a reviewer's session: step-up and password-change KDFs, granting and
    /// re-keying. Three pools, so that neither a flood of anonymous reports nor one of password
    /// guesses can queue a coordinator's revoke or grant behind hundreds of argon2id runs.
    pub reviewer_crypto: CryptoPool,
    pub instance: InstanceKeys,
    pub argon2: Argon2Params,
    pub idempotency_ttl_hours: u32,
}

impl Vault {
    /// Whether the database answers a real query (readiness). A thin pass-through, kept here so
    /// that routes reach storage only through services.
    pub async fn database_ready(&self) -> Result<(), crate::storage::StoreError> {
        self.store.health_check().await
    }

    /// The backend's name, for the readiness answer.
    pub fn database_backend(&self) -> &'static str {
        self.store.backend()
    }
}

/// Unix seconds now.
pub(crate) fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Today's UTC day, `YYYY-MM-DD`: the only time stamp stored beside a case.
pub(crate) fn today() -> String {
    let date = time::OffsetDateTime::now_utc().date();
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// Lower-case hexadecimal of bytes (hashes in logs and answers).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
