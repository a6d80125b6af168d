//! Reviewer accounts (issue 3): the first-start setup code, enrolment with a password and a
//! TOTP secret, login, sessions and logout. Keys follow DESIGN §3: the password derives a login
//! verifier and a wrap key; the wrap key seals the reviewer's age identity and TOTP secret; each
//! session seals the identity again under a key derived from a token only the client holds.

use age::secrecy::{ExposeSecret, SecretString};
use anyhow::Context;

use super::admin::enrolment_token_hash;
use super::{Vault, today, unix_now};
use crate::crypto::kdf::Argon2Params;
use crate::crypto::pool::PoolError;
use crate::crypto::reviewer_key::{
    RecoveryCode, derive_recovery_wrap_key, derive_reviewer_keys, new_salt, open_identity,
    seal_identity, verifier_matches,
};
use crate::crypto::session::{SessionToken, open_identity_for_session, seal_identity_for_session};
use crate::crypto::symmetric::SymmetricKey;
use crate::crypto::totp::{self, TotpSecret, open_totp_secret, seal_totp_secret};
use crate::domain::desk::DEFAULT_DESK_SLUG;
use crate::domain::password::Password;
use crate::domain::username::Username;
use crate::domain::{EntryId, Role};
use crate::services::audit;
use crate::storage::{
    EnrolmentRecord, NewAuditEvent, Redemption, ReviewerRecord, ReviewerSecretsRecord,
    SecretsChange, SessionRecord, Store, StoreError,
};

/// How long the setup code printed on first start stays valid.
const SETUP_CODE_TTL_SECONDS: i64 = 3600;
/// A session ends this long after login, whatever happens.
pub const SESSION_ABSOLUTE_SECONDS: i64 = 12 * 3600;
/// A session ends after this long without a request.
pub const SESSION_IDLE_SECONDS: i64 = 30 * 60;
/// Failed logins allowed before each further one locks the account for a doubling delay.
const FREE_FAILURES: i64 = 3;
/// The longest lock-out after repeated failures.
const MAX_LOCK_SECONDS: i64 = 15 * 60;
/// How long a step-up (the password entered again within a session) allows sensitive actions.
pub const STEP_UP_SECONDS: i64 = 5 * 60;
/// The issuer shown in authenticator apps.
const TOTP_ISSUER: &str = "incident-vault";

/// Why an account operation failed. Login failures are deliberately one variant.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("the enrolment token is unknown, spent or expired")]
    InvalidToken,
    #[error("this username is taken")]
    UsernameTaken,
    #[error("the invitation was made for another username")]
    UsernameMismatch,
    #[error("the TOTP code is wrong or was used already")]
    InvalidTotp,
    #[error("the username, password or TOTP code is wrong, or the account is locked")]
    LoginFailed,
    #[error("the password is wrong")]
    WrongPassword,
    #[error("the session is unknown, expired or ended")]
    NoSession,
    #[error("too many logins are being checked right now")]
    Saturated,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for AccountError {
    fn from(error: StoreError) -> Self {
        Self::Internal(error.into())
    }
}

fn pool_error(error: PoolError) -> AccountError {
    match error {
        PoolError::Saturated => AccountError::Saturated,
        PoolError::Aborted => AccountError::Internal(error.into()),
    }
}

/// What a reviewer takes away from enrolment: shown once.
pub struct EnrolmentStarted {
    pub totp_uri: SecretString,
    pub recovery_code: SecretString,
}

/// A new session: the token goes to the client only.
pub struct NewSession {
    pub token: SecretString,
    pub expires_at: i64,
}

/// A reviewer authenticated by a session, holding their identity for this request only.
pub struct AuthenticatedReviewer {
    pub reviewer: ReviewerRecord,
    pub identity: age::x25519::Identity,
    /// The session's lookup hash.
    pub session_hash: [u8; 32],
    /// When the password was last re-entered in this session (step-up), Unix seconds.
    pub stepped_up_at: Option<i64>,
}

impl AuthenticatedReviewer {
    /// The account's role; an unknown spelling in the database counts as the least privileged.
    pub fn role(&self) -> Role {
        Role::parse(&self.reviewer.role).unwrap_or(Role::Reviewer)
    }

    /// Whether the password was re-entered in this session within [`STEP_UP_SECONDS`].
    pub fn has_fresh_step_up(&self, now: i64) -> bool {
        self.stepped_up_at
            .is_some_and(|at| at <= now && now - at <= STEP_UP_SECONDS)
    }
}

