//! Reviewer logins under load (issue 3, "Benchmarks"), on SQLite and on PostgreSQL, each figure
//! beside a limit measured in the same run.
//!
//! `cargo bench --bench reviewer_load` starts the real service in-process
//! (`Application::build`, as `benches/intake_load.rs` does) on a fresh database per backend and:
//! 1. **Login cost.** Enrols accounts through the real flow (the setup code creates an admin; the
//!    admin invites the others with `POST /api/v1/admin/reviewers`; each redeems its invitation
//!    with `POST /api/v1/enrol` and confirms it with a TOTP code), then times sequential
//!    `POST /api/v1/auth/login`s, each by a different account: a TOTP step is accepted once per
//!    account, so one account cannot log in twice within a 30 s step, and many accounts give
//!    honest, independent logins. Between logins, one bare argon2id run at the configured
//!    parameters is timed on the bench's thread; the goal is login median ÷ KDF median ≤ 1.15.
//!    For the breakdown, the same is done with `Vault::login` called directly (no HTTP), with a
//!    failed login of an unknown user (which runs the same KDF against a dummy verifier), and
//!    with the store calls of a successful login alone (one read, one write transaction).
//! 2. **Login flood.** Wrong-password logins are sent open-loop at `BENCH_FLOOD_FACTOR` (4) × the
//!    KDF capacity (cores ÷ the KDF median of step 1). Meanwhile, and for the same time before
//!    the flood, `GET /healthz` is probed every 10 ms (goal: p99 < 10 ms under the flood) and
//!    `GET /api/v1/cases` with a valid bearer session every 20 ms (goal: p99 under the flood
//!    within 2 × its idle p99). Each probe, and the flood, runs on its own thread and runtime
//!    with a client of its own, so that one's tasks do not delay another's clock, and the
//!    flood's own CPU can be told apart from the service's.
//!
//! Environment: `BENCH_LOGINS` (timed logins of each kind, default 40; as many accounts are
//! enrolled twice over), `BENCH_SECONDS` (flood window, default 10), `BENCH_IDLE_SECONDS` (idle
//! probing, default 5), `BENCH_FLOOD_FACTOR` (default 4), `BENCH_REPORTS` (reports filed so that
//! the list has cases, default 60), `BENCH_BACKENDS` (default `sqlite,postgres`), `BENCH_LOG` (a
//! tracing filter, e.g. `warn`: the service's own log on stderr, to see why a request failed;
//! it holds no secrets, addresses or content by design). Smoke run:
//! `BENCH_LOGINS=5 BENCH_SECONDS=2 BENCH_IDLE_SECONDS=1 BENCH_REPORTS=5`. PostgreSQL is reached at
//! 127.0.0.1:5432 as `postgres`; a fresh database is created per run and dropped at the end.
//! Passwords, TOTP secrets and codes, recovery codes, invitation tokens and session tokens are
//! random, held in memory and never printed; report text is a fixed synthetic sentence.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use age::secrecy::{ExposeSecret, SecretString};
use age::x25519;
use anyhow::Context;
use futures_util::StreamExt;
use incident_vault::configuration::Settings;
use incident_vault::crypto::kdf::Argon2Params;
use incident_vault::crypto::pool::CryptoPool;
use incident_vault::crypto::totp::{TotpSecret, code_at};
use incident_vault::services::instance::{EscrowGeneration, open_instance};
use incident_vault::services::{Vault, audit};
use incident_vault::startup::Application;
use incident_vault::storage::{NewAuditEvent, SessionRecord, Store};
use rand::Rng;
use serde_json::{Value, json};

/// A login must cost at most this multiple of one bare argon2id run.
const LOGIN_RATIO_GOAL: f64 = 1.15;
/// `GET /healthz` p99 during the flood must stay under this.
const HEALTHZ_P99_GOAL: Duration = Duration::from_millis(10);
/// `GET /api/v1/cases` p99 during the flood must stay within this multiple of its idle p99.
const CASES_RATIO_GOAL: f64 = 2.0;
const HEALTH_PROBE_EVERY: Duration = Duration::from_millis(10);
const CASES_PROBE_EVERY: Duration = Duration::from_millis(20);
/// Flood time before the measurement window opens, so that the crypto queue is full by then.
const WARM_UP: Duration = Duration::from_secs(2);
/// Most flood requests in flight at once; beyond, a tick is counted as not sent.
const FLOOD_IN_FLIGHT: usize = 2048;
/// How long the flood's last requests may take to be answered after the window.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// Accounts enrolled at once (each enrolment runs two argon2id, for the password and the
/// recovery code). One: on SQLite, two enrolments at once can fail with a 500 ("database is
/// locked": `redeem_enrolment` reads before it writes, and a deferred transaction that must
/// upgrade its lock while another connection writes gets SQLITE_BUSY without waiting).
const ENROL_CONCURRENCY: usize = 1;
const REPORT_CONCURRENCY: usize = 4;

#[derive(Debug, Clone)]
struct BenchConfig {
    logins: usize,
    seconds: u64,
    idle_seconds: u64,
    flood_factor: f64,
    reports: usize,
    backends: Vec<String>,
}

fn env_number(name: &str, default: u64, range: RangeInclusive<u64>) -> anyhow::Result<u64> {
    let value = match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .with_context(|| format!("{name} must be a whole number"))?,
        Err(_) => default,
    };
    anyhow::ensure!(range.contains(&value), "{name} must be in {range:?}");
    Ok(value)
}

