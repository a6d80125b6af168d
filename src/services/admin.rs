//! Administration (issue 3, items 2, 5 and 8): invitations, roles, disabling, desks and their
//! members, and reading the audit log. An admin manages accounts but reads no case without a
//! grant: nothing here touches a case key.

use age::secrecy::SecretString;
use anyhow::Context;
use sha2::{Digest, Sha256};

use super::accounts::AuthenticatedReviewer;
use super::{Vault, audit, today, unix_now};
use crate::crypto::reviewer_key::RecoveryCode;
use crate::domain::{AccountStatus, DeskName, DeskRole, DeskSlug, EntryId, Role, Username};
use crate::storage::{
    AccountChange, AuditEventRecord, CaseFilter, DeskMemberRecord, DeskRecord, EnrolmentRecord,
    NewAuditEvent, ReviewerRecord, StoreError,
};

/// How long an invitation can be redeemed.
pub const INVITATION_TTL_SECONDS: i64 = 72 * 3600;
/// Largest page of the audit log.
pub const MAX_AUDIT_PAGE: i64 = 500;

/// Why an administrative request was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The caller's role does not allow this.
    #[error("this needs the {0} role")]
    Forbidden(&'static str),
    #[error("there is no account of that name")]
    UnknownAccount,
    #[error("there is no desk of that name")]
    UnknownDesk,
    /// A field is invalid: (field, why).
    #[error("{0}: {1}")]
    Invalid(&'static str, &'static str),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for AdminError {
    fn from(error: StoreError) -> Self {
        Self::Internal(error.into())
    }
}

/// An invitation, shown once to the admin, who passes it to the new reviewer.
pub struct Invitation {
    pub token: SecretString,
    pub expires_at: i64,
}

/// An account as the admin sees it: no secret, no key material.
#[derive(Debug, serde::Serialize)]
pub struct AccountView {
    pub username: String,
    pub role: String,
    pub status: String,
    pub created_on: String,
    /// `(desk slug, desk role)` pairs.
    pub desks: Vec<MembershipView>,
}

/// One desk membership.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MembershipView {
    pub desk: String,
    pub role: String,
}

/// A desk and its members.
#[derive(Debug, serde::Serialize)]
pub struct DeskView {
    pub slug: String,
    pub name: String,
    pub members: Vec<MemberView>,
}

/// A member of a desk.
#[derive(Debug, serde::Serialize)]
pub struct MemberView {
    pub username: String,
    pub role: String,
}

/// An enrolment token as typed, normalised: upper case, without hyphens or spaces. Written into
/// one wiped buffer (the token makes its holder an account, the setup code an admin), not
/// through `to_ascii_uppercase` and `replace`, which leave two unwiped copies.
pub(crate) fn normalised_token(token: &str) -> zeroize::Zeroizing<String> {
    let mut normalised = zeroize::Zeroizing::new(String::with_capacity(token.len()));
    for character in token
        .chars()
        .filter(|character| *character != '-' && !character.is_whitespace())
    {
        normalised.push(character.to_ascii_uppercase());
    }
    normalised
}

/// The stored hash of an enrolment token (same normalisation as the setup code).
pub(crate) fn enrolment_token_hash(token: &str) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(b"incident-vault/enrolment/v1\0");
    hasher.update(normalised_token(token).as_bytes());
    hasher.finalize().to_vec()
}

