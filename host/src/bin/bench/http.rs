//! `wafer-bench http`: serving latency and throughput over HTTP.
//!
//! Starts an embedded server with the demo data (or targets `--server`),
//! on the embedded stores or, with `--database-url` and `--online`, on
//! PostgreSQL and Redis (its own schema and key prefix, removed afterwards),
//! then drives one endpoint (`--endpoint`): `online`, `POST
//! /v1/features/online` (by default 1 entity x 10 features of `technical`;
//! `--entities N`, `--features N`, `--group technical|risk|valuation` and
//! `--fallback none|compute` shape it, and `--unknown true` reads tickers
//! that have no data at all, what a read-only client can send at will;
//! more than the demo's tickers are ingested and materialized first);
//! `feast`, the same read as `POST /get-online-features`; or `enrich`, `POST /v1/enrich`
//! of the demo's `market_briefing` task (8 features into a prompt), from
//! keep-alive connections with a minimal raw HTTP/1.1 client, so the load
//! generator spends as little of the machine's CPU as possible:
//! - saturation: `--connections` closed-loop clients for `--seconds`;
//! - fixed rate: `--rate` requests/s spread over the connections. Latency
//!   is measured from the actual send: tokio's timer has 1 ms granularity,
//!   so counting from the scheduled time would add up to a millisecond of
//!   timer lag to every sample. The achieved rate shows whether the clients
//!   kept to the schedule (if they fall behind, requests queue client-side
//!   and the report says so).
//!
//! With `--server-cpu true` each phase also reports the server's CPU time
//! per request, read from the kernel's per-thread counters
//! (`/proc/.../task/*/schedstat`), so it does not depend on what the load
//! client costs: the embedded server then runs on a runtime of its own
//! whose threads are named `wafer-srv`, and only those are counted. For
//! `--server`, give `--server-pid PID` and every thread of that process is
//! counted (a Feast server, say, for the same figure side by side). A
//! server on its own runtime competes with the client's threads for the
//! cores rather than sharing one scheduler with them, so its saturation
//! throughput is lower (about 30k against 50k req/s on a 2-core VM) and
//! not comparable with a run without the flag; CPU per request is the
//! figure to compare.

use crate::backends::Backends;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct HttpArgs {
    pub server: Option<String>,
    /// What an `online` read asks for.
    pub read: OnlineRead,
    /// The `--server`'s process, whose CPU time is reported per request.
    pub server_pid: Option<u32>,
    /// Run the embedded server on its own runtime and report its CPU time.
    pub server_cpu: bool,
    pub endpoint: Endpoint,
    pub connections: usize,
    pub seconds: u64,
    pub rate: u64,
    /// Stores of the embedded server (ignored with `--server`).
    pub backends: Backends,
}