/// The key that seals the pending TOTP secret between the two enrolment steps.
fn enrolment_key(token: &str) -> SymmetricKey {
    let normalised = super::admin::normalised_token(token);
    SymmetricKey::derive(
        normalised.as_bytes(),
        &[],
        "incident-vault/enrolment/totp/v1",
    )
}

fn audit_event(actor: &str, action: &str, target: Option<&str>, outcome: &str) -> NewAuditEvent {
    NewAuditEvent {
        occurred_at: unix_now(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: target.map(str::to_owned),
        outcome: outcome.to_owned(),
    }
}

/// Issues a fresh one-time setup code while no account exists (replacing any earlier one);
/// `None` once an account exists. Stored only as a hash; expires after an hour.
pub async fn issue_setup_code(store: &dyn Store) -> Result<Option<SecretString>, AccountError> {
    let desk = store
        .desk_by_slug(DEFAULT_DESK_SLUG)
        .await?
        .context("the default desk is missing")?;
    let code = RecoveryCode::generate().formatted();
    let enrolment = EnrolmentRecord {
        token_hash: enrolment_token_hash(code.expose_secret()),
        kind: "setup".into(),
        role: "admin".into(),
        desk_ids: format!("{}:coordinator", desk.id),
        reviewer_id: None,
        pending_totp: None,
        expires_at: unix_now() + SETUP_CODE_TTL_SECONDS,
        spent: false,
        username: None,
    };
    let issued = audit_event("system", "setup.code_issued", None, "success");
    if !store
        .replace_setup_code(&enrolment, unix_now(), &issued, &audit::chain_hash)
        .await?
    {
        return Ok(None);
    }
    Ok(Some(code))
}

/// Deletes every session past its absolute expiry or idle past the limit; returns how many. A
/// session is otherwise deleted only when its token comes back, and its row holds the reviewer's
/// identity sealed under a key derived from that token: a cookie recovered later from a seized
/// laptop, with a copy of the database, would open it (DESIGN §3: expiry deletes the row). The
/// service runs this every minute.
pub async fn purge_dead_sessions(store: &dyn Store, now: i64) -> Result<u64, StoreError> {
    store
        .purge_dead_sessions(now, now - SESSION_IDLE_SECONDS)
        .await
}

impl Vault {
    /// Redeems an enrolment token with the new reviewer's own username and password. Creates the
    /// reviewer's age identity, TOTP secret and recovery code; the account stays pending until
    /// [`Vault::confirm_enrolment`].
    pub async fn enrol(
        &self,
        token: &str,
        username: Username,
        password: Password,
    ) -> Result<EnrolmentStarted, AccountError> {
        let token_hash = enrolment_token_hash(token);
        let now = unix_now();
        let enrolment = self
            .store
            .enrolment(&token_hash)
            .await?
            .filter(|enrolment| !enrolment.spent && enrolment.expires_at > now)
            .ok_or(AccountError::InvalidToken)?;
        // Redeemed already but not confirmed: the answer with the TOTP link and recovery code
        // may have been lost on the way (a 500, a dropped connection), and without it the
        // account can never be confirmed. The same request sent again (same username, same
        // password, checked against the pending account's verifier) replaces that pending
        // account; anyone else who saw the token gets nothing (the store also checks that the
        // account is still pending).
        let replacing = match &enrolment.reviewer_id {
            None => None,
            Some(earlier) => {
                let (pending, secrets) = self
                    .store
                    .reviewer_by_username(username.as_str())
                    .await?
                    .filter(|(pending, _)| &pending.id == earlier && pending.status == "pending")
                    .ok_or(AccountError::InvalidToken)?;
                let stored_params = Argon2Params::decode(&secrets.kdf_params)
                    .context("stored KDF parameters are malformed")?;
                Some((
                    pending.id,
                    secrets.password_salt,
                    stored_params,
                    secrets.login_verifier,
                ))
            }
        };
        if enrolment
            .username
            .as_deref()
            .is_some_and(|invited| invited != username.as_str())
        {
            return Err(AccountError::UsernameMismatch);
        }
        let memberships: Vec<(String, String)> = enrolment
            .desk_ids
            .split_whitespace()
            .filter_map(|pair| pair.split_once(':'))
            .map(|(desk, role)| (desk.to_owned(), role.to_owned()))
            .collect();
        let params = self.argon2;
        let reviewer_id = EntryId::generate().to_string();
        let account_username = username.as_str().to_owned();
        let pending_key = enrolment_key(token);
        let earlier_password = replacing
            .as_ref()
            .map(|(_, salt, params, verifier)| (salt.clone(), *params, verifier.clone()));
        let sealed = self
            .login_crypto
            .run(move || -> Result<_, AccountError> {
                if let Some((salt, params, verifier)) = earlier_password {
                    let earlier = derive_reviewer_keys(password.as_bytes(), &salt, &params)
                        .context("the password KDF failed")?;
                    if !verifier_matches(&verifier, &earlier.login_verifier) {
                        return Err(AccountError::InvalidToken);
                    }
                }
                let salt = new_salt();
                let keys = derive_reviewer_keys(password.as_bytes(), &salt, &params)
                    .context("the password KDF failed")?;
                let identity = crate::crypto::generate_identity();
                let totp_secret = TotpSecret::generate();
                let recovery = RecoveryCode::generate();
                let recovery_salt = new_salt();
                let recovery_key = derive_recovery_wrap_key(&recovery, &recovery_salt, &params)
                    .context("the recovery KDF failed")?;
                let secrets = ReviewerSecretsRecord {
                    reviewer_id: reviewer_id.clone(),
                    kdf_params: params.encode(),
                    password_salt: salt.to_vec(),
                    login_verifier: keys.login_verifier.to_vec(),
                    sealed_identity: seal_identity(&identity, &keys.wrap_key, &reviewer_id),
                    sealed_totp: seal_totp_secret(&totp_secret, &keys.wrap_key, &reviewer_id),
                    totp_last_step: None,
                    recovery_salt: recovery_salt.to_vec(),
                    recovery_sealed_identity: Some(seal_identity(
                        &identity,
                        &recovery_key,
                        &reviewer_id,
                    )),
                    must_change_password: false,
                    failed_logins: 0,
                    locked_until: 0,
                    recovery_sealed_totp: Some(seal_totp_secret(
                        &totp_secret,
                        &recovery_key,
                        &reviewer_id,
                    )),
                };
                let pending_totp =
                    pending_key.seal(reviewer_id.as_bytes(), totp_secret.expose_bytes());
                let totp_uri = totp_secret
                    .otpauth_uri(TOTP_ISSUER, &account_username)
                    .map_err(|_| anyhow::anyhow!("the username cannot label a TOTP secret"))?;
                let reviewer = ReviewerRecord {
                    id: reviewer_id,
                    username: account_username,
                    role: String::new(),
                    status: "pending".into(),
                    recipient: identity.to_public().to_string(),
                    created_on: today(),
                };
                Ok((
                    reviewer,
                    secrets,
                    pending_totp,
                    totp_uri,
                    recovery.formatted(),
                ))
            })
            .await
            .map_err(pool_error)??;
        let (mut reviewer, secrets, pending_totp, totp_uri, recovery_code) = sealed;
        reviewer.role = enrolment.role.clone();
        let redemption = Redemption {
            token_hash: &token_hash,
            now,
            replacing: replacing.as_ref().map(|(id, ..)| id.as_str()),
            reviewer: &reviewer,
            secrets: &secrets,
            pending_totp: &pending_totp,
            memberships: &memberships,
        };
        let outcome = match &replacing {
            Some((earlier, ..)) => format!("success:replaced:{earlier}"),
            None => "success".to_owned(),
        };
        let event = audit_event(
            &reviewer.id,
            &format!("enrolment.{}", enrolment.kind),
            Some(&reviewer.username),
            &outcome,
        );
        match self
            .store
            .redeem_enrolment(&redemption, &event, &audit::chain_hash)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict("username")) => return Err(AccountError::UsernameTaken),
            Err(StoreError::Conflict(_)) => return Err(AccountError::InvalidToken),
            Err(error) => return Err(error.into()),
        }
        Ok(EnrolmentStarted {
            totp_uri,
            recovery_code,
        })
    }

    /// Confirms enrolment with a first TOTP code; the account becomes active.
    pub async fn confirm_enrolment(&self, token: &str, code: &str) -> Result<(), AccountError> {
        let token_hash = enrolment_token_hash(token);
        let now = unix_now();
        let enrolment = self
            .store
            .enrolment(&token_hash)
            .await?
            .filter(|enrolment| !enrolment.spent && enrolment.expires_at > now)
            .ok_or(AccountError::InvalidToken)?;
        let (Some(reviewer_id), Some(pending)) = (&enrolment.reviewer_id, &enrolment.pending_totp)
        else {
            return Err(AccountError::InvalidToken);
        };
        let secret_bytes = enrolment_key(token)
            .open(reviewer_id.as_bytes(), pending)
            .map_err(|_| AccountError::InvalidToken)?;
        let secret =
            TotpSecret::from_bytes(&secret_bytes).context("a pending TOTP secret is malformed")?;
        let step = totp::verify(&secret, code, now.max(0) as u64, None)
            .ok_or(AccountError::InvalidTotp)?;
        let event = audit_event(reviewer_id, "enrolment.confirmed", None, "success");
        match self
            .store
            .confirm_enrolment(
                &token_hash,
                reviewer_id,
                step as i64,
                &event,
                &audit::chain_hash,
            )
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => return Err(AccountError::InvalidToken),
            Err(error) => return Err(error.into()),
        }
        Ok(())
    }

    /// Logs a reviewer in with password and TOTP. An unknown user costs the same KDF work as a
    /// known one, and every failure is the same error.
    pub async fn login(
        &self,
        username: &str,
        password: SecretString,
        code: SecretString,
    ) -> Result<NewSession, AccountError> {
        let now = unix_now();
        // Under a flood, refuse before touching the database: the answer would be the same 503
        // after the lookup, and the lookup's CPU belongs to the reviewers already logged in.
        if self.login_crypto.is_saturated() {
            return Err(pool_error(PoolError::Saturated));
        }
        let found = self.store.reviewer_by_username(username).await?;
        let params = self.argon2;
        let (salt, stored_params) = match &found {
            Some((_, secrets)) => (secrets.password_salt.clone(), secrets.kdf_params.clone()),
            None => (vec![0u8; 16], params.encode()),
        };
        let params =
            Argon2Params::decode(&stored_params).context("stored KDF parameters are malformed")?;
        let keys = self
            .login_crypto
            .run(move || derive_reviewer_keys(password.expose_secret().as_bytes(), &salt, &params))
            .await
            .map_err(pool_error)?
            .context("the password KDF failed")?;
        let Some((reviewer, secrets)) = found else {
            self.audit_login("unknown", "unknown_user").await?;
            return Err(AccountError::LoginFailed);
        };
        let refuse = |reason: &'static str| self.refuse_login(&reviewer, now, reason);
        if reviewer.status != "active" {
            return Err(refuse("inactive").await);
        }
        if secrets.locked_until > now {
            return Err(refuse("locked").await);
        }
        if !verifier_matches(&secrets.login_verifier, &keys.login_verifier) {
            return Err(refuse("bad_password").await);
        }
        let Ok(totp_secret) = open_totp_secret(&secrets.sealed_totp, &keys.wrap_key, &reviewer.id)
        else {
            return Err(refuse("sealed_totp_unreadable").await);
        };
        let step = self
            .verify_totp(&reviewer, &secrets, &totp_secret, &code, now)
            .await?;
        let identity = open_identity(&secrets.sealed_identity, &keys.wrap_key, &reviewer.id)
            .context("the sealed identity does not open with a correct password")?;
        let (session, record) = new_session(&reviewer, &identity, now);
        // One transaction: the step is spent, the session stored and the login audited together,
        // and only if no parallel guess locked the account or changed it meanwhile.
        match self
            .store
            .complete_login(
                &record,
                step,
                &secrets.login_verifier,
                now,
                &audit_event(&reviewer.id, "login", None, "success"),
                &audit::chain_hash,
            )
            .await
        {
            Ok(()) => Ok(session),
            // Disabled while the KDF ran: refused as an inactive account is at the start.
            Err(StoreError::Conflict("inactive")) => Err(refuse("inactive").await),
            Err(StoreError::Conflict(_)) => Err(refuse("spent_totp_or_locked").await),
            Err(error) => Err(error.into()),
        }
    }

    /// Counts a failed login, locks the account for a doubling delay after a few, audits it, and
    /// gives the one generic error (or the storage error that stopped it).
    async fn refuse_login(
        &self,
        reviewer: &ReviewerRecord,
        now: i64,
        reason: &'static str,
    ) -> AccountError {
        let event = audit_event(&reviewer.id, "login", None, &format!("failure:{reason}"));
        match self.count_failure(&reviewer.id, now, event).await {
            Ok(()) => AccountError::LoginFailed,
            Err(error) => error,
        }
    }

    async fn audit_login(&self, actor: &str, reason: &str) -> Result<(), AccountError> {
        let outcome = format!("failure:{reason}");
        audit::record(
            self.store.as_ref(),
            audit_event(actor, "login", None, &outcome),
        )
        .await?;
        Ok(())
    }

    /// Finds the live session of a token and opens the reviewer's identity for this request.
    pub async fn authenticate(&self, token: &str) -> Result<AuthenticatedReviewer, AccountError> {
        let token = SessionToken::parse(token).map_err(|_| AccountError::NoSession)?;
        let hash = token.lookup_hash();
        let now = unix_now();
        let (session, reviewer) = self
            .store
            .live_session(&hash, now)
            .await?
            .ok_or(AccountError::NoSession)?;
        if now - session.last_seen_at > SESSION_IDLE_SECONDS {
            self.store.delete_session(&hash).await?;
            return Err(AccountError::NoSession);
        }
        let identity = open_identity_for_session(&session.sealed_identity, &token, &reviewer.id)
            .map_err(|_| AccountError::NoSession)?;
        if now - session.last_seen_at >= 60 {
            self.store.touch_session(&hash, now).await?;
        }
        Ok(AuthenticatedReviewer {
            reviewer,
            identity,
            session_hash: hash,
            stepped_up_at: session.stepped_up_at,
        })
    }

    /// Ends a session. Unknown tokens are ignored: logging out twice is fine.
    pub async fn logout(&self, token: &str) -> Result<(), AccountError> {
        if let Ok(token) = SessionToken::parse(token) {
            self.store.delete_session(&token.lookup_hash()).await?;
        }
        Ok(())
    }
}

