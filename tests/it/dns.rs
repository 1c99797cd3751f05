//! DNS resolution of upstream targets, driven directly: a tiny authoritative server on
//! loopback UDP whose answers, TTLs and availability each test changes at run time, and which
//! counts the queries it gets.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse::dns::{DnsConfig, DnsError, LookupOrder, Resolver, Watcher};
use hickory_proto::op::{Message, Metadata, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// What the server answers for one name.
#[derive(Clone, Default)]
struct Zone {
    a: Vec<Ipv4Addr>,
    aaaa: Vec<Ipv6Addr>,
    ttl: u32,
}

#[derive(Default)]
struct State {
    /// Lower-case names without the final dot; a name absent here is NXDOMAIN.
    zones: HashMap<String, Zone>,
    /// Drop every query unanswered.
    down: bool,
    /// Queries received, by (name, type), answered or not.
    queries: HashMap<(String, RecordType), usize>,
}

struct DnsServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DnsServer {
    async fn start() -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                let Ok(request) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let Some(reply) = answer(&shared, &request) else {
                    continue;
                };
                let _ = socket.send_to(&reply.to_vec().unwrap(), peer).await;
            }
        });
        DnsServer { addr, state, task }
    }

    fn set(&self, name: &str, zone: Zone) {
        self.state.lock().unwrap().zones.insert(name.into(), zone);
    }

    fn remove(&self, name: &str) {
        self.state.lock().unwrap().zones.remove(name);
    }

    fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    fn queries(&self, name: &str, rtype: RecordType) -> usize {
        let state = self.state.lock().unwrap();
        state
            .queries
            .get(&(name.to_string(), rtype))
            .copied()
            .unwrap_or(0)
    }

    fn total_queries(&self) -> usize {
        self.state.lock().unwrap().queries.values().sum()
    }

    /// Settings for tests: this server only, short timeouts and retries.
    fn config(&self) -> DnsConfig {
        DnsConfig {
            timeout: Some(Duration::from_millis(300)),
            attempts: Some(1),
            error_retry: Duration::from_millis(200),
            max_error_retry: Duration::from_millis(400),
            ..DnsConfig::with_nameservers([self.addr])
        }
    }

    fn resolver(&self) -> Arc<Resolver> {
        Arc::new(Resolver::new(self.config()).unwrap())
    }
}

/// The reply to `request`, `None` to stay silent.
fn answer(state: &Mutex<State>, request: &Message) -> Option<Message> {
    let query = request.queries.first()?.clone();
    let name = query
        .name()
        .to_string()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let mut state = state.lock().unwrap();
    *state
        .queries
        .entry((name.clone(), query.query_type()))
        .or_default() += 1;
    if state.down {
        return None;
    }
    let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
    reply.metadata = Metadata::response_from_request(&request.metadata);
    reply.metadata.authoritative = true;
    reply.add_query(query.clone());
    match state.zones.get(&name) {
        None => reply.metadata.response_code = ResponseCode::NXDomain,
        Some(zone) => {
            let rdata: Vec<RData> = match query.query_type() {
                RecordType::A => zone.a.iter().map(|ip| RData::A(A(*ip))).collect(),
                RecordType::AAAA => zone.aaaa.iter().map(|ip| RData::AAAA(AAAA(*ip))).collect(),
                _ => Vec::new(),
            };
            for r in rdata {
                reply.add_answer(Record::from_rdata(query.name().clone(), zone.ttl, r));
            }
        }
    }
    Some(reply)
}

fn v4(last: &[u8]) -> Vec<Ipv4Addr> {
    last.iter().map(|b| Ipv4Addr::new(127, 0, 0, *b)).collect()
}

fn ips(last: &[u8]) -> Vec<IpAddr> {
    v4(last).into_iter().map(IpAddr::from).collect()
}

fn zone(last: &[u8], ttl: u32) -> Zone {
    Zone {
        a: v4(last),
        aaaa: Vec::new(),
        ttl,
    }
}

