//! The `gatehouse` command: run the gateway, validate a configuration, print the version.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use gatehouse::config;
use gatehouse::dns::{DnsConfig, Resolver, Watcher};
use gatehouse::health::HealthRegistry;
use gatehouse::proxy::client_ip::{RealIpConfig, TrustedProxies};
use gatehouse::proxy::pool::PoolSettings;
use gatehouse::proxy::{Gateway, Http2Settings, ServerConfig};

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
}

#[derive(Args)]
struct RunArgs {
    /// The declarative file (YAML or JSON, Kong's `_format_version: "3.0"` format).
    #[arg(short = 'c', long = "conf", env = "GATEHOUSE_DECLARATIVE_CONFIG")]
    config: PathBuf,
    /// Address of the proxy listener.
    #[arg(long, env = "GATEHOUSE_PROXY_LISTEN", default_value = "0.0.0.0:8000")]
    proxy_listen: SocketAddr,
    /// Address of the TLS proxy listener, or `off`. It starts only when the configuration has
    /// certificates.
    #[arg(long, env = "GATEHOUSE_PROXY_TLS_LISTEN", default_value = "0.0.0.0:8443", value_parser = parse_listen_or_off)]
    proxy_tls_listen: ListenOrOff,
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
    /// Seconds allowed for a client to send a request head.
    #[arg(long, env = "GATEHOUSE_CLIENT_HEADER_TIMEOUT", default_value_t = 60)]
    client_header_timeout: u64,
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
    gatehouse::snapshot::compile_with_addresses(snapshot.doc.clone(), health, &dns.addresses())
        .map_err(|errors| anyhow::anyhow!("{}", config::ConfigErrors(errors)))
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

fn load(path: &std::path::Path) -> Result<gatehouse::snapshot::Snapshot, config::ConfigErrors> {
    gatehouse::snapshot::load_file(path)
}

/// SIGHUP or a change to the file: compile `text`, the file read again, off the request path;
/// swap it in only if it is valid. Requests in flight finish on the configuration they started
/// with.
fn reload(
    gateway: &Gateway,
    path: &std::path::Path,
    text: Result<String, config::ConfigErrors>,
    trigger: &str,
    health: &HealthRegistry,
    dns: &mut Dns,
    rt: &tokio::runtime::Runtime,
) {
    let name = path.display().to_string();
    let loaded = text.and_then(|text| {
        let snapshot = gatehouse::snapshot::load_str_with(&name, &text, health)?;
        dns.watch(rt, gatehouse::snapshot::target_host_names(&snapshot.doc));
        if dns.watcher.is_none() {
            return Ok(snapshot);
        }
        gatehouse::snapshot::compile_with_addresses(snapshot.doc.clone(), health, &dns.addresses())
            .map_err(config::ConfigErrors)
    });
    match loaded {
        Ok(snapshot) => {
            let routes = snapshot.routes.len();
            gateway.swap(snapshot);
            tracing::info!(routes, trigger, config = %path.display(), "configuration reloaded");
        }
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!("{e}");
            }
            tracing::error!(
                errors = errors.0.len(),
                trigger,
                "configuration rejected; the previous one keeps serving"
            );
        }
    }
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
    // The text last read, so that a change event that leaves it as it was reloads nothing.
    let mut last_text = config::read_file(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let snapshot =
        gatehouse::snapshot::load_str_with(&args.config.display().to_string(), &last_text, &health)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
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
    for reserved in ["GATEHOUSE_ADMIN_LISTEN", "GATEHOUSE_STATUS_LISTEN"] {
        if std::env::var_os(reserved).is_some() {
            tracing::warn!(
                "{reserved} is set, but this version of Gatehouse has no Admin API or status listener; it is not used"
            );
        }
    }
    // Signal handlers first: once the start-up line is out, SIGTERM must mean "shut down".
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
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
    let (_file_watcher, mut file_changes) = if args.watch_config {
        match config::watch::FileWatcher::start(&args.config) {
            Ok((watcher, rx)) => (Some(watcher), Some(rx)),
            Err(e) => {
                tracing::warn!(config = %args.config.display(), "not watching the configuration file ({e}); SIGHUP still reloads it");
                (None, None)
            }
        }
    } else {
        (None, None)
    };
    // When the file, changed, has been quiet for WATCH_DEBOUNCE.
    let mut settle_at: Option<tokio::time::Instant> = None;
    tracing::info!(proxy = %gateway.proxy_addr(), proxy_tls = %proxy_tls, certificates, routes, config = %args.config.display(), "gatehouse started");
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
            tokio::select! {
                _ = term.recv() => Event::Stop,
                _ = int.recv() => Event::Stop,
                _ = hup.recv() => Event::Reload,
                _ = dns_changed => Event::Addresses,
                _ = file_changed => Event::FileChanged,
                _ = file_settled => Event::FileSettled,
            }
        });
        match event {
            Event::Stop => break,
            Event::Reload => {
                let text = config::read_file(&args.config);
                if let Ok(t) = &text {
                    last_text.clone_from(t);
                }
                reload(
                    &gateway,
                    &args.config,
                    text,
                    "SIGHUP",
                    &health,
                    &mut dns,
                    &rt,
                );
            }
            Event::FileChanged => {
                settle_at = Some(tokio::time::Instant::now() + WATCH_DEBOUNCE);
            }
            Event::FileSettled => {
                settle_at = None;
                let text = config::read_file(&args.config);
                match &text {
                    Ok(t) if *t == last_text => {
                        tracing::debug!(config = %args.config.display(), "configuration file unchanged; not reloaded");
                        continue;
                    }
                    Ok(t) => last_text.clone_from(t),
                    Err(_) => {}
                }
                reload(
                    &gateway,
                    &args.config,
                    text,
                    "file change",
                    &health,
                    &mut dns,
                    &rt,
                );
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
    gateway.shutdown();
    Ok(())
}