impl HttpArgs {
    pub fn parse(args: &[String]) -> anyhow::Result<HttpArgs> {
        let (mut server, mut connections, mut seconds, mut rate) = (None, 16, 10, 5000);
        let (mut server_pid, mut server_cpu) = (None, false);
        let mut endpoint = Endpoint::Online;
        let mut read = OnlineRead::default();
        let usage = "--server URL --server-pid PID --server-cpu true --endpoint online|feast|enrich --connections N --seconds N --rate N --entities N --features N --group NAME --fallback none|compute --unknown true";
        let backends = Backends::parse_args(args, usage, |flag, value| {
            match flag {
                "--entities" => read.entities = value.parse()?,
                "--features" => read.features = value.parse()?,
                "--group" => read.group = value.to_string(),
                "--fallback" => read.fallback = value.to_string(),
                "--unknown" => read.unknown = value.parse()?,
                "--server" => server = Some(value.to_string()),
                "--server-pid" => server_pid = Some(value.parse()?),
                "--server-cpu" => server_cpu = value.parse()?,
                "--endpoint" => {
                    endpoint = match value {
                        "online" => Endpoint::Online,
                        "feast" => Endpoint::Feast,
                        "enrich" => Endpoint::Enrich,
                        other => anyhow::bail!("--endpoint {other}: use online, feast or enrich"),
                    }
                }
                "--connections" => connections = value.parse()?,
                "--seconds" => seconds = value.parse()?,
                "--rate" => rate = value.parse()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        anyhow::ensure!(read.entities >= 1, "--entities must be at least 1");
        anyhow::ensure!(matches!(read.fallback.as_str(), "none" | "compute"), "--fallback none|compute");
        let known = read.feature_names()?.len();
        anyhow::ensure!((1..=known).contains(&read.features), "--features 1..={known} for group {}", read.group);
        Ok(HttpArgs { server, read, server_pid, server_cpu, endpoint, connections, seconds, rate, backends })
    }
}

/// The endpoint a run drives.
#[derive(Clone, Copy)]
pub enum Endpoint {
    Online,
    Feast,
    Enrich,
}

/// An online read's shape: `entities` tickers x the first `features` of
/// `group`.
#[derive(Clone)]
pub struct OnlineRead {
    pub group: String,
    pub features: usize,
    pub entities: usize,
    /// Tickers with no data anywhere (`NODATA0000`, ...).
    pub unknown: bool,
    pub fallback: String,
    /// Every entity a different ticker (the embedded server loads what
    /// the demo lacks); else, against `--server`, the demo's stocks again
    /// and again.
    pub distinct: bool,
}

impl Default for OnlineRead {
    fn default() -> Self {
        OnlineRead {
            group: "technical".into(),
            features: 10,
            entities: 1,
            unknown: false,
            fallback: "none".into(),
            distinct: true,
        }
    }
}

impl OnlineRead {
    fn feature_names(&self) -> anyhow::Result<Vec<String>> {
        let group = match self.group.as_str() {
            "technical" => wafer_host::demo::technical_group_json(),
            "risk" => wafer_host::demo::risk_group_json(),
            "valuation" => wafer_host::demo::valuation_group_json(),
            other => anyhow::bail!("--group {other}: use technical, risk or valuation"),
        };
        let features = group["features"].as_array().cloned().unwrap_or_default();
        Ok(features.iter().filter_map(|f| f["name"].as_str().map(str::to_string)).collect())
    }

    /// The tickers read: the demo's own first (not the benchmark, which
    /// has no `risk` of itself), then [`extra_ticker`]s.
    fn tickers(&self) -> Vec<String> {
        if self.unknown {
            return (0..self.entities).map(|i| format!("NODATA{i:04}")).collect();
        }
        let demo = wafer_host::demo::DEMO_TICKERS.iter().filter(|t| **t != wafer_host::demo::BENCHMARK);
        let demo = demo.map(|t| t.to_string());
        match self.distinct {
            true => demo.chain((0..).map(extra_ticker)).take(self.entities).collect(),
            false => demo.cycle().take(self.entities).collect(),
        }
    }

    /// Tickers beyond the demo's that the embedded server must load.
    fn extra_tickers(&self) -> Vec<String> {
        let demo = wafer_host::demo::DEMO_TICKERS.len() - 1;
        match self.unknown {
            true => Vec::new(),
            false => (0..self.entities.saturating_sub(demo)).map(extra_ticker).collect(),
        }
    }

    fn body(&self) -> anyhow::Result<String> {
        let entities: Vec<serde_json::Value> =
            self.tickers().iter().map(|t| serde_json::json!({"ticker": t})).collect();
        let features: Vec<String> =
            self.feature_names()?.iter().take(self.features).map(|f| format!("{}:{f}", self.group)).collect();
        let body = serde_json::json!({"entities": entities, "features": features, "fallback": self.fallback});
        Ok(body.to_string())
    }

    fn name(&self) -> String {
        let which = if self.unknown { "unknown " } else { "" };
        let cycling = if self.distinct || self.unknown || self.entities <= 4 {
            ""
        } else {
            ", the demo's 4 stocks over and over"
        };
        format!(
            "online read, {} {which}entit{} x {} features of {} (fallback {}{cycling})",
            self.entities,
            if self.entities == 1 { "y" } else { "ies" },
            self.features,
            self.group,
            self.fallback
        )
    }

    /// Every value served (fresh, or stale for `risk`, whose demo data
    /// ends a day ago), or for unknown tickers every value missing.
    fn check(&self, body: &str) -> bool {
        let cells = self.entities * self.features;
        match self.unknown {
            true => body.matches("\"missing\"").count() == cells,
            false => body.matches("\"fresh\"").count() + body.matches("\"stale\"").count() == cells,
        }
    }
}

fn extra_ticker(i: usize) -> String {
    format!("X{i:04}")
}

const FEAST_BODY: &str = r#"{"entities":{"ticker":["AAPL"]},"features":["technical:sma_20","technical:sma_50","technical:sma_200","technical:ema_12","technical:ema_26","technical:rsi_14","technical:macd","technical:macd_signal","technical:bollinger_upper","technical:bollinger_lower"]}"#;
const ENRICH_BODY: &str =
    r#"{"prompt":"Should I add to my position?","task_type":"market_briefing","entities":{"ticker":"AAPL"}}"#;

/// Whether an answer's body is the right one.
type AnswerCheck = Box<dyn Fn(&str) -> bool>;

impl Endpoint {
    /// Path, body, what the run is called, and whether an answer is right.
    fn request(self, read: &OnlineRead) -> anyhow::Result<(&'static str, String, String, AnswerCheck)> {
        Ok(match self {
            Endpoint::Online => {
                let shape = read.clone();
                ("/v1/features/online", read.body()?, read.name(), Box::new(move |body| shape.check(body)))
            }
            // The join-key column is PRESENT too.
            Endpoint::Feast => (
                "/get-online-features",
                FEAST_BODY.to_string(),
                "Feast online read, 1 entity x 10 features".to_string(),
                Box::new(|body| body.matches("\"PRESENT\"").count() == 11),
            ),
            Endpoint::Enrich => (
                "/v1/enrich",
                ENRICH_BODY.to_string(),
                "enrichment, market_briefing (8 features) for 1 ticker".to_string(),
                Box::new(|body| body.contains("\"features_available\":true") && body.matches(r"\n- ").count() == 8),
            ),
        })
    }
}

pub async fn run(mut args: HttpArgs) -> anyhow::Result<()> {
    match args.server.clone() {
        Some(url) => {
            args.read.distinct = false;
            let hostport = url.trim_start_matches("http://").trim_end_matches('/');
            let addr = tokio::net::lookup_host(hostport).await?.next().expect("address");
            println!("server: {url}");
            let cpu = args.server_pid.map(ServerCpu::Process);
            measure(addr, &args, cpu).await
        }
        None => {
            println!("server: embedded demo on {}", args.backends.describe());
            let extra = match args.endpoint {
                Endpoint::Online => args.read.extra_tickers(),
                _ => Vec::new(),
            };
            let server = match EmbeddedDemo::start(&mut args.backends, args.server_cpu, extra).await {
                Ok(server) => server,
                Err(e) => {
                    args.backends.clean_up().await;
                    return Err(e);
                }
            };
            let cpu = args.server_cpu.then_some(ServerCpu::Threads(SERVER_THREADS));
            let result = measure(server.addr, &args, cpu).await;
            server.stop().await;
            args.backends.clean_up().await;
            result
        }
    }
}

async fn measure(addr: SocketAddr, args: &HttpArgs, cpu: Option<ServerCpu>) -> anyhow::Result<()> {
    let (path, body, name, answer_ok) = args.endpoint.request(&args.read)?;
    let request = Arc::new(
        format!(
            "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    );
    // Check the answer once, so the numbers are for a working request.
    let mut probe = Conn::open(addr).await?;
    let (status, answer) = probe.call(&request).await?;
    let answer = String::from_utf8_lossy(&answer);
    anyhow::ensure!(status == 200, "probe answered {status}: {answer}");
    anyhow::ensure!(answer_ok(&answer), "probe: unexpected answer {answer}");

    println!("{name}, {} connections, {} s per phase", args.connections, args.seconds);
    let warm = phase(addr, &request, args.connections, Duration::from_secs(1), None).await?;
    drop(warm);
    let used = cpu.as_ref().map(ServerCpu::nanos).transpose()?;
    let sat = phase(addr, &request, args.connections, Duration::from_secs(args.seconds), None).await?;
    report("saturation", &sat, args.seconds);
    let used = report_cpu(cpu.as_ref(), used, sat.len(), args.seconds)?;
    let fixed = phase(addr, &request, args.connections, Duration::from_secs(args.seconds), Some(args.rate)).await?;
    report(&format!("fixed {} req/s", args.rate), &fixed, args.seconds);
    report_cpu(cpu.as_ref(), used, fixed.len(), args.seconds)?;
    Ok(())
}

/// Prints the server CPU time the phase took per request; returns the
/// counter now, for the next phase.
fn report_cpu(
    cpu: Option<&ServerCpu>,
    before: Option<u64>,
    requests: usize,
    seconds: u64,
) -> anyhow::Result<Option<u64>> {
    let (Some(cpu), Some(before)) = (cpu, before) else {
        return Ok(None);
    };
    let now = cpu.nanos()?;
    let spent = now.saturating_sub(before) as f64;
    println!(
        "{:>20}  server CPU {:.1} us per request ({:.2} cores busy)",
        "",
        spent / 1e3 / requests.max(1) as f64,
        spent / 1e9 / seconds as f64
    );
    Ok(Some(now))
}

/// The name prefix of the embedded server's threads.
const SERVER_THREADS: &str = "wafer-srv";

/// Whose CPU time counts as the server's.
enum ServerCpu {
    /// Every thread of another process.
    Process(u32),
    /// The threads of this process whose name starts so.
    Threads(&'static str),
}

impl ServerCpu {
    /// CPU time so far, in nanoseconds: the sum of the counted threads'
    /// time on a CPU (the first field of each thread's `schedstat`).
    fn nanos(&self) -> anyhow::Result<u64> {
        let (tasks, prefix) = match self {
            ServerCpu::Process(pid) => (format!("/proc/{pid}/task"), None),
            ServerCpu::Threads(prefix) => ("/proc/self/task".to_string(), Some(*prefix)),
        };
        let mut total = 0;
        for task in std::fs::read_dir(&tasks).map_err(|e| anyhow::anyhow!("reading {tasks}: {e}"))? {
            let dir = task?.path();
            if let Some(prefix) = prefix {
                let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
                if !name.starts_with(prefix) {
                    continue;
                }
            }
            // A thread that exited meanwhile has no counters to read.
            let Ok(stat) = std::fs::read_to_string(dir.join("schedstat")) else { continue };
            total += stat.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        }
        Ok(total)
    }
}

fn report(name: &str, latencies: &[Duration], seconds: u64) {
    let mut micros: Vec<u64> = latencies.iter().map(|d| d.as_micros() as u64).collect();
    micros.sort_unstable();
    let pct = |p: f64| micros.get(((micros.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0);
    println!(
        "{name:>20}: {:>9.0} req/s  p50 {:>6} us  p99 {:>6} us  p99.9 {:>6} us  max {:>6} us  ({} requests)",
        micros.len() as f64 / seconds as f64,
        pct(0.50),
        pct(0.99),
        pct(0.999),
        micros.last().copied().unwrap_or(0),
        micros.len()
    );
}

/// Runs `connections` clients for `duration`; with `rate`, each client
/// sends on a fixed schedule; latency counts from each actual send.
async fn phase(
    addr: SocketAddr,
    request: &Arc<Vec<u8>>,
    connections: usize,
    duration: Duration,
    rate: Option<u64>,
) -> anyhow::Result<Vec<Duration>> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let mut latencies = Vec::new();
            let interval = rate.map(|r| Duration::from_secs_f64(connections as f64 / r as f64));
            // Stagger the schedules so connections do not fire together.
            let mut next = start + interval.map_or(Duration::ZERO, |i| i.mul_f64(c as f64 / connections as f64));
            while start.elapsed() < duration {
                if let Some(i) = interval {
                    tokio::time::sleep_until(next.into()).await;
                    next += i;
                }
                let sent = Instant::now();
                let (status, _) = conn.call(&request).await?;
                anyhow::ensure!(status == 200, "status {status}");
                latencies.push(sent.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

/// A keep-alive HTTP/1.1 connection that sends one prebuilt request at a
/// time and reads a Content-Length response.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn { stream, buf: Vec::with_capacity(16 << 10) })
    }

    async fn call(&mut self, request: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        self.stream.write_all(request).await?;
        self.buf.clear();
        loop {
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk).await?;
            anyhow::ensure!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end])?;
                let status: u16 = head.get(9..12).unwrap_or("0").parse()?;
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while self.buf.len() < end + 4 + len {
                    let n = self.stream.read(&mut chunk).await?;
                    anyhow::ensure!(n > 0, "connection closed mid-body");
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                return Ok((status, self.buf[end + 4..end + 4 + len].to_vec()));
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// An embedded demo server on an ephemeral port; with `own_runtime`, on a
/// runtime of its own (threads named [`SERVER_THREADS`]) so its CPU time
/// can be told from the load client's.
struct EmbeddedDemo {
    addr: SocketAddr,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    runtime: Option<tokio::runtime::Runtime>,
    dir: std::path::PathBuf,
}

impl EmbeddedDemo {
    async fn start(backends: &mut Backends, own_runtime: bool, extra: Vec<String>) -> anyhow::Result<EmbeddedDemo> {
        let dir = std::env::temp_dir().join(format!("wafer-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut config = wafer_host::config::Config::new(&dir);
        config.serving = wafer_host::demo::serving_config();
        backends.configure(&mut config);
        let runtime = match own_runtime {
            true => Some(tokio::runtime::Builder::new_multi_thread().thread_name(SERVER_THREADS).enable_all().build()?),
            false => None,
        };
        let (ready, started) = tokio::sync::oneshot::channel::<anyhow::Result<SocketAddr>>();
        let (shutdown, rx) = tokio::sync::oneshot::channel::<()>();
        let serving = async move {
            let opened = async {
                let app = wafer_host::App::open(config, Arc::new(wafer_host::clock::SystemClock)).await?;
                let end = wafer_host::demo::load(&app.wafer).await?;
                load_extra_tickers(&app.wafer, &extra, end).await?;
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                anyhow::Ok((app, listener))
            };
            match opened.await {
                Ok((app, listener)) => {
                    let _ = ready.send(listener.local_addr().map_err(Into::into));
                    let _ = wafer_host::server::serve(app, listener, async {
                        let _ = rx.await;
                    })
                    .await;
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                }
            }
        };
        let task = match &runtime {
            Some(runtime) => runtime.spawn(serving),
            None => tokio::spawn(serving),
        };
        let addr = started.await??;
        Ok(EmbeddedDemo { addr, shutdown, task, runtime, dir })
    }

    /// Graceful shutdown, so no write lands after the clean-up.
    async fn stop(self) {
        let _ = self.shutdown.send(());
        let _ = tokio::time::timeout(Duration::from_secs(30), self.task).await;
        if let Some(runtime) = self.runtime {
            runtime.shutdown_background();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Ingests the demo's prices and fundamentals for `tickers` and
/// materializes the stored ticker groups for them.
async fn load_extra_tickers(
    w: &wafer_host::service::Wafer,
    tickers: &[String],
    end: wafer_host::model::Timestamp,
) -> anyhow::Result<()> {
    if tickers.is_empty() {
        return Ok(());
    }
    let (mut prices, mut fundamentals) = (String::new(), String::new());
    for (i, t) in tickers.iter().enumerate() {
        let skip = usize::from(i > 0); // one header each
        for line in wafer_host::demo::prices_csv(t, wafer_host::demo::DEMO_DAYS, end).lines().skip(skip) {
            prices.push_str(line);
            prices.push('\n');
        }
        for line in wafer_host::demo::fundamentals_csv(t, end).lines().skip(skip) {
            fundamentals.push_str(line);
            fundamentals.push('\n');
        }
    }
    w.ingest_csv("prices", prices.as_bytes()).await?;
    w.ingest_csv("fundamentals", fundamentals.as_bytes()).await?;
    for group in ["technical", "risk", "valuation"] {
        let request = wafer_host::service::materialize::MaterializeRequest {
            feature_group: group.into(),
            entities: None,
            incremental: false,
        };
        let job = w.start_materialize(request).await?;
        let job = w.jobs().wait(&job.id).await?.ok_or_else(|| anyhow::anyhow!("job for {group} vanished"))?;
        anyhow::ensure!(job.errors.is_empty(), "materializing {group}: {:?}", job.errors);
    }
    println!("loaded {} extra tickers", tickers.len());
    Ok(())
}