/// What a recovery gives back: a session, and a fresh recovery code (the old one is spent).
pub struct Recovered {
    pub session: NewSession,
    pub recovery_code: SecretString,
}

/// Why the offline tools could not open a reviewer's identity. A locked account is said to be
/// locked before any password is checked, so that the lock still slows guessing here; only
/// someone who gave the right password learns that the account is not active. A wrong password
/// and an unknown username give the same words (though not the same time: this runs with
/// access to the database, which holds the verifiers anyway).
#[derive(Debug, thiserror::Error)]
pub enum UnlockError {
    #[error("the username or password is wrong")]
    WrongCredentials,
    #[error("the password is right, but the account is {0}, not active")]
    NotActive(String),
    #[error(
        "the account is locked after failed logins for {0} more seconds; no password was \
         tried: try again then"
    )]
    Locked(i64),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for UnlockError {
    fn from(error: StoreError) -> Self {
        Self::Internal(error.into())
    }
}

/// Opens a reviewer's identity with their password, for the offline tools (`reviewer
/// export-identity`, batch grants from the command line). Runs one argon2id on the crypto pool
/// (`crypto::pool`). Every attempt is audited.
pub async fn unlock_with_password(
    store: &dyn Store,
    username: &str,
    password: SecretString,
) -> Result<(ReviewerRecord, age::x25519::Identity), UnlockError> {
    let found = store.reviewer_by_username(username).await?;
    let Some((reviewer, secrets)) = found else {
        return Err(UnlockError::WrongCredentials);
    };
    let now = unix_now();
    if secrets.locked_until > now {
        return Err(UnlockError::Locked(secrets.locked_until - now));
    }
    let params =
        Argon2Params::decode(&secrets.kdf_params).context("stored KDF parameters are malformed")?;
    let salt = secrets.password_salt.clone();
    let keys = tokio::task::spawn_blocking(move || {
        derive_reviewer_keys(password.expose_secret().as_bytes(), &salt, &params)
    })
    .await
    .context("the password KDF was aborted")?
    .context("the password KDF failed")?;
    // The offline tools obey the same rules as a login: a disabled or locked account opens
    // nothing, and a wrong password counts towards the lock-out.
    let usable = reviewer.status == "active";
    let password_right = verifier_matches(&secrets.login_verifier, &keys.login_verifier);
    if !password_right {
        let event = audit_event(
            "cli",
            "reviewer.identity_unlocked",
            Some(&reviewer.id),
            "failure",
        );
        store
            .record_login_failure(&reviewer.id, now, lock_deadline, &event, &audit::chain_hash)
            .await?;
        return Err(UnlockError::WrongCredentials);
    }
    let opened = usable
        .then(|| open_identity(&secrets.sealed_identity, &keys.wrap_key, &reviewer.id).ok())
        .flatten();
    if opened.is_some() {
        let event = audit_event(
            "cli",
            "reviewer.identity_unlocked",
            Some(&reviewer.id),
            "success",
        );
        store
            .record_password_unlock(&reviewer.id, now, &event, &audit::chain_hash)
            .await?;
    } else {
        audit::record(
            store,
            audit_event(
                "cli",
                "reviewer.identity_unlocked",
                Some(&reviewer.id),
                "failure",
            ),
        )
        .await?;
    }
    match opened {
        Some(identity) => Ok((reviewer, identity)),
        None if reviewer.status != "active" => Err(UnlockError::NotActive(reviewer.status)),
        None => Err(UnlockError::Internal(anyhow::anyhow!(
            "the stored identity of {} does not open with the right password",
            reviewer.username
        ))),
    }
}

