//! Settings: `config/base.toml` (also compiled in, so the binary runs from anywhere), then
//! `config/{APP_ENVIRONMENT}.toml`, then `APP_SECTION__KEY` environment variables.
//! [`Settings::validate`] runs before anything is created and names the key that is wrong.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::crypto::kdf::Argon2Params;
use crate::storage::Backend;

const BASE: &str = include_str!("../config/base.toml");

/// Every setting of the service.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub storage: StorageSettings,
    pub escrow: EscrowSettings,
    pub argon2: Argon2Params,
    pub limits: LimitSettings,
    pub telemetry: TelemetrySettings,
    /// Which `config/{environment}.toml` was layered in (`APP_ENVIRONMENT`).
    #[serde(skip)]
    pub environment: Environment,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    /// `APP_SERVER__BIND`: address and port; port 0 picks a free one.
    pub bind: String,
    /// `APP_SERVER__WORKERS`: HTTP workers; 0 = one per core.
    pub workers: usize,
    /// `APP_SERVER__SHUTDOWN_TIMEOUT_SECONDS`
    pub shutdown_timeout_seconds: u64,
    /// `APP_SERVER__REQUEST_TIMEOUT_SECONDS`: the longest any request may take, its body
    /// included, before it is answered 503.
    pub request_timeout_seconds: u64,
}

/// `[database]`
#[derive(Clone, Deserialize)]
pub struct DatabaseSettings {
    /// `APP_DATABASE__URL`: `sqlite://PATH` or `postgres://…`. May hold a password: never logged.
    pub url: String,
    /// `APP_DATABASE__MAX_CONNECTIONS`
    pub max_connections: u32,
    /// `APP_DATABASE__LOCK_TIMEOUT_SECONDS`: how long a statement waits for a lock held elsewhere.
    pub lock_timeout_seconds: u64,
    /// `APP_DATABASE__STATEMENT_TIMEOUT_SECONDS`: PostgreSQL cancels a statement that runs longer,
    /// and ends a session left idle inside a transaction that long.
    pub statement_timeout_seconds: u64,
}

impl DatabaseSettings {
    /// The waits the store allows the database.
    pub fn timeouts(&self) -> crate::storage::Timeouts {
        crate::storage::Timeouts {
            lock: std::time::Duration::from_secs(self.lock_timeout_seconds),
            statement: std::time::Duration::from_secs(self.statement_timeout_seconds),
        }
    }
}

impl std::fmt::Debug for DatabaseSettings {
    /// The URL may carry a password: only its scheme is shown.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = self.url.split_once("://").map_or("?", |(scheme, _)| scheme);
        formatter
            .debug_struct("DatabaseSettings")
            .field("url", &format_args!("{scheme}://…"))
            .field("max_connections", &self.max_connections)
            .field("lock_timeout_seconds", &self.lock_timeout_seconds)
            .field("statement_timeout_seconds", &self.statement_timeout_seconds)
            .finish()
    }
}

/// `[storage]`
#[derive(Debug, Clone, Deserialize)]
pub struct StorageSettings {
    /// `APP_STORAGE__DATA_DIR`: the folder of the service's own files, created 0700. The SQLite file
    /// is where `APP_DATABASE__URL` says (the default URL happens to point into `data`).
    pub data_dir: PathBuf,
}

/// `[escrow]`
#[derive(Debug, Clone, Deserialize)]
pub struct EscrowSettings {
    /// `APP_ESCROW__RECIPIENT`: `age1…`, or empty to generate one on first start.
    pub recipient: String,
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize)]
pub struct LimitSettings {
    /// `APP_LIMITS__JSON_BODY_BYTES`
    pub json_body_bytes: usize,
    /// `APP_LIMITS__BODY_TIMEOUT_SECONDS`
    pub body_timeout_seconds: u64,
    /// `APP_LIMITS__CRYPTO_CONCURRENCY`: 0 = one per core.
    pub crypto_concurrency: usize,
    /// `APP_LIMITS__CRYPTO_QUEUE`
    pub crypto_queue: usize,
    /// `APP_LIMITS__IDEMPOTENCY_TTL_HOURS`
    pub idempotency_ttl_hours: u32,
}

/// `[telemetry]`
#[derive(Debug, Clone, Deserialize)]
pub struct TelemetrySettings {
    /// `APP_TELEMETRY__FORMAT`: `pretty` or `json`.
    pub format: LogFormat,
    /// `APP_TELEMETRY__LEVEL`: a tracing filter directive.
    pub level: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For a person at a terminal.
    Pretty,
    /// One JSON object per line, for a log shipper.
    Json,
}

/// The deployment environment: selects `config/{name}.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Environment {
    #[default]
    Local,
    Production,
}

impl Environment {
    fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Production => "production",
        }
    }
}

impl FromStr for Environment {
    type Err = anyhow::Error;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_lowercase().as_str() {
            "local" => Ok(Self::Local),
            "production" => Ok(Self::Production),
            other => bail!("APP_ENVIRONMENT is `{other}`; use `local` or `production`"),
        }
    }
}

/// Every key of the built-in `base.toml` (which names them all), as its environment variable
/// `APP_SECTION__KEY`, with its default value.
fn base_settings() -> anyhow::Result<Vec<(String, config::Value)>> {
    let base = config::Config::builder()
        .add_source(config::File::from_str(BASE, config::FileFormat::Toml))
        .build()
        .and_then(|base| base.try_deserialize::<config::Map<String, config::Value>>())
        .context("the built-in base.toml is malformed")?;
    let mut settings = Vec::new();
    for (section, keys) in base {
        let Ok(keys) = keys.into_table() else {
            continue;
        };
        for (key, value) in keys {
            let variable = format!("APP_{}__{}", section.to_uppercase(), key.to_uppercase());
            settings.push((variable, value));
        }
    }
    Ok(settings)
}

