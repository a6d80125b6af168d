//! `spawn_app`: the real service, built through `Application::build` like production, on a
//! fresh database per test (a temporary SQLite file, or a fresh PostgreSQL database).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use age::secrecy::ExposeSecret;
use incident_vault::configuration::{LogFormat, Settings};
use incident_vault::startup::Application;
use incident_vault::storage::Store;
use serde_json::{Value, json};
use sqlx::{Connection, Executor};

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The source address of every test client: distinctive, so the log test can look for it.
pub const CLIENT_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 77);

/// Every log line the service writes during the test run (all tests, one process).
pub static LOGS: LazyLock<LogCapture> = LazyLock::new(|| {
    let capture = LogCapture::default();
    incident_vault::telemetry::init_subscriber(
        LogFormat::Json,
        "trace,hyper=off,hyper_util=off,reqwest=off,h2=off,rustls=off,tokio_util=off",
        capture.clone(),
    )
    .expect("the test subscriber installs once");
    capture
});

/// A cloneable in-memory log sink.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Everything captured so far.
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The lines logged inside the spans of these requests: each carries its request's
    /// `request_id` (see [`request_id`]), so other tests' lines in the shared capture are left out.
    pub fn lines_of_requests(&self, request_ids: &[String]) -> Vec<String> {
        let tags: Vec<String> = request_ids
            .iter()
            .map(|id| format!("\"request_id\":\"{id}\""))
            .collect();
        self.contents()
            .lines()
            .filter(|line| tags.iter().any(|tag| line.contains(tag.as_str())))
            .map(str::to_owned)
            .collect()
    }

    /// The lines logged outside any request's span: start-up, connections, background work.
    /// Any test's requests may have caused them, so privacy checks read them as well.
    pub fn lines_outside_requests(&self) -> Vec<String> {
        self.contents()
            .lines()
            .filter(|line| !line.contains("\"request_id\":"))
            .map(str::to_owned)
            .collect()
    }
}

/// The id the service gave a request, from its response's `x-request-id` header; the request's
/// log lines carry it as `request_id`.
pub fn request_id(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(incident_vault::telemetry::REQUEST_ID_HEADER)
        .expect("every response carries its request id")
        .to_str()
        .unwrap()
        .to_owned()
}

impl Write for LogCapture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'writer> tracing_subscriber::fmt::MakeWriter<'writer> for LogCapture {
    type Writer = LogCapture;

    fn make_writer(&'writer self) -> Self::Writer {
        self.clone()
    }
}

/// Whether the CI runner asked that missing outside programs fail instead of skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true" || value == "1")
}

/// Skips (or, in CI, fails) a test that needs an outside program.
pub fn skip_or_fail(what: &str) {
    if in_ci() {
        panic!("CI=true and {what} is missing: this test must run in CI");
    }
    eprintln!("\n!!!!!!!! SKIPPED: {what} is missing; this test did not run !!!!!!!!\n");
}

fn postgres_server_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Runs `$body` with `$connection`, a fresh connection to the test database of either backend
/// (the body is compiled once per backend, so it may use queries of either type).
macro_rules! with_connection {
    ($database:expr, |$connection:ident| $body:expr) => {
        match $database {
            TestDatabase::Sqlite { url, .. } => {
                let mut $connection = sqlx::SqliteConnection::connect(url).await.unwrap();
                $body
            }
            TestDatabase::Postgres { url, .. } => {
                let mut $connection = sqlx::PgConnection::connect(url).await.unwrap();
                $body
            }
        }
    };
}

/// A database created for one test, dropped when the test ends.
pub enum TestDatabase {
    Sqlite { url: String, file: PathBuf },
    Postgres { url: String, name: String },
}