impl Vault {
    /// The password entered again within a session (step-up): sensitive actions such as granting
    /// a case need one within [`STEP_UP_SECONDS`]. A wrong password counts as a failed login.
    pub async fn step_up(
        &self,
        caller: &AuthenticatedReviewer,
        password: SecretString,
    ) -> Result<(), AccountError> {
        let now = unix_now();
        let secrets = self
            .store
            .reviewer_secrets(&caller.reviewer.id)
            .await?
            .context("an authenticated reviewer has no login material")?;
        let matches = self.password_matches(&secrets, password).await?.is_some();
        // The lock-out is checked again by the write: a parallel guess that failed while this
        // one ran its KDF has locked the account, and this one must not pass either.
        let recorded = if matches && secrets.locked_until <= now {
            let stepped_up = audit_event(&caller.reviewer.id, "session.step_up", None, "success");
            match self
                .store
                .record_step_up(&caller.session_hash, now, &stepped_up, &audit::chain_hash)
                .await
            {
                Ok(()) => true,
                Err(StoreError::Conflict(_)) => false,
                Err(error) => return Err(error.into()),
            }
        } else {
            false
        };
        if !recorded {
            let event = audit_event(&caller.reviewer.id, "session.step_up", None, "failure");
            self.count_failure(&caller.reviewer.id, now, event).await?;
            return Err(AccountError::WrongPassword);
        }
        Ok(())
    }

