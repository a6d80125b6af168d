//! Reviewer accounts for tests: enrolment through the real HTTP flow (setup code or invitation,
//! password, TOTP confirmation), login, step-up, and requests with a bearer session.

use std::sync::Mutex;

use age::secrecy::ExposeSecret;
use incident_vault::crypto::totp::{TotpSecret, code_at};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// The password every test account uses (strong enough for the policy).
pub const PASSWORD: &str = "correct horse battery staple violet";
/// Seconds per TOTP step.
const STEP: u64 = 30;

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The TOTP secret inside an `otpauth://` URI, as an authenticator app would read it.
pub fn totp_secret(uri: &str) -> TotpSecret {
    let encoded = uri
        .split(['?', '&'])
        .find_map(|part| part.strip_prefix("secret="))
        .expect("the URI carries a secret");
    let secret = totp_rs::Secret::try_from_base32(encoded).unwrap();
    let bytes: &[u8] = secret.as_ref();
    TotpSecret::from_bytes(bytes).unwrap()
}

/// The code an authenticator shows at `at`.
pub fn code(secret: &TotpSecret, at: u64) -> String {
    code_at(secret, at).expose_secret().to_owned()
}

/// An enrolled account, as its owner knows it: username, password, authenticator, recovery code.
pub struct Reviewer {
    pub username: String,
    pub password: String,
    pub totp: TotpSecret,
    /// The `otpauth://` URI enrolment showed, as an authenticator app reads it.
    pub totp_uri: String,
    pub recovery_code: String,
    /// The last TOTP step this account used: each code is accepted once, in increasing steps.
    last_step: Mutex<u64>,
}

impl Reviewer {
    /// A code of a step not used yet: the current step, or the next one (the server accepts one
    /// step either way) when the current one is used. When both are used, waits for the next step
    /// to begin. Never an earlier step: the server stops accepting it at the next boundary, which
    /// may pass between this call and the request.
    pub async fn next_code(&self) -> String {
        loop {
            let current = now() / STEP;
            let step = {
                let mut last = self.last_step.lock().unwrap();
                let step = (*last + 1).max(current);
                if step <= current + 1 {
                    *last = step;
                    Some(step)
                } else {
                    None
                }
            };
            match step {
                Some(step) => return code(&self.totp, step * STEP),
                // Pacing, not a check of time: sleep into the next step, then look again.
                None => tokio::time::sleep(until_the_next_step()).await,
            }
        }
    }
}

/// How long until the next TOTP step begins, and a little more.
fn until_the_next_step() -> std::time::Duration {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let next = std::time::Duration::from_secs((since_epoch.as_secs() / STEP + 1) * STEP);
    next.saturating_sub(since_epoch) + std::time::Duration::from_millis(50)
}