impl BenchConfig {
    fn from_env() -> anyhow::Result<Self> {
        let backends = common::backends_from_env()?;
        let flood_factor = match std::env::var("BENCH_FLOOD_FACTOR") {
            Ok(text) => text
                .trim()
                .parse::<f64>()
                .context("BENCH_FLOOD_FACTOR must be a number")?,
            Err(_) => 4.0,
        };
        anyhow::ensure!(
            (0.1..=20.0).contains(&flood_factor),
            "BENCH_FLOOD_FACTOR must be in 0.1..=20"
        );
        Ok(Self {
            logins: usize::try_from(env_number("BENCH_LOGINS", 40, 3..=500)?)?,
            seconds: env_number("BENCH_SECONDS", 10, 1..=300)?,
            idle_seconds: env_number("BENCH_IDLE_SECONDS", 5, 1..=300)?,
            flood_factor,
            reports: usize::try_from(env_number("BENCH_REPORTS", 60, 1..=5_000)?)?,
            backends,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics

fn percentile(sorted: &[Duration], share: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (share * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut values: Vec<Duration>) -> Vec<Duration> {
    values.sort_unstable();
    values
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

fn ratio(value: Duration, limit: Duration) -> f64 {
    value.as_secs_f64() / limit.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// The median of `samples[i] / limits[i]`: each sample against the limit timed just before it.
fn paired_ratio(samples: &[Duration], limits: &[Duration]) -> f64 {
    let mut ratios: Vec<f64> = samples
        .iter()
        .zip(limits)
        .map(|(sample, limit)| ratio(*sample, *limit))
        .collect();
    ratios.sort_unstable_by(f64::total_cmp);
    ratios.get(ratios.len() / 2).copied().unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------------------
// Accounts, through the service's HTTP API

/// An account the bench enrolled. Its secrets stay in memory and are never printed.
struct Account {
    username: String,
    password: SecretString,
    totp: TotpSecret,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// 24 random letters and digits: long and random enough for the password policy.
fn random_password() -> SecretString {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    let password: String = (0..24)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect();
    SecretString::from(password)
}

/// The TOTP code an authenticator app would show at `unix_time`.
fn totp_code(secret: &TotpSecret, unix_time: u64) -> String {
    code_at(secret, unix_time).expose_secret().to_owned()
}

/// The TOTP secret inside an `otpauth://` URI, as an authenticator app reads it.
fn totp_secret_of(uri: &str) -> anyhow::Result<TotpSecret> {
    let encoded = uri
        .split(['?', '&'])
        .find_map(|part| part.strip_prefix("secret="))
        .context("the enrolment answer's URI carries no secret")?;
    let secret = totp_rs::Secret::try_from_base32(encoded)
        .map_err(|_| anyhow::anyhow!("the URI's secret is not base32"))?;
    let bytes: &[u8] = secret.as_ref();
    TotpSecret::from_bytes(bytes).map_err(|_| anyhow::anyhow!("the URI's secret is malformed"))
}

fn http_client(pool: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(pool)
        .build()?)
}

/// Sends a JSON POST; returns the status and the parsed answer (`Null` when it is not JSON).
async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    bearer: Option<&SecretString>,
) -> anyhow::Result<(u16, Value)> {
    let mut request = client.post(url).json(body);
    if let Some(token) = bearer {
        request = request.bearer_auth(token.expose_secret());
    }
    // `without_url`: an error message names no address, not even the loopback one.
    let response = request.send().await.map_err(reqwest::Error::without_url)?;
    let status = response.status().as_u16();
    let bytes = response
        .bytes()
        .await
        .map_err(reqwest::Error::without_url)?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// An answer's error code, which carries no secret; for messages about unexpected statuses.
fn error_code(answer: &Value) -> &str {
    answer["error"].as_str().unwrap_or("-")
}

/// Redeems a setup code or invitation and confirms the TOTP secret: the account is active.
async fn enrol(
    client: &reqwest::Client,
    base: &str,
    token: &SecretString,
    username: &str,
) -> anyhow::Result<Account> {
    let password = random_password();
    let (status, answer) = post_json(
        client,
        &format!("{base}/api/v1/enrol"),
        &json!({
            "token": token.expose_secret(),
            "username": username,
            "password": password.expose_secret(),
        }),
        None,
    )
    .await?;
    anyhow::ensure!(
        status == 200,
        "enrolling {username}: {status} {}",
        error_code(&answer)
    );
    let totp = totp_secret_of(answer["totp_uri"].as_str().unwrap_or_default())?;
    let (status, answer) = post_json(
        client,
        &format!("{base}/api/v1/enrol/confirm"),
        &json!({"token": token.expose_secret(), "totp": totp_code(&totp, unix_now())}),
        None,
    )
    .await?;
    anyhow::ensure!(
        status == 204,
        "confirming {username}: {status} {}",
        error_code(&answer)
    );
    Ok(Account {
        username: username.to_owned(),
        password,
        totp,
    })
}

/// The admin invites `username` as a reviewer of no desk; returns the invitation token.
async fn invite(
    client: &reqwest::Client,
    base: &str,
    admin: &SecretString,
    username: &str,
) -> anyhow::Result<SecretString> {
    let (status, answer) = post_json(
        client,
        &format!("{base}/api/v1/admin/reviewers"),
        &json!({"username": username, "role": "reviewer", "desks": []}),
        Some(admin),
    )
    .await?;
    anyhow::ensure!(
        status == 201,
        "inviting {username}: {status} {}",
        error_code(&answer)
    );
    Ok(SecretString::from(
        answer["token"]
            .as_str()
            .context("the invitation answer has no token")?
            .to_owned(),
    ))
}

/// The body of a login with the code of the *next* TOTP step: the step of the confirmation (or
/// of an earlier login) is spent, and the service accepts one step of skew.
fn login_body(account: &Account) -> Value {
    json!({
        "username": account.username,
        "password": account.password.expose_secret(),
        "totp": totp_code(&account.totp, unix_now() + 30),
    })
}

/// Logs in over HTTP; returns the session token.
async fn login(
    client: &reqwest::Client,
    base: &str,
    account: &Account,
) -> anyhow::Result<SecretString> {
    let (status, answer) = post_json(
        client,
        &format!("{base}/api/v1/auth/login"),
        &login_body(account),
        None,
    )
    .await?;
    anyhow::ensure!(
        status == 200,
        "logging in {}: {status} {}",
        account.username,
        error_code(&answer)
    );
    Ok(SecretString::from(
        answer["token"]
            .as_str()
            .context("the login answer has no token")?
            .to_owned(),
    ))
}

/// Files one synthetic report (its receipt is read off the socket and dropped unseen).
async fn file_report(client: &reqwest::Client, base: &str, index: usize) -> anyhow::Result<()> {
    let kinds = ["intimidation", "photographing", "threat", "surveillance"];
    let key = format!("bench-{:032x}", rand::random::<u128>());
    let response = client
        .post(format!("{base}/api/v1/reports"))
        .header("Idempotency-Key", key)
        .json(&json!({
            "incident_type": kinds[index % kinds.len()],
            "description": "Synthetic benchmark report: a delegate was photographed outside a meeting room.",
            "mechanism": {"kind": "upr", "session": "UPR 45"},
        }))
        .send()
        .await
        .map_err(reqwest::Error::without_url)?;
    let status = response.status().as_u16();
    drop(
        response
            .bytes()
            .await
            .map_err(reqwest::Error::without_url)?,
    );
    anyhow::ensure!(status == 201, "filing a report: {status}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Step 1: what a login costs

struct LoginFigures {
    kdf: Vec<Duration>,
    http_login: Vec<Duration>,
    direct_login: Vec<Duration>,
    failed_login: Vec<Duration>,
    /// The store calls of a successful login, alone: the account read, then the one write
    /// transaction (TOTP step, session, audit event: `Store::complete_login`).
    store_calls: Vec<Duration>,
}

/// One bare argon2id run at `params` over a fresh random password and salt, on this thread.
fn time_kdf(params: &Argon2Params) -> anyhow::Result<Duration> {
    let secret: [u8; 24] = rand::random();
    let salt: [u8; 16] = rand::random();
    let started = Instant::now();
    std::hint::black_box(params.derive(&secret, &salt)?);
    Ok(started.elapsed())
}

/// The store calls `Vault::login` makes for a successful login, on `username`'s account, with
/// junk of the real sizes: a TOTP step far ahead (so never a replay), a random session hash.
async fn time_store_calls(
    store: &dyn Store,
    username: &str,
    index: usize,
) -> anyhow::Result<Duration> {
    let now = i64::try_from(unix_now())?;
    let started = Instant::now();
    let (reviewer, secrets) = store
        .reviewer_by_username(username)
        .await?
        .context("the account for the store-call timing is missing")?;
    store
        .complete_login(
            &SessionRecord {
                token_hash: rand::random::<[u8; 32]>().to_vec(),
                reviewer_id: reviewer.id.clone(),
                created_at: now,
                last_seen_at: now,
                expires_at: now + 60,
                sealed_identity: (0..130).map(|_| rand::random::<u8>()).collect(),
                stepped_up_at: None,
            },
            now / 30 + 1_000 + i64::try_from(index)?,
            &secrets.login_verifier,
            now,
            &NewAuditEvent {
                occurred_at: now,
                actor: reviewer.id.clone(),
                action: "login".into(),
                target: None,
                outcome: "success".into(),
            },
            &audit::chain_hash,
        )
        .await?;
    Ok(started.elapsed())
}

#[allow(clippy::too_many_arguments)]
async fn measure_logins(
    client: &reqwest::Client,
    base: &str,
    vault: &Vault,
    params: &Argon2Params,
    http_accounts: &[Account],
    direct_accounts: &[Account],
    scratch_account: &str,
) -> anyhow::Result<LoginFigures> {
    let login_url = format!("{base}/api/v1/auth/login");
    let failed_login = |index: usize| {
        let body = json!({
            "username": format!("bench-nobody-{index}"),
            "password": "not the password of anyone here",
            "totp": "000000",
        });
        let url = login_url.clone();
        async move {
            let started = Instant::now();
            let (status, answer) = post_json(client, &url, &body, None).await?;
            anyhow::ensure!(
                status == 401,
                "a failed login answered {status} {}",
                error_code(&answer)
            );
            Ok(started.elapsed())
        }
    };
    // Warm-up: the KDF's memory pool, the connections, the statements.
    for index in 0..3 {
        tokio::task::block_in_place(|| time_kdf(params))?;
        failed_login(usize::MAX - index).await?;
        time_store_calls(vault.store.as_ref(), scratch_account, index).await?;
    }
    let mut figures = LoginFigures {
        kdf: Vec::new(),
        http_login: Vec::new(),
        direct_login: Vec::new(),
        failed_login: Vec::new(),
        store_calls: Vec::new(),
    };
    // Interleaved, so that all kinds see the same machine: a figure taken a minute earlier
    // would carry the drift of argon2's cost on a busy machine.
    for (index, (http, direct)) in http_accounts.iter().zip(direct_accounts).enumerate() {
        figures
            .kdf
            .push(tokio::task::block_in_place(|| time_kdf(params))?);

        let started = Instant::now();
        let session = login(client, base, http).await?;
        figures.http_login.push(started.elapsed());
        drop(session);

        let code = SecretString::from(totp_code(&direct.totp, unix_now() + 30));
        let password = SecretString::from(direct.password.expose_secret().to_owned());
        let started = Instant::now();
        let session = vault
            .login(&direct.username, password, code)
            .await
            .map_err(|error| anyhow::anyhow!("Vault::login of {}: {error}", direct.username))?;
        figures.direct_login.push(started.elapsed());
        drop(session);

        figures.failed_login.push(failed_login(index).await?);
        figures
            .store_calls
            .push(time_store_calls(vault.store.as_ref(), scratch_account, index + 3).await?);
    }
    Ok(figures)
}

// ---------------------------------------------------------------------------------------------
// Step 2: the flood, and the probes beside it

#[derive(Default)]
struct ProbeTally {
    latencies: Vec<Duration>,
    failures: BTreeMap<String, u64>,
}

impl ProbeTally {
    fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// Probes `url` every `every` from `start` until `end` on a thread and runtime of its own, with
/// a client of its own (one kept-alive connection), as a monitor or a reviewer's browser would.
fn spawn_probe(
    url: String,
    bearer: Option<SecretString>,
    every: Duration,
    start: Instant,
    end: Instant,
) -> std::thread::JoinHandle<anyhow::Result<ProbeTally>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let client = http_client(1)?;
            let mut tally = ProbeTally::default();
            let mut interval = tokio::time::interval_at(start.into(), every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                if Instant::now() >= end {
                    break;
                }
                let mut request = client.get(&url);
                if let Some(token) = &bearer {
                    request = request.bearer_auth(token.expose_secret());
                }
                let sent = Instant::now();
                let outcome = match request.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        match response.bytes().await {
                            Ok(_) if status == 200 => Ok(()),
                            Ok(_) => Err(format!("status {status}")),
                            Err(_) => Err("body".to_owned()),
                        }
                    }
                    Err(error) if error.is_timeout() => Err("timeout".to_owned()),
                    Err(_) => Err("transport".to_owned()),
                };
                match outcome {
                    Ok(()) => tally.latencies.push(sent.elapsed()),
                    Err(kind) => *tally.failures.entry(kind).or_default() += 1,
                }
            }
            tally.latencies.sort_unstable();
            Ok(tally)
        })
    })
}

/// Probes `/healthz` and the case list together from `start` to `end`.
fn spawn_probes(
    base: &str,
    session: &SecretString,
    start: Instant,
    end: Instant,
) -> [std::thread::JoinHandle<anyhow::Result<ProbeTally>>; 2] {
    [
        spawn_probe(
            format!("{base}/healthz"),
            None,
            HEALTH_PROBE_EVERY,
            start,
            end,
        ),
        spawn_probe(
            format!("{base}/api/v1/cases?limit=50"),
            Some(SecretString::from(session.expose_secret().to_owned())),
            CASES_PROBE_EVERY,
            start,
            end,
        ),
    ]
}

fn join_probe(
    handle: std::thread::JoinHandle<anyhow::Result<ProbeTally>>,
) -> anyhow::Result<ProbeTally> {
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("a probe thread panicked"))?
}

#[derive(Default)]
struct FloodTally {
    /// Ticks of the open-loop schedule.
    scheduled: u64,
    /// Ticks not sent because [`FLOOD_IN_FLIGHT`] requests were already waiting.
    not_sent: u64,
    statuses: BTreeMap<u16, u64>,
    transport_errors: BTreeMap<String, u64>,
    /// 401s (a KDF ran) answered inside the window, and their latencies.
    refused_in_window: u64,
    refused_latencies: Vec<Duration>,
    /// 503s answered inside the window.
    shed_in_window: u64,
    /// CPU time of the flood's own thread (client and connections), from start to drain.
    client_cpu: Duration,
}

struct FloodFigures {
    rate: f64,
    window: Duration,
    /// This process's CPU time (service, flood client, probes) from the flood's start until
    /// its last answer, and that wall time.
    process_cpu: Duration,
    busy_wall: Duration,
    tally: FloodTally,
    idle_health: ProbeTally,
    idle_cases: ProbeTally,
    flood_health: ProbeTally,
    flood_cases: ProbeTally,
}

/// Sends wrong-password logins open-loop at `rate` per second from `start` until `end`, half to
/// an existing account (which locks itself, but every attempt still runs the KDF before the
/// lock is checked) and half to unknown usernames (the KDF against a dummy verifier).
/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    cpu_clock(rustix::time::ClockId::ThreadCPUTime)
}

/// CPU time of the whole process, every thread.
fn process_cpu() -> Duration {
    cpu_clock(rustix::time::ClockId::ProcessCPUTime)
}

fn cpu_clock(clock: rustix::time::ClockId) -> Duration {
    let time = rustix::time::clock_gettime(clock);
    Duration::new(
        u64::try_from(time.tv_sec).unwrap_or(0),
        u32::try_from(time.tv_nsec).unwrap_or(0),
    )
}

/// Runs [`flood`] on a thread and runtime of its own, so that its CPU can be told apart.
fn spawn_flood(
    base: String,
    target: String,
    rate: f64,
    start: Instant,
    window: (Instant, Instant),
) -> std::thread::JoinHandle<anyhow::Result<FloodTally>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(flood(&base, &target, rate, start, window))
    })
}