/// The environment variables that are settings: `APP_ENVIRONMENT`, `APP_CONFIG_DIR`, and
/// `APP_SECTION__KEY` for every key of the built-in `base.toml`.
fn known_setting_names() -> anyhow::Result<Vec<String>> {
    let mut names = vec!["APP_ENVIRONMENT".to_owned(), "APP_CONFIG_DIR".to_owned()];
    names.extend(base_settings()?.into_iter().map(|(variable, _)| variable));
    Ok(names)
}

/// The environment variables of the settings that are whole numbers in the built-in base.toml.
fn whole_number_setting_names() -> anyhow::Result<Vec<String>> {
    Ok(base_settings()?
        .into_iter()
        .filter(|(_, value)| {
            matches!(
                value.kind,
                config::ValueKind::I64(_)
                    | config::ValueKind::I128(_)
                    | config::ValueKind::U64(_)
                    | config::ValueKind::U128(_)
            )
        })
        .map(|(variable, _)| variable)
        .collect())
}

/// Refuses a whole-number setting whose variable is not plain digits: the config crate would
/// take `1.5` as 1 and `1e3` as 1000 without a word. The value is never shown.
fn refuse_malformed_whole_numbers(variables: &[(String, String)]) -> anyhow::Result<()> {
    let whole = whole_number_setting_names()?;
    for (name, value) in variables {
        // config reads the prefix in any case: `app_server__workers` is the same setting.
        if whole.contains(&name.to_uppercase())
            && (value.is_empty() || !value.bytes().all(|byte| byte.is_ascii_digit()))
        {
            bail!("{name} must be a whole number, written in digits only (no spaces)");
        }
    }
    Ok(())
}

/// Refuses a key of a configuration file that is not a setting (`[databse]`, `uri = …`): it
/// would be ignored without a word, as a misspelt variable would. A missing file is fine (the
/// caller decides which files are required).
fn refuse_unknown_file_keys(file: &Path) -> anyhow::Result<()> {
    if !file.is_file() {
        return Ok(());
    }
    let shown = file.display();
    let table = config::Config::builder()
        .add_source(config::File::from(file))
        .build()
        .and_then(|read| read.try_deserialize::<config::Map<String, config::Value>>())
        .map_err(|error| {
            // The parser quotes the line at fault, which may hold a password (an unquoted
            // database URL): only its first line, which says where, is shown.
            let said = error.to_string();
            let at = said.lines().next().unwrap_or_default();
            anyhow::anyhow!("could not read {shown}: {at}")
        })?;
    let whole_numbers = whole_number_setting_names()?;
    let known: Vec<(String, String)> = base_settings()?
        .into_iter()
        .filter_map(|(variable, _)| {
            let (section, key) = variable.strip_prefix("APP_")?.split_once("__")?;
            Some((section.to_lowercase(), key.to_lowercase()))
        })
        .collect();
    for (section, value) in table {
        if !known.iter().any(|(ours, _)| *ours == section) {
            match known.iter().find(|(ours, _)| is_slip_of(&section, ours)) {
                Some((meant, _)) => {
                    bail!("{shown}: [{section}] is not a section: did you mean [{meant}]?")
                }
                None => bail!(
                    "{shown}: `{section}` is not a setting or a section; the settings are listed in \
                     the README's configuration table"
                ),
            }
        }
        let Ok(keys) = value.into_table() else {
            bail!("{shown}: `{section}` must be a section ([{section}]), not a value");
        };
        for (key, value) in &keys {
            if known
                .iter()
                .any(|(ours, its)| *ours == section && its == key)
            {
                // As for a variable: the config crate would round `1.5`, and take `true` as 1
                // and `"600"` as 600, without a word. The value is never shown.
                let variable = format!("APP_{}__{}", section.to_uppercase(), key.to_uppercase());
                let whole = matches!(value.kind, config::ValueKind::I64(number) if number >= 0)
                    || matches!(value.kind, config::ValueKind::U64(_));
                if whole_numbers.contains(&variable) && !whole {
                    bail!(
                        "{shown}: {section}.{key} ({variable}) must be a whole number, written in \
                         digits only (not a decimal, a quoted string or true/false)"
                    );
                }
                continue;
            }
            match known
                .iter()
                .find(|(ours, its)| *ours == section && is_slip_of(key, its))
            {
                Some((_, meant)) => {
                    bail!(
                        "{shown}: {section}.{key} is not a setting: did you mean {section}.{meant}?"
                    )
                }
                None => bail!(
                    "{shown}: {section}.{key} is not a setting; the settings are listed in the \
                     README's configuration table"
                ),
            }
        }
    }
    Ok(())
}

/// Whether `given` is a slip of `meant`: at most two letters added, dropped, changed or swapped.
fn is_slip_of(given: &str, meant: &str) -> bool {
    strsim::damerau_levenshtein(&given.to_uppercase(), &meant.to_uppercase()) <= 2
}