impl TestDatabase {
    /// A fresh database for one test; `None` when the backend is unavailable outside CI.
    pub async fn create_for_test(backend: Backend, dir: &Path) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let file = dir.join("db").join("incident-vault.db");
                Some(Self::Sqlite {
                    url: format!("sqlite://{}", file.display()),
                    file,
                })
            }
            Backend::Postgres => {
                let server = postgres_server_url();
                let admin = format!("{server}/postgres");
                let connection = tokio::time::timeout(
                    Duration::from_secs(5),
                    sqlx::PgConnection::connect(&admin),
                )
                .await;
                let mut connection = match connection {
                    Ok(Ok(connection)) => connection,
                    _ => {
                        skip_or_fail(&format!("PostgreSQL at {server}"));
                        return None;
                    }
                };
                let name = format!("iv_test_{}", random_suffix());
                connection
                    .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                    .expect("the test database can be created");
                Some(Self::Postgres {
                    url: format!("{server}/{name}"),
                    name,
                })
            }
        }
    }

    /// Runs SQL against this database, outside the service.
    pub async fn execute(&self, sql: &str) {
        with_connection!(self, |connection| {
            connection
                .execute(sqlx::AssertSqlSafe(sql.to_owned()))
                .await
                .unwrap();
        })
    }

    /// The URL the service uses.
    pub fn url(&self) -> &str {
        match self {
            Self::Sqlite { url, .. } | Self::Postgres { url, .. } => url,
        }
    }

    /// The rows of `_sqlx_migrations`, `(version, success)`, in version order.
    pub async fn applied_migrations(&self) -> Vec<(i64, bool)> {
        let sql = "SELECT version, success FROM _sqlx_migrations ORDER BY version";
        with_connection!(self, |connection| sqlx::query_as(sql)
            .fetch_all(&mut connection)
            .await
            .unwrap())
    }

    /// The names of the database's own tables.
    pub async fn table_names(&self) -> Vec<String> {
        match self {
            Self::Sqlite { url, .. } => {
                let mut connection = sqlx::SqliteConnection::connect(url).await.unwrap();
                sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .fetch_all(&mut connection)
                    .await
                    .unwrap()
            }
            Self::Postgres { url, .. } => {
                let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query_scalar(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = 'public'",
                )
                .fetch_all(&mut connection)
                .await
                .unwrap()
            }
        }
    }

    /// The one integer a query such as `SELECT count(*) …` answers, read outside the service.
    pub async fn count(&self, sql: &str) -> i64 {
        with_connection!(self, |connection| sqlx::query_scalar(sqlx::AssertSqlSafe(
            sql.to_owned()
        ))
        .fetch_one(&mut connection)
        .await
        .unwrap())
    }

    /// The ids of the cases stored whole: with their report entry and their escrow grant.
    pub async fn whole_case_ids(&self) -> std::collections::BTreeSet<String> {
        let sql = "SELECT c.id FROM cases c \
                   WHERE EXISTS (SELECT 1 FROM entries e WHERE e.case_id = c.id AND e.kind = 'report') \
                   AND EXISTS (SELECT 1 FROM grants g WHERE g.case_id = c.id AND g.grantee_kind = 'escrow')";
        with_connection!(self, |connection| sqlx::query_scalar(sql)
            .fetch_all(&mut connection)
            .await
            .unwrap())
        .into_iter()
        .collect()
    }

    /// Every `reporter_access` row, read outside the service.
    pub async fn reporter_access_rows(&self) -> Vec<incident_vault::storage::ReporterAccessRecord> {
        let sql = "SELECT lookup_id, case_id, kdf_params, reporter_recipient, sealed_identity, \
                   failed_attempts FROM reporter_access";
        with_connection!(self, |connection| sqlx::query_as(sql)
            .fetch_all(&mut connection)
            .await
            .unwrap())
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Self::Postgres { name, .. } = self {
            let name = name.clone();
            let admin = format!("{}/postgres", postgres_server_url());
            // Drop needs its own runtime: the test's may be shutting down.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(runtime) = runtime {
                    runtime.block_on(async move {
                        if let Ok(mut connection) = sqlx::PgConnection::connect(&admin).await {
                            let _ = connection
                                .execute(sqlx::AssertSqlSafe(format!(
                                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                                )))
                                .await;
                        }
                    });
                }
            })
            .join();
        }
    }
}

fn random_suffix() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..12)
        .map(|_| char::from(b'a' + rng.gen_range(0..26u8)))
        .collect()
}

/// A running service and what a test needs to look inside it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    /// The service's own use cases and crypto pools.
    pub vault: actix_web::web::Data<incident_vault::services::Vault>,
    pub escrow: age::x25519::Identity,
    pub settings: Settings,
    pub dir: tempfile::TempDir,
    /// The one-time setup code printed on first start, if one was issued.
    pub setup_code: Option<String>,
    handle: ServerHandle,
    // Declared last: dropped after the server handle.
    pub database: TestDatabase,
}