async fn flood(
    base: &str,
    target: &str,
    rate: f64,
    start: Instant,
    window: (Instant, Instant),
) -> anyhow::Result<FloodTally> {
    let cpu_start = thread_cpu();
    let client = http_client(FLOOD_IN_FLIGHT)?;
    let url: Arc<str> = Arc::from(format!("{base}/api/v1/auth/login"));
    let gate = Arc::new(tokio::sync::Semaphore::new(FLOOD_IN_FLIGHT));
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut interval = tokio::time::interval_at(start.into(), period);
    // A late tick is sent at once: the offered rate is kept on average.
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (window_start, window_end) = window;
    let mut tally = FloodTally::default();
    let mut requests = tokio::task::JoinSet::new();
    loop {
        interval.tick().await;
        if Instant::now() >= window_end {
            break;
        }
        tally.scheduled += 1;
        let Ok(permit) = gate.clone().try_acquire_owned() else {
            tally.not_sent += 1;
            continue;
        };
        let username = if tally.scheduled % 2 == 0 {
            target.to_owned()
        } else {
            format!("bench-flood-{}", tally.scheduled)
        };
        let body =
            json!({"username": username, "password": "wrong password, flood", "totp": "000000"});
        let (client, url) = (client.clone(), url.clone());
        requests.spawn(async move {
            let _permit = permit;
            let sent = Instant::now();
            let outcome = match client.post(&*url).json(&body).send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    response.bytes().await.map(|_| status)
                }
                Err(error) => Err(error),
            };
            (sent, Instant::now(), outcome)
        });
        // Collect what finished, so the set does not grow with the whole flood.
        while let Some(done) = requests.try_join_next() {
            record(&mut tally, done?, window_start, window_end);
        }
    }
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while let Some(done) = requests.join_next().await {
            record(&mut tally, done?, window_start, window_end);
        }
        anyhow::Ok(())
    })
    .await;
    match drained {
        Ok(result) => result?,
        Err(_) => {
            let left = requests.len() as u64;
            requests.abort_all();
            *tally
                .transport_errors
                .entry("not answered within the drain timeout".to_owned())
                .or_default() += left;
        }
    }
    tally.refused_latencies.sort_unstable();
    tally.client_cpu = thread_cpu() - cpu_start;
    Ok(tally)
}

