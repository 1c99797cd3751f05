//! The `gatehouse` command: run the gateway, validate a configuration, print the version.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use gatehouse::admin::ReplaceError;
use gatehouse::config;
use gatehouse::dns::{DnsConfig, Resolver, Watcher};
use gatehouse::health::HealthRegistry;
use gatehouse::proxy::client_ip::{RealIpConfig, TrustedProxies};
use gatehouse::proxy::pool::PoolSettings;
use gatehouse::proxy::{Gateway, Http2Settings, ServerConfig};
use gatehouse::store::Store;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "An API gateway driven by a Kong-style declarative configuration"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the gateway on a declarative configuration file.
    Run(Box<RunArgs>),
    /// Check a declarative configuration file and print every error found.
    Validate {
        /// The declarative file (YAML or JSON, Kong's `_format_version: "3.0"` format).
        #[arg(short = 'c', long = "conf", env = "GATEHOUSE_DECLARATIVE_CONFIG")]
        config: PathBuf,
    },
    /// Print the version.
    Version,
    /// Database schema migrations.
    Migrations {
        #[command(subcommand)]
        action: MigrationsAction,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Move a declarative configuration into or out of the database (Kong's `kong config`).
    Config {
        #[command(subcommand)]
        action: ConfigAction,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Args, Clone)]
struct DatabaseArgs {
    /// Where database mode keeps the configuration: `sqlite://FILE` (embedded, created when
    /// missing) or `postgres://USER@HOST:PORT/DB`.
    #[arg(long, env = "GATEHOUSE_DATABASE_URL", default_value = gatehouse::store::DEFAULT_URL)]
    database_url: String,
}

#[derive(Subcommand)]
enum MigrationsAction {
    /// Apply the migrations the database does not have yet.
    Up,
    /// List every migration and whether it is applied.
    Status,
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Validate a declarative file and store it as the whole configuration (what was stored
    /// before is replaced).
    #[command(name = "db_import")]
    DbImport { file: PathBuf },
    /// Write the stored configuration as a declarative document (to standard output, or FILE).
    #[command(name = "db_export")]
    DbExport { file: Option<PathBuf> },
}

#[derive(Args)]
struct RunArgs {
    /// The declarative file (YAML or JSON, Kong's `_format_version: "3.0"` format). Without
    /// one, the configuration lives in the database (`--database-url`).
    #[arg(short = 'c', long = "conf", env = "GATEHOUSE_DECLARATIVE_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    database: DatabaseArgs,
    /// Address of the proxy listener.
    #[arg(long, env = "GATEHOUSE_PROXY_LISTEN", default_value = "0.0.0.0:8000")]
    proxy_listen: SocketAddr,
    /// Address of the TLS proxy listener, or `off`. Handshakes are refused while the
    /// configuration has no certificate.
    #[arg(long, env = "GATEHOUSE_PROXY_TLS_LISTEN", default_value = "0.0.0.0:8443", value_parser = parse_listen_or_off)]
    proxy_tls_listen: ListenOrOff,
    /// Address of the Admin API listener, or `off`. Loopback by default: see
    /// docs/admin-api.md before exposing it.
    #[arg(long, env = "GATEHOUSE_ADMIN_LISTEN", default_value = "127.0.0.1:8001", value_parser = parse_listen_or_off)]
    admin_listen: ListenOrOff,
    /// A token every Admin API request must carry in `Kong-Admin-Token` (none by default).
    #[arg(long, env = "GATEHOUSE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// IP addresses or CIDR blocks allowed to use the Admin API, comma-separated (default:
    /// any address that reaches the listener).
    #[arg(long, env = "GATEHOUSE_ADMIN_ALLOW", value_delimiter = ',')]
    admin_allow: Vec<String>,
    /// Without a database: also write a configuration accepted by `POST /config` to the
    /// declarative file (atomically), so that it survives a restart. Off by default: the file
    /// stays the source of truth, as in Kong.
    #[arg(long, env = "GATEHOUSE_ADMIN_WRITES_FILE")]
    admin_writes_file: bool,
    /// Seconds allowed for a client to complete the TLS handshake.
    #[arg(long, env = "GATEHOUSE_TLS_HANDSHAKE_TIMEOUT", default_value_t = 10)]
    tls_handshake_timeout: u64,
    /// Worker threads (0: one per available core).
    #[arg(long, env = "GATEHOUSE_WORKERS", default_value_t = 0)]
    workers: usize,
    /// Proxies whose forwarding headers are believed (IPs or CIDRs, comma-separated).
    #[arg(long, env = "GATEHOUSE_TRUSTED_IPS", value_delimiter = ',')]
    trusted_ips: Vec<String>,
    /// Header carrying the client address when the peer is trusted.
    #[arg(
        long,
        env = "GATEHOUSE_REAL_IP_HEADER",
        default_value = "X-Forwarded-For"
    )]
    real_ip_header: String,
    /// Skip trusted addresses from the right of the header (nginx `real_ip_recursive`).
    #[arg(long, env = "GATEHOUSE_REAL_IP_RECURSIVE", default_value_t = false)]
    real_ip_recursive: bool,
    /// Without --real-ip-recursive: the client is this entry from the right of the header
    /// (1 = the last one; Traefik's ipStrategy depth).
    #[arg(long, env = "GATEHOUSE_REAL_IP_DEPTH", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    real_ip_depth: u16,
    /// Idle keep-alive connections kept per upstream target and worker (0: no keep-alive).
    #[arg(
        long,
        env = "GATEHOUSE_UPSTREAM_KEEPALIVE_POOL_SIZE",
        default_value_t = 256
    )]
    upstream_keepalive_pool_size: usize,
    /// Requests sent on one upstream connection before it is closed (0: unlimited).
    #[arg(
        long,
        env = "GATEHOUSE_UPSTREAM_KEEPALIVE_MAX_REQUESTS",
        default_value_t = 1_000
    )]
    upstream_keepalive_max_requests: u64,
    /// Seconds an idle upstream connection is kept.
    #[arg(
        long,
        env = "GATEHOUSE_UPSTREAM_KEEPALIVE_IDLE_TIMEOUT",
        default_value_t = 60
    )]
    upstream_keepalive_idle_timeout: u64,
    /// Seconds given to requests in flight to finish on SIGTERM/SIGINT before connections are closed.
    #[arg(long, env = "GATEHOUSE_DRAIN_TIMEOUT", default_value_t = 10)]
    drain_timeout: u64,
    /// Seconds allowed to receive the rest of a request head once its first byte arrived (408).
    #[arg(long, env = "GATEHOUSE_CLIENT_HEADER_TIMEOUT", default_value_t = 60)]
    client_header_timeout: u64,
    /// Seconds an idle client connection is kept open waiting for its next request.
    #[arg(long, env = "GATEHOUSE_KEEPALIVE_TIMEOUT", default_value_t = 75)]
    keepalive_timeout: u64,
    /// Longest request line, in bytes (414 above).
    #[arg(long, env = "GATEHOUSE_MAX_REQUEST_LINE", default_value_t = 8 << 10, value_parser = clap::value_parser!(u64).range(64..=1 << 20))]
    max_request_line: u64,
    /// Largest request head (request line and headers), in bytes (431 above).
    #[arg(long, env = "GATEHOUSE_MAX_HEADER_SIZE", default_value_t = 32 << 10, value_parser = clap::value_parser!(u64).range(256..=16 << 20))]
    max_header_size: u64,
    /// Most header lines in one request (431 above).
    #[arg(long, env = "GATEHOUSE_MAX_HEADERS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    max_headers: u64,
    /// Largest request body, in bytes (413 above); 0: no limit.
    #[arg(long, env = "GATEHOUSE_CLIENT_MAX_BODY_SIZE", default_value_t = 100 << 20)]
    client_max_body_size: u64,
    /// Most client connections open at once on this node, both listeners together (0: no
    /// limit); more are closed as soon as they are accepted.
    #[arg(long, env = "GATEHOUSE_MAX_CONNECTIONS", default_value_t = 16_384)]
    max_connections: usize,
    /// Largest request body, in bytes, read into memory for plugins that need it whole
    /// (hmac-auth's validate_request_body); larger ones get 413.
    #[arg(
        long,
        env = "GATEHOUSE_REQUEST_BUFFER_LIMIT",
        default_value_t = 8 << 20
    )]
    request_buffer_limit: usize,
    /// Seconds a client may pause between two reads of a body being read into memory (408).
    #[arg(long, env = "GATEHOUSE_CLIENT_BODY_TIMEOUT", default_value_t = 60)]
    client_body_timeout: u64,
    /// Nameservers for upstream target host names (`ip`, `ip:port`, comma-separated; Kong's
    /// `dns_resolver`). Default: the system's (/etc/resolv.conf, /etc/hosts).
    #[arg(long, env = "GATEHOUSE_DNS_RESOLVER")]
    dns_resolver: Option<String>,
    /// Reload the declarative file when it changes (written in place, renamed over, or its
    /// Kubernetes ConfigMap volume updated); `false` leaves reloads to SIGHUP.
    #[arg(
        long,
        env = "GATEHOUSE_WATCH_CONFIG",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    watch_config: bool,
    /// Let clients speak HTTP/2: ALPN `h2` on the TLS listener, and h2c with prior knowledge
    /// on the plain one.
    #[arg(
        long,
        env = "GATEHOUSE_HTTP2",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    http2: bool,
    /// Streams a client may have open at once on one HTTP/2 connection.
    #[arg(
        long,
        env = "GATEHOUSE_HTTP2_MAX_CONCURRENT_STREAMS",
        default_value_t = 128,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    http2_max_concurrent_streams: u32,
    /// Largest HTTP/2 request header list, in bytes (also bounds CONTINUATION frames).
    #[arg(
        long,
        env = "GATEHOUSE_HTTP2_MAX_HEADER_LIST_SIZE",
        default_value_t = 32 << 10,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    http2_max_header_list_size: u32,
    /// Streams an HTTP/2 client may open and reset before they are served; more end the
    /// connection (rapid-reset protection).
    #[arg(
        long,
        env = "GATEHOUSE_HTTP2_MAX_PENDING_ACCEPT_RESET_STREAMS",
        default_value_t = 20
    )]
    http2_max_pending_accept_reset_streams: usize,
    /// Streams the gateway may reset for a client's protocol errors before ending its
    /// HTTP/2 connection.
    #[arg(
        long,
        env = "GATEHOUSE_HTTP2_MAX_LOCAL_ERROR_RESET_STREAMS",
        default_value_t = 1024
    )]
    http2_max_local_error_reset_streams: usize,
    /// Seconds between keep-alive PINGs on client HTTP/2 connections (0: none).
    #[arg(long, env = "GATEHOUSE_HTTP2_KEEPALIVE_INTERVAL", default_value_t = 0)]
    http2_keepalive_interval: u64,
    /// Seconds allowed for a keep-alive PING's answer before the connection is closed.
    #[arg(long, env = "GATEHOUSE_HTTP2_KEEPALIVE_TIMEOUT", default_value_t = 20)]
    http2_keepalive_timeout: u64,
}