/// Settings for a test: the repository's config, then a free port and a private directory.
pub fn test_settings(
    database_url: &str,
    dir: &Path,
    escrow: Option<&age::x25519::Identity>,
) -> Settings {
    let mut settings = Settings::load(Path::new("config")).expect("the repository config loads");
    settings.server.bind = "127.0.0.1:0".into();
    settings.server.workers = 2;
    settings.server.shutdown_timeout_seconds = 1;
    settings.database.url = database_url.to_owned();
    settings.storage.data_dir = dir.join("data");
    settings.escrow.recipient = escrow
        .map(|identity| identity.to_public().to_string())
        .unwrap_or_default();
    settings
}

/// Starts the service on a fresh database. `None` when the backend is unavailable outside CI.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |_| {}).await
}

/// [`spawn_app`] with the test's settings changed by `adjust` first (a limit lowered, say).
pub async fn spawn_app_with(
    backend: Backend,
    adjust: impl FnOnce(&mut Settings),
) -> Option<TestApp> {
    LazyLock::force(&LOGS);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database = TestDatabase::create_for_test(backend, dir.path()).await?;
    let escrow = age::x25519::Identity::generate();
    let mut settings = test_settings(database.url(), dir.path(), Some(&escrow));
    adjust(&mut settings);
    let application = Application::build(settings.clone())
        .await
        .expect("the application builds");
    Some(start(application, settings, escrow, database, dir))
}

/// Runs a built application in the background and wraps it for the test.
pub fn start(
    mut application: Application,
    settings: Settings,
    escrow: age::x25519::Identity,
    database: TestDatabase,
    dir: tempfile::TempDir,
) -> TestApp {
    let address = format!("http://127.0.0.1:{}", application.port());
    let store = application.store();
    let vault = application.vault();
    let handle = application.handle();
    let setup_code = application
        .take_setup_code()
        .map(|code| code.expose_secret().to_owned());
    tokio::spawn(application.run_until_stopped());
    TestApp {
        address,
        client: test_client(),
        store,
        vault,
        escrow,
        settings,
        dir,
        setup_code,
        handle,
        database,
    }
}

/// A client that connects from [`CLIENT_ADDRESS`] and sends a distinctive User-Agent.
pub fn test_client() -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(CLIENT_ADDRESS))
        .user_agent(TEST_USER_AGENT)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("the test client builds")
}

/// The User-Agent every test client sends; it must never reach a log.
pub const TEST_USER_AGENT: &str = "IncidentVaultTestPhone/9.9 (ua-canary-5e1d)";

/// The smallest valid report.
pub fn minimal_report(description: &str) -> Value {
    json!({"incident_type": "intimidation", "description": description})
}

/// When the incident of [`full_report`] happened: a distinctive exact time, of which only the
/// month (`2024-01`) may reach a plaintext column.
pub const FULL_REPORT_OCCURRED_AT: &str = "2024-01-23T10:37:41Z";

/// The example of DESIGN §4, with `secret` in every sealed free-text field. The session is
/// `UPR 45 {secret}`: it starts like a label but is not one, so it must stay sealed rather than
/// reach the plaintext `session_label` column. `secret` may be at most 33 characters long (the
/// contact channel's limit is 40).
pub fn full_report(secret: &str) -> Value {
    json!({
        "desk": "default",
        "incident_type": "photographing",
        "mechanism": {"kind": "upr", "session": format!("UPR 45 {secret}"), "state_under_review": format!("State {secret}")},
        "occurred_at": FULL_REPORT_OCCURRED_AT,
        "occurred_at_precision": "exact",
        "location": format!("Palais des Nations, Room XX, side event {secret}"),
        "perpetrator": {"kind": "gongo_representative", "description": format!("man with a lanyard {secret}")},
        "description": format!("While I spoke, he photographed me and my colleague. {secret}"),
        "blocked_submission": {
            "platform": format!("HRC extranet {secret}"),
            "reference": format!("ref-{secret}"),
            "submitted_on": "2024-01-10",
            "what_happened": format!("removed without notice {secret}")
        },
        "consent": {
            "share_with_ohchr": true,
            "sg_report": "anonymised",
            "share_with_partners": false,
            "aggregate_statistics": true,
            "contact": {"allowed": true, "channel": format!("signal {secret}"), "handle": format!("+41 {secret}")}
        },
        "language": full_report_language(secret)
    })
}