impl TestApp {
    /// Sends a request with an optional bearer token and JSON body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("the request is sent")
    }

    /// POSTs JSON without a session.
    pub async fn post_json(&self, path: &str, body: Value) -> reqwest::Response {
        self.send(Method::POST, path, None, Some(body)).await
    }

    /// Redeems an enrolment token for `username` with [`PASSWORD`], without confirming it.
    pub async fn redeem(&self, token: &str, username: &str) -> reqwest::Response {
        self.post_json(
            "/api/v1/enrol",
            json!({"token": token, "username": username, "password": PASSWORD}),
        )
        .await
    }

    /// Redeems an enrolment token (setup code or invitation) and confirms the TOTP secret.
    pub async fn enrol_with(&self, token: &str, username: &str) -> Reviewer {
        let response = self.redeem(token, username).await;
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
        let body: Value = response.json().await.unwrap();
        let reviewer = Reviewer {
            username: username.to_owned(),
            password: PASSWORD.to_owned(),
            totp: totp_secret(body["totp_uri"].as_str().unwrap()),
            totp_uri: body["totp_uri"].as_str().unwrap().to_owned(),
            recovery_code: body["recovery_code"].as_str().unwrap().to_owned(),
            last_step: Mutex::new(0),
        };
        let confirmed = self
            .post_json(
                "/api/v1/enrol/confirm",
                json!({"token": token, "totp": reviewer.next_code().await}),
            )
            .await;
        assert_eq!(confirmed.status(), 204, "{:?}", confirmed.text().await);
        reviewer
    }

    /// Enrols the first account (admin, coordinator of the default desk) with the setup code.
    pub async fn enrol_first_admin(&self, username: &str) -> Reviewer {
        let token = self
            .setup_code
            .clone()
            .expect("a setup code on first start");
        self.enrol_with(&token, username).await
    }

    /// Logs in; returns the bearer token.
    pub async fn login(&self, reviewer: &Reviewer) -> String {
        let response = self
            .post_json(
                "/api/v1/auth/login",
                json!({
                    "username": reviewer.username,
                    "password": reviewer.password,
                    "totp": reviewer.next_code().await,
                }),
            )
            .await;
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
        let body: Value = response.json().await.unwrap();
        body["token"].as_str().unwrap().to_owned()
    }

    /// An admin invites an account; returns the invitation token.
    pub async fn invite(&self, admin: &str, username: &str, role: &str, desks: &[&str]) -> String {
        let response = self
            .send(
                Method::POST,
                "/api/v1/admin/reviewers",
                Some(admin),
                Some(json!({"username": username, "role": role, "desks": desks})),
            )
            .await;
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        let body: Value = response.json().await.unwrap();
        body["token"].as_str().unwrap().to_owned()
    }

    /// Invites `username` as a reviewer of the default desk and redeems the invitation without
    /// confirming it: an account pending its first TOTP code. Returns the invitation and the
    /// account's TOTP secret.
    pub async fn invite_and_redeem(&self, admin: &str, username: &str) -> (String, TotpSecret) {
        let invitation = self.invite(admin, username, "reviewer", &["default"]).await;
        let redeemed = self.redeem(&invitation, username).await;
        assert_eq!(redeemed.status(), 200, "{:?}", redeemed.text().await);
        let body: Value = redeemed.json().await.unwrap();
        (invitation, totp_secret(body["totp_uri"].as_str().unwrap()))
    }

    /// Invites, enrols and logs in an account; returns it with a bearer token.
    pub async fn add_reviewer(
        &self,
        admin: &str,
        username: &str,
        role: &str,
        desks: &[&str],
    ) -> (Reviewer, String) {
        let invitation = self.invite(admin, username, role, desks).await;
        let reviewer = self.enrol_with(&invitation, username).await;
        let token = self.login(&reviewer).await;
        (reviewer, token)
    }

    /// Enters the password again in a session (step-up).
    pub async fn step_up(&self, token: &str, reviewer: &Reviewer) {
        let response = self
            .send(
                Method::POST,
                "/api/v1/auth/step-up",
                Some(token),
                Some(json!({"password": reviewer.password})),
            )
            .await;
        assert_eq!(response.status(), 204, "{:?}", response.text().await);
    }

    /// GETs a path with a bearer token.
    pub async fn get_as(&self, token: &str, path: &str) -> reqwest::Response {
        self.send(Method::GET, path, Some(token), None).await
    }
}

/// The cast many tests start from: a fresh service, its first admin `ada`, and `rita`, a
/// reviewer of the default desk, both logged in.
pub struct AdaAndRita {
    pub app: TestApp,
    pub admin: Reviewer,
    pub admin_token: String,
    pub rita: Reviewer,
    pub rita_token: String,
}

/// [`AdaAndRita`] on a fresh database; `None` when the backend is unavailable outside CI.
pub async fn spawn_with_ada_and_rita(backend: crate::helpers::Backend) -> Option<AdaAndRita> {
    let app = crate::helpers::spawn_app(backend).await?;
    let admin = app.enrol_first_admin("ada").await;
    let admin_token = app.login(&admin).await;
    let (rita, rita_token) = app
        .add_reviewer(&admin_token, "rita", "reviewer", &["default"])
        .await;
    Some(AdaAndRita {
        app,
        admin,
        admin_token,
        rita,
        rita_token,
    })
}