/// Refuses an environment variable that is meant as a setting but is not one: a key of one of
/// our sections that does not exist (`APP_DATABASE__URI`), a setting with its underscores
/// changed (`APP_DATABASE_URL`), a misspelt section (`APP_DATABSE__URL`) or a misspelt
/// `APP_ENVIRONMENT`. Either would be ignored without a word, and the service would start on a
/// default: a fresh SQLite file instead of the PostgreSQL the operator named, or local mode,
/// which creates databases, instead of production. Other `APP_` variables belong to other
/// programs and are left alone (`APP_REDIS__URL`, `APP_NAME`). Only names are ever shown, never
/// values (a database URL may hold a password).
fn refuse_misspelled_settings(names: &[String]) -> anyhow::Result<()> {
    let known = known_setting_names()?;
    let squash = |name: &str| name.replace('_', "").to_uppercase();
    let mut sections: Vec<&str> = known
        .iter()
        .filter_map(|name| name.split_once("__").map(|(section, _)| section))
        .collect();
    sections.dedup();
    // The environment source reads names in any case: `app_database__url` would be read as
    // `APP_DATABASE__URL`, and with both set, whichever the environment lists last would win.
    if let Some((name, upper)) = names.iter().find_map(|name| {
        let upper = name.to_uppercase();
        (upper.starts_with("APP_") && *name != upper && known.contains(&upper))
            .then_some((name, upper))
    }) {
        bail!(
            "{name} would be read as the setting {upper}: settings are set in upper case only; \
             rename or unset {name}"
        );
    }
    for name in names.iter().filter(|name| name.starts_with("APP_")) {
        if known.iter().any(|known| known == name) {
            continue;
        }
        if let Some(meant) = known.iter().find(|known| squash(known) == squash(name)) {
            bail!(
                "{name} is not a setting: did you mean {meant}? (sections and keys are joined by two underscores)"
            );
        }
        let Some((section, key)) = name.split_once("__") else {
            // A top-level one: `APP_ENVIRONMENT` or `APP_CONFIG_DIR`, misspelt.
            if let Some(meant) = known
                .iter()
                .filter(|known| !known.contains("__"))
                .find(|known| is_slip_of(name, known))
            {
                bail!("{name} is not a setting: did you mean {meant}?");
            }
            continue;
        };
        if sections.contains(&section) {
            bail!(
                "{name} is not a setting; the settings are listed in the README's configuration table"
            );
        }
        // A section within two letters of ours, with a key that section has: ours, misspelt.
        // Another program's section near one of ours (`APP_SENDER__ADDRESS`, `APP_STORE__BUCKET`)
        // has keys of its own.
        if let Some(meant) = sections
            .iter()
            .map(|ours| format!("{ours}__{key}"))
            .find(|meant| {
                known.contains(meant)
                    && is_slip_of(section, meant.split("__").next().unwrap_or_default())
            })
        {
            bail!("{name} is not a setting (no such section): did you mean {meant}?");
        }
    }
    Ok(())
}