/// The `language` of [`full_report`]: `en` with `secret` in a private-use subtag, cut into the
/// eight-character pieces a BCP 47 subtag allows (`en-x-CANARYAB-CDEFGHIJ-KL`). Only its letters
/// and digits are kept, at most 24 of them, to stay within the 35-character limit.
pub fn full_report_language(secret: &str) -> String {
    let letters: Vec<char> = secret
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(24)
        .collect();
    if letters.is_empty() {
        return "en".to_owned();
    }
    let subtags: Vec<String> = letters
        .chunks(8)
        .map(|chunk| chunk.iter().collect())
        .collect();
    format!("en-x-{}", subtags.join("-"))
}

/// A fresh valid Idempotency-Key, as a phone makes one: a random UUID v4.
pub fn random_idempotency_key() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    // RFC 9562 §5.4: version 4 in the high nibble of byte 6, variant 10 in the top of byte 8.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The spellings of a case reference a log line could hold: as shown, and without its hyphens
/// (as typed).
pub fn case_ref_spellings(case_ref: &str) -> [String; 2] {
    [case_ref.to_owned(), case_ref.replace('-', "")]
}

/// A random string that cannot occur by chance.
pub fn canary() -> String {
    format!("CANARY{}", random_suffix().to_uppercase())
}

/// The tables intake writes to.
pub const INTAKE_TABLES: [&str; 5] = [
    "cases",
    "grants",
    "entries",
    "reporter_access",
    "idempotency_records",
];

impl TestApp {
    /// POSTs a JSON report.
    pub async fn post_report(
        &self,
        report: &Value,
        idempotency_key: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}/api/v1/reports", self.address))
            .json(report);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.expect("the request is sent")
    }

    /// GETs a path.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, path).await
    }

    /// Sends `method` to `path` with no body, no session and no extra header.
    pub async fn request(&self, method: reqwest::Method, path: &str) -> reqwest::Response {
        self.client
            .request(method, format!("{}{path}", self.address))
            .send()
            .await
            .expect("the request is sent")
    }

    /// Files a report and returns `(case_ref, receipt)`.
    pub async fn file(&self, report: &Value) -> (String, String) {
        let response = self.post_report(report, None).await;
        assert_eq!(
            response.status(),
            201,
            "filing failed: {:?}",
            response.text().await
        );
        let body: Value = response.json().await.unwrap();
        (
            body["case_ref"].as_str().unwrap().to_owned(),
            body["receipt"].as_str().unwrap().to_owned(),
        )
    }

    /// Runs SQL against the test database, outside the service.
    pub async fn execute(&self, sql: &str) {
        self.database.execute(sql).await;
    }

    /// An account's stored rows, read straight from the store; panics when there is none.
    pub async fn stored_account(
        &self,
        username: &str,
    ) -> (
        incident_vault::storage::ReviewerRecord,
        incident_vault::storage::ReviewerSecretsRecord,
    ) {
        self.store
            .reviewer_by_username(username)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no stored account {username}"))
    }

    /// Makes `count` bare reviewer rows, `R00000`, `R00001`, …, active members of the desk: the
    /// grantees of store-level tests that write cases without going through enrolment.
    pub async fn seed_desk_members(&self, desk_id: &str, count: usize) {
        let reviewer = |index: usize| {
            format!(
                "('R{index:05}', 'seeded{index:05}', 'reviewer', 'active', 'age1seeded', \
                 '2026-11-29')"
            )
        };
        let member = |index: usize| format!("('{desk_id}', 'R{index:05}', 'reviewer')");
        let tables: [(&str, &dyn Fn(usize) -> String); 2] = [
            (
                "reviewers (id, username, role, status, recipient, created_on)",
                &reviewer,
            ),
            ("desk_members (desk_id, reviewer_id, role)", &member),
        ];
        for (table, row) in tables {
            let rows = (0..count).map(row).collect::<Vec<_>>().join(", ");
            self.execute(&format!("INSERT INTO {table} VALUES {rows}"))
                .await;
        }
    }

    /// Counts the rows of a table.
    pub async fn count(&self, table: &str) -> i64 {
        let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"));
        with_connection!(&self.database, |connection| sqlx::query_scalar(sql)
            .fetch_one(&mut connection)
            .await
            .unwrap())
    }

    /// Asserts that intake left no row anywhere.
    pub async fn assert_nothing_stored(&self) {
        for table in INTAKE_TABLES {
            assert_eq!(self.count(table).await, 0, "{table} is not empty");
        }
    }

    /// Every byte the database holds at rest, as text: the SQLite files, or a dump of every
    /// PostgreSQL table with `bytea` shown in hex.
    pub async fn database_at_rest(&self) -> Vec<u8> {
        match &self.database {
            TestDatabase::Sqlite { file, .. } => {
                let mut bytes = Vec::new();
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let path = PathBuf::from(format!("{}{suffix}", file.display()));
                    if let Ok(content) = std::fs::read(&path) {
                        bytes.extend_from_slice(&content);
                    }
                }
                bytes
            }
            TestDatabase::Postgres { url, .. } => {
                let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
                )
                .fetch_all(&mut connection)
                .await
                .unwrap();
                let mut dump = String::new();
                for table in tables {
                    let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT t::text FROM {table} t"
                    )))
                    .fetch_all(&mut connection)
                    .await
                    .unwrap();
                    dump.push_str(&rows.join("\n"));
                }
                dump.into_bytes()
            }
        }
    }

    /// Writes the escrow identity to a file, as the escrow holder would hold it.
    pub fn escrow_identity_file(&self) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.dir.path().join("escrow-identity.txt");
        std::fs::write(
            &path,
            format!("{}\n", self.escrow.to_string().expose_secret()),
        )
        .unwrap();
        // As an operator keeps it: readable by its owner only.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// Runs the `incident-vault` binary against this test's database, as an operator would.
    /// Sends `request` as raw bytes on a connection of its own and reads the whole answer, for
    /// what an HTTP client library would refuse to send or would not show.
    pub async fn raw_exchange(&self, request: &'static [u8]) -> String {
        let address = self.address.trim_start_matches("http://").to_owned();
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect(address).unwrap();
            stream.write_all(request).unwrap();
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).unwrap();
            String::from_utf8_lossy(&answer).into_owned()
        })
        .await
        .unwrap()
    }

    pub fn cli(&self, arguments: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_incident-vault"))
            .args(arguments)
            .env("APP_DATABASE__URL", self.database.url())
            .env("APP_STORAGE__DATA_DIR", self.dir.path().join("data"))
            .env("APP_TELEMETRY__LEVEL", "warn")
            .output()
            .expect("the incident-vault binary runs")
    }

    /// Stops the server gracefully.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }

    /// Hangs up the test client's connections, then stops the server: once this returns, every
    /// request of the test has been answered, logged and written, and nothing more will be.
    pub async fn hang_up_and_stop(&mut self) {
        drop(std::mem::replace(&mut self.client, test_client()));
        self.stop().await;
    }
}