/// Wait (at most `limit`) until `name`'s published set is `want`.
async fn published(watcher: &Watcher, name: &str, want: &[IpAddr], limit: Duration) {
    let mut changes = watcher.addresses().subscribe();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if watcher.addresses().get(name).as_deref() == Some(want) {
            return;
        }
        let wait = tokio::time::timeout_at(deadline, changes.changed()).await;
        assert!(
            wait.is_ok(),
            "{name}: wanted {want:?}, still {:?}",
            watcher.addresses().get(name)
        );
    }
}

#[tokio::test]
async fn every_address_behind_a_name_with_its_ttl() {
    let server = DnsServer::start().await;
    server.set("api.test", zone(&[3, 1, 2, 1], 60));
    let resolver = server.resolver();

    let before = Instant::now();
    let r = resolver.resolve("api.test").await.unwrap();
    assert_eq!(r.addrs, ips(&[1, 2, 3]), "sorted, without duplicates");
    let ttl = r.valid_until - before;
    assert!(
        ttl > Duration::from_secs(55) && ttl <= Duration::from_secs(61),
        "{ttl:?}"
    );

    // Within the TTL the answer comes from the cache.
    let again = resolver.resolve("API.test").await.unwrap();
    assert_eq!(again.addrs, r.addrs);
    assert_eq!(server.queries("api.test", RecordType::A), 1);
}

#[tokio::test]
async fn both_families_when_asked_and_aaaa_only_when_no_a() {
    let server = DnsServer::start().await;
    server.set(
        "dual.test",
        Zone {
            a: v4(&[7]),
            aaaa: vec![Ipv6Addr::LOCALHOST],
            ttl: 60,
        },
    );
    server.set(
        "v6.test",
        Zone {
            a: Vec::new(),
            aaaa: vec![Ipv6Addr::LOCALHOST],
            ttl: 60,
        },
    );

    let both = Resolver::new(DnsConfig {
        order: LookupOrder::Ipv4AndIpv6,
        ..server.config()
    })
    .unwrap();
    let r = both.resolve("dual.test").await.unwrap();
    assert_eq!(
        r.addrs,
        vec![
            IpAddr::from([127, 0, 0, 7]),
            IpAddr::from(Ipv6Addr::LOCALHOST)
        ]
    );

    // The default: A first, AAAA only for a name without A record.
    let default = server.resolver();
    assert_eq!(default.resolve("dual.test").await.unwrap().addrs, ips(&[7]));
    assert_eq!(
        default.resolve("v6.test").await.unwrap().addrs,
        vec![IpAddr::from(Ipv6Addr::LOCALHOST)]
    );

    let v4_only = Resolver::new(DnsConfig {
        order: LookupOrder::Ipv4,
        ..server.config()
    })
    .unwrap();
    let err = v4_only.resolve("v6.test").await.unwrap_err();
    assert!(matches!(err, DnsError::NoAddress { .. }), "{err:?}");
}

#[tokio::test]
async fn unknown_names_and_silent_servers_are_errors() {
    let server = DnsServer::start().await;
    let resolver = server.resolver();
    let err = resolver.resolve("missing.test").await.unwrap_err();
    assert!(matches!(err, DnsError::NxDomain { .. }), "{err:?}");
    assert!(err.is_not_found());

    server.set("api.test", zone(&[1], 60));
    server.set_down(true);
    let started = Instant::now();
    let err = resolver.resolve("api.test").await.unwrap_err();
    assert!(!err.is_not_found(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));

    let err = resolver.resolve("bad..name").await.unwrap_err();
    assert!(matches!(err, DnsError::InvalidName { .. }), "{err:?}");
}

