//! `Application::build_showing`: the one path by which production and tests start the service
//! (`build` and `build_with` are it with defaults). A test changes only the settings (port 0, a
//! fresh database) and, at most, who is shown a generated escrow identity.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::{DefaultHeaders, from_fn};
use actix_web::{App, HttpServer, web};
use anyhow::Context;

use crate::configuration::{Environment, Settings, available_cores};
use crate::crypto::pool::CryptoPool;
use crate::routes::{self, RequestLimits};
use crate::services::Vault;
use crate::services::instance::{EscrowGeneration, GeneratedEscrow, ShowEscrow, open_instance};
use crate::storage::{self, Store};
use crate::telemetry::request_span;

/// A built, bound, not yet running service.
pub struct Application {
    port: u16,
    server: Server,
    store: Arc<dyn Store>,
    vault: web::Data<Vault>,
    generated_escrow: Option<GeneratedEscrow>,
    setup_code: Option<age::secrecy::SecretString>,
}

impl Application {
    /// Validates the settings, opens and migrates the database, loads or creates the instance,
    /// and binds the listener. A generated escrow identity is handed out by
    /// [`Application::take_generated_escrow`], never stored.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with(settings, EscrowGeneration::Allowed).await
    }

    /// [`Application::build`], saying whether an escrow identity may be generated. A generated
    /// one is recorded before anyone sees it and handed out by
    /// [`Application::take_generated_escrow`]: for tests and benchmarks. The service shows it
    /// first, with [`Application::build_showing`].
    pub async fn build_with(
        settings: Settings,
        generation: EscrowGeneration,
    ) -> anyhow::Result<Self> {
        Self::build_showing(settings, generation, &mut |_| Ok(())).await
    }

    /// [`Application::build_with`], handing a generated escrow identity to `show` before its
    /// recipient is recorded (see [`open_instance`]).
    pub async fn build_showing(
        settings: Settings,
        generation: EscrowGeneration,
        show: ShowEscrow<'_>,
    ) -> anyhow::Result<Self> {
        settings.validate()?;
        // The address first: a port in use must stop the start before anything is written.
        let address = settings.bind_address()?;
        let reserved = reserve(address).with_context(|| {
            format!("server.bind (APP_SERVER__BIND): cannot listen on {address}")
        })?;
        let port = reserved
            .local_addr()?
            .as_socket()
            .context("the bound address is not an IP address")?
            .port();
        // A refused production start leaves no folder behind either.
        if settings.environment == Environment::Production {
            require_initialised(&settings.database.url, settings.database.timeouts()).await?;
        }
        storage::create_private_dir(&settings.storage.data_dir).with_context(|| {
            format!(
                "storage.data_dir (APP_STORAGE__DATA_DIR): could not create {}",
                settings.storage.data_dir.display()
            )
        })?;
        let (store, _) = storage::connect_migrating(
            &settings.database.url,
            settings.database.max_connections,
            settings.database.timeouts(),
        )
        .await?;
        // Its threads start here, before the instance is recorded: a thread that cannot start
        // must not stop the start after a generated escrow key is recorded.
        let pool = || CryptoPool::new(settings.crypto_concurrency(), settings.limits.crypto_queue);
        let (intake_crypto, login_crypto, reviewer_crypto) = (pool(), pool(), pool());
        // The last step expected to stop the start (after it, only handing the bound,
        // non-blocking socket to the server): a generated escrow identity is shown, then recorded
        // by its recipient. A later error says that the shown identity is recorded, lest an
        // operator who saw the start fail discard it.
        let opened = open_instance(
            store.as_ref(),
            settings.escrow_recipient()?,
            generation,
            show,
        )
        .await?;
        let (instance, generated_escrow) = (opened.keys, opened.generated);
        let setup_code = match issue_setup_code_if_needed(store.as_ref(), generation).await {
            Ok(code) => code,
            Err(error) => {
                tracing::warn!(
                    error = %format!("{error:#}"),
                    "could not issue the setup code; run `incident-vault setup-code`"
                );
                None
            }
        };

        let vault = web::Data::new(Vault {
            store: store.clone(),
            intake_crypto,
            login_crypto,
            reviewer_crypto,
            instance,
            argon2: settings.argon2,
            idempotency_ttl_hours: settings.limits.idempotency_ttl_hours,
        });
        let limits = web::Data::new(RequestLimits {
            json_body_bytes: settings.limits.json_body_bytes,
            body_timeout: Duration::from_secs(settings.limits.body_timeout_seconds),
            request_timeout: Duration::from_secs(settings.server.request_timeout_seconds),
            idempotency_ttl_hours: settings.limits.idempotency_ttl_hours,
        });

        // actix-web panics above 512 workers: validate() bounds the setting, this the default.
        let workers = match settings.server.workers {
            0 => available_cores().min(512),
            configured => configured,
        };
        let served = vault.clone();
        let cannot_serve = if generated_escrow.is_some() {
            "could not serve on the bound socket; the escrow identity shown above IS recorded: \
             keep it"
        } else {
            "could not serve on the bound socket"
        };
        // Only now, with the database migrated and the instance open, does the port accept
        // connections.
        let listener = listen(reserved).context(cannot_serve)?;
        let deadline = Duration::from_secs(settings.server.request_timeout_seconds);
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(head_as_get))
                .wrap(from_fn(move |request, next| {
                    answer_within(deadline, request, next)
                }))
                .wrap(security_headers())
                .wrap(from_fn(request_span))
                .app_data(vault.clone())
                .app_data(limits.clone())
                .app_data(web::QueryConfig::default().error_handler(|_, _| {
                    crate::error::ApiError::BadRequest {
                        code: "invalid_query",
                        message: "The query string has an unknown or mistyped parameter.".into(),
                    }
                    .into()
                }))
                .configure(routes::configure)
        })
        .listen(listener)
        .context(cannot_serve)?
        .workers(workers)
        .client_request_timeout(Duration::from_secs(10))
        // Signals are ours (see run_until_stopped): registered before "ready" is announced.
        .disable_signals()
        .shutdown_timeout(settings.server.shutdown_timeout_seconds)
        .run();
        tracing::debug!(port, workers, "the HTTP server is bound");
        Ok(Self {
            port,
            server,
            store,
            vault: served,
            generated_escrow,
            setup_code,
        })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The store the service uses.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The use cases the server runs, with their crypto pools (tests hold a pool busy).
    pub fn vault(&self) -> web::Data<Vault> {
        self.vault.clone()
    }

    /// A handle to stop the server gracefully.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// The escrow identity generated on first start, once. Show it to a person and drop it.
    pub fn take_generated_escrow(&mut self) -> Option<GeneratedEscrow> {
        self.generated_escrow.take()
    }

    /// The one-time setup code issued because no account exists yet, once. It creates the first
    /// account (admin, coordinator of the default desk); stored only as a hash; expires in an hour.
    pub fn take_setup_code(&mut self) -> Option<age::secrecy::SecretString> {
        self.setup_code.take()
    }

    /// Serves until SIGINT or SIGTERM, lets in-flight requests finish, then closes the pool.
    /// The signal handlers are in place before "ready" is logged, so a supervisor that signals
    /// as soon as it reads that line gets a graceful stop, not the default kill.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let stop_signals = stop_signals()?;
        let handle = self.server.handle();
        let stopper = tokio::spawn(async move {
            stop_signals.await;
            tracing::info!("stopping: finishing in-flight requests");
            handle.stop(true).await;
        });
        let purger = tokio::spawn(purge_expired_rows(self.store.clone()));
        tracing::info!(
            port = self.port,
            database = self.store.backend(),
            "incident-vault is ready"
        );
        let outcome = self.server.await;
        stopper.abort();
        purger.abort();
        self.store.close().await;
        tracing::info!("incident-vault stopped");
        outcome
    }
}

