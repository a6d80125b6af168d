//! The authorization matrix (issue 3, "Must show"): every endpoint, as every role, in every
//! situation a caller can be in — holding a grant for the case, holding none (another desk's
//! case), revoked from it, disabled, without a session, with an expired session. [`MATRIX`] is
//! the one place that says what each cell must answer. The test asks every cell, collects each
//! answer that drifts from the table, and fails listing all of them.
//!
//! Logins are scarce (a TOTP code is accepted once, within one step either way), so the cast is
//! enrolled and logged in once, and cells that change state are idempotent or aimed at a target
//! of their own.

use std::collections::HashMap;
use std::fmt;
use std::time::Instant;

use incident_vault::domain::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app};
use crate::people::{PASSWORD, Reviewer, code, now};

/// An expected answer: the status, and the stable error code of an error. For a success, the
/// code is what the body shows where that matters ([`Probe::observe`]), and empty otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expect {
    status: u16,
    code: &'static str,
}

const fn expect(status: u16, code: &'static str) -> Expect {
    Expect { status, code }
}

const OK: Expect = expect(200, "");
const CREATED: Expect = expect(201, "");
const DONE: Expect = expect(204, "");
/// 200, and the report inside is the one filed.
const OPENED: Expect = expect(200, "opened");
/// 200, and the case is in the caller's list.
const LISTED: Expect = expect(200, "listed");
/// 200, and the case is absent from the caller's list.
const UNLISTED: Expect = expect(200, "unlisted");
/// 200, and the batch granted nothing (the member held every case the caller can read).
const HELD_ALL: Expect = expect(200, "nothing_new");
/// A case the caller may not see: 404, never 403, so that nobody learns whether it exists.
const HIDDEN: Expect = expect(404, "case_not_found");
const FORBIDDEN: Expect = expect(403, "forbidden");
const STEP_UP: Expect = expect(403, "step_up_required");
const LOG_IN: Expect = expect(401, "no_session");
const LOGIN_FAILED: Expect = expect(401, "login_failed");
/// An administrative change refused as invalid (one's own account, a rule about roles).
const REFUSED: Expect = expect(422, "invalid_field");
const WEAK: Expect = expect(422, "weak_password");
const BAD_TOKEN: Expect = expect(422, "invalid_token");
const BAD_TOTP: Expect = expect(422, "invalid_totp");
const NOT_YOUR_INVITATION: Expect = expect(422, "username_mismatch");

/// Whom a row of the table is about.
#[derive(Debug, Clone, Copy)]
enum Who {
    One(Role),
    /// Every role alike: the endpoint does not look at roles.
    Anyone,
}

impl Who {
    fn covers(self, role: Role) -> bool {
        match self {
            Who::One(one) => one == role,
            Who::Anyone => true,
        }
    }
}

const ADMIN: Who = Who::One(Role::Admin);
const COORDINATOR: Who = Who::One(Role::Coordinator);
const REVIEWER: Who = Who::One(Role::Reviewer);
const AUDITOR: Who = Who::One(Role::Auditor);
const ANYONE: Who = Who::Anyone;

/// The caller's situation: the columns of the table, in this order. See [`Cast::subject`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    /// The role's live account, on a case of the default desk it holds a grant for. (An auditor
    /// can hold no grant: for the auditor this is a case nobody would grant them.)
    Grantee,
    /// The role's live account, on a case of another desk, which it holds no grant for.
    NonGrantee,
    /// The role's live account, on a case of its desk that it held and was revoked from.
    Revoked,
    /// An account of the role that held the case (an auditor's, none) and a session, and was
    /// then disabled.
    Disabled,
    /// No session at all (the live account's name where a request names the caller).
    NoSession,
    /// An account of the role that holds the case (an auditor's, none), with a session past
    /// its expiry.
    Expired,
}

impl Context {
    const ALL: [Context; 6] = [
        Context::Grantee,
        Context::NonGrantee,
        Context::Revoked,
        Context::Disabled,
        Context::NoSession,
        Context::Expired,
    ];

    fn name(self) -> &'static str {
        match self {
            Context::Grantee => "grantee",
            Context::NonGrantee => "non-grantee",
            Context::Revoked => "revoked",
            Context::Disabled => "disabled",
            Context::NoSession => "no-session",
            Context::Expired => "expired",
        }
    }
}