fn record(
    tally: &mut FloodTally,
    (sent, done, outcome): (Instant, Instant, reqwest::Result<u16>),
    window_start: Instant,
    window_end: Instant,
) {
    let in_window = done >= window_start && done < window_end;
    match outcome {
        Ok(status) => {
            *tally.statuses.entry(status).or_default() += 1;
            if in_window && status == 401 {
                tally.refused_in_window += 1;
                tally.refused_latencies.push(done - sent);
            }
            if in_window && status == 503 {
                tally.shed_in_window += 1;
            }
        }
        Err(error) => {
            let kind = if error.is_timeout() {
                "timeout"
            } else if error.is_connect() {
                "connect"
            } else {
                "other"
            };
            *tally.transport_errors.entry(kind.to_owned()).or_default() += 1;
        }
    }
}

async fn measure_flood(
    base: &str,
    session: &SecretString,
    target: &str,
    rate: f64,
    config: &BenchConfig,
) -> anyhow::Result<FloodFigures> {
    // Idle: the same probes, the same cadence, nothing else running.
    let idle_start = Instant::now() + Duration::from_millis(100);
    let idle_end = idle_start + Duration::from_secs(config.idle_seconds);
    let [health, cases] = spawn_probes(base, session, idle_start, idle_end);
    let (idle_health, idle_cases) =
        tokio::task::block_in_place(|| anyhow::Ok((join_probe(health)?, join_probe(cases)?)))?;

    let window = Duration::from_secs(config.seconds);
    let start = Instant::now() + Duration::from_millis(100);
    let window_start = start + WARM_UP;
    let window_end = window_start + window;
    let [health, cases] = spawn_probes(base, session, window_start, window_end);
    let (cpu_before, wall_before) = (process_cpu(), Instant::now());
    let flooder = spawn_flood(
        base.to_owned(),
        target.to_owned(),
        rate,
        start,
        (window_start, window_end),
    );
    let (tally, flood_health, flood_cases) = tokio::task::block_in_place(|| {
        let tally = flooder
            .join()
            .map_err(|_| anyhow::anyhow!("the flood thread panicked"))??;
        anyhow::Ok((tally, join_probe(health)?, join_probe(cases)?))
    })?;
    let (process_cpu, busy_wall) = (process_cpu() - cpu_before, wall_before.elapsed());
    Ok(FloodFigures {
        rate,
        window,
        process_cpu,
        busy_wall,
        tally,
        idle_health,
        idle_cases,
        flood_health,
        flood_cases,
    })
}