/// Quiet time after the last change to the file before it is read: one save is one reload.
const WATCH_DEBOUNCE: Duration = Duration::from_millis(200);

/// A listen address, or `off`.
#[derive(Clone, Copy)]
struct ListenOrOff(Option<SocketAddr>);

fn parse_listen_or_off(s: &str) -> Result<ListenOrOff, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(ListenOrOff(None));
    }
    s.parse()
        .map(|a| ListenOrOff(Some(a)))
        .map_err(|e| format!("{e}: expected ip:port or `off`"))
}

/// Host-name targets: resolved by DNS, each address a target, rebuilt when answers change.
struct Dns {
    config: DnsConfig,
    /// Built when the first host-name target appears (a configuration without any needs no
    /// resolver, nor a readable /etc/resolv.conf).
    resolver: Option<Arc<Resolver>>,
    watcher: Option<Watcher>,
}

impl Dns {
    /// Watch `names` (starting the watcher when first needed) and wait, bounded, for their
    /// first answers.
    fn watch(&mut self, rt: &tokio::runtime::Runtime, names: Vec<String>) {
        if names.is_empty() && self.watcher.is_none() {
            return;
        }
        let watcher = match &mut self.watcher {
            Some(w) => {
                w.set_names(&names);
                w
            }
            None => {
                let resolver = match &self.resolver {
                    Some(r) => r.clone(),
                    None => match Resolver::new(self.config.clone()) {
                        Ok(r) => self.resolver.insert(Arc::new(r)).clone(),
                        Err(e) => {
                            tracing::error!(error = %e, "no DNS resolver: target host names are resolved when connecting");
                            return;
                        }
                    },
                };
                self.watcher
                    .insert(Watcher::start(resolver, rt.handle().clone(), &names))
            }
        };
        let addresses = watcher.addresses().clone();
        rt.block_on(async {
            if tokio::time::timeout(Duration::from_secs(10), addresses.ready())
                .await
                .is_err()
            {
                tracing::warn!("some target host names have no DNS answer yet; they are resolved when connecting until they do");
            }
        });
    }