#[tokio::test]
async fn ip_literals_and_the_hosts_file_need_no_query() {
    let server = DnsServer::start().await;
    let resolver = Arc::new(
        Resolver::new(DnsConfig {
            order: LookupOrder::Ipv4,
            ..server.config()
        })
        .unwrap(),
    );

    let r = resolver.resolve("127.0.0.9").await.unwrap();
    assert_eq!(r.addrs, ips(&[9]));
    assert!(r.valid_until > Instant::now() + Duration::from_secs(365 * 24 * 3600));
    let r = resolver.resolve("[::1]").await.unwrap();
    assert_eq!(r.addrs, vec![IpAddr::from(Ipv6Addr::LOCALHOST)]);

    let r = resolver.resolve("localhost").await.unwrap();
    assert_eq!(r.addrs, ips(&[1]));

    let watcher = Watcher::start(resolver, Handle::current(), ["127.0.0.5", "::1"]);
    assert_eq!(
        watcher.addresses().get("127.0.0.5").as_deref(),
        Some(&ips(&[5])[..])
    );
    assert_eq!(
        watcher.addresses().get("::1").as_deref(),
        Some(&[IpAddr::from(Ipv6Addr::LOCALHOST)][..])
    );
    tokio::time::timeout(Duration::from_secs(1), watcher.addresses().ready())
        .await
        .unwrap();
    assert_eq!(server.total_queries(), 0);
}

#[tokio::test]
async fn the_watcher_follows_an_answer_with_a_short_ttl() {
    let server = DnsServer::start().await;
    server.set("api.test", zone(&[1, 2], 1));
    let watcher = Watcher::start(server.resolver(), Handle::current(), ["api.test"]);
    tokio::time::timeout(Duration::from_secs(3), watcher.addresses().ready())
        .await
        .unwrap();
    assert_eq!(
        watcher.addresses().get("api.test").as_deref(),
        Some(&ips(&[1, 2])[..])
    );
    let generation = watcher.addresses().generation();

    server.set("api.test", zone(&[2, 3, 4], 1));
    published(
        &watcher,
        "api.test",
        &ips(&[2, 3, 4]),
        Duration::from_secs(4),
    )
    .await;
    assert!(watcher.addresses().generation() > generation);
}

#[tokio::test]
async fn failures_keep_the_last_good_set_until_the_name_answers_again() {
    let server = DnsServer::start().await;
    server.set("api.test", zone(&[1, 2], 1));
    let watcher = Watcher::start(server.resolver(), Handle::current(), ["api.test"]);
    published(&watcher, "api.test", &ips(&[1, 2]), Duration::from_secs(3)).await;
    let generation = watcher.addresses().generation();

    // NXDOMAIN: asked again (past the TTL, then with backoff), the set stays.
    let asked = server.queries("api.test", RecordType::A);
    server.remove("api.test");
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(server.queries("api.test", RecordType::A) > asked + 1);
    assert_eq!(
        watcher.addresses().get("api.test").as_deref(),
        Some(&ips(&[1, 2])[..])
    );

    // No answer at all: the set stays too.
    server.set("api.test", zone(&[5], 1));
    server.set_down(true);
    let asked = server.queries("api.test", RecordType::A);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(server.queries("api.test", RecordType::A) > asked);
    assert_eq!(
        watcher.addresses().get("api.test").as_deref(),
        Some(&ips(&[1, 2])[..])
    );
    assert_eq!(watcher.addresses().generation(), generation);

    // Back up: the new answer is published within the (short) backoff.
    server.set_down(false);
    published(&watcher, "api.test", &ips(&[5]), Duration::from_secs(3)).await;
}

#[tokio::test]
async fn a_name_that_never_resolved_is_absent_but_ready() {
    let server = DnsServer::start().await;
    let watcher = Watcher::start(server.resolver(), Handle::current(), ["late.test"]);
    tokio::time::timeout(Duration::from_secs(3), watcher.addresses().ready())
        .await
        .unwrap();
    assert_eq!(watcher.addresses().get("late.test"), None);

    server.set("late.test", zone(&[8], 30));
    published(&watcher, "late.test", &ips(&[8]), Duration::from_secs(3)).await;
}

#[tokio::test]
async fn the_ttl_floor_spares_the_server_from_zero_ttls() {
    let server = DnsServer::start().await;
    server.set("zero.test", zone(&[1], 0));
    let started = Instant::now();
    let watcher = Watcher::start(server.resolver(), Handle::current(), ["zero.test"]);
    published(&watcher, "zero.test", &ips(&[1]), Duration::from_secs(3)).await;
    tokio::time::sleep(Duration::from_millis(3300)).await;
    let queries = server.queries("zero.test", RecordType::A);
    let elapsed = started.elapsed().as_secs_f64();
    // One query per second of the default 1 s floor: 4 (at 0, 1, 2 and 3 s), give or take
    // the scheduling of a busy machine.
    assert!(
        (3..=(elapsed.ceil() as usize + 1)).contains(&queries),
        "{queries} queries in {elapsed:.1} s"
    );
}