/// Resolves on the first SIGTERM or SIGINT. The handlers are registered when this is called.
#[cfg(unix)]
fn stop_signals() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

/// A production service neither creates, migrates nor initialises a database that holds no
/// instance of it: restarted onto an empty or wrong one (a restore under way, a mistyped URL), it
/// would make a new instance there and take reports into it, and a `pg_restore` would then clash
/// with its tables. `incident-vault init` does that once, on purpose. Checked before anything is
/// written; a database that holds an instance is migrated as usual afterwards. A database that
/// cannot be reached is named with its cause, without that advice.
pub(crate) async fn require_initialised(
    url: &str,
    timeouts: storage::Timeouts,
) -> anyhow::Result<()> {
    open_initialised(url, timeouts)
        .await
        .map_err(|error| {
            NoInstance::explain(
                error,
                "a production service neither creates nor initialises a database",
            )
        })?
        .close()
        .await;
    Ok(())
}

/// The database opened, or its file was looked for, and it holds no instance of this service:
/// an empty database, another program's, or a SQLite file that is not there.
#[derive(Debug, thiserror::Error)]
#[error(
    "{place} (database.url, APP_DATABASE__URL) {what}. For a new installation, run \
     `incident-vault init` once with the service's environment; when restoring, restore first"
)]
pub(crate) struct NoInstance {
    place: String,
    what: &'static str,
}