    /// Changes the caller's password: the identity and TOTP secret are sealed again under the new
    /// password's wrap key, and every session of the account ends (this one too). The KDF
    /// parameters stay those stored, because the recovery code was derived with them.
    pub async fn change_password(
        &self,
        caller: &AuthenticatedReviewer,
        current: SecretString,
        new_password: Password,
    ) -> Result<(), AccountError> {
        let now = unix_now();
        let reviewer_id = caller.reviewer.id.clone();
        let stored = self
            .store
            .reviewer_secrets(&reviewer_id)
            .await?
            .context("an authenticated reviewer has no login material")?;
        // A locked account cannot change its password either: the change would clear the lock.
        let locked = stored.locked_until > now;
        let old_keys = self.password_matches(&stored, current).await?;
        let Some(old_keys) = old_keys.filter(|_| !locked) else {
            let event = audit_event(&reviewer_id, "account.password_change", None, "failure");
            self.count_failure(&reviewer_id, now, event).await?;
            return Err(AccountError::WrongPassword);
        };
        let params = Argon2Params::decode(&stored.kdf_params)
            .context("stored KDF parameters are malformed")?;
        let identity = caller.identity.clone();
        let expected_verifier = stored.login_verifier.clone();
        let id = reviewer_id.clone();
        let replacement = self
            .reviewer_crypto
            .run(move || -> Result<ReviewerSecretsRecord, AccountError> {
                let totp_secret = open_totp_secret(&stored.sealed_totp, &old_keys.wrap_key, &id)
                    .context("the TOTP secret does not open with a correct password")?;
                let salt = new_salt();
                let keys = derive_reviewer_keys(new_password.as_bytes(), &salt, &params)
                    .context("the password KDF failed")?;
                Ok(ReviewerSecretsRecord {
                    password_salt: salt.to_vec(),
                    login_verifier: keys.login_verifier.to_vec(),
                    sealed_identity: seal_identity(&identity, &keys.wrap_key, &id),
                    sealed_totp: seal_totp_secret(&totp_secret, &keys.wrap_key, &id),
                    must_change_password: false,
                    ..stored
                })
            })
            .await
            .map_err(pool_error)??;
        // Checked against the request's time: a lock set by a parallel guess since then holds
        // even if it is short enough to have run out while this one waited for its KDF.
        let change = SecretsChange {
            secrets: &replacement,
            expected_verifier: &expected_verifier,
            now,
            new_session: None,
            totp_step: None,
        };
        let event = audit_event(&reviewer_id, "account.password_change", None, "success");
        match self
            .store
            .replace_login_secrets(&change, &event, &audit::chain_hash)
            .await
        {
            Ok(()) => Ok(()),
            // Disabled meanwhile: its sessions are gone, this one included; no guess to count.
            Err(StoreError::Conflict("inactive")) => Err(AccountError::NoSession),
            Err(StoreError::Conflict(_)) => {
                let event = audit_event(&reviewer_id, "account.password_change", None, "failure");
                self.count_failure(&reviewer_id, now, event).await?;
                Err(AccountError::WrongPassword)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The recovery code replaces a forgotten password, once. The TOTP code is still required.
    /// Everything is sealed again under the new password and a new recovery code (returned), every
    /// other session ends, and a new session starts. Failures are one generic error, counted and
    /// audited like failed logins.
    pub async fn recover(
        &self,
        username: &str,
        recovery_code: SecretString,
        code: SecretString,
        new_password: Password,
    ) -> Result<Recovered, AccountError> {
        let now = unix_now();
        let found = self.store.reviewer_by_username(username).await?;
        let parsed = RecoveryCode::parse(recovery_code.expose_secret()).ok();
        let (salt, stored_params) = match &found {
            Some((_, secrets)) => (secrets.recovery_salt.clone(), secrets.kdf_params.clone()),
            None => (vec![0u8; 16], self.argon2.encode()),
        };
        let params =
            Argon2Params::decode(&stored_params).context("stored KDF parameters are malformed")?;
        let recovery_key = self
            .login_crypto
            .run(move || {
                // A malformed code costs the same work as a wrong one.
                let fallback = RecoveryCode::generate();
                let code = parsed.as_ref().unwrap_or(&fallback);
                derive_recovery_wrap_key(code, &salt, &params).map(|key| (key, parsed.is_some()))
            })
            .await
            .map_err(pool_error)?
            .context("the recovery KDF failed")?;
        let (recovery_key, well_formed) = recovery_key;
        let Some((reviewer, secrets)) = found else {
            self.audit_login("unknown", "unknown_user").await?;
            return Err(AccountError::LoginFailed);
        };
        let refuse = |reason: &'static str| self.refuse_login(&reviewer, now, reason);
        if reviewer.status != "active" {
            return Err(refuse("inactive").await);
        }
        if secrets.locked_until > now {
            return Err(refuse("locked").await);
        }
        let opened = well_formed
            .then(|| {
                let identity = secrets
                    .recovery_sealed_identity
                    .as_deref()
                    .map(|sealed| open_identity(sealed, &recovery_key, &reviewer.id))?;
                let totp = secrets
                    .recovery_sealed_totp
                    .as_deref()
                    .map(|sealed| open_totp_secret(sealed, &recovery_key, &reviewer.id))?;
                Some((identity.ok()?, totp.ok()?))
            })
            .flatten();
        let Some((identity, totp_secret)) = opened else {
            return Err(refuse("bad_recovery_code").await);
        };
        // The step is spent by the write below, with the new secrets: spent here, a recovery
        // shed for a busy crypto pool or cut off by a hang-up would have used up the code and
        // cleared the failure count, unaudited, and the retry would have been refused as a
        // replay.
        let totp_step = self
            .verify_totp(&reviewer, &secrets, &totp_secret, &code, now)
            .await?;
        let params = self.argon2;
        let id = reviewer.id.clone();
        let sealed_identity = identity.clone();
        let stored = secrets.clone();
        let (replacement, new_recovery) = self
            .login_crypto
            .run(move || -> Result<_, AccountError> {
                let salt = new_salt();
                let keys = derive_reviewer_keys(new_password.as_bytes(), &salt, &params)
                    .context("the password KDF failed")?;
                let recovery = RecoveryCode::generate();
                let recovery_salt = new_salt();
                let recovery_key = derive_recovery_wrap_key(&recovery, &recovery_salt, &params)
                    .context("the recovery KDF failed")?;
                let replacement = ReviewerSecretsRecord {
                    kdf_params: params.encode(),
                    password_salt: salt.to_vec(),
                    login_verifier: keys.login_verifier.to_vec(),
                    sealed_identity: seal_identity(&sealed_identity, &keys.wrap_key, &id),
                    sealed_totp: seal_totp_secret(&totp_secret, &keys.wrap_key, &id),
                    recovery_salt: recovery_salt.to_vec(),
                    recovery_sealed_identity: Some(seal_identity(
                        &sealed_identity,
                        &recovery_key,
                        &id,
                    )),
                    recovery_sealed_totp: Some(seal_totp_secret(&totp_secret, &recovery_key, &id)),
                    must_change_password: false,
                    ..stored
                };
                Ok((replacement, recovery.formatted()))
            })
            .await
            .map_err(pool_error)??;
        // New secrets, the end of every other session, the new session and the audit event are
        // one transaction: if any fails, the old recovery code still works (the client never
        // saw the new one). The lock-out is checked against the request's time, like every
        // re-check of it.
        let (session, record) = new_session(&reviewer, &identity, now);
        let change = SecretsChange {
            secrets: &replacement,
            expected_verifier: &secrets.login_verifier,
            now,
            new_session: Some(&record),
            totp_step: Some(totp_step),
        };
        let event = audit_event(&reviewer.id, "account.recovered", None, "success");
        match self
            .store
            .replace_login_secrets(&change, &event, &audit::chain_hash)
            .await
        {
            Ok(()) => {}
            // Disabled while this recovery ran: nothing changes, no session opens.
            Err(StoreError::Conflict("inactive")) => {
                return Err(self.refuse_login(&reviewer, now, "inactive").await);
            }
            Err(StoreError::Conflict(_)) => {
                return Err(self.refuse_login(&reviewer, now, "locked_or_changed").await);
            }
            Err(error) => return Err(error.into()),
        }
        Ok(Recovered {
            session,
            recovery_code: new_recovery,
        })
    }

    /// The time step of a TOTP code that is right now and later than the last one spent; a
    /// wrong code is a failed login. Spending the step is the caller's write.
    async fn verify_totp(
        &self,
        reviewer: &ReviewerRecord,
        secrets: &ReviewerSecretsRecord,
        totp_secret: &TotpSecret,
        code: &SecretString,
        now: i64,
    ) -> Result<i64, AccountError> {
        let last_step = secrets.totp_last_step.map(|step| step.max(0) as u64);
        match totp::verify(
            totp_secret,
            code.expose_secret(),
            now.max(0) as u64,
            last_step,
        ) {
            Some(step) => Ok(step as i64),
            None => Err(self.refuse_login(reviewer, now, "bad_totp").await),
        }
    }

    /// Runs the password KDF against stored material; the keys when the password is right.
    async fn password_matches(
        &self,
        secrets: &ReviewerSecretsRecord,
        password: SecretString,
    ) -> Result<Option<crate::crypto::reviewer_key::ReviewerKeys>, AccountError> {
        let params = Argon2Params::decode(&secrets.kdf_params)
            .context("stored KDF parameters are malformed")?;
        let salt = secrets.password_salt.clone();
        let keys = self
            .reviewer_crypto
            .run(move || derive_reviewer_keys(password.expose_secret().as_bytes(), &salt, &params))
            .await
            .map_err(pool_error)?
            .context("the password KDF failed")?;
        Ok(verifier_matches(&secrets.login_verifier, &keys.login_verifier).then_some(keys))
    }

    /// Counts a failed password entry towards the account's lock-out, and audits it.
    async fn count_failure(
        &self,
        reviewer_id: &str,
        now: i64,
        event: NewAuditEvent,
    ) -> Result<(), AccountError> {
        self.store
            .record_login_failure(reviewer_id, now, lock_deadline, &event, &audit::chain_hash)
            .await?;
        Ok(())
    }
}

/// A new session token for a reviewer whose identity is open, and the row that stores it: the
/// token's hash and the identity sealed under it, never the token.
fn new_session(
    reviewer: &ReviewerRecord,
    identity: &age::x25519::Identity,
    now: i64,
) -> (NewSession, SessionRecord) {
    let token = SessionToken::generate();
    let expires_at = now + SESSION_ABSOLUTE_SECONDS;
    let record = SessionRecord {
        token_hash: token.lookup_hash().to_vec(),
        reviewer_id: reviewer.id.clone(),
        created_at: now,
        last_seen_at: now,
        expires_at,
        sealed_identity: seal_identity_for_session(identity, &token, &reviewer.id),
        stepped_up_at: None,
    };
    let session = NewSession {
        token: token.to_text(),
        expires_at,
    };
    (session, record)
}

/// When an account with `failures` failed logins may try again.
fn lock_deadline(failures: i64, now: i64) -> i64 {
    if failures > FREE_FAILURES {
        let exponent = (failures - FREE_FAILURES - 1).min(20) as u32;
        now + (1i64 << exponent).min(MAX_LOCK_SECONDS)
    } else {
        0
    }
}
