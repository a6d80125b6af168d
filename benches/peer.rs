//! The lines of `PEERS.md` that today's service can be measured on, with the release binary run
//! as an operator runs it (its own process, so that its memory is its own) and driven over real
//! HTTP from this process:
//!
//! - reports per second with one client, and with eight at once (and how many answers were not
//!   201, and how many were 5xx);
//! - resident memory idle, at its peak under the eight clients, and a few seconds after;
//! - SIGTERM in the middle of that load: the exit status and how long it took, repeated.
//!
//! Each at the service's default argon2id (m = 19 MiB, t = 2) and at the cost GlobaLeaks pays per
//! submission: it runs two argon2id hashes of m = 128 MiB, one with 16 passes and one with 17
//! (`GCE.ALGORITM_CONFIGURATION` in its `backend/globaleaks/utils/crypto.py`); here one run of
//! m = 128 MiB with 33 passes does the same work.
//!
//! `cargo bench --bench peer` (about 3 minutes for both backends). Environment: `BENCH_BACKENDS`
//! (default `sqlite,postgres`), `BENCH_STOPS` (SIGTERM cycles per backend at the default cost,
//! default 5). PostgreSQL is reached at 127.0.0.1:5432 as `postgres`, in a database of this run's
//! own. Only the fixed synthetic report below is ever sent; answers are counted, not printed.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

/// One argon2id setting the service is run at.
struct Cost {
    name: &'static str,
    memory_kib: u32,
    iterations: u32,
    /// Sequential reports for the one-client figure.
    sequential: usize,
    /// How long the eight clients run.
    load: Duration,
}

const COSTS: [Cost; 2] = [
    Cost {
        name: "default (19 MiB, t = 2)",
        memory_kib: 19_456,
        iterations: 2,
        sequential: 60,
        load: Duration::from_secs(10),
    },
    Cost {
        name: "GlobaLeaks' (128 MiB, t = 16 + 17)",
        memory_kib: 131_072,
        iterations: 33,
        sequential: 4,
        load: Duration::from_secs(20),
    },
];

/// PEERS.md's concurrent figure is for eight clients.
const CLIENTS: usize = 8;
/// Load before each SIGTERM of the stop cycles.
const LOAD_BEFORE_STOP: Duration = Duration::from_secs(2);
const SETTLE: Duration = Duration::from_secs(2);
const AFTER_LOAD: Duration = Duration::from_secs(3);

/// The fixed synthetic report every client sends.
fn report() -> serde_json::Value {
    serde_json::json!({
        "incident_type": "intimidation",
        "description": "Synthetic peer benchmark: a delegate was followed after the side event \
                        and photographed at the entrance; the same two people had asked for \
                        the delegate's badge name earlier in the day.",
        "mechanism": {"kind": "hrc_session", "session": "HRC 60"},
    })
}