impl Settings {
    /// Loads the layers from `config_dir` (usually `./config`) and the process environment.
    pub fn load(config_dir: &Path) -> anyhow::Result<Self> {
        let names = std::env::vars_os()
            .filter_map(|(name, _)| name.into_string().ok())
            .collect::<Vec<_>>();
        refuse_misspelled_settings(&names)?;
        let settings_given = std::env::vars_os()
            .filter_map(|(name, value)| {
                let name = name.into_string().ok()?;
                name.to_uppercase()
                    .starts_with("APP_")
                    .then(|| (name, value.to_string_lossy().into_owned()))
            })
            .collect::<Vec<_>>();
        refuse_malformed_whole_numbers(&settings_given)?;
        let environment: Environment = std::env::var("APP_ENVIRONMENT")
            .unwrap_or_else(|_| "local".into())
            .parse()?;
        // A local run may start anywhere (the base layer is built in); a production one must
        // find its own layer, or it would run quietly on local defaults (pretty logs, bound to
        // 127.0.0.1) when the config folder is missing or mistyped.
        let environment_file = config_dir.join(format!("{}.toml", environment.as_str()));
        if environment != Environment::Local && !environment_file.is_file() {
            bail!(
                "APP_ENVIRONMENT={} needs {}, which is missing: point APP_CONFIG_DIR (or \
                 --config-dir) at the folder that holds it",
                environment.as_str(),
                environment_file.display()
            );
        }
        refuse_unknown_file_keys(&config_dir.join("base.toml"))?;
        refuse_unknown_file_keys(&environment_file)?;
        let settings = config::Config::builder()
            .add_source(config::File::from_str(BASE, config::FileFormat::Toml))
            .add_source(config::File::from(config_dir.join("base.toml")).required(false))
            .add_source(config::File::from(environment_file).required(false))
            .add_source(
                config::Environment::with_prefix("APP")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()
            .context("could not read the configuration")?;
        let mut settings: Settings = settings.try_deserialize().map_err(|error| {
            // config names the key (`server.workers`); the operator set a variable. Its message
            // also quotes the value (or the largest number it could read in its place), which
            // may be a secret put in the wrong variable: only what was expected is kept.
            let message = error.to_string();
            let expected = message
                .split_once(", expected ")
                .map(|(_, rest)| rest.split(" for key").next().unwrap_or(rest).trim())
                .filter(|expected| !expected.contains('`') && !expected.contains('"'))
                .map(|expected| format!(" (expected {expected})"))
                .unwrap_or_default();
            let variable = known_setting_names()
                .unwrap_or_default()
                .into_iter()
                .find(|variable| {
                    variable
                        .strip_prefix("APP_")
                        .and_then(|rest| rest.split_once("__"))
                        .is_some_and(|(section, key)| {
                            let dotted = format!("{section}.{key}").to_lowercase();
                            message.contains(&format!("`{dotted}`"))
                                || message.contains(&format!("\"{dotted}\""))
                        })
                });
            match variable {
                Some(variable) => anyhow::anyhow!(
                    "the setting {variable} is missing or has a value of the wrong kind{expected}"
                ),
                None => anyhow::anyhow!(
                    "a setting is missing or has a value of the wrong kind{expected}"
                ),
            }
        })?;
        settings.environment = environment;
        settings.validate()?;
        Ok(settings)
    }

    /// Refuses settings that cannot work, naming the key and its environment variable.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.bind_address()?;
        if let Err(error) = Backend::of_url(&self.database.url) {
            bail!("database.url (APP_DATABASE__URL) cannot be used: {error}");
        }
        if let Some(position) = unknown_postgres_parameter(&self.database.url) {
            // Not named: sqlx would log it with its value (libpq's `sslpassword`, a misplaced
            // password), and so might this message.
            bail!(
                "database.url (APP_DATABASE__URL): query parameter number {position} is not one \
                 that sqlx's PostgreSQL driver reads, and it would write its value to the log; \
                 known: {}",
                POSTGRES_URL_PARAMETERS.join(", ")
            );
        }
        if let Some(rest) = self.database.url.strip_prefix("sqlite:") {
            // SQLite's in-memory and nameless databases vanish with the process (or with each
            // connection): an acknowledged report would be lost at the next restart.
            let path = rest
                .trim_start_matches('/')
                .split('?')
                .next()
                .unwrap_or_default();
            let memory = path.is_empty() || path == ":memory:" || rest.contains("mode=memory");
            if memory {
                bail!(
                    "database.url (APP_DATABASE__URL) names no SQLite file (an in-memory or \
                     nameless database loses every report at restart); give a path such as \
                     sqlite://data/incident-vault.db"
                );
            }
            // The service sets the file's modes itself; a parameter could only make it a
            // memory database (`vfs=memdb`), read-only (`mode=ro`, `immutable=1`) or shared.
            if rest.contains('?') {
                bail!(
                    "database.url (APP_DATABASE__URL): a SQLite URL takes no query parameters; \
                     give the file alone, such as sqlite://data/incident-vault.db"
                );
            }
            #[cfg(feature = "sqlite")]
            {
                let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(
                    &self.database.url,
                )
                .map_err(|error| {
                    anyhow::anyhow!("database.url (APP_DATABASE__URL) is not a SQLite URL: {error}")
                })?;
                // Spelled otherwise (`%3Amemory%3A`, `file::memory:`), still no file.
                if options
                    .get_filename()
                    .to_string_lossy()
                    .contains(":memory:")
                {
                    bail!(
                        "database.url (APP_DATABASE__URL) names an in-memory SQLite database, \
                         which loses every report at restart; give a path such as \
                         sqlite://data/incident-vault.db"
                    );
                }
            }
        }
        #[cfg(feature = "postgres")]
        if self.database.url.starts_with("postgres://")
            || self.database.url.starts_with("postgresql://")
        {
            // Parsed here, before anything is created, as the driver will parse it. Its errors
            // name a parameter and the value that it could not read (a port, an sslmode), never
            // the password: no parameter sqlx does not know reaches it (refused above).
            let options = <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(
                &self.database.url,
            )
            .map_err(|error| {
                anyhow::anyhow!(
                    "database.url (APP_DATABASE__URL) is not a PostgreSQL URL that can be used: \
                     {error}"
                )
            })?;
            if options.get_database().is_none_or(str::is_empty) {
                bail!(
                    "database.url (APP_DATABASE__URL) names no database: add its name after the \
                     host, as in postgres://USER@HOST/incident_vault (without one, the server's \
                     default database, named like the user, would receive the service's tables)"
                );
            }
        }
        // actix-web panics above 512 workers, after the instance is recorded (and a generated
        // escrow identity shown): refused here, before anything is created.
        if self.server.workers > 512 {
            bail!("server.workers (APP_SERVER__WORKERS) must be 0 (one per core) to 512");
        }
        if self.server.shutdown_timeout_seconds > 3600 {
            bail!(
                "server.shutdown_timeout_seconds (APP_SERVER__SHUTDOWN_TIMEOUT_SECONDS) must be 0 \
                 to 3600"
            );
        }
        if self.database.max_connections == 0 || self.database.max_connections > 1000 {
            bail!("database.max_connections (APP_DATABASE__MAX_CONNECTIONS) must be 1 to 1000");
        }
        if !(1..=600).contains(&self.database.lock_timeout_seconds) {
            bail!(
                "database.lock_timeout_seconds (APP_DATABASE__LOCK_TIMEOUT_SECONDS) must be 1 to 600"
            );
        }
        if !(1..=3600).contains(&self.database.statement_timeout_seconds) {
            bail!(
                "database.statement_timeout_seconds (APP_DATABASE__STATEMENT_TIMEOUT_SECONDS) \
                 must be 1 to 3600"
            );
        }
        if self.storage.data_dir.as_os_str().is_empty() {
            bail!("storage.data_dir (APP_STORAGE__DATA_DIR) must not be empty");
        }
        if !self.escrow.recipient.trim().is_empty() {
            self.escrow_recipient()?;
        }
        let argon2 = &self.argon2;
        if !argon2.meets_floor() {
            bail!(
                "argon2 (APP_ARGON2__MEMORY_KIB, APP_ARGON2__ITERATIONS, APP_ARGON2__PARALLELISM) \
                 must meet one of OWASP's equal-strength settings ({}), p >= 1; got {}",
                Argon2Params::floor_text(),
                argon2.encode()
            );
        }
        if !argon2.within_ceiling() {
            bail!(
                "argon2 (APP_ARGON2__MEMORY_KIB, APP_ARGON2__ITERATIONS, APP_ARGON2__PARALLELISM) \
                 is beyond 4 GiB, 100 passes or 16 lanes: refused as a typo; got {}",
                argon2.encode()
            );
        }
        let limits = &self.limits;
        let smallest = usize::try_from(crate::domain::report::limits::LARGEST_REPORT_BYTES)?;
        if !(smallest..=16 * 1024 * 1024).contains(&limits.json_body_bytes) {
            bail!(
                "limits.json_body_bytes (APP_LIMITS__JSON_BODY_BYTES) must be {smallest} bytes \
                 (the largest valid report, every field at its limit) to 16 MiB"
            );
        }
        if !(1..=3600).contains(&limits.body_timeout_seconds) {
            bail!(
                "limits.body_timeout_seconds (APP_LIMITS__BODY_TIMEOUT_SECONDS) must be 1 to 3600"
            );
        }
        // A request's body is read inside its deadline: a deadline no longer than the body's
        // own time-out would cut off a slow phone that the body time-out still lets finish.
        let deadline = self.server.request_timeout_seconds;
        if deadline <= limits.body_timeout_seconds || deadline > 7200 {
            bail!(
                "server.request_timeout_seconds (APP_SERVER__REQUEST_TIMEOUT_SECONDS) must be more \
                 than limits.body_timeout_seconds ({}) and at most 7200",
                limits.body_timeout_seconds
            );
        }
        if limits.crypto_concurrency > 256 {
            bail!("limits.crypto_concurrency (APP_LIMITS__CRYPTO_CONCURRENCY) must be 0 to 256");
        }
        if !(1..=100_000).contains(&limits.crypto_queue) {
            bail!("limits.crypto_queue (APP_LIMITS__CRYPTO_QUEUE) must be 1 to 100000");
        }
        if !(1..=24 * 7).contains(&limits.idempotency_ttl_hours) {
            bail!(
                "limits.idempotency_ttl_hours (APP_LIMITS__IDEMPOTENCY_TTL_HOURS) must be 1 to 168"
            );
        }
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.telemetry.level) {
            bail!("telemetry.level (APP_TELEMETRY__LEVEL) is not a valid filter: {error}");
        }
        if let Some(directive) = unusable_directive(&self.telemetry.level) {
            // tracing reads a bare word as the name of a module to log at every level, and an
            // empty filter as none: `warning` or `infoo` would silently turn off every line,
            // the warnings an operator needs included.
            bail!(
                "telemetry.level (APP_TELEMETRY__LEVEL): `{directive}` is neither a level \
                 (trace, debug, info, warn, error, off) nor module=level with a Rust module path \
                 (incident_vault=debug; underscores, not hyphens)"
            );
        }
        Ok(())
    }

    /// `server.bind`, parsed.
    pub fn bind_address(&self) -> anyhow::Result<SocketAddr> {
        self.server.bind.parse().map_err(|_| {
            anyhow::anyhow!(
                "server.bind (APP_SERVER__BIND) must be an address and port such as 127.0.0.1:8080; got `{}`",
                self.server.bind
            )
        })
    }

    /// `escrow.recipient`, parsed; `None` when unset.
    pub fn escrow_recipient(&self) -> anyhow::Result<Option<age::x25519::Recipient>> {
        let recipient = self.escrow.recipient.trim();
        if recipient.is_empty() {
            return Ok(None);
        }
        age::x25519::Recipient::from_str(recipient).map(Some).map_err(|_| {
            anyhow::anyhow!(
                "escrow.recipient (APP_ESCROW__RECIPIENT) must be an age X25519 recipient (age1…)"
            )
        })
    }

    /// Slow-crypto jobs that may run at once.
    pub fn crypto_concurrency(&self) -> usize {
        match self.limits.crypto_concurrency {
            0 => available_cores(),
            configured => configured,
        }
    }
}