// ---------------------------------------------------------------------------------------------
// One backend

struct BackendFigures {
    cores: usize,
    params: Argon2Params,
    logins: LoginFigures,
    flood: FloodFigures,
    setup: Duration,
}

async fn bench_backend(
    label: &str,
    url: &str,
    data_dir: &Path,
    config: &BenchConfig,
) -> anyhow::Result<BackendFigures> {
    let escrow = x25519::Identity::generate().to_public();
    let mut settings = Settings::load(Path::new("config"))?;
    settings.server.bind = "127.0.0.1:0".into();
    settings.server.shutdown_timeout_seconds = 5;
    settings.database.url = url.to_owned();
    settings.storage.data_dir = data_dir.to_path_buf();
    settings.escrow.recipient = escrow.to_string();
    let params = settings.argon2;
    let crypto_permits = settings.crypto_concurrency();

    let mut app = Application::build(settings).await?;
    let setup_code = app
        .take_setup_code()
        .context("no setup code: the database is not fresh")?;
    let store = app.store();
    let base = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    let server = tokio::spawn(app.run_until_stopped());

    let outcome = drive(
        label,
        &base,
        store,
        &escrow,
        setup_code,
        params,
        crypto_permits,
        config,
    )
    .await;

    handle.stop(true).await;
    match tokio::time::timeout(Duration::from_secs(20), server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => println!("[{label}] the server stopped with an error: {error}"),
        Ok(Err(error)) => println!("[{label}] the server task failed: {error}"),
        Err(_) => println!("[{label}] the server did not stop within 20 s"),
    }
    outcome
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    label: &str,
    base: &str,
    store: Arc<dyn Store>,
    escrow: &x25519::Recipient,
    setup_code: SecretString,
    params: Argon2Params,
    crypto_permits: usize,
    config: &BenchConfig,
) -> anyhow::Result<BackendFigures> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let client = http_client(8)?;
    let started = Instant::now();

    // The first account, from the setup code: admin, and coordinator of the default desk.
    let admin = enrol(&client, base, &setup_code, "bench-admin").await?;
    drop(setup_code);
    let admin_session = login(&client, base, &admin).await?;

    // Everyone else by invitation: two sets of accounts for the two kinds of timed login, and
    // the target of the flood.
    let usernames: Vec<String> = (0..config.logins)
        .map(|index| format!("bench-http-{index:03}"))
        .chain((0..config.logins).map(|index| format!("bench-direct-{index:03}")))
        .chain(std::iter::once("bench-flood-target".to_owned()))
        .collect();
    println!(
        "[{label}] enrolling {} accounts by invitation …",
        usernames.len()
    );
    let enrolled: Vec<anyhow::Result<Account>> = futures_util::stream::iter(&usernames)
        .map(|username| {
            let (client, admin_session) = (&client, &admin_session);
            async move {
                let token = invite(client, base, admin_session, username).await?;
                enrol(client, base, &token, username).await
            }
        })
        .buffered(ENROL_CONCURRENCY)
        .collect()
        .await;
    let mut accounts = enrolled.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let target = accounts
        .pop()
        .context("the flood target was not enrolled")?;
    let direct_accounts = accounts.split_off(config.logins);
    let http_accounts = accounts;

    // Cases for the admin's list: intake grants each to the default desk's coordinator.
    println!("[{label}] filing {} reports …", config.reports);
    let filed: Vec<anyhow::Result<()>> = futures_util::stream::iter(0..config.reports)
        .map(|index| file_report(&client, base, index))
        .buffer_unordered(REPORT_CONCURRENCY)
        .collect()
        .await;
    filed.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let setup = started.elapsed();

    // The use case itself, beside the HTTP service, on the same store and instance.
    let instance = open_instance(
        store.as_ref(),
        Some(escrow.clone()),
        EscrowGeneration::Refused,
        &mut |_| Ok(()),
    )
    .await?
    .keys;
    let vault = Vault {
        store,
        intake_crypto: CryptoPool::new(crypto_permits, 512),
        login_crypto: CryptoPool::new(crypto_permits, 512),
        reviewer_crypto: CryptoPool::new(crypto_permits, 512),
        instance,
        argon2: params,
        idempotency_ttl_hours: 24,
    };

    println!(
        "[{label}] {} sequential logins of each kind, interleaved with bare argon2id runs …",
        config.logins
    );
    let logins = measure_logins(
        &client,
        base,
        &vault,
        &params,
        &http_accounts,
        &direct_accounts,
        &target.username,
    )
    .await?;

    let kdf_median = percentile(&sorted(logins.kdf.clone()), 0.5);
    let capacity = cores as f64 / kdf_median.as_secs_f64();
    let rate = capacity * config.flood_factor;
    println!(
        "[{label}] flood: {rate:.0} wrong-password logins/s ({} × {cores} cores ÷ {}) for {} s + {} s warm-up, after {} s idle …",
        config.flood_factor,
        ms(kdf_median),
        config.seconds,
        WARM_UP.as_secs(),
        config.idle_seconds,
    );
    let flood = measure_flood(base, &admin_session, &target.username, rate, config).await?;
    Ok(BackendFigures {
        cores,
        params,
        logins,
        flood,
        setup,
    })
}