/// The release binary, running; killed if dropped before [`Service::terminate`] (a failed run
/// leaves no service behind).
struct Service {
    child: Option<Child>,
    port: u16,
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Where one backend's runs keep their database, and the escrow recipient it was made with
/// (a later start with another would be refused).
struct Target {
    database_url: String,
    data_dir: std::path::PathBuf,
    escrow: String,
}

impl Service {
    fn start(target: &Target, cost: &Cost) -> anyhow::Result<Self> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_incident-vault"));
        // The caller's own settings (APP_ENVIRONMENT=production, say) would change the run.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().to_uppercase().starts_with("APP_") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .arg("serve")
            .env(
                "APP_CONFIG_DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
            )
            .env("APP_DATABASE__URL", &target.database_url)
            .env("APP_STORAGE__DATA_DIR", &target.data_dir)
            .env("APP_SERVER__BIND", "127.0.0.1:0")
            .env("APP_TELEMETRY__FORMAT", "json")
            .env("APP_TELEMETRY__LEVEL", "warn,incident_vault=info")
            .env("APP_ESCROW__RECIPIENT", &target.escrow)
            .env("APP_ARGON2__MEMORY_KIB", cost.memory_kib.to_string())
            .env("APP_ARGON2__ITERATIONS", cost.iterations.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("could not start the binary")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut service = Self {
            child: Some(child),
            port: 0,
        };
        let stdout = BufReader::new(stdout);
        let (ready_sender, ready) = std::sync::mpsc::channel();
        // Drained to the end, so that the service never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if line.contains("incident-vault is ready") {
                    let port = serde_json::from_str::<serde_json::Value>(&line)
                        .ok()
                        .and_then(|event| event["fields"]["port"].as_u64())
                        .and_then(|port| u16::try_from(port).ok());
                    let _ = ready_sender.send(port);
                }
            }
        });
        service.port = ready
            .recv_timeout(Duration::from_secs(60))
            .ok()
            .flatten()
            .context("the service did not say it was ready (see its output above)")?;
        Ok(service)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `VmRSS` and `VmHWM` (its peak so far) of the process, in MiB.
    fn memory(&self) -> anyhow::Result<(f64, f64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| -> anyhow::Result<f64> {
            let line = status
                .lines()
                .find(|line| line.starts_with(name))
                .with_context(|| format!("no {name} in /proc/PID/status"))?;
            let kib: f64 = line
                .split_whitespace()
                .nth(1)
                .context("an empty line")?
                .parse()?;
            Ok(kib / 1024.0)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// SIGTERM, then the exit status and how long the service took to stop.
    fn terminate(mut self) -> anyhow::Result<(ExitStatus, Duration)> {
        let mut child = self.child.take().context("terminated twice")?;
        let signalled = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        anyhow::ensure!(sent.success(), "kill -TERM failed");
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok((status, signalled.elapsed()));
            }
            if signalled.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!("the service did not stop within 120 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// What a load of [`CLIENTS`] clients got.
#[derive(Default)]
struct Tally {
    created: AtomicU64,
    other: AtomicU64,
    server_errors: AtomicU64,
}

fn idempotency_key() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Runs `clients` clients that file reports one after another until `stop` is set; every answer
/// is tallied. Connection failures after `stop` are the service going away, not counted.
fn load(
    client: &reqwest::Client,
    url: &str,
    clients: usize,
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_owned());
            let (stop, tally) = (stop.clone(), tally.clone());
            tokio::spawn(async move {
                let body = report();
                while !stop.load(Ordering::Relaxed) {
                    let answer = client
                        .post(&url)
                        .header("Idempotency-Key", idempotency_key())
                        .json(&body)
                        .send()
                        .await;
                    match answer {
                        Ok(response) if response.status() == 201 => {
                            tally.created.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(response) => {
                            tally.other.fetch_add(1, Ordering::Relaxed);
                            if response.status().is_server_error() {
                                tally.server_errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(_) if stop.load(Ordering::Relaxed) => break,
                        Err(_) => {
                            tally.other.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            })
        })
        .collect()
}

/// The figures of one cost on one backend.
struct Figures {
    idle_mib: f64,
    one_client_per_s: f64,
    eight_clients_per_s: f64,
    not_201: u64,
    server_errors: u64,
    peak_mib: f64,
    after_mib: f64,
    stop: (ExitStatus, Duration),
}

async fn measure(target: &Target, cost: &Cost) -> anyhow::Result<Figures> {
    let service = Service::start(target, cost)?;
    let url = format!("http://127.0.0.1:{}/api/v1/reports", service.port);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    tokio::time::sleep(SETTLE).await;
    let (idle_mib, _) = service.memory()?;

    let started = Instant::now();
    for _ in 0..cost.sequential {
        let response = client
            .post(&url)
            .header("Idempotency-Key", idempotency_key())
            .json(&report())
            .send()
            .await?;
        let status = response.status();
        anyhow::ensure!(
            status == 201,
            "one client: {status} {}",
            response.text().await.unwrap_or_default()
        );
    }
    let one_client_per_s = cost.sequential as f64 / started.elapsed().as_secs_f64();

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let clients = load(&client, &url, CLIENTS, &stop, &tally);
    let mut peak_mib: f64 = 0.0;
    while started.elapsed() < cost.load {
        peak_mib = peak_mib.max(service.memory()?.0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for handle in clients {
        handle.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (_, high_water) = service.memory()?;
    tokio::time::sleep(AFTER_LOAD).await;
    let (after_mib, _) = service.memory()?;

    // And stop it in the middle of the same load.
    let stop_clients = Arc::new(AtomicBool::new(false));
    let clients = load(&client, &url, CLIENTS, &stop_clients, &Arc::default());
    tokio::time::sleep(LOAD_BEFORE_STOP).await;
    let stopped = tokio::task::spawn_blocking(move || service.terminate()).await??;
    stop_clients.store(true, Ordering::Relaxed);
    for handle in clients {
        handle.await?;
    }

    Ok(Figures {
        idle_mib,
        one_client_per_s,
        eight_clients_per_s: tally.created.load(Ordering::Relaxed) as f64 / elapsed,
        not_201: tally.other.load(Ordering::Relaxed),
        server_errors: tally.server_errors.load(Ordering::Relaxed),
        peak_mib: peak_mib.max(high_water),
        after_mib,
        stop: stopped,
    })
}

/// Starts, loads and stops the service `cycles` times at the default cost.
async fn stop_cycles(
    target: &Target,
    cycles: usize,
) -> anyhow::Result<Vec<(ExitStatus, Duration)>> {
    let mut outcomes = Vec::new();
    for _ in 0..cycles {
        let service = Service::start(target, &COSTS[0])?;
        let url = format!("http://127.0.0.1:{}/api/v1/reports", service.port);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let stop = Arc::new(AtomicBool::new(false));
        let clients = load(&client, &url, CLIENTS, &stop, &Arc::default());
        tokio::time::sleep(LOAD_BEFORE_STOP).await;
        outcomes.push(tokio::task::spawn_blocking(move || service.terminate()).await??);
        stop.store(true, Ordering::Relaxed);
        for handle in clients {
            handle.await?;
        }
    }
    Ok(outcomes)
}

async fn run_backend(backend: &str, cycles: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let scratch = if backend == "postgres" {
        match common::ScratchDatabase::create().await {
            Ok(database) => Some(database),
            Err(why) => {
                println!("[postgres] SKIPPED: {why}");
                return Ok(());
            }
        }
    } else {
        None
    };
    let target = Target {
        database_url: match &scratch {
            Some(database) => database.url(),
            None => format!(
                "sqlite://{}",
                dir.path().join("incident-vault.db").display()
            ),
        },
        data_dir: dir.path().join("data"),
        escrow: age::x25519::Identity::generate().to_public().to_string(),
    };

    let mut outcome = Ok(());
    for cost in &COSTS {
        match measure(&target, cost).await {
            Ok(figures) => {
                let (status, took) = figures.stop;
                println!(
                    "[{backend}] argon2id {}: 1 client {:.2} reports/s; {CLIENTS} clients {:.2} \
                     reports/s, {} not 201 ({} 5xx); memory idle {:.1} MiB, peak {:.1} MiB, \
                     {} s after {:.1} MiB; SIGTERM under load: {status} after {:.2} s",
                    cost.name,
                    figures.one_client_per_s,
                    figures.eight_clients_per_s,
                    figures.not_201,
                    figures.server_errors,
                    figures.idle_mib,
                    figures.peak_mib,
                    AFTER_LOAD.as_secs(),
                    figures.after_mib,
                    took.as_secs_f64(),
                );
            }
            Err(error) => {
                outcome = Err(error.context(format!("[{backend}] {}", cost.name)));
                break;
            }
        }
    }
    if outcome.is_ok() {
        match stop_cycles(&target, cycles).await {
            Ok(stops) => {
                let clean = stops.iter().filter(|(status, _)| status.success()).count();
                let slowest = stops
                    .iter()
                    .map(|(_, took)| took.as_secs_f64())
                    .fold(0.0, f64::max);
                println!(
                    "[{backend}] SIGTERM after {} s of {CLIENTS}-client load: {clean} of {} \
                     clean exits (status 0), slowest {slowest:.2} s",
                    LOAD_BEFORE_STOP.as_secs(),
                    stops.len(),
                );
            }
            Err(error) => outcome = Err(error.context(format!("[{backend}] stop cycles"))),
        }
    }
    if let Some(database) = scratch {
        database.drop().await;
    }
    outcome
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let cycles: usize = match std::env::var("BENCH_STOPS") {
        Ok(text) => text
            .trim()
            .parse()
            .context("BENCH_STOPS must be a number")?,
        Err(_) => 5,
    };
    anyhow::ensure!((1..=50).contains(&cycles), "BENCH_STOPS must be 1–50");
    let backends = common::backends_from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    println!(
        "peer: {} cores; the service is the release binary in its own process",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    runtime.block_on(async {
        for backend in &backends {
            run_backend(backend, cycles).await?;
        }
        anyhow::Ok(())
    })
}