    /// The addresses known now.
    fn addresses(&self) -> Arc<gatehouse::dns::AddressMap> {
        self.watcher
            .as_ref()
            .map(|w| w.addresses().load())
            .unwrap_or_default()
    }
}

/// Compile `snapshot`'s document again with the current DNS answers.
fn with_addresses(
    snapshot: &gatehouse::snapshot::Snapshot,
    health: &HealthRegistry,
    dns: &Dns,
) -> anyhow::Result<gatehouse::snapshot::Snapshot> {
    let mut rebuilt =
        gatehouse::snapshot::compile_with_addresses(snapshot.doc.clone(), health, &dns.addresses())
            .map_err(|errors| anyhow::anyhow!("{}", config::ConfigErrors(errors)))?;
    // The same configuration, so the same stored version.
    rebuilt.stored_version = snapshot.stored_version;
    Ok(rebuilt)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("gatehouse {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Validate { config } => match load(&config) {
            Ok(snapshot) => {
                println!(
                    "{}: OK ({} services, {} routes, {} upstreams, {} plugins)",
                    config.display(),
                    snapshot.services.len(),
                    snapshot.routes.len(),
                    snapshot.upstreams.len(),
                    snapshot.doc.plugins.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprint!("{errors}");
                ExitCode::FAILURE
            }
        },
        Command::Migrations { action, database } => exit_with(migrations(action, &database)),
        Command::Config { action, database } => exit_with(config_command(action, &database)),
        Command::Run(args) => {
            init_logging();
            match run(*args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("gatehouse: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn exit_with(outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn small_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Open the database and bring its schema up to date.
async fn open_store(database: &DatabaseArgs) -> anyhow::Result<Store> {
    let store = Store::open(&database.database_url)
        .await
        .with_context(|| format!("cannot open the database {}", database.database_url))?;
    let applied = store.migrate().await?;
    if !applied.is_empty() {
        tracing::info!(
            ?applied,
            database = store.kind(),
            "database migrations applied"
        );
    }
    Ok(store)
}

fn migrations(action: MigrationsAction, database: &DatabaseArgs) -> anyhow::Result<()> {
    small_runtime()?.block_on(async {
        let store = Store::open(&database.database_url)
            .await
            .with_context(|| format!("cannot open the database {}", database.database_url))?;
        match action {
            MigrationsAction::Up => {
                let applied = store.migrate().await?;
                if applied.is_empty() {
                    println!("database is up to date");
                }
                for name in applied {
                    println!("applied {name}");
                }
            }
            MigrationsAction::Status => {
                for m in store.migration_status().await? {
                    let state = if m.applied { "applied" } else { "pending" };
                    println!("{}: {state}", m.name);
                }
            }
        }
        store.close().await;
        Ok(())
    })
}

fn config_command(action: ConfigAction, database: &DatabaseArgs) -> anyhow::Result<()> {
    small_runtime()?.block_on(async {
        let store = open_store(database).await?;
        match action {
            ConfigAction::DbImport { file } => {
                let snapshot = load(&file).map_err(|e| anyhow::anyhow!("{e}"))?;
                let document = config::export::declarative(&snapshot.doc);
                let version = store.replace(None, &document).await?;
                println!(
                    "{}: imported ({} services, {} routes, {} plugins); configuration version {version}",
                    file.display(),
                    snapshot.services.len(),
                    snapshot.routes.len(),
                    snapshot.doc.plugins.len()
                );
            }
            ConfigAction::DbExport { file } => {
                let stored = store.load().await?;
                let text = serde_json::to_string_pretty(&stored.document)? + "\n";
                match file {
                    Some(path) => std::fs::write(&path, text)
                        .with_context(|| format!("cannot write {}", path.display()))?,
                    None => print!("{text}"),
                }
            }
        }
        store.close().await;
        Ok(())
    })
}

fn load(path: &std::path::Path) -> Result<gatehouse::snapshot::Snapshot, config::ConfigErrors> {
    gatehouse::snapshot::load_file(path)
}

/// Compile `text` (read from `name`) off the request path, with the DNS answers for its target
/// host names; the errors are logged and returned.
fn compile(
    name: &str,
    text: Result<String, config::ConfigErrors>,
    trigger: &str,
    health: &HealthRegistry,
    dns: &mut Dns,
    rt: &tokio::runtime::Runtime,
) -> Result<gatehouse::snapshot::Snapshot, config::ConfigErrors> {
    let compiled = text.and_then(|text| {
        let snapshot = gatehouse::snapshot::load_str_with(name, &text, health)?;
        dns.watch(rt, gatehouse::snapshot::target_host_names(&snapshot.doc));
        if dns.watcher.is_none() {
            return Ok(snapshot);
        }
        gatehouse::snapshot::compile_with_addresses(snapshot.doc.clone(), health, &dns.addresses())
            .map_err(config::ConfigErrors)
    });
    if let Err(errors) = &compiled {
        for e in &errors.0 {
            tracing::error!("{e}");
        }
        tracing::error!(
            errors = errors.0.len(),
            trigger,
            "configuration rejected; the previous one keeps serving"
        );
    }
    compiled
}

/// Serve `snapshot` from now on; requests in flight finish on the configuration they started
/// with.
fn install(gateway: &Gateway, snapshot: gatehouse::snapshot::Snapshot, name: &str, trigger: &str) {
    let routes = snapshot.routes.len();
    gateway.swap(snapshot);
    tracing::info!(routes, trigger, config = %name, "configuration reloaded");
}

/// A whole configuration on its way to the main loop, which owns the DNS watcher, the store
/// and the reload path: the stored version it was computed from (if it must not overwrite a
/// later one), its text, and the channel for the outcome.
type Replacement = (
    Option<i64>,
    String,
    std::sync::mpsc::SyncSender<Result<Arc<gatehouse::snapshot::Snapshot>, ReplaceError>>,
);

/// The Admin API's handle on this node.
struct NodeControl {
    gateway: gatehouse::proxy::GatewayHandle,
    replacements: tokio::sync::mpsc::UnboundedSender<Replacement>,
    store: Option<Store>,
}

impl gatehouse::admin::Control for NodeControl {
    fn current(&self) -> Arc<gatehouse::snapshot::Snapshot> {
        self.gateway.current()
    }

    fn replace(
        &self,
        base: Option<&gatehouse::snapshot::Snapshot>,
        text: &str,
    ) -> Result<Arc<gatehouse::snapshot::Snapshot>, ReplaceError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let unavailable = || ReplaceError::Unavailable("the node is shutting down".into());
        self.replacements
            .send((base.map(|b| b.stored_version), text.to_string(), tx))
            .map_err(|_| unavailable())?;
        rx.recv().map_err(|_| unavailable())?
    }

    fn connections_accepted(&self) -> u64 {
        self.gateway.connections_accepted()
    }

    fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }
}

/// Where the configuration comes from: a declarative file, or the database.
enum Source {
    File {
        path: PathBuf,
        /// The text last read, so that a change event that leaves it as it was reloads nothing.
        last_text: String,
        /// `--admin-writes-file`: `POST /config` rewrites the file.
        write_back: bool,
    },
    Database {
        store: Store,
        /// The stored version serving now.
        version: i64,
    },
}

impl Source {
    fn name(&self) -> String {
        match self {
            Source::File { path, .. } => path.display().to_string(),
            Source::Database { store, .. } => format!("database ({})", store.kind()),
        }
    }

    /// The text of the configuration as stored now (and, for the database, its version).
    fn read(&self, rt: &tokio::runtime::Runtime) -> Result<(String, i64), config::ConfigErrors> {
        match self {
            Source::File { path, .. } => config::read_file(path).map(|t| (t, 0)),
            Source::Database { store, .. } => rt
                .block_on(store.load())
                .map(|stored| (stored.document.to_string(), stored.version))
                .map_err(|e| source_error(&self.name(), e.to_string())),
        }
    }
}

fn source_error(source: &str, message: String) -> config::ConfigErrors {
    config::ConfigErrors(vec![config::ConfigError {
        source: source.to_string(),
        line: None,
        column: None,
        path: String::new(),
        message,
    }])
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GATEHOUSE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let health = HealthRegistry::new();
    // Signal handlers first: once the start-up line is out, SIGTERM must mean "shut down".
    let rt = small_runtime()?;
    let mut source = match &args.config {
        Some(path) => Source::File {
            path: path.clone(),
            last_text: String::new(),
            write_back: args.admin_writes_file,
        },
        None => Source::Database {
            store: rt.block_on(open_store(&args.database))?,
            version: 0,
        },
    };
    let (text, version) = source.read(&rt).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut snapshot = gatehouse::snapshot::load_str_with(&source.name(), &text, &health)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    snapshot.stored_version = version;
    match &mut source {
        Source::File { last_text, .. } => *last_text = text,
        Source::Database { version: v, .. } => *v = version,
    }
    let trusted = TrustedProxies::parse(&args.trusted_ips).context("--trusted-ips")?;
    let header =
        http::HeaderName::from_bytes(args.real_ip_header.as_bytes()).context("--real-ip-header")?;
    let config = ServerConfig {
        proxy_listen: args.proxy_listen,
        proxy_tls_listen: args.proxy_tls_listen.0,
        tls_handshake_timeout: Duration::from_secs(args.tls_handshake_timeout.max(1)),
        workers: args.workers,
        real_ip: RealIpConfig {
            trusted,
            header,
            recursive: args.real_ip_recursive,
            depth: usize::from(args.real_ip_depth),
        },
        pool: PoolSettings {
            max_idle_per_target: args.upstream_keepalive_pool_size,
            max_requests: args.upstream_keepalive_max_requests,
            idle_timeout: Duration::from_secs(args.upstream_keepalive_idle_timeout),
        },
        header_read_timeout: Duration::from_secs(args.client_header_timeout.max(1)),
        keepalive_timeout: Duration::from_secs(args.keepalive_timeout.max(1)),
        max_request_line: usize::try_from(args.max_request_line).context("--max-request-line")?,
        max_header_size: usize::try_from(args.max_header_size).context("--max-header-size")?,
        max_headers: usize::try_from(args.max_headers).context("--max-headers")?,
        client_max_body_size: args.client_max_body_size,
        max_connections: args.max_connections,
        drain_timeout: Duration::from_secs(args.drain_timeout),
        request_buffer_limit: args.request_buffer_limit,
        client_body_timeout: Duration::from_secs(args.client_body_timeout.max(1)),
        http2: Http2Settings {
            enabled: args.http2,
            max_concurrent_streams: args.http2_max_concurrent_streams,
            max_header_list_size: args.http2_max_header_list_size,
            max_pending_accept_reset_streams: args.http2_max_pending_accept_reset_streams,
            max_local_error_reset_streams: args.http2_max_local_error_reset_streams,
            keepalive_interval: (args.http2_keepalive_interval > 0)
                .then(|| Duration::from_secs(args.http2_keepalive_interval)),
            keepalive_timeout: Duration::from_secs(args.http2_keepalive_timeout.max(1)),
        },
    };
    for reserved in ["GATEHOUSE_STATUS_LISTEN"] {
        if std::env::var_os(reserved).is_some() {
            tracing::warn!(
                "{reserved} is set, but this version of Gatehouse has no status listener; it is not used"
            );
        }
    }
    let dns_config = match &args.dns_resolver {
        Some(list) => DnsConfig::with_nameservers(
            gatehouse::dns::parse_nameservers(list).context("--dns-resolver")?,
        ),
        None => DnsConfig::default(),
    };
    let mut dns = Dns {
        config: dns_config,
        resolver: None,
        watcher: None,
    };
    dns.watch(&rt, gatehouse::snapshot::target_host_names(&snapshot.doc));
    let snapshot = if dns.watcher.is_some() {
        with_addresses(&snapshot, &health, &dns)?
    } else {
        snapshot
    };
    let routes = snapshot.routes.len();
    let (mut term, mut int, mut hup) = rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
            signal(SignalKind::hangup())?,
        ))
    })?;
    let gateway = Gateway::start(config, snapshot)
        .with_context(|| format!("cannot listen on {}", args.proxy_listen))?;
    let proxy_tls = gateway
        .tls_addr()
        .map_or_else(|| "off".to_string(), |a| a.to_string());
    let certificates = gateway.current().certificates.len();
    let (replacements, mut replace_requests) = tokio::sync::mpsc::unbounded_channel();
    let admin = match args.admin_listen.0 {
        Some(listen) => {
            let control = Arc::new(NodeControl {
                gateway: gateway.handle(),
                replacements,
                store: match &source {
                    Source::Database { store, .. } => Some(store.clone()),
                    Source::File { .. } => None,
                },
            });
            let node = gatehouse::admin::NodeInfo {
                node_id: uuid::Uuid::new_v4().to_string(),
                hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_default(),
                proxy_listen: std::iter::once(gateway.proxy_addr().to_string())
                    .chain(gateway.tls_addr().map(|a| format!("{a} ssl")))
                    .collect(),
                admin_listen: vec![listen.to_string()],
                declarative_config: args.config.as_ref().map(|p| p.display().to_string()),
            };
            let server = gatehouse::admin::AdminServer::start(
                listen,
                gatehouse::admin::Admin::new(
                    control,
                    node,
                    gatehouse::admin::Access::new(args.admin_token.clone(), &args.admin_allow)
                        .map_err(|e| anyhow::anyhow!("--admin-token/--admin-allow: {e}"))?,
                ),
            )
            .with_context(|| format!("cannot listen on {listen} (admin)"))?;
            Some(server)
        }
        None => None,
    };
    let admin_addr = admin
        .as_ref()
        .map_or_else(|| "off".to_string(), |a| a.addr().to_string());
    let (_file_watcher, mut file_changes) = match &args.config {
        Some(path) if args.watch_config => match config::watch::FileWatcher::start(path) {
            Ok((watcher, rx)) => (Some(watcher), Some(rx)),
            Err(e) => {
                tracing::warn!(config = %path.display(), "not watching the configuration file ({e}); SIGHUP still reloads it");
                (None, None)
            }
        },
        _ => (None, None),
    };
    // Database mode: other nodes' writes arrive by notification (PostgreSQL), and a poll of
    // the version catches whatever a lost notification or a reconnection missed.
    let mut notifications = match &source {
        Source::Database { store, .. } => match rt.block_on(store.listen()) {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "not listening for other nodes' writes; polling only");
                None
            }
        },
        Source::File { .. } => None,
    };
    let mut poll = {
        // Timers belong to a runtime.
        let _in_runtime = rt.enter();
        tokio::time::interval_at(tokio::time::Instant::now() + DATABASE_POLL, DATABASE_POLL)
    };
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let polling = matches!(source, Source::Database { .. });
    // When the file, changed, has been quiet for WATCH_DEBOUNCE.
    let mut settle_at: Option<tokio::time::Instant> = None;
    tracing::info!(proxy = %gateway.proxy_addr(), proxy_tls = %proxy_tls, admin = %admin_addr, certificates, routes, config = %source.name(), "gatehouse started");
    let mut changes = dns.watcher.as_ref().map(|w| w.addresses().subscribe());
    loop {
        if changes.is_none() {
            // A reload may have started the watcher.
            changes = dns.watcher.as_ref().map(|w| w.addresses().subscribe());
        }
        enum Event {
            Stop,
            Reload,
            Addresses,
            FileChanged,
            FileSettled,
            Replace(Replacement),
            /// The database may hold a newer version.
            Stored,
        }
        let event = rt.block_on(async {
            let dns_changed = async {
                match changes.as_mut() {
                    Some(rx) => {
                        if rx.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let file_changed = async {
                match file_changes.as_mut() {
                    Some(rx) => {
                        if rx.recv().await.is_none() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let file_settled = async {
                match settle_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending::<()>().await,
                }
            };
            let notified = async {
                match notifications.as_mut() {
                    Some(listener) => {
                        if let Err(e) = listener.recv().await {
                            // sqlx reconnects on the next call; the poll covers the gap.
                            tracing::warn!(error = %e, "database notifications interrupted");
                            tokio::time::sleep(DATABASE_POLL).await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let polled = async {
                if polling {
                    poll.tick().await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = term.recv() => Event::Stop,
                _ = int.recv() => Event::Stop,
                _ = hup.recv() => Event::Reload,
                _ = dns_changed => Event::Addresses,
                _ = file_changed => Event::FileChanged,
                _ = file_settled => Event::FileSettled,
                Some(r) = replace_requests.recv() => Event::Replace(r),
                _ = notified => Event::Stored,
                _ = polled => Event::Stored,
            }
        });
        match event {
            Event::Stop => break,
            Event::Reload => reload_source(&gateway, &mut source, "SIGHUP", &health, &mut dns, &rt),
            Event::Stored => {
                if let Source::Database { store, version } = &source {
                    match rt.block_on(store.version()) {
                        Ok(v) if v != *version => reload_source(
                            &gateway,
                            &mut source,
                            "database change",
                            &health,
                            &mut dns,
                            &rt,
                        ),
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "database unreachable; serving the last configuration")
                        }
                    }
                }
            }
            Event::FileChanged => {
                settle_at = Some(tokio::time::Instant::now() + WATCH_DEBOUNCE);
            }
            Event::FileSettled => {
                settle_at = None;
                reload_source(&gateway, &mut source, "file change", &health, &mut dns, &rt);
            }
            Event::Replace((base, text, reply)) => {
                let outcome = replace(&gateway, &mut source, base, text, &health, &mut dns, &rt);
                let _ = reply.send(outcome);
            }
            Event::Addresses => match with_addresses(&gateway.current(), &health, &dns) {
                Ok(snapshot) => {
                    gateway.swap(snapshot);
                    tracing::info!("upstream targets rebuilt from new DNS answers");
                }
                Err(e) => tracing::error!("upstream targets not rebuilt: {e}"),
            },
        }
    }
    tracing::info!("shutting down");
    // Replacements still queued fail (their callers get an answer) before the Admin API stops.
    drop(replace_requests);
    drop(admin);
    gateway.shutdown();
    // Database connections are closed on the runtime that made them.
    let _in_runtime = rt.enter();
    drop(notifications);
    if let Source::Database { store, .. } = &source {
        rt.block_on(store.close());
    }
    drop(source);
    Ok(())
}

/// How often database mode checks the stored version.
const DATABASE_POLL: Duration = Duration::from_secs(1);

/// SIGHUP, a change to the file, or a newer version in the database: read the source again
/// and serve it if it is valid (and, for a file, changed).
fn reload_source(
    gateway: &Gateway,
    source: &mut Source,
    trigger: &str,
    health: &HealthRegistry,
    dns: &mut Dns,
    rt: &tokio::runtime::Runtime,
) {
    let name = source.name();
    let read = source.read(rt);
    match source {
        Source::File { last_text, .. } => match &read {
            Ok((t, _)) if *t == *last_text && trigger != "SIGHUP" => {
                tracing::debug!(config = %name, "configuration file unchanged; not reloaded");
                return;
            }
            Ok((t, _)) => last_text.clone_from(t),
            Err(_) => {}
        },
        Source::Database { .. } => {
            if let Err(e) = &read {
                tracing::warn!("{e}");
                return;
            }
        }
    }
    let (text, version) = match read {
        Ok((t, v)) => (Ok(t), v),
        Err(e) => (Err(e), 0),
    };
    if let Ok(mut snapshot) = compile(&name, text, trigger, health, dns, rt) {
        snapshot.stored_version = version;
        install(gateway, snapshot, &name, trigger);
        if let Source::Database { version: v, .. } = source {
            *v = version;
        }
    }
}

/// `POST /config`, or a change to one entity computed from stored version `base`: validate;
/// in database mode store it (if nothing else was written since `base`, or without one since
/// the version serving now); then serve it.
fn replace(
    gateway: &Gateway,
    source: &mut Source,
    base: Option<i64>,
    text: String,
    health: &HealthRegistry,
    dns: &mut Dns,
    rt: &tokio::runtime::Runtime,
) -> Result<Arc<gatehouse::snapshot::Snapshot>, ReplaceError> {
    let text_for_file = text.clone();
    let mut snapshot = compile("POST /config", Ok(text), "admin", health, dns, rt)
        .map_err(ReplaceError::Invalid)?;
    if let Source::Database { store, version } = source {
        let document = config::export::declarative(&snapshot.doc);
        // A change computed from a configuration this node has since replaced (with another
        // node's write, say) would undo that write: the database refuses it, as it refuses
        // one computed from a version that another node has moved on from.
        match rt.block_on(store.replace(Some(base.unwrap_or(*version)), &document)) {
            Ok(v) => {
                *version = v;
                snapshot.stored_version = v;
            }
            Err(gatehouse::store::StoreError::Conflict { .. }) => {
                let message =
                    "the configuration changed in the database meanwhile; read it again and retry";
                reload_source(gateway, source, "database change", health, dns, rt);
                return Err(ReplaceError::Conflict(message.into()));
            }
            Err(e) => {
                tracing::error!(error = %e, "configuration not stored");
                return Err(ReplaceError::Unavailable(format!(
                    "database unavailable: {e}"
                )));
            }
        }
    }
    if let Source::File {
        path,
        last_text,
        write_back: true,
    } = source
    {
        // On disk before it serves: what serves is what a restart would load.
        if let Err(e) = config::write_file_atomically(path, &text_for_file) {
            tracing::error!(error = %e, file = %path.display(), "configuration not written");
            return Err(ReplaceError::Unavailable(format!(
                "cannot write {}: {e}",
                path.display()
            )));
        }
        // The watcher will see the text it already serves, and reload nothing.
        last_text.clone_from(&text_for_file);
    }
    install(gateway, snapshot, "POST /config", "admin");
    Ok(gateway.current())
}