impl NoInstance {
    /// Adds `context` to `error` when it is a [`NoInstance`]; any other error (an unreachable
    /// database) is passed on as it is, since the advice would mislead there.
    pub(crate) fn explain(error: anyhow::Error, context: &'static str) -> anyhow::Error {
        if error.is::<Self>() {
            error.context(context)
        } else {
            error
        }
    }
}

/// Opens the database at `url` as it is, never creating or migrating it, and checks that it
/// holds an instance of this service. An empty database or a missing file (a restore target not
/// restored yet, a mistyped path) is a [`NoInstance`], not a raw "no such table"; a database
/// that cannot be reached is named with its cause.
pub(crate) async fn open_initialised(
    url: &str,
    timeouts: storage::Timeouts,
) -> anyhow::Result<Arc<dyn Store>> {
    let place = storage::describe_url(url);
    if let Some(file) = url.strip_prefix("sqlite://") {
        let file = file.split(['?', '#']).next().unwrap_or_default();
        if !std::path::Path::new(file).exists() {
            return Err(NoInstance {
                place,
                what: "does not exist",
            }
            .into());
        }
    }
    let store = storage::open(url, 1, timeouts)
        .await
        .with_context(|| format!("could not open {place} (database.url, APP_DATABASE__URL)"))?;
    match store.instance().await {
        Ok(Some(_)) => Ok(store),
        outcome => {
            store.close().await;
            match outcome {
                // Only an answer that there is no instance (an empty database, or another's)
                // sends the operator to `init`; any other failure is shown as it is.
                Err(error) if !error.is_missing_table() => Err(anyhow::Error::new(error)
                    .context(format!("could not read the instance of {place}"))),
                _ => Err(NoInstance {
                    place,
                    what: "holds no instance of this service",
                }
                .into()),
            }
        }
    }
}