/// Whether `needle` occurs in `haystack`, as bytes or hex-encoded bytes.
pub fn contains_in_any_encoding(haystack: &[u8], needle: &str) -> bool {
    let hex: String = needle.bytes().map(|byte| format!("{byte:02x}")).collect();
    let contains = |pattern: &[u8]| {
        haystack
            .windows(pattern.len())
            .any(|window| window == pattern)
    };
    contains(needle.as_bytes())
        || contains(hex.as_bytes())
        || contains(hex.to_uppercase().as_bytes())
}

/// Every file below `dir`, read.
pub fn read_tree(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                bytes.extend(read_tree(&path));
            } else if let Ok(content) = std::fs::read(&path) {
                bytes.extend(content);
            }
        }
    }
    bytes
}

/// Declares each listed `async fn name(backend: Backend)` as a test on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            )+
        }
    };
}

/// A connection of the test's own that keeps the service from writing until it is released:
/// SQLite's write lock, or the PostgreSQL table lock that `postgres_lock` takes (as behind a long
/// migration or an operator's open session).
pub enum LockHolder {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl LockHolder {
    pub async fn take(database: &TestDatabase, postgres_lock: &'static str) -> Self {
        match database {
            TestDatabase::Sqlite { url, .. } => {
                let mut connection = sqlx::SqliteConnection::connect(url).await.unwrap();
                connection.execute("BEGIN EXCLUSIVE").await.unwrap();
                Self::Sqlite(connection)
            }
            TestDatabase::Postgres { url, .. } => {
                let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
                connection.execute("BEGIN").await.unwrap();
                connection.execute(postgres_lock).await.unwrap();
                Self::Postgres(connection)
            }
        }
    }

    pub async fn release(self) {
        match self {
            Self::Sqlite(mut connection) => {
                connection.execute("ROLLBACK").await.unwrap();
            }
            Self::Postgres(mut connection) => {
                connection.execute("ROLLBACK").await.unwrap();
            }
        }
    }
}