#[tokio::test]
async fn set_names_adds_and_drops_names() {
    let server = DnsServer::start().await;
    server.set("a.test", zone(&[1], 30));
    server.set("b.test", zone(&[2], 30));
    let mut watcher = Watcher::start(server.resolver(), Handle::current(), ["a.test"]);
    published(&watcher, "a.test", &ips(&[1]), Duration::from_secs(3)).await;

    watcher.set_names(["b.test", "127.0.0.3"]);
    assert_eq!(watcher.addresses().get("a.test"), None);
    published(&watcher, "b.test", &ips(&[2]), Duration::from_secs(3)).await;
    let mut names: Vec<&str> = watcher.names().collect();
    names.sort_unstable();
    assert_eq!(names, ["127.0.0.3", "b.test"]);
    assert_eq!(server.queries("a.test", RecordType::A), 1);

    // Dropping the watcher stops its tasks; what it published stays readable.
    let addresses = watcher.addresses().clone();
    drop(watcher);
    assert_eq!(addresses.get("b.test").as_deref(), Some(&ips(&[2])[..]));
}

#[test]
fn settings_out_of_order_are_refused() {
    let config = DnsConfig {
        min_ttl: Duration::from_secs(60),
        max_ttl: Duration::from_secs(10),
        ..DnsConfig::with_nameservers(["127.0.0.1:53".parse().unwrap()])
    };
    assert!(matches!(
        Resolver::new(config),
        Err(DnsError::InvalidSetting(_))
    ));
}

/// A small HTTP/1.1 server on `ip:port` answering every request with its own address.
async fn address_echo(addr: SocketAddr) -> JoinHandle<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let body = addr.ip().to_string();
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    })
}

/// Through the gateway binary: a target named by a host name gets one target per address DNS
/// gives, and follows the answers when they change (TTL 1 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_expands_host_name_targets_and_follows_dns() {
    let dns = DnsServer::start().await;
    // Two loopback addresses, one port.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let a = address_echo(SocketAddr::from(([127, 0, 0, 1], port))).await;
    let b = address_echo(SocketAddr::from(([127, 0, 0, 2], port))).await;
    dns.set("backend.test", zone(&[1], 1));
    let file = crate::cli::write(&format!(
        "_format_version: \"3.0\"\nupstreams:\n- name: pool\n  targets:\n  - target: backend.test:{port}\nservices:\n- name: s\n  host: pool\n  routes: [{{paths: [/]}}]\n"
    ));
    let nameserver = dns.addr.to_string();
    let path = file.path().to_path_buf();
    let gw = tokio::task::spawn_blocking(move || {
        crate::cli::Running::start_with_env(&path, &[("GATEHOUSE_DNS_RESOLVER", &nameserver)])
    })
    .await
    .unwrap();
    let url = format!("http://{}/", gw.addr);
    let seen = |n: usize| {
        let url = url.clone();
        async move {
            let c = crate::support::client();
            let mut by_ip = HashMap::new();
            for _ in 0..n {
                let body = c.get(&url).send().await.unwrap().text().await.unwrap();
                *by_ip.entry(body).or_insert(0) += 1;
            }
            by_ip
        }
    };
    let first = seen(10).await;
    assert_eq!(first.get("127.0.0.1"), Some(&10), "{first:?}");

    // The answer grows: after the TTL, both addresses take traffic.
    dns.set("backend.test", zone(&[1, 2], 1));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    loop {
        let now = seen(20).await;
        if now.get("127.0.0.1") == Some(&10) && now.get("127.0.0.2") == Some(&10) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never balanced over both: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::task::spawn_blocking(move || {
        gw.signal("-TERM");
        gw.assert_exits_cleanly();
    })
    .await
    .unwrap();
    a.abort();
    b.abort();
}