/// The first directive of a `telemetry.level` filter that logs nothing the operator meant: an
/// empty filter, a word that is no level (read by tracing as a module name), or `target=level`
/// whose target is not a Rust module path or whose level is none. `None` when every directive is
/// a level or `module=level` (span filters in brackets are left to tracing's own parser).
fn unusable_directive(filter: &str) -> Option<String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let is_level = |word: &str| LEVELS.contains(&word.trim().to_lowercase().as_str());
    if filter.trim().is_empty() {
        return Some(String::new());
    }
    filter
        .split(',')
        .map(str::trim)
        .find(|directive| {
            if directive.contains('[') {
                return false;
            }
            match directive.split_once('=') {
                None => !is_level(directive),
                Some((target, level)) => {
                    target.is_empty()
                        || !target
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                        || !is_level(level)
                }
            }
        })
        .map(str::to_owned)
}

/// Cores this process may use.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

/// The query parameters of a PostgreSQL URL that sqlx 0.9 reads (`sqlx-postgres`'s
/// `options/parse.rs`), besides `options[NAME]`. It logs any other with its value, at WARN.
const POSTGRES_URL_PARAMETERS: [&str; 18] = [
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// The position (from 1) of the first query parameter of a PostgreSQL URL that sqlx does not
/// read, if any. A URL that does not parse is left to the driver, whose error shows no value.
fn unknown_postgres_parameter(url: &str) -> Option<usize> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return None;
    }
    let parsed = url::Url::parse(url).ok()?;
    parsed
        .query_pairs()
        .position(|(key, _)| {
            let indexed = key.starts_with("options[") && key.ends_with(']');
            !indexed && !POSTGRES_URL_PARAMETERS.contains(&key.as_ref())
        })
        .map(|index| index + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "postgres")]
    fn a_postgres_url_parameter_sqlx_would_log_is_refused_without_its_name_or_value() {
        let error = refusal(|s| {
            s.database.url = "postgres://vault@db/vault?sslmode=require&sslpassword=hunter2".into();
        });
        assert!(error.contains("APP_DATABASE__URL"), "{error}");
        assert!(error.contains("number 2"), "{error}");
        assert!(
            !error.contains("hunter2") && !error.contains("sslpassword"),
            "{error}"
        );
        for fine in [
            "postgres://vault@db/vault",
            "postgres://vault@db/vault?sslmode=verify-full&sslrootcert=/etc/ca.pem",
            "postgresql:///vault?host=/run/postgresql&application_name=iv",
            "postgres://vault@db/vault?options[statement_timeout]=5s",
        ] {
            let mut settings = defaults();
            settings.database.url = fine.into();
            assert!(settings.validate().is_ok(), "{fine}");
        }
    }

    fn defaults() -> Settings {
        config::Config::builder()
            .add_source(config::File::from_str(BASE, config::FileFormat::Toml))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap()
    }

    #[test]
    fn the_compiled_in_defaults_are_valid() {
        let settings = defaults();
        settings.validate().unwrap();
        assert_eq!(settings.server.bind, "127.0.0.1:8080");
        assert_eq!(settings.database.url, "sqlite://data/incident-vault.db");
        // What tests, benches and `storage::connect` use unconfigured is what base.toml says.
        assert_eq!(
            settings.database.timeouts(),
            crate::storage::Timeouts::default()
        );
    }

    fn refusal(change: impl FnOnce(&mut Settings)) -> String {
        let mut settings = defaults();
        change(&mut settings);
        settings.validate().unwrap_err().to_string()
    }

    #[test]
    fn a_misspelled_setting_is_refused_by_name_and_others_are_left_alone() {
        let names = |list: &[&str]| {
            list.iter()
                .map(|name| (*name).to_owned())
                .collect::<Vec<_>>()
        };
        let refused = |list: &[&str]| {
            refuse_misspelled_settings(&names(list))
                .unwrap_err()
                .to_string()
        };
        assert!(refused(&["APP_DATABASE_URL"]).contains("did you mean APP_DATABASE__URL"));
        assert!(refused(&["APP_STORAGE__DATADIR"]).contains("did you mean APP_STORAGE__DATA_DIR"));
        assert!(refused(&["APP_DATABASE__URI"]).contains("APP_DATABASE__URI is not a setting"));
        assert!(refused(&["APP_DATABSE__URL"]).contains("did you mean APP_DATABASE__URL"));
        assert!(refused(&["APP_SERVR__WORKERS"]).contains("did you mean APP_SERVER__WORKERS"));
        assert!(refused(&["APP_STORGE__DATA_DIR"]).contains("did you mean APP_STORAGE__DATA_DIR"));
        assert!(refused(&["APP_TELEMTRY__LEVEL"]).contains("did you mean APP_TELEMETRY__LEVEL"));
        assert!(refused(&["APP_STORE__DATA_DIR"]).contains("did you mean APP_STORAGE__DATA_DIR"));
        assert!(refused(&["APP_ENVIRONMNET"]).contains("did you mean APP_ENVIRONMENT"));
        assert!(refused(&["APP_ENVIROMENT"]).contains("did you mean APP_ENVIRONMENT"));
        assert!(refused(&["APP_CONFIG_DIRS"]).contains("did you mean APP_CONFIG_DIR"));
        // A setting in another case would be read as the setting, and win or lose by the order
        // of the environment: refused by name.
        for other_case in ["app_database__url", "App_Server__Bind", "APP_SERVER__bind"] {
            let said = refused(&[other_case]);
            assert!(
                said.contains(other_case) && said.contains("upper case"),
                "{other_case}: {said}"
            );
        }
        // Other programs' variables, even with a key one of ours also has.
        for other in [
            "APP_REDIS__URL",
            "APP_REDIS__HOSTNAME",
            "APP_SENTRY__LEVEL",
            "APP_WEB__BIND",
            "APP_CACHE__FORMAT",
            "APP_ENV",
            "APP_SECRET_KEY",
            "APP_SENDER__ADDRESS",
            "APP_STORE__BUCKET",
            "APP_SERVE__STATIC_DIR",
            "APP_LIMITER__RATE",
            "APP_TELEMTRY__LEVLE",
            "APP_CONFIGS",
        ] {
            assert!(
                refuse_misspelled_settings(&names(&[other])).is_ok(),
                "{other}"
            );
        }
        // Every real setting, and other programs' APP_ variables, pass.
        let mut fine = known_setting_names().unwrap();
        fine.extend(names(&["APP_NAME", "APP_VERSION", "HOME", "APPLE"]));
        assert!(refuse_misspelled_settings(&fine).is_ok());
        assert!(fine.contains(&"APP_LIMITS__JSON_BODY_BYTES".to_owned()));
    }

    #[test]
    fn a_key_of_a_configuration_file_that_is_not_a_setting_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let refused = |text: &str| {
            let file = dir.path().join("local.toml");
            std::fs::write(&file, text).unwrap();
            refuse_unknown_file_keys(&file).unwrap_err().to_string()
        };
        assert!(
            refused("[databse]\nurl = \"sqlite://x.db\"\n").contains("did you mean [database]")
        );
        assert!(
            refused("[database]\nuri = \"sqlite://x.db\"\n").contains("did you mean database.url")
        );
        assert!(
            refused("[database]\npassword = \"x\"\n")
                .contains("database.password is not a setting")
        );
        assert!(
            refused("[redis]\nurl = \"x\"\n").contains("`redis` is not a setting or a section")
        );
        assert!(refused("workers = 4\n").contains("`workers` is not a setting or a section"));
        assert!(refused("server = 4\n").contains("`server` must be a section"));
        // The value is never shown, only names; nor the line of a file that does not parse.
        assert!(!refused("[database]\nuri = \"postgres://u:s3cret@h/d\"\n").contains("s3cret"));
        let unparsed = refused("[database]\nurl = postgres://u:s3cret@h/d\n");
        assert!(
            unparsed.contains("line 2") && !unparsed.contains("s3cret"),
            "{unparsed}"
        );
        // A whole-number setting is a TOML integer: not rounded from a decimal, nor read from
        // true/false or a quoted string; and its value is not shown.
        for not_whole in ["1.25", "0.9", "true", "\"615\"", "-3"] {
            let said = refused(&format!("[database]\nlock_timeout_seconds = {not_whole}\n"));
            assert!(
                said.contains(
                    "database.lock_timeout_seconds (APP_DATABASE__LOCK_TIMEOUT_SECONDS) must be a \
                     whole number"
                ),
                "{not_whole}: {said}"
            );
            if not_whole != "true" {
                assert!(!said.contains(not_whole.trim_matches('"')), "{said}");
            }
        }
        let file = dir.path().join("local.toml");
        std::fs::write(&file, "[database]\nlock_timeout_seconds = 15\n").unwrap();
        refuse_unknown_file_keys(&file).unwrap();
        // The shipped files, and a missing one, pass.
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        for name in ["base.toml", "local.toml", "production.toml", "absent.toml"] {
            refuse_unknown_file_keys(&shipped.join(name)).unwrap();
        }
    }

    #[test]
    fn a_whole_number_setting_takes_digits_only_and_never_shows_the_value() {
        let given = |name: &str, value: &str| vec![(name.to_owned(), value.to_owned())];
        for value in [
            "1.5",
            "1e3",
            "-1",
            "",
            "0x10",
            "12 workers",
            " 4",
            "19456\r",
        ] {
            let error = refuse_malformed_whole_numbers(&given("APP_SERVER__WORKERS", value))
                .unwrap_err()
                .to_string();
            assert!(error.contains("APP_SERVER__WORKERS"), "{value}: {error}");
            assert!(
                value.is_empty() || !error.contains(value),
                "{value}: {error}"
            );
        }
        for (name, value) in [
            ("APP_SERVER__WORKERS", "4"),
            ("APP_ARGON2__MEMORY_KIB", "19456"),
            ("APP_DATABASE__URL", "postgres://x/y?port=1.5"),
            ("APP_NAME", "1.5"),
        ] {
            assert!(
                refuse_malformed_whole_numbers(&given(name, value)).is_ok(),
                "{name}={value}"
            );
        }
        assert!(
            whole_number_setting_names()
                .unwrap()
                .contains(&"APP_LIMITS__CRYPTO_QUEUE".to_owned())
        );
        // config reads the prefix in any case.
        assert!(refuse_malformed_whole_numbers(&given("app_server__workers", "1.5")).is_err());
    }

    #[test]
    fn each_refusal_names_its_environment_variable() {
        assert!(refusal(|s| s.server.bind = "localhost".into()).contains("APP_SERVER__BIND"));
        assert!(refusal(|s| s.database.url = "mysql://x/y".into()).contains("APP_DATABASE__URL"));
        for volatile in [
            "sqlite://",
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite://data/x.db?mode=memory",
            "sqlite://%3Amemory%3A",
            "sqlite://file::memory:",
            "sqlite://file::memory:?cache=shared",
            "sqlite:///tmp/x.db?vfs=memdb",
            "sqlite://data/x.db?mode=ro",
            "sqlite://data/x.db?immutable=true",
        ] {
            assert!(
                refusal(|s| s.database.url = volatile.into()).contains("APP_DATABASE__URL"),
                "{volatile}"
            );
        }
        #[cfg(feature = "postgres")]
        {
            // A PostgreSQL URL is read as the driver will read it, before anything is created: one
            // that names no database (the server's default would receive the tables), a port out
            // of range, an sslmode that is none.
            for (url, said) in [
                ("postgres://postgres@127.0.0.1:5432", "names no database"),
                (
                    "postgres://postgres:PWCANARY77@127.0.0.1:5432/",
                    "names no database",
                ),
                (
                    "postgres://postgres@127.0.0.1:99999/vault",
                    "APP_DATABASE__URL",
                ),
                (
                    "postgres://postgres@127.0.0.1/vault?sslmode=bogus",
                    "APP_DATABASE__URL",
                ),
            ] {
                let refused = refusal(|s| s.database.url = url.into());
                assert!(refused.contains(said), "{url}: {refused}");
                assert!(!refused.contains("PWCANARY77"), "{refused}");
            }
            let mut fine = defaults();
            fine.database.url =
                "postgres://vault:s3cret@db.example:5433/vault?sslmode=require".into();
            fine.validate().unwrap();
        }
        // A filter that would log nothing the operator meant: empty, a word that is no level
        // (read as a module name), a module with a hyphen; real filters pass.
        for silent in [
            "",
            "warning",
            "infoo",
            "incident-vault=debug",
            "info,sqlx=loud",
        ] {
            assert!(
                refusal(|s| s.telemetry.level = silent.into()).contains("APP_TELEMETRY__LEVEL"),
                "{silent:?}"
            );
        }
        for level in [
            "info",
            "WARN",
            "incident_vault=debug,warn",
            "info,sqlx=warn",
            "off",
        ] {
            let mut settings = defaults();
            settings.telemetry.level = level.into();
            settings
                .validate()
                .unwrap_or_else(|error| panic!("{level}: {error}"));
        }
        assert!(
            refusal(|s| s.escrow.recipient = "age1nope".into()).contains("APP_ESCROW__RECIPIENT")
        );
        assert!(refusal(|s| s.argon2.memory_kib = 4096).contains("APP_ARGON2__MEMORY_KIB"));
        assert!(refusal(|s| s.argon2.iterations = 1).contains("APP_ARGON2__ITERATIONS"));
        for typo in [
            refusal(|s| s.argon2.memory_kib = 5 * 1024 * 1024),
            refusal(|s| s.argon2.iterations = 101),
            refusal(|s| s.argon2.parallelism = 17),
        ] {
            assert!(typo.contains("typo"), "{typo}");
            assert!(typo.contains("APP_ARGON2__PARALLELISM"), "{typo}");
        }
        assert!(refusal(|s| s.limits.json_body_bytes = 10).contains("APP_LIMITS__JSON_BODY_BYTES"));
        let largest = usize::try_from(crate::domain::report::limits::LARGEST_REPORT_BYTES).unwrap();
        assert!(
            refusal(|s| s.limits.json_body_bytes = largest - 1)
                .contains("APP_LIMITS__JSON_BODY_BYTES")
        );
        let mut settings = defaults();
        settings.limits.json_body_bytes = largest;
        assert!(
            settings.validate().is_ok(),
            "a limit that admits every valid report"
        );
        assert!(refusal(|s| s.telemetry.level = "info,=[".into()).contains("APP_TELEMETRY__LEVEL"));
        // actix-web panics above 512 workers, after the instance is recorded.
        assert!(refusal(|s| s.server.workers = 513).contains("APP_SERVER__WORKERS"));
        let mut settings = defaults();
        settings.server.workers = 512;
        assert!(settings.validate().is_ok());
        assert!(
            refusal(|s| s.server.shutdown_timeout_seconds = 3601)
                .contains("APP_SERVER__SHUTDOWN_TIMEOUT_SECONDS")
        );
        assert!(refusal(|s| s.limits.crypto_queue = 0).contains("APP_LIMITS__CRYPTO_QUEUE"));
        assert!(refusal(|s| s.limits.crypto_queue = 100_001).contains("APP_LIMITS__CRYPTO_QUEUE"));
        for waits_forever in [0, 601] {
            assert!(
                refusal(|s| s.database.lock_timeout_seconds = waits_forever)
                    .contains("APP_DATABASE__LOCK_TIMEOUT_SECONDS")
            );
        }
        for waits_forever in [0, 3601] {
            assert!(
                refusal(|s| s.database.statement_timeout_seconds = waits_forever)
                    .contains("APP_DATABASE__STATEMENT_TIMEOUT_SECONDS")
            );
        }
    }

    /// The request deadline counts the body's upload: one no longer than the body's own time-out
    /// would answer 503 to a slow phone that the body time-out still lets finish.
    #[test]
    fn the_request_deadline_must_leave_room_for_the_body() {
        let deadline_refused = |request: u64, body: u64| {
            let mut settings = defaults();
            settings.server.request_timeout_seconds = request;
            settings.limits.body_timeout_seconds = body;
            settings.validate().err().map(|error| error.to_string())
        };
        let refused = deadline_refused(60, 60).expect("a deadline equal to the body's time-out");
        assert!(
            refused.contains("APP_SERVER__REQUEST_TIMEOUT_SECONDS"),
            "{refused}"
        );
        assert!(refused.contains("(60)"), "{refused}");
        assert!(deadline_refused(7201, 60).is_some());
        assert_eq!(deadline_refused(61, 60), None);
        assert_eq!(deadline_refused(7200, 3600), None);
    }

    #[test]
    fn the_debug_form_hides_the_database_password() {
        let mut settings = defaults();
        settings.database.url = "postgres://vault:hunter2@db/vault".into();
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("postgres://…"),
            "{shown}"
        );
    }

    #[test]
    fn port_zero_is_a_valid_bind_address() {
        let mut settings = defaults();
        settings.server.bind = "127.0.0.1:0".into();
        assert_eq!(settings.bind_address().unwrap().port(), 0);
    }

    #[test]
    fn an_unknown_environment_is_refused_by_name() {
        let error = "staging".parse::<Environment>().unwrap_err().to_string();
        assert!(error.contains("APP_ENVIRONMENT"));
    }
}