/// One request the matrix asks, in every cell of its rows. Rows run in the table's order, so
/// probes that need a step-up come after [`Probe::StepUp`], and logout comes last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Healthz,
    Readyz,
    IntakeParameters,
    /// `GET /cases/{case}`: the case of the column.
    ReadCase,
    /// `GET /cases`: is the case of the column in the list?
    ListCases,
    /// Granting the case of the column to the role's own target account, before any step-up.
    GrantWithoutStepUp,
    StepUp,
    /// Granting the case of the column to the role's own target account (`to-<role>`).
    GrantCase,
    /// Granting the case of the column to oneself: a way back into a case one cannot read?
    GrantCaseToSelf,
    /// Revoking from the case of the column: the target granted by [`Probe::GrantCase`]; on
    /// another desk's case, its desk member; on the revoked case, the coordinator who kept it.
    RevokeGrant,
    /// Batch-granting a desk's cases to a member: the default desk (to the keeper, who holds
    /// all), another desk (to its member), and, when revoked, the default desk to the revoked
    /// reviewer (who must not get the revoked case back through the caller).
    BatchGrant,
    /// A password change with a weak new password: refused after authentication, so it changes
    /// nothing.
    ChangePassword,
    Invite,
    ListAccounts,
    /// Changing another account's role (to the role it has).
    ChangeAccount,
    /// Promoting one's own account to admin.
    ChangeOwnAccount,
    /// Making an account that holds a grant an auditor: auditors hold no grant and join no
    /// desk, so this is refused like the same change for a desk member.
    GrantHolderToAuditor,
    /// Enabling an account that was disabled while its enrolment was pending: it would become
    /// active without ever confirming a TOTP code, which enabling a pending account refuses.
    EnablePendingAccount,
    ListDesks,
    CreateDesk,
    /// Setting the other desk's members (to those it has).
    SetDeskMembers,
    AuditLog,
    /// Redeeming another person's invitation under one's own name.
    EnrolWithOthersInvitation,
    /// Redeeming one's own invitation (or the setup code) again.
    EnrolWithSpentToken,
    /// Confirming a TOTP code with one's own spent invitation (or the setup code).
    ConfirmWithSpentToken,
    ConfirmWithUnknownToken,
    /// Confirming another person's enrolment whose token expired (redeemed in time, never
    /// confirmed): the token is dead, whatever the code.
    ConfirmExpiredEnrolment,
    /// Confirming another person's pending enrolment with one's own authenticator.
    ConfirmOthersEnrolment,
    /// Logging in: the disabled account with its right password and a fresh code; every other
    /// column as an unknown user.
    Login,
    /// Recovering: the disabled account with its right recovery code and a fresh code; every
    /// other column as an unknown user.
    Recover,
    FileReport,
    Logout,
}

type Row = (Probe, Who, [Expect; 6]);