async fn bench_sqlite(config: &BenchConfig) -> anyhow::Result<BackendFigures> {
    let directory = tempfile::Builder::new()
        .prefix("incident-vault-bench-")
        .tempdir()?;
    let url = format!("sqlite://{}/bench.db", directory.path().display());
    bench_backend("sqlite", &url, &directory.path().join("data"), config).await
}

enum Outcome {
    Done(Box<BackendFigures>),
    Skipped(String),
    Failed(String),
}

async fn bench_postgres(config: &BenchConfig) -> Outcome {
    let database = match common::ScratchDatabase::create().await {
        Ok(database) => database,
        Err(reason) => return Outcome::Skipped(reason),
    };
    let directory = match tempfile::Builder::new()
        .prefix("incident-vault-bench-")
        .tempdir()
    {
        Ok(directory) => directory,
        Err(error) => return Outcome::Failed(error.to_string()),
    };
    let url = database.url();
    let result = bench_backend("postgres", &url, &directory.path().join("data"), config).await;
    database.drop().await;
    match result {
        Ok(result) => Outcome::Done(Box::new(result)),
        Err(error) => Outcome::Failed(format!("{error:#}")),
    }
}

// ---------------------------------------------------------------------------------------------
// The report

fn verdict(pass: bool) -> &'static str {
    if pass { "yes" } else { "**NO**" }
}