/// A setup code when no account exists yet and a person will see it. Where nobody would (a
/// service manager, a container, a production instance: stdout is a log there), none is issued:
/// it would sit in the log for whoever reads it first, and would replace the code an operator
/// just asked `incident-vault setup-code` for.
async fn issue_setup_code_if_needed(
    store: &dyn Store,
    shown: EscrowGeneration,
) -> anyhow::Result<Option<age::secrecy::SecretString>> {
    if store.reviewer_count(crate::services::unix_now()).await? > 0 {
        return Ok(None);
    }
    if shown == EscrowGeneration::Refused {
        tracing::info!(
            "no account exists yet: run `incident-vault setup-code` on this host for a one-time \
             setup code"
        );
        return Ok(None);
    }
    crate::services::accounts::issue_setup_code(store)
        .await
        .context("could not issue the setup code")
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn stop_signals() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// How often expired rows are deleted: idempotency records past their day, and sessions past
/// their absolute or idle limit (whose rows hold sealed identities).
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Deletes expired rows every [`PURGE_EVERY`], starting at once (a service that was down for a
/// day finds a day of dead sessions).
async fn purge_expired_rows(store: Arc<dyn Store>) {
    let mut interval = tokio::time::interval(PURGE_EVERY);
    loop {
        interval.tick().await;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        match store.purge_expired_idempotency(now).await {
            Ok(purged) => tracing::debug!(purged, "purged expired idempotency records"),
            Err(error) => tracing::warn!(error = %error, "could not purge idempotency records"),
        }
        match crate::services::accounts::purge_dead_sessions(store.as_ref(), now).await {
            Ok(purged) => tracing::debug!(purged, "purged dead sessions"),
            Err(error) => tracing::warn!(error = %error, "could not purge dead sessions"),
        }
    }
}

/// Connections the kernel queues for the server before they are accepted: actix's own default.
const LISTEN_BACKLOG: i32 = 2048;

/// Binds `address` without listening on it yet. A port in use stops the start before anything
/// is written; and a client that connects while the start runs (migrations, a database still
/// starting, an unreachable one that will stop the start) is refused at once, as by a stopped
/// service, instead of waiting in the kernel's queue for an answer that may never come.
///
/// Bound without `SO_REUSEADDR`, so that no other socket can bind the port meanwhile (Linux lets
/// two sockets that both ask for reuse share a port until one listens). Only if that is refused,
/// which the previous run's connections in TIME_WAIT also cause, is reuse asked for; and
/// [`listen`] asks for it before listening, so that the next restart is not refused for this
/// run's connections.
fn reserve(address: std::net::SocketAddr) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = || {
        Socket::new(
            Domain::for_address(address),
            Type::STREAM,
            Some(Protocol::TCP),
        )
    };
    let exclusive = socket()?;
    let reserved = match exclusive.bind(&address.into()) {
        Ok(()) => exclusive,
        Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {
            let shared = socket()?;
            shared.set_reuse_address(true)?;
            shared.bind(&address.into())?;
            shared
        }
        Err(error) => return Err(error),
    };
    reserved.set_nonblocking(true)?;
    Ok(reserved)
}

/// Starts listening on a socket from [`reserve`], with `SO_REUSEADDR` as the standard library
/// sets it (the connections it accepts inherit it, and so leave no TIME_WAIT that refuses the
/// next start).
fn listen(reserved: socket2::Socket) -> std::io::Result<TcpListener> {
    reserved.set_reuse_address(true)?;
    reserved.listen(LISTEN_BACKLOG)?;
    Ok(reserved.into())
}

/// HEAD is answered as GET, without the body (RFC 9110), on [`routes::HEAD_ROUTES`]: a load balancer may
/// probe `/healthz` that way. The routes know GET only; actix's codec, which saw the HEAD, leaves
/// the body out of the answer. Not on a route behind a session: `GET /cases/{ref}` decrypts and
/// audits a read, which a HEAD must not cause. The request span, outside this, records HEAD.
async fn head_as_get(
    mut request: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    if request.method() == actix_web::http::Method::HEAD
        && routes::HEAD_ROUTES.contains(&request.path())
    {
        request.head_mut().method = actix_web::http::Method::GET;
    }
    next.call(request).await
}

/// Answers 503 `timed_out` to a request not done within `deadline`, its body included: a stalled
/// database (a server that stopped answering, a connection that died without a word, neither
/// of which the database's own time-outs can end) must cost a phone a clear answer to retry,
/// not a hang. The request's future is dropped, as when its client hangs up, which every write
/// is built to survive: a transaction not yet committed is rolled back, and a report that was
/// committed all the same is found again by the retry's `Idempotency-Key`.
///
/// The answer is an error rather than a response, since a response needs the request, which
/// routing must hold alone; `telemetry::request_span` logs it and gives it its headers.
async fn answer_within<B: actix_web::body::MessageBody>(
    deadline: Duration,
    request: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<B>,
) -> Result<actix_web::dev::ServiceResponse<B>, actix_web::Error> {
    match tokio::time::timeout(deadline, next.call(request)).await {
        Ok(outcome) => outcome,
        Err(_elapsed) => Err(crate::error::ApiError::Unavailable {
            code: "timed_out",
            message: "The service could not finish this request in time; it may or may not \
                      have been carried out. Please try again: a report sent again with the same \
                      Idempotency-Key is filed once."
                .into(),
        }
        .into()),
    }
}

/// Headers on every response: nothing is cached, framed, sniffed or referred.
fn security_headers() -> DefaultHeaders {
    crate::error::SECURITY_HEADERS
        .into_iter()
        .fold(DefaultHeaders::new(), DefaultHeaders::add)
}