/// The expected answer of every cell. Columns: grantee, non-grantee (another desk's case),
/// revoked, disabled, no session, expired session.
#[rustfmt::skip]
const MATRIX: &[Row] = &[
    // Public: a session, or its absence, changes nothing.
    (Probe::Healthz,              ANYONE,      [OK; 6]),
    (Probe::Readyz,               ANYONE,      [OK; 6]),
    (Probe::IntakeParameters,     ANYONE,      [OK; 6]),

    // Reading: a grant opens a case, whatever the role; no grant is a 404, whatever the role.
    (Probe::ReadCase,             ADMIN,       [OPENED,    HIDDEN,    HIDDEN,    LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::ReadCase,             COORDINATOR, [OPENED,    HIDDEN,    HIDDEN,    LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::ReadCase,             REVIEWER,    [OPENED,    HIDDEN,    HIDDEN,    LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::ReadCase,             AUDITOR,     [HIDDEN,    HIDDEN,    HIDDEN,    LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::ListCases,            ADMIN,       [LISTED,    UNLISTED,  UNLISTED,  LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::ListCases,            COORDINATOR, [LISTED,    UNLISTED,  UNLISTED,  LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::ListCases,            REVIEWER,    [LISTED,    UNLISTED,  UNLISTED,  LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::ListCases,            AUDITOR,     [UNLISTED,  UNLISTED,  UNLISTED,  LOG_IN,    LOG_IN,    LOG_IN]),

    // Granting: a grant, then the right to coordinate (admin here by desk, coordinator by
    // role), then a fresh step-up.
    (Probe::GrantWithoutStepUp,   ADMIN,       [STEP_UP,   HIDDEN,    HIDDEN,    LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::GrantWithoutStepUp,   COORDINATOR, [STEP_UP,   HIDDEN,    HIDDEN,    LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::GrantWithoutStepUp,   REVIEWER,    [FORBIDDEN, HIDDEN,    HIDDEN,    LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::GrantWithoutStepUp,   AUDITOR,     [HIDDEN,    HIDDEN,    HIDDEN,    LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::StepUp,               ANYONE,      [DONE,      DONE,      DONE,      LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::GrantCase,            ADMIN,       [CREATED,   HIDDEN,    HIDDEN,    LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::GrantCase,            COORDINATOR, [CREATED,   HIDDEN,    HIDDEN,    LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::GrantCase,            REVIEWER,    [FORBIDDEN, HIDDEN,    HIDDEN,    LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::GrantCase,            AUDITOR,     [HIDDEN,    HIDDEN,    HIDDEN,    LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::GrantCaseToSelf,      ADMIN,       [OK,        HIDDEN,    HIDDEN,    LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::GrantCaseToSelf,      COORDINATOR, [OK,        HIDDEN,    HIDDEN,    LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::GrantCaseToSelf,      REVIEWER,    [FORBIDDEN, HIDDEN,    HIDDEN,    LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::GrantCaseToSelf,      AUDITOR,     [HIDDEN,    HIDDEN,    HIDDEN,    LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::RevokeGrant,          ADMIN,       [DONE,      HIDDEN,    HIDDEN,    LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::RevokeGrant,          COORDINATOR, [DONE,      HIDDEN,    HIDDEN,    LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::RevokeGrant,          REVIEWER,    [FORBIDDEN, HIDDEN,    HIDDEN,    LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::RevokeGrant,          AUDITOR,     [HIDDEN,    HIDDEN,    HIDDEN,    LOG_IN,    LOG_IN,    LOG_IN]),
    // A desk's batch: desk coordinators and coordinators by role, and only what they can read.
    (Probe::BatchGrant,           ADMIN,       [HELD_ALL,  FORBIDDEN, HELD_ALL,  LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::BatchGrant,           COORDINATOR, [HELD_ALL,  HELD_ALL,  HELD_ALL,  LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::BatchGrant,           REVIEWER,    [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::BatchGrant,           AUDITOR,     [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::ChangePassword,       ANYONE,      [WEAK,      WEAK,      WEAK,      LOG_IN,    LOG_IN,    LOG_IN]),

    // Administration: admins only, except the audit log, which auditors read too.
    (Probe::Invite,               ADMIN,       [CREATED,   CREATED,   CREATED,   LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::Invite,               COORDINATOR, [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::Invite,               REVIEWER,    [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::Invite,               AUDITOR,     [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::ListAccounts,         ADMIN,       [OK,        OK,        OK,        LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::ListAccounts,         COORDINATOR, [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::ListAccounts,         REVIEWER,    [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::ListAccounts,         AUDITOR,     [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::ChangeAccount,        ADMIN,       [DONE,      DONE,      DONE,      LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::ChangeAccount,        COORDINATOR, [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::ChangeAccount,        REVIEWER,    [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::ChangeAccount,        AUDITOR,     [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::ChangeOwnAccount,     ADMIN,       [REFUSED,   REFUSED,   REFUSED,   LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::ChangeOwnAccount,     COORDINATOR, [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::ChangeOwnAccount,     REVIEWER,    [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::ChangeOwnAccount,     AUDITOR,     [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    // Rules of roles and statuses that an admin cannot get around either.
    (Probe::GrantHolderToAuditor, ADMIN,       [REFUSED,   REFUSED,   REFUSED,   LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::GrantHolderToAuditor, COORDINATOR, [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::GrantHolderToAuditor, REVIEWER,    [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::GrantHolderToAuditor, AUDITOR,     [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::EnablePendingAccount, ADMIN,       [REFUSED,   REFUSED,   REFUSED,   LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::EnablePendingAccount, COORDINATOR, [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::EnablePendingAccount, REVIEWER,    [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::EnablePendingAccount, AUDITOR,     [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::ListDesks,            ADMIN,       [OK,        OK,        OK,        LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::ListDesks,            COORDINATOR, [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::ListDesks,            REVIEWER,    [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::ListDesks,            AUDITOR,     [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::CreateDesk,           ADMIN,       [CREATED,   CREATED,   CREATED,   LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::CreateDesk,           COORDINATOR, [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::CreateDesk,           REVIEWER,    [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::CreateDesk,           AUDITOR,     [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::SetDeskMembers,       ADMIN,       [DONE,      DONE,      DONE,      LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::SetDeskMembers,       COORDINATOR, [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::SetDeskMembers,       REVIEWER,    [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::SetDeskMembers,       AUDITOR,     [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::AuditLog,             ADMIN,       [OK,        OK,        OK,        LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::AuditLog,             COORDINATOR, [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::AuditLog,             REVIEWER,    [FORBIDDEN, FORBIDDEN, FORBIDDEN, LOG_IN,    LOG_IN,    LOG_IN]),
    (Probe::AuditLog,             AUDITOR,     [OK,        OK,        OK,        LOG_IN,    LOG_IN,    LOG_IN]),

    // Enrolment and login: the token or the credentials decide, never a session.
    (Probe::EnrolWithOthersInvitation, ANYONE, [NOT_YOUR_INVITATION; 6]),
    (Probe::EnrolWithSpentToken,       ANYONE, [BAD_TOKEN; 6]),
    (Probe::ConfirmWithSpentToken,     ANYONE, [BAD_TOKEN; 6]),
    (Probe::ConfirmWithUnknownToken,   ANYONE, [BAD_TOKEN; 6]),
    (Probe::ConfirmExpiredEnrolment,   ANYONE, [BAD_TOKEN; 6]),
    (Probe::ConfirmOthersEnrolment,    ANYONE, [BAD_TOTP; 6]),
    (Probe::Login,                     ANYONE, [LOGIN_FAILED; 6]),
    (Probe::Recover,                   ANYONE, [LOGIN_FAILED; 6]),
    (Probe::FileReport,                ANYONE, [CREATED; 6]),
    (Probe::Logout,                    ANYONE, [DONE; 6]),
];

/// A password that passes the policy, for recoveries that must fail anyway.
const NEW_PASSWORD: &str = "another violet horse battery staple";
/// Well formed, never issued.
const UNKNOWN_TOKEN: &str = "ABCDE-FGHJK-LMNPQ-RSTUV-WXYZ2";
/// The other desk, and its one member.
const OTHER_DESK: &str = "geneva";
const OTHER_DESK_MEMBER: &str = "gina";
/// A coordinator of the default desk who keeps every case: revokes the others from the revoked
/// case, and receives the default desk's batch.
const KEEPER: &str = "keeper";
/// A reviewer on no desk who holds the granted case by a grant of its own.
const GRANT_HOLDER: &str = "hal";
/// An account whose enrolment is pending, disabled by an admin before it confirmed.
const PENDING_THEN_DISABLED: &str = "pam";

/// What a cell answered.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    code: String,
}

impl Expect {
    fn matches(&self, answer: &Answer) -> bool {
        self.status == answer.status && self.code == answer.code
    }
}

fn show(formatter: &mut fmt::Formatter<'_>, status: u16, code: &str) -> fmt::Result {
    if code.is_empty() {
        write!(formatter, "{status}")
    } else {
        write!(formatter, "{status} {code}")
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        show(formatter, self.status, self.code)
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        show(formatter, self.status, &self.code)
    }
}

/// A filed case and the description it was filed with.
struct FiledCase {
    case_ref: String,
    description: String,
}

/// An account of the cast: its owner's credentials, its invitation (spent once enrolled) and
/// its session token.
struct Account {
    reviewer: Reviewer,
    invitation: String,
    session: String,
}

/// Everyone and everything the matrix needs, set up once through the API.
struct Cast {
    live: HashMap<Role, Account>,
    disabled: HashMap<Role, Account>,
    expired: HashMap<Role, Account>,
    /// An invitation redeemed by "pat", whose TOTP code is not confirmed yet.
    pending_enrolment: String,
    /// An invitation for "vic", not redeemed yet.
    unredeemed_invitation: String,
    /// An invitation redeemed by "exp" in time, never confirmed, now expired.
    expired_enrolment: String,
    /// On the default desk: every live account but the auditor holds it.
    granted: FiledCase,
    /// On the other desk: only its member holds it.
    other_desk: FiledCase,
    /// On the default desk: the live accounts were revoked from it; the keeper holds it.
    revoked: FiledCase,
}

/// The caller of one cell.
struct Subject<'a> {
    role: Role,
    context: Context,
    /// The account that calls, or whose name is used when there is no session.
    account: &'a Account,
    session: Option<&'a str>,
    case: &'a FiledCase,
}

impl Subject<'_> {
    fn username(&self) -> &str {
        &self.account.reviewer.username
    }

    /// A cell's own name, for what a cell creates.
    fn tag(&self) -> String {
        format!("{}-{}", self.role.as_str(), self.context.name())
    }

    /// The account the role grants to (and revokes from) in this test.
    fn grant_target(&self) -> String {
        format!("to-{}", self.role.as_str())
    }

    /// A TOTP code of the caller's authenticator for the next step. It is never accepted here,
    /// so it is not marked as used.
    fn next_step_code(&self) -> String {
        code(&self.account.reviewer.totp, now() + 30)
    }
}

impl Cast {
    fn subject(&self, role: Role, context: Context) -> Subject<'_> {
        let account = match context {
            Context::Disabled => &self.disabled[&role],
            Context::Expired => &self.expired[&role],
            _ => &self.live[&role],
        };
        let case = match context {
            Context::NonGrantee => &self.other_desk,
            Context::Revoked => &self.revoked,
            _ => &self.granted,
        };
        let session = match context {
            Context::NoSession => None,
            _ => Some(account.session.as_str()),
        };
        Subject {
            role,
            context,
            account,
            session,
            case,
        }
    }

    async fn assemble(app: &TestApp) -> Cast {
        let ada = app.enrol_first_admin("ada").await;
        let admin = app.login(&ada).await;
        let desk = app
            .send(
                Method::POST,
                "/api/v1/admin/desks",
                Some(&admin),
                Some(json!({"slug": OTHER_DESK, "name": "Geneva"})),
            )
            .await;
        assert_eq!(desk.status(), 201, "{:?}", desk.text().await);
        let mut live = HashMap::from([(
            Role::Admin,
            Account {
                reviewer: ada,
                invitation: app.setup_code.clone().unwrap(),
                session: admin.clone(),
            },
        )]);
        for (name, role) in [
            ("cora", Role::Coordinator),
            ("rex", Role::Reviewer),
            ("audra", Role::Auditor),
        ] {
            live.insert(role, enrol_account(app, &admin, name, role).await);
        }
        let keeper = enrol_account(app, &admin, KEEPER, Role::Coordinator).await;
        let mut disabled = HashMap::new();
        let mut expired = HashMap::new();
        for &role in Role::ALL {
            let name = format!("off-{}", role.as_str());
            disabled.insert(role, enrol_account(app, &admin, &name, role).await);
            let name = format!("old-{}", role.as_str());
            expired.insert(role, enrol_account(app, &admin, &name, role).await);
            let target = format!("to-{}", role.as_str());
            let invitation = app.invite(&admin, &target, "reviewer", &[]).await;
            app.enrol_with(&invitation, &target).await;
        }
        let invitation = app
            .invite(&admin, OTHER_DESK_MEMBER, "reviewer", &[OTHER_DESK])
            .await;
        app.enrol_with(&invitation, OTHER_DESK_MEMBER).await;
        let pending_enrolment = redeem_only(app, &admin, "pat").await;
        let unredeemed_invitation = app.invite(&admin, "vic", "reviewer", &[]).await;
        let expired_enrolment = redeem_only(app, &admin, "exp").await;
        app.execute("UPDATE enrolments SET expires_at = 0 WHERE username = 'exp'")
            .await;
        redeem_only(app, &admin, PENDING_THEN_DISABLED).await;
        let disable = app
            .send(
                Method::PATCH,
                &format!("/api/v1/admin/reviewers/{PENDING_THEN_DISABLED}"),
                Some(&admin),
                Some(json!({"status": "disabled"})),
            )
            .await;
        assert_eq!(disable.status(), 204, "{:?}", disable.text().await);
        let invitation = app.invite(&admin, GRANT_HOLDER, "reviewer", &[]).await;
        app.enrol_with(&invitation, GRANT_HOLDER).await;

        // Every desk member is active now, so each receives the cases at intake.
        let granted = file_case(app, "default", "The granted case.").await;
        let other_desk = file_case(app, OTHER_DESK, "Another desk's case.").await;
        let revoked = file_case(app, "default", "The revoked case.").await;
        for role in [Role::Admin, Role::Coordinator, Role::Reviewer] {
            let path = format!(
                "/api/v1/cases/{}/grants/{}",
                revoked.case_ref, live[&role].reviewer.username
            );
            let revoke = app
                .send(Method::DELETE, &path, Some(&keeper.session), None)
                .await;
            assert_eq!(revoke.status(), 204, "{:?}", revoke.text().await);
        }
        // The grant holder holds the granted case by a grant of its own, on no desk.
        app.step_up(&keeper.session, &keeper.reviewer).await;
        let grant = app
            .send(
                Method::POST,
                &format!("/api/v1/cases/{}/grants", granted.case_ref),
                Some(&keeper.session),
                Some(json!({"reviewer": GRANT_HOLDER})),
            )
            .await;
        assert_eq!(grant.status(), 201, "{:?}", grant.text().await);
        for account in disabled.values() {
            let path = format!("/api/v1/admin/reviewers/{}", account.reviewer.username);
            let change = json!({"status": "disabled"});
            let disable = app
                .send(Method::PATCH, &path, Some(&admin), Some(change))
                .await;
            assert_eq!(disable.status(), 204, "{:?}", disable.text().await);
        }
        let names: Vec<String> = expired
            .values()
            .map(|account| format!("'{}'", account.reviewer.username))
            .collect();
        app.execute(&format!(
            "UPDATE sessions SET expires_at = 0 WHERE reviewer_id IN \
             (SELECT id FROM reviewers WHERE username IN ({}))",
            names.join(", ")
        ))
        .await;
        Cast {
            live,
            disabled,
            expired,
            pending_enrolment,
            unredeemed_invitation,
            expired_enrolment,
            granted,
            other_desk,
            revoked,
        }
    }
}

/// Invites an account (to the default desk, unless an auditor), enrols it, and logs it in.
async fn enrol_account(app: &TestApp, admin: &str, username: &str, role: Role) -> Account {
    let desks: &[&str] = if role == Role::Auditor {
        &[]
    } else {
        &["default"]
    };
    let invitation = app.invite(admin, username, role.as_str(), desks).await;
    let reviewer = app.enrol_with(&invitation, username).await;
    let session = app.login(&reviewer).await;
    Account {
        reviewer,
        invitation,
        session,
    }
}

/// Invites an account and redeems the invitation without confirming a TOTP code: the account
/// stays pending. Returns the invitation.
async fn redeem_only(app: &TestApp, admin: &str, username: &str) -> String {
    let invitation = app.invite(admin, username, "reviewer", &[]).await;
    let redeemed = app
        .post_json(
            "/api/v1/enrol",
            json!({"token": invitation, "username": username, "password": PASSWORD}),
        )
        .await;
    assert_eq!(redeemed.status(), 200, "{:?}", redeemed.text().await);
    invitation
}

async fn file_case(app: &TestApp, desk: &str, description: &str) -> FiledCase {
    let (case_ref, _) = app
        .file(&json!({"desk": desk, "incident_type": "intimidation", "description": description}))
        .await;
    FiledCase {
        case_ref,
        description: description.to_owned(),
    }
}

impl Probe {
    /// The request of this probe for one caller: method, path and body.
    fn request(self, cast: &Cast, subject: &Subject<'_>) -> (Method, String, Option<Value>) {
        let case = &subject.case.case_ref;
        let me = subject.username();
        let tag = subject.tag();
        let disabled = subject.context == Context::Disabled;
        match self {
            Probe::Healthz => (Method::GET, "/healthz".into(), None),
            Probe::Readyz => (Method::GET, "/readyz".into(), None),
            Probe::IntakeParameters => (Method::GET, "/api/v1/intake".into(), None),
            Probe::ReadCase => (Method::GET, format!("/api/v1/cases/{case}"), None),
            Probe::ListCases => (Method::GET, "/api/v1/cases?limit=100".into(), None),
            Probe::GrantWithoutStepUp | Probe::GrantCase => (
                Method::POST,
                format!("/api/v1/cases/{case}/grants"),
                Some(json!({"reviewer": subject.grant_target()})),
            ),
            Probe::StepUp => (
                Method::POST,
                "/api/v1/auth/step-up".into(),
                Some(json!({"password": PASSWORD})),
            ),
            Probe::GrantCaseToSelf => (
                Method::POST,
                format!("/api/v1/cases/{case}/grants"),
                Some(json!({"reviewer": me})),
            ),
            Probe::RevokeGrant => {
                let target = match subject.context {
                    Context::NonGrantee => OTHER_DESK_MEMBER.to_owned(),
                    Context::Revoked => KEEPER.to_owned(),
                    _ => subject.grant_target(),
                };
                (
                    Method::DELETE,
                    format!("/api/v1/cases/{case}/grants/{target}"),
                    None,
                )
            }
            Probe::BatchGrant => {
                let (desk, member) = match subject.context {
                    Context::NonGrantee => (OTHER_DESK, OTHER_DESK_MEMBER),
                    Context::Revoked => (
                        "default",
                        cast.live[&Role::Reviewer].reviewer.username.as_str(),
                    ),
                    _ => ("default", KEEPER),
                };
                (
                    Method::POST,
                    format!("/api/v1/desks/{desk}/grants"),
                    Some(json!({"reviewer": member})),
                )
            }
            Probe::ChangePassword => (
                Method::POST,
                "/api/v1/auth/password".into(),
                Some(json!({"current_password": PASSWORD, "new_password": "short"})),
            ),
            Probe::Invite => (
                Method::POST,
                "/api/v1/admin/reviewers".into(),
                Some(json!({"username": format!("inv-{tag}"), "role": "reviewer", "desks": []})),
            ),
            Probe::ListAccounts => (Method::GET, "/api/v1/admin/reviewers".into(), None),
            Probe::ChangeAccount => (
                Method::PATCH,
                format!("/api/v1/admin/reviewers/{OTHER_DESK_MEMBER}"),
                Some(json!({"role": "reviewer"})),
            ),
            Probe::ChangeOwnAccount => (
                Method::PATCH,
                format!("/api/v1/admin/reviewers/{me}"),
                Some(json!({"role": "admin"})),
            ),
            Probe::GrantHolderToAuditor => (
                Method::PATCH,
                format!("/api/v1/admin/reviewers/{GRANT_HOLDER}"),
                Some(json!({"role": "auditor"})),
            ),
            Probe::EnablePendingAccount => (
                Method::PATCH,
                format!("/api/v1/admin/reviewers/{PENDING_THEN_DISABLED}"),
                Some(json!({"status": "active"})),
            ),
            Probe::ListDesks => (Method::GET, "/api/v1/admin/desks".into(), None),
            Probe::CreateDesk => (
                Method::POST,
                "/api/v1/admin/desks".into(),
                Some(json!({"slug": format!("desk-{tag}"), "name": format!("Desk {tag}")})),
            ),
            Probe::SetDeskMembers => (
                Method::PUT,
                format!("/api/v1/admin/desks/{OTHER_DESK}/members"),
                Some(json!({"members": [{"username": OTHER_DESK_MEMBER, "role": "member"}]})),
            ),
            Probe::AuditLog => (Method::GET, "/api/v1/admin/audit?limit=1".into(), None),
            Probe::EnrolWithOthersInvitation => (
                Method::POST,
                "/api/v1/enrol".into(),
                Some(json!({
                    "token": cast.unredeemed_invitation,
                    "username": me,
                    "password": PASSWORD,
                })),
            ),
            Probe::EnrolWithSpentToken => (
                Method::POST,
                "/api/v1/enrol".into(),
                Some(json!({
                    "token": subject.account.invitation,
                    "username": me,
                    "password": PASSWORD,
                })),
            ),
            Probe::ConfirmWithSpentToken => (
                Method::POST,
                "/api/v1/enrol/confirm".into(),
                Some(json!({
                    "token": subject.account.invitation,
                    "totp": subject.next_step_code(),
                })),
            ),
            Probe::ConfirmWithUnknownToken => (
                Method::POST,
                "/api/v1/enrol/confirm".into(),
                Some(json!({"token": UNKNOWN_TOKEN, "totp": subject.next_step_code()})),
            ),
            Probe::ConfirmExpiredEnrolment => (
                Method::POST,
                "/api/v1/enrol/confirm".into(),
                Some(json!({"token": cast.expired_enrolment, "totp": subject.next_step_code()})),
            ),
            Probe::ConfirmOthersEnrolment => (
                Method::POST,
                "/api/v1/enrol/confirm".into(),
                Some(json!({"token": cast.pending_enrolment, "totp": subject.next_step_code()})),
            ),
            Probe::Login => {
                let body = if disabled {
                    json!({"username": me, "password": PASSWORD, "totp": subject.next_step_code()})
                } else {
                    json!({"username": "nobody", "password": PASSWORD, "totp": "000000"})
                };
                (Method::POST, "/api/v1/auth/login".into(), Some(body))
            }
            Probe::Recover => {
                let body = if disabled {
                    json!({
                        "username": me,
                        "recovery_code": subject.account.reviewer.recovery_code,
                        "totp": subject.next_step_code(),
                        "new_password": NEW_PASSWORD,
                    })
                } else {
                    json!({
                        "username": "nobody",
                        "recovery_code": UNKNOWN_TOKEN,
                        "totp": "000000",
                        "new_password": NEW_PASSWORD,
                    })
                };
                (Method::POST, "/api/v1/auth/recover".into(), Some(body))
            }
            Probe::FileReport => (
                Method::POST,
                "/api/v1/reports".into(),
                Some(json!({"incident_type": "threat", "description": format!("Filed by {tag}.")})),
            ),
            Probe::Logout => (Method::POST, "/api/v1/auth/logout".into(), None),
        }
    }

    /// The error code of an error; for a success, what the body shows where that matters.
    fn observe(self, status: u16, body: &Value, subject: &Subject<'_>) -> String {
        if status >= 400 {
            return body["error"]
                .as_str()
                .unwrap_or("(no error code)")
                .to_owned();
        }
        match self {
            Probe::ReadCase if body["report"]["description"] == subject.case.description => {
                "opened".into()
            }
            Probe::ReadCase => "another report".into(),
            Probe::ListCases => {
                let listed = body["cases"].as_array().is_some_and(|cases| {
                    cases
                        .iter()
                        .any(|case| case["case_ref"] == subject.case.case_ref)
                });
                String::from(if listed { "listed" } else { "unlisted" })
            }
            Probe::BatchGrant => match body["granted"].as_u64() {
                Some(0) => "nothing_new".into(),
                granted => format!("granted {granted:?}"),
            },
            _ => String::new(),
        }
    }

    async fn ask(self, app: &TestApp, cast: &Cast, subject: &Subject<'_>) -> Answer {
        let (method, path, body) = self.request(cast, subject);
        let response = app.send(method, &path, subject.session, body).await;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        let code = self.observe(status, &body, subject);
        Answer { status, code }
    }
}

/// Rows missing from the table, or given twice: each probe must cover each role exactly once.
fn gaps_in_the_table() -> Vec<String> {
    let mut gaps = Vec::new();
    let mut probes: Vec<Probe> = Vec::new();
    for (probe, _, _) in MATRIX {
        if !probes.contains(probe) {
            probes.push(*probe);
        }
    }
    for probe in probes {
        for &role in Role::ALL {
            let rows = MATRIX
                .iter()
                .filter(|(row_probe, who, _)| *row_probe == probe && who.covers(role))
                .count();
            if rows != 1 {
                gaps.push(format!(
                    "the table has {rows} rows for {probe:?} as {}",
                    role.as_str()
                ));
            }
        }
    }
    gaps
}

async fn every_endpoint_answers_every_role_in_every_situation_as_the_matrix_says(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let started = Instant::now();
    let cast = Cast::assemble(&app).await;
    let assembled = started.elapsed();

    let mut drift = gaps_in_the_table();
    let mut cells = 0;
    for (probe, who, row) in MATRIX {
        for &role in Role::ALL.iter().filter(|role| who.covers(**role)) {
            for (&context, expected) in Context::ALL.iter().zip(row) {
                let subject = cast.subject(role, context);
                let answer = probe.ask(&app, &cast, &subject).await;
                cells += 1;
                if !expected.matches(&answer) {
                    let (method, path, _) = probe.request(&cast, &subject);
                    drift.push(format!(
                        "{probe:?} ({method} {path}) as {} / {}: expected {expected}, got {answer}",
                        role.as_str(),
                        context.name(),
                    ));
                }
            }
        }
    }

    eprintln!(
        "authorization matrix on {backend:?}: {cells} cells; cast assembled in {assembled:.1?}, \
         everything in {:.1?}",
        started.elapsed()
    );
    assert!(
        drift.is_empty(),
        "{} of {cells} cells drifted from the matrix:\n{}",
        drift.len(),
        drift.join("\n")
    );
}

crate::on_both_backends!(every_endpoint_answers_every_role_in_every_situation_as_the_matrix_says);