fn event(actor: &str, action: &str, target: &str) -> NewAuditEvent {
    NewAuditEvent {
        occurred_at: unix_now(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: Some(target.to_owned()),
        outcome: "success".into(),
    }
}

/// Refuses anyone but an admin (403), for routes to check before they read a body.
pub fn require_admin(caller: &AuthenticatedReviewer) -> Result<(), AdminError> {
    require(caller, &[Role::Admin])
}

fn require(caller: &AuthenticatedReviewer, allowed: &[Role]) -> Result<(), AdminError> {
    if allowed.contains(&caller.role()) {
        Ok(())
    } else if allowed == [Role::Admin] {
        Err(AdminError::Forbidden("admin"))
    } else {
        Err(AdminError::Forbidden("admin or auditor"))
    }
}

impl Vault {
    async fn account(&self, username: &str) -> Result<ReviewerRecord, AdminError> {
        self.store
            .reviewer_by_username(username)
            .await?
            .map(|(reviewer, _)| reviewer)
            .ok_or(AdminError::UnknownAccount)
    }

    async fn desk(&self, slug: &str) -> Result<DeskRecord, AdminError> {
        self.store
            .desk_by_slug(slug)
            .await?
            .ok_or(AdminError::UnknownDesk)
    }

    /// `POST /admin/reviewers`: a single-use enrolment token for a named account with a role and
    /// desks. The reviewer redeems it with their own password: the admin never knows it.
    pub async fn invite(
        &self,
        caller: &AuthenticatedReviewer,
        username: &Username,
        role: Role,
        desks: &[DeskSlug],
    ) -> Result<Invitation, AdminError> {
        require(caller, &[Role::Admin])?;
        if role == Role::Auditor && !desks.is_empty() {
            return Err(AdminError::Invalid(
                "desks",
                "auditors join no desk: desk members receive the desk's cases",
            ));
        }
        // A pending account does not hold the name: one whose enrolment expired unconfirmed is
        // removed by the next redemption (`Store::redeem_enrolment`), and one whose invitation
        // was redeemed but not confirmed is withdrawn by this invitation, with that invitation
        // (`Store::insert_enrolment`): inviting a name again is how an admin withdraws an
        // invitation that was lost or leaked, redeemed or not. An account that confirmed holds
        // it.
        if let Some((existing, _)) = self.store.reviewer_by_username(username.as_str()).await?
            && existing.status != "pending"
        {
            return Err(AdminError::Invalid("username", "is taken"));
        }
        let desk_role = if role == Role::Coordinator {
            DeskRole::Coordinator
        } else {
            DeskRole::Member
        };
        let mut pairs = Vec::with_capacity(desks.len());
        for slug in desks {
            let desk = self.desk(slug.as_str()).await?;
            pairs.push(format!("{}:{}", desk.id, desk_role.as_str()));
        }
        pairs.sort();
        pairs.dedup();
        let token = RecoveryCode::generate().formatted();
        let expires_at = unix_now() + INVITATION_TTL_SECONDS;
        // Replaces an open invitation of the same username (`Store::insert_enrolment`), which
        // the event then says.
        let invited = event(&caller.reviewer.id, "account.invited", username.as_str());
        let inserted = self
            .store
            .insert_enrolment(
                &EnrolmentRecord {
                    token_hash: enrolment_token_hash(age::secrecy::ExposeSecret::expose_secret(
                        &token,
                    )),
                    kind: "invitation".into(),
                    role: role.as_str().into(),
                    desk_ids: pairs.join(" "),
                    reviewer_id: None,
                    pending_totp: None,
                    expires_at,
                    spent: false,
                    username: Some(username.as_str().to_owned()),
                },
                unix_now(),
                &invited,
                &audit::chain_hash,
            )
            .await;
        match inserted {
            Err(StoreError::Conflict("invitation")) => {
                return Err(AdminError::Invalid(
                    "username",
                    "was invited by another request at the same moment; invite again if that \
                     invitation is lost",
                ));
            }
            Err(StoreError::Conflict("username")) => {
                return Err(AdminError::Invalid("username", "is taken"));
            }
            other => {
                other?;
            }
        }
        Ok(Invitation { token, expires_at })
    }

    /// `GET /admin/reviewers`: every account with its desks.
    pub async fn accounts(
        &self,
        caller: &AuthenticatedReviewer,
    ) -> Result<Vec<AccountView>, AdminError> {
        require(caller, &[Role::Admin])?;
        let desks = self.store.desks().await?;
        let members = self.store.desk_members().await?;
        let slug_of = |desk_id: &str| {
            desks
                .iter()
                .find(|desk| desk.id == desk_id)
                .map(|desk| desk.slug.clone())
                .unwrap_or_default()
        };
        Ok(self
            .store
            .reviewers()
            .await?
            .into_iter()
            .map(|reviewer| AccountView {
                desks: members
                    .iter()
                    .filter(|member| member.reviewer_id == reviewer.id)
                    .map(|member| MembershipView {
                        desk: slug_of(&member.desk_id),
                        role: member.role.clone(),
                    })
                    .collect(),
                username: reviewer.username,
                role: reviewer.role,
                status: reviewer.status,
                created_on: reviewer.created_on,
            })
            .collect())
    }

    /// `PATCH /admin/reviewers/{username}`: changes a role, or disables (ending every session at
    /// once) or re-enables an account. An admin cannot change their own account, so that the
    /// last admin cannot lock everyone out by mistake.
    pub async fn change_account(
        &self,
        caller: &AuthenticatedReviewer,
        username: &str,
        role: Option<Role>,
        status: Option<AccountStatus>,
    ) -> Result<(), AdminError> {
        require(caller, &[Role::Admin])?;
        let target = self.account(username).await?;
        if target.id == caller.reviewer.id {
            return Err(AdminError::Invalid(
                "username",
                "is your own account; another admin must change it",
            ));
        }
        if status == Some(AccountStatus::Pending) {
            return Err(AdminError::Invalid("status", "must be active or disabled"));
        }
        if status == Some(AccountStatus::Active) {
            // An account whose owner never confirmed a TOTP code (pending, or disabled while
            // pending) has no verified second factor: only the owner's confirmation activates it.
            let confirmed = self
                .store
                .reviewer_secrets(&target.id)
                .await?
                .is_some_and(|secrets| secrets.totp_last_step.is_some());
            if !confirmed {
                return Err(AdminError::Invalid(
                    "status",
                    "the account becomes active when its owner confirms a TOTP code",
                ));
            }
        }
        if role == Some(Role::Auditor) {
            if !self.store.memberships_of(&target.id).await?.is_empty() {
                return Err(AdminError::Invalid(
                    "role",
                    "an auditor joins no desk: remove the account from its desks first",
                ));
            }
            let first_grant = CaseFilter {
                limit: 1,
                ..CaseFilter::default()
            };
            if !self
                .store
                .cases_granted_to(&target.id, &first_grant)
                .await?
                .is_empty()
            {
                return Err(AdminError::Invalid(
                    "role",
                    "an auditor reads no case: revoke the account's grants first",
                ));
            }
        }
        // What the account has already is no change: the audit log records none. Except the
        // reviewer role, which also makes the account a plain member of desks it coordinates.
        let role = role.filter(|role| role.as_str() != target.role || *role == Role::Reviewer);
        let status = status.filter(|status| status.as_str() != target.status);
        if role.is_none() && status.is_none() {
            return Ok(());
        }
        let change = AccountChange {
            role: role.map(|role| role.as_str().to_owned()),
            status: status.map(|status| status.as_str().to_owned()),
        };
        let mut events = Vec::with_capacity(2);
        if let Some(role) = role {
            let action = format!("account.role_changed:{}", role.as_str());
            events.push(event(&caller.reviewer.id, &action, &target.id));
        }
        if let Some(status) = status {
            let action = match status {
                AccountStatus::Disabled => "account.disabled",
                _ => "account.enabled",
            };
            events.push(event(&caller.reviewer.id, action, &target.id));
        }
        if !self
            .store
            .change_account(&target.id, &change, &events, &audit::chain_hash)
            .await?
        {
            return Err(AdminError::UnknownAccount);
        }
        Ok(())
    }

    /// `GET /admin/desks`: every desk with its members.
    pub async fn desks_with_members(
        &self,
        caller: &AuthenticatedReviewer,
    ) -> Result<Vec<DeskView>, AdminError> {
        require(caller, &[Role::Admin])?;
        let reviewers = self.store.reviewers().await?;
        let members = self.store.desk_members().await?;
        Ok(self
            .store
            .desks()
            .await?
            .into_iter()
            .map(|desk| DeskView {
                members: members
                    .iter()
                    .filter(|member| member.desk_id == desk.id)
                    .filter_map(|member| {
                        let reviewer = reviewers.iter().find(|r| r.id == member.reviewer_id)?;
                        Some(MemberView {
                            username: reviewer.username.clone(),
                            role: member.role.clone(),
                        })
                    })
                    .collect(),
                slug: desk.slug,
                name: desk.name,
            })
            .collect())
    }

    /// `POST /admin/desks`: creates a desk.
    pub async fn create_desk(
        &self,
        caller: &AuthenticatedReviewer,
        slug: &DeskSlug,
        name: &DeskName,
    ) -> Result<(), AdminError> {
        require(caller, &[Role::Admin])?;
        let desk = DeskRecord {
            id: EntryId::generate().to_string(),
            slug: slug.as_str().to_owned(),
            name: name.as_str().to_owned(),
        };
        let created = event(&caller.reviewer.id, "desk.created", slug.as_str());
        match self
            .store
            .insert_desk(&desk, &today(), &created, &audit::chain_hash)
            .await
        {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict(_)) => Err(AdminError::Invalid("slug", "is taken")),
            Err(error) => Err(error.into()),
        }
    }

    /// `PUT /admin/desks/{slug}/members`: sets the members of a desk. New members receive new
    /// cases from now on; existing cases are granted to them by a coordinator, as a batch.
    /// Removing a member revokes nothing: revoking is done case by case.
    pub async fn set_desk_members(
        &self,
        caller: &AuthenticatedReviewer,
        slug: &str,
        members: &[(Username, DeskRole)],
    ) -> Result<(), AdminError> {
        require(caller, &[Role::Admin])?;
        let desk = self.desk(slug).await?;
        let mut records: Vec<DeskMemberRecord> = Vec::with_capacity(members.len());
        for (username, role) in members {
            let reviewer = self.account(username.as_str()).await?;
            if reviewer.role == Role::Auditor.as_str() {
                return Err(AdminError::Invalid(
                    "members",
                    "an auditor joins no desk: desk members receive the desk's cases",
                ));
            }
            if records
                .iter()
                .any(|record| record.reviewer_id == reviewer.id)
            {
                return Err(AdminError::Invalid("members", "names an account twice"));
            }
            records.push(DeskMemberRecord {
                desk_id: desk.id.clone(),
                reviewer_id: reviewer.id,
                role: role.as_str().to_owned(),
            });
        }
        // The log names who is on the desk afterwards (account ids and desk roles), so that an
        // auditor sees who joined and who left, not only that the desk changed.
        let listed = if records.is_empty() {
            "none".to_owned()
        } else {
            records
                .iter()
                .map(|record| format!("{} {}", record.reviewer_id, record.role))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let event = event(
            &caller.reviewer.id,
            "desk.members_set",
            &format!("{}: {listed}", desk.slug),
        );
        match self
            .store
            .set_desk_members(&desk.id, &records, &event, &audit::chain_hash)
            .await
        {
            Err(StoreError::Conflict("desk")) => Err(AdminError::UnknownDesk),
            other => Ok(other?),
        }
    }

    /// `GET /admin/audit`: audit events after a sequence number, oldest first, and whether more
    /// were there when the page was read. For admins and auditors. Reading the log is itself
    /// logged, after the page is read: a client that follows the pages to their end stops there,
    /// instead of finding each time the event its own last read appended.
    pub async fn audit_log(
        &self,
        caller: &AuthenticatedReviewer,
        after: i64,
        limit: i64,
    ) -> Result<(Vec<AuditEventRecord>, bool), AdminError> {
        require(caller, &[Role::Admin, Role::Auditor])?;
        let limit = limit.clamp(1, MAX_AUDIT_PAGE);
        // One more than the page: whether it exists says whether there is a next page.
        let mut events = self
            .store
            .audit_events(after, limit + 1)
            .await
            .context("could not read the audit log")?;
        let more = events.len() as i64 > limit;
        events.truncate(usize::try_from(limit).unwrap_or_default());
        audit::record(
            self.store.as_ref(),
            NewAuditEvent {
                target: None,
                ..event(&caller.reviewer.id, "audit.read", "")
            },
        )
        .await?;
        Ok((events, more))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_read_as_typed_in_any_case_with_hyphens_and_spaces() {
        let stored = enrolment_token_hash("ABCDE-FGHIJ-KLMNO");
        for typed in [
            "ABCDE-FGHIJ-KLMNO",
            " abcde fghij klmno\n",
            "abcdefghijklmno",
        ] {
            assert_eq!(
                normalised_token(typed).as_str(),
                "ABCDEFGHIJKLMNO",
                "{typed:?}"
            );
            assert_eq!(enrolment_token_hash(typed), stored, "{typed:?}");
        }
        assert_ne!(enrolment_token_hash("ABCDE-FGHIJ-KLMNP"), stored);
    }
}