fn spread(samples: &[Duration]) -> String {
    format!(
        "median {} (p10 {}, p90 {}; n = {})",
        ms(percentile(samples, 0.5)),
        ms(percentile(samples, 0.1)),
        ms(percentile(samples, 0.9)),
        samples.len()
    )
}

fn probe_line(tally: &ProbeTally) -> String {
    let failures = if tally.failures.is_empty() {
        String::new()
    } else {
        let kinds: Vec<String> = tally
            .failures
            .iter()
            .map(|(kind, count)| format!("{count} × {kind}"))
            .collect();
        format!("; failed: {}", kinds.join(", "))
    };
    format!(
        "p99 {} (p50 {}, max {}; {} probes{failures})",
        ms(percentile(&tally.latencies, 0.99)),
        ms(percentile(&tally.latencies, 0.5)),
        ms(tally.latencies.last().copied().unwrap_or_default()),
        tally.latencies.len(),
    )
}

fn tables(label: &str, figures: &BackendFigures, config: &BenchConfig) -> String {
    let mut out = String::new();
    let logins = &figures.logins;
    let kdf = sorted(logins.kdf.clone());
    let kdf_median = percentile(&kdf, 0.5);
    let _ = writeln!(out, "### {label}\n");
    let _ = writeln!(
        out,
        "Login cost: {} sequential logins of each kind, each by a different account on its \
         first login (accounts made by invitation → enrol → confirm; set-up took {:.1} s), \
         interleaved with {} bare argon2id runs ({}) on the bench's thread.\n",
        config.logins,
        figures.setup.as_secs_f64(),
        kdf.len(),
        figures.params.encode(),
    );
    let _ = writeln!(
        out,
        "| measure | time | median ÷ argon2id median | median of paired ratios | goal | pass? |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let _ = writeln!(
        out,
        "| bare argon2id, one run | {} | 1.00 | 1.00 | — | — |",
        spread(&kdf)
    );
    let rows = [
        (
            "`POST /api/v1/auth/login` (HTTP, password + TOTP, 200)",
            &logins.http_login,
            true,
        ),
        (
            "`Vault::login` called directly (no HTTP)",
            &logins.direct_login,
            false,
        ),
        (
            "failed login of an unknown user (HTTP, 401)",
            &logins.failed_login,
            false,
        ),
        (
            "the store calls of a successful login, alone (1 read, 1 write transaction)",
            &logins.store_calls,
            false,
        ),
    ];
    for (name, samples, has_goal) in rows {
        let paired = paired_ratio(samples, &logins.kdf);
        let samples = sorted(samples.clone());
        let value = ratio(percentile(&samples, 0.5), kdf_median);
        let (goal, pass) = if has_goal {
            (
                format!("≤ {LOGIN_RATIO_GOAL}"),
                verdict(value <= LOGIN_RATIO_GOAL),
            )
        } else {
            ("(info)".to_owned(), "—")
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {value:.2} | {paired:.2} | {goal} | {pass} |",
            spread(&samples)
        );
    }
    let median_of = |samples: &[Duration]| percentile(&sorted(samples.to_vec()), 0.5);
    let signed_ms = |value: f64| format!("{:+.2} ms", value * 1e3);
    let http = median_of(&logins.http_login).as_secs_f64();
    let direct = median_of(&logins.direct_login).as_secs_f64();
    let _ = writeln!(
        out,
        "\nAbove the KDF (medians): an HTTP login {}, of which HTTP itself (HTTP − direct) {} and \
         the store calls alone {}; the budget at {LOGIN_RATIO_GOAL} × is {}. \"Paired\" divides \
         each login by the KDF run timed just before it, which cancels the machine's drift.",
        signed_ms(http - kdf_median.as_secs_f64()),
        signed_ms(http - direct),
        ms(median_of(&logins.store_calls)),
        ms(kdf_median.mul_f64(LOGIN_RATIO_GOAL - 1.0)),
    );

    let flood = &figures.flood;
    let tally = &flood.tally;
    let capacity = figures.cores as f64 / kdf_median.as_secs_f64();
    let window = flood.window.as_secs_f64();
    let statuses: Vec<String> = tally
        .statuses
        .iter()
        .map(|(status, count)| format!("{count} × {status}"))
        .chain(
            tally
                .transport_errors
                .iter()
                .map(|(kind, count)| format!("{count} × transport {kind}")),
        )
        .collect();
    let _ = writeln!(
        out,
        "\nLogin flood: wrong passwords sent open-loop at {:.0}/s = {} × ({} cores ÷ argon2id \
         median {} = {capacity:.0}/s), {} s warm-up then a {window:.0} s window; probes on their \
         own threads and clients, the same cadence idle ({} s before) and under the flood.\n",
        flood.rate,
        config.flood_factor,
        figures.cores,
        ms(kdf_median),
        WARM_UP.as_secs(),
        config.idle_seconds,
    );
    let _ = writeln!(out, "| measure | idle | under the flood | goal | pass? |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    let health_p99 = percentile(&flood.flood_health.latencies, 0.99);
    let _ = writeln!(
        out,
        "| `GET /healthz`, every 10 ms | {} | {} | p99 < {} | {} |",
        probe_line(&flood.idle_health),
        probe_line(&flood.flood_health),
        ms(HEALTHZ_P99_GOAL),
        verdict(
            !flood.flood_health.latencies.is_empty()
                && health_p99 < HEALTHZ_P99_GOAL
                && flood.flood_health.failed() == 0
        ),
    );
    let cases_idle = percentile(&flood.idle_cases.latencies, 0.99);
    let cases_flood = percentile(&flood.flood_cases.latencies, 0.99);
    let cases_ratio = ratio(cases_flood, cases_idle);
    let _ = writeln!(
        out,
        "| `GET /api/v1/cases?limit=50` with a bearer session ({} cases listed), every 20 ms | {} | {} — **{cases_ratio:.2} ×** idle p99 | ≤ {CASES_RATIO_GOAL} × idle p99 | {} |",
        config.reports.min(50),
        probe_line(&flood.idle_cases),
        probe_line(&flood.flood_cases),
        verdict(
            !flood.flood_cases.latencies.is_empty()
                && cases_ratio <= CASES_RATIO_GOAL
                && flood.flood_cases.failed() == 0
        ),
    );
    let refused = &tally.refused_latencies;
    let _ = writeln!(
        out,
        "| the flood's own answers | — | {} scheduled, {} not sent (over {FLOOD_IN_FLIGHT} in flight); answered: {}. In the window: {:.0} failed logins/s (a KDF each; {:.2} × capacity), {:.0} shed/s (503); 401 latency p50 {}, p99 {} | — | — |",
        tally.scheduled,
        tally.not_sent,
        if statuses.is_empty() {
            "none".to_owned()
        } else {
            statuses.join(", ")
        },
        tally.refused_in_window as f64 / window,
        tally.refused_in_window as f64 / window / capacity,
        tally.shed_in_window as f64 / window,
        ms(percentile(refused, 0.5)),
        ms(percentile(refused, 0.99)),
    );
    let busy = flood.busy_wall.as_secs_f64();
    let _ = writeln!(
        out,
        "| CPU of this process from the flood's start to its last answer ({busy:.1} s) | — | {:.2} cores busy, of which the flood's client thread {:.2} (PostgreSQL's own processes not counted) | — | — |",
        flood.process_cpu.as_secs_f64() / busy,
        tally.client_cpu.as_secs_f64() / busy,
    );
    out
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map_or("unknown", |(_, model)| model.trim())
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!("nproc {cores}, CPU: {model}")
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| {
            let fields: Vec<&str> = text.split_whitespace().take(3).collect();
            (fields.len() == 3).then(|| fields.join(" "))
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Says so when something else keeps the machine busy: every figure here is a ratio to a limit
/// measured in the same run, but a busy machine widens the spread of both.
fn warn_if_busy() {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let one_minute = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<f64>().ok());
    if let Some(load) = one_minute.filter(|load| *load > cores as f64 * 0.75) {
        println!(
            "WARNING: the 1-minute load average is {load:.2} on {cores} cores before the bench \
             starts: another workload is running, and the figures will be noisy."
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = BenchConfig::from_env()?;
    if let Ok(filter) = std::env::var("BENCH_LOG") {
        // The service's own log: by design it holds no secret, address or content.
        incident_vault::telemetry::init_subscriber(
            incident_vault::configuration::LogFormat::Pretty,
            &filter,
            std::io::stderr,
        )?;
    }
    let started = Instant::now();
    let load_before = load_average();
    println!("reviewer_load: {config:?}");
    warn_if_busy();
    let mut sections = Vec::new();
    let mut failed = false;
    for backend in &config.backends {
        let outcome = match backend.as_str() {
            "sqlite" => match bench_sqlite(&config).await {
                Ok(result) => Outcome::Done(Box::new(result)),
                Err(error) => Outcome::Failed(format!("{error:#}")),
            },
            _ => bench_postgres(&config).await,
        };
        let section = match outcome {
            Outcome::Done(figures) => tables(backend, &figures, &config),
            Outcome::Skipped(reason) => {
                let line = format!("SKIP {backend}: {reason}");
                println!("\n!!!!!!!!!! {line} !!!!!!!!!!\n");
                format!("### {backend}\n\n**{line}**\n")
            }
            Outcome::Failed(reason) => {
                failed = true;
                let line = format!("ERROR {backend}: {reason}");
                println!("\n!!!!!!!!!! {line} !!!!!!!!!!\n");
                format!("### {backend}\n\n**{line}**\n")
            }
        };
        sections.push(section);
    }

    println!("\n## reviewer_load results\n");
    println!(
        "Machine: {}; load average before {load_before}, after {}.\n",
        machine(),
        load_average()
    );
    for section in sections {
        println!("{section}");
    }
    println!(
        "Service, load generator and probes share the same cores (the service uses one HTTP \
         worker and one argon2id slot per core). Total time {:.0} s.",
        started.elapsed().as_secs_f64()
    );
    anyhow::ensure!(!failed, "a backend failed; see above");
    Ok(())
}
