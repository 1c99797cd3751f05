//! The `gatehouse` binary itself: validate, version, run.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

pub(crate) fn write(yaml: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::io::Write::write_all(&mut f, yaml.as_bytes()).unwrap();
    f
}

#[test]
fn validate_accepts_the_examples() {
    for example in ["examples/quickstart.yaml", "examples/auth.yaml"] {
        let out = Command::new(BIN)
            .args(["validate", "-c", example])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{example}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
    }
}

/// The flows in `examples/auth.yaml`'s header, through the binary.
#[test]
fn the_auth_example_works_as_its_comments_say() {
    let gw = Running::start(std::path::Path::new("examples/auth.yaml"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let token = crate::jwt_signer::sign_hmac(
        "HS256",
        b"my-secret-key",
        &serde_json::json!({"iss": "alice-issuer", "exp": exp}),
    );
    rt.block_on(async {
        let c = crate::support::client();
        let url = |p: &str| format!("http://{}{p}", gw.addr);
        let status = |r: reqwest::Response| r.status().as_u16();
        assert_eq!(status(c.get(url("/api/keys")).send().await.unwrap()), 401);
        let wrong = c.get(url("/api/keys")).header("X-API-Key", "wrong");
        assert_eq!(status(wrong.send().await.unwrap()), 403);
        let good = c.get(url("/api/keys?api_key=sdk-2b7e151628aed2a6"));
        assert_eq!(status(good.send().await.unwrap()), 200);
        assert_eq!(status(c.get(url("/api/users")).send().await.unwrap()), 401);
        let bearer = c.get(url("/api/users")).bearer_auth(&token);
        assert_eq!(status(bearer.send().await.unwrap()), 200);
        let staff = c.get(url("/admin")).basic_auth("ci", Some("change-me"));
        assert_eq!(status(staff.send().await.unwrap()), 200);
        let wrong = c.get(url("/admin")).basic_auth("ci", Some("guess"));
        assert_eq!(status(wrong.send().await.unwrap()), 401);
    });
    gw.signal("-TERM");
    gw.assert_exits_cleanly();
}

#[test]
fn validate_prints_every_error_and_fails() {
    let f = write(
        "_format_version: \"3.0\"\nservices:\n- name: a\n  url: http://a\n  bogus: 1\n  routes:\n  - paths: [\"~(\"]\n",
    );
    let out = Command::new(BIN)
        .args(["validate", "-c"])
        .arg(f.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let name = f.path().display().to_string();
    assert!(err.contains("2 configuration errors"), "{err}");
    assert!(
        err.contains(&format!("{name}:5:3: services[0].bogus: unknown field")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{name}:7:")) && err.contains("services[0].routes[0].paths[0]"),
        "{err}"
    );
}

#[test]
fn version_and_help() {
    let out = Command::new(BIN).arg("version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("gatehouse "));
    for sub in ["run", "validate"] {
        let out = Command::new(BIN).args([sub, "--help"]).output().unwrap();
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("--conf"));
    }
    let out = Command::new(BIN).args(["run", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("GATEHOUSE_PROXY_LISTEN"));
}

/// A `gatehouse run` process on an ephemeral port, its log lines forwarded to `logs`.
pub(crate) struct Running {
    child: std::process::Child,
    pub(crate) addr: String,
    /// The Admin API's address (`off` when disabled).
    pub(crate) admin: String,
    /// The start-up log line.
    pub(crate) started: String,
    logs: std::sync::mpsc::Receiver<String>,
}

/// A node left running by a test that ended early (or never stopped it) is killed.
impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Running {
    pub(crate) fn start(config: &std::path::Path) -> Running {
        Self::start_with_env(config, &[])
    }

    pub(crate) fn start_with_env(config: &std::path::Path, env: &[(&str, &str)]) -> Running {
        Self::start_with(config, &[], env)
    }

    /// With more command-line `args` after `run -c config`, and `env`.
    pub(crate) fn start_with(
        config: &std::path::Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Running {
        let config = config.display().to_string();
        let mut all = vec!["-c", config.as_str()];
        all.extend_from_slice(args);
        Self::spawn(&all, env)
    }

    /// Database mode: `run` without a file, on the database at `url`.
    pub(crate) fn start_database(url: &str, env: &[(&str, &str)]) -> Running {
        let mut all = vec![("GATEHOUSE_DATABASE_URL", url)];
        all.extend_from_slice(env);
        Self::spawn(&[], &all)
    }

    /// `gatehouse run` with `args` and `env`, on ephemeral loopback ports; returns once the
    /// start-up line is out.
    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut child = Command::new(BIN)
            .arg("run")
            .args(args)
            // Tests run side by side: no fixed TLS port unless a test asks for one.
            .env("GATEHOUSE_PROXY_TLS_LISTEN", "127.0.0.1:0")
            .env("GATEHOUSE_ADMIN_LISTEN", "127.0.0.1:0")
            .envs(env.iter().copied())
            .env("GATEHOUSE_PROXY_LISTEN", "127.0.0.1:0")
            .env("GATEHOUSE_LOG", "info")
            .env("GATEHOUSE_DRAIN_TIMEOUT", "10")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, logs) = std::sync::mpsc::channel();
        // Keep draining so the gateway never writes into a closed pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut running = Running {
            child,
            addr: String::new(),
            admin: String::new(),
            started: String::new(),
            logs,
        };
        // The start-up line names the bound address.
        let line = running.wait_for_log("proxy=");
        let field = |name: &str| {
            line.split(name)
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .unwrap_or("")
                .to_string()
        };
        running.addr = field("proxy=");
        running.admin = field("admin=");
        running.started = line;
        running
    }

    pub(crate) fn wait_for_log(&self, needle: &str) -> String {
        self.wait_for_log_within(needle, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("no log line with {needle}"))
    }

    /// The first log line containing `needle` within `timeout`, if one comes.
    pub(crate) fn wait_for_log_within(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self.logs.recv_timeout(left).ok()?;
            if line.contains(needle) {
                return Some(line);
            }
        }
    }

    /// How many log lines containing `needle` come during `window`.
    pub(crate) fn count_logs(&self, needle: &str, window: Duration) -> usize {
        let deadline = std::time::Instant::now() + window;
        let mut n = 0;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.logs.recv_timeout(left) {
                Ok(line) => n += usize::from(line.contains(needle)),
                Err(_) => return n,
            }
        }
    }

    pub(crate) fn signal(&self, sig: &str) {
        Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    /// `kill -9`, and wait for the process to be gone.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Wait (bounded) for the process to exit; asserts it exited 0.
    pub(crate) fn assert_exits_cleanly(mut self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{status}");
                return;
            }
            assert!(std::time::Instant::now() < deadline, "did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub(crate) async fn get_status(addr: &str, path: &str) -> u16 {
    crate::support::client()
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn run_serves_the_quickstart_and_stops_on_sigterm() {
    let gw = Running::start(std::path::Path::new("examples/quickstart.yaml"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ok = crate::support::client()
            .get(format!("http://{}/hello", gw.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        assert_eq!(
            ok.text().await.unwrap(),
            r#"{"message":"Hello from Gatehouse"}"#
        );
        assert_eq!(get_status(&gw.addr, "/nowhere").await, 404);
        let c = crate::support::client();
        assert_eq!(
            c.delete(format!("http://{}/hello", gw.addr))
                .send()
                .await
                .unwrap()
                .status(),
            405
        );
    });
    gw.signal("-TERM");
    gw.assert_exits_cleanly();
}

#[test]
fn a_second_gateway_cannot_share_the_port() {
    use gatehouse::proxy::{Gateway, ServerConfig};
    let snapshot =
        || gatehouse::snapshot::load_str("t.yaml", "_format_version: \"3.0\"\n").unwrap();
    // Find a free port, then start a gateway on it explicitly.
    let port = crate::support::closed_port();
    let config = ServerConfig {
        proxy_listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        workers: 1,
        ..ServerConfig::default()
    };
    let first = Gateway::start(config.clone(), snapshot()).expect("first gateway");
    let second = Gateway::start(config, snapshot());
    assert!(
        second.is_err(),
        "a second gateway silently shared port {port}"
    );
    first.shutdown();
}

/// A runtime, an upstream, and a node whose one route sends everything to it.
fn proxying_node() -> (
    tokio::runtime::Runtime,
    crate::support::Upstream,
    tempfile::NamedTempFile,
    Running,
) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let up = rt.block_on(crate::support::Upstream::start());
    let f = write(&format!(
        "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://{}\n  routes: [{{paths: [/], strip_path: false}}]\n",
        up.addr()
    ));
    let gw = Running::start(f.path());
    (rt, up, f, gw)
}

#[test]
fn sigterm_lets_requests_in_flight_finish() {
    let (rt, _up, _file, gw) = proxying_node();
    let results = rt.block_on(async {
        let c = crate::support::client();
        let requests: Vec<_> = (0..10)
            .map(|_| {
                let c = c.clone();
                let url = format!("http://{}/delay/800", gw.addr);
                tokio::spawn(async move { c.get(url).send().await.map(|r| r.status().as_u16()) })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        gw.signal("-TERM");
        let mut out = Vec::new();
        for r in requests {
            out.push(r.await.unwrap());
        }
        out
    });
    for r in &results {
        assert!(
            matches!(r, Ok(200)),
            "a request in flight was dropped: {results:?}"
        );
    }
    gw.assert_exits_cleanly();
}

/// What one load connection saw: answers, and requests lost after the gateway had served the
/// connection (dropped) or before it ever did (refused: never accepted).
#[derive(Default, Debug, Clone, Copy)]
struct LoadTally {
    answered: usize,
    dropped: usize,
    refused: usize,
}

/// Keep-alive requests back to back on `addr` until the gateway is gone.
async fn keep_loading(addr: String) -> LoadTally {
    let mut tally = LoadTally::default();
    loop {
        let Ok(tcp) = tokio::net::TcpStream::connect(&addr).await else {
            return tally; // the listener is closed: no more connections
        };
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await
        else {
            tally.refused += 1;
            continue;
        };
        tokio::spawn(conn);
        let mut served = false;
        loop {
            if sender.ready().await.is_err() {
                break; // closed by the gateway between two requests
            }
            let req = http::Request::get("/status/200")
                .header("host", "load.test")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .expect("request");
            match sender.send_request(req).await {
                Ok(resp) => {
                    let close = resp
                        .headers()
                        .get("connection")
                        .is_some_and(|v| v == "close");
                    let body = http_body_util::BodyExt::collect(resp.into_body()).await;
                    if body.is_err() {
                        tally.dropped += 1;
                        break;
                    }
                    tally.answered += 1;
                    served = true;
                    if close {
                        break;
                    }
                }
                // Not sent at all: the connection had closed first.
                Err(e) if e.is_canceled() => break,
                Err(_) if served => {
                    tally.dropped += 1;
                    break;
                }
                Err(_) => {
                    tally.refused += 1;
                    break;
                }
            }
        }
    }
}

/// Proof of a graceful shutdown under load: keep-alive clients hammer the gateway, SIGTERM
/// arrives, and no request the gateway took is lost (busy connections get `Connection: close`
/// on their last answer instead of a close racing their next request).
#[test]
fn shutdown_under_load_drops_no_request() {
    let (rt, _up, _file, gw) = proxying_node();
    let tallies = rt.block_on(async {
        let clients: Vec<_> = (0..16)
            .map(|_| tokio::spawn(keep_loading(gw.addr.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(700)).await;
        gw.signal("-TERM");
        let mut tallies = Vec::new();
        for c in clients {
            tallies.push(
                tokio::time::timeout(Duration::from_secs(15), c)
                    .await
                    .expect("clients end once the gateway is gone")
                    .expect("client task"),
            );
        }
        tallies
    });
    let total = tallies.iter().fold(LoadTally::default(), |a, t| LoadTally {
        answered: a.answered + t.answered,
        dropped: a.dropped + t.dropped,
        refused: a.refused + t.refused,
    });
    assert_eq!(
        total.dropped, 0,
        "requests lost on served connections: {total:?}"
    );
    assert!(
        total.answered > 500,
        "the gateway was under load: {total:?}"
    );
    gw.assert_exits_cleanly();
}

#[test]
fn sighup_reloads_a_valid_file_and_keeps_serving_on_an_invalid_one() {
    let route = |path: &str| {
        format!(
            "_format_version: \"3.0\"\nroutes:\n- paths: [{path}]\n  plugins: [{{name: request-termination, config: {{status_code: 200, message: hi}}}}]\n"
        )
    };
    let f = write(&route("/a"));
    // SIGHUP alone: the file watch is tested in `watch.rs`.
    let gw = Running::start_with_env(f.path(), &[("GATEHOUSE_WATCH_CONFIG", "false")]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = |path: &str| rt.block_on(get_status(&gw.addr, path));
    assert_eq!(status("/a"), 200);
    std::fs::write(f.path(), route("/b")).unwrap();
    gw.signal("-HUP");
    gw.wait_for_log("configuration reloaded");
    assert_eq!((status("/b"), status("/a")), (200, 404));
    std::fs::write(
        f.path(),
        "_format_version: \"3.0\"\nroutes:\n- paths: [\"~(\"]\n",
    )
    .unwrap();
    gw.signal("-HUP");
    gw.wait_for_log("configuration rejected");
    assert_eq!(
        status("/b"),
        200,
        "an invalid file must not replace a working configuration"
    );
    gw.signal("-TERM");
    gw.assert_exits_cleanly();
}

/// The founding document's Python sample: the gateway shares `JWT_SECRET` with the token issuer,
/// read from the environment through a vault reference.
#[test]
fn jwt_secret_from_the_environment() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let up = rt.block_on(crate::support::Upstream::start());
    let f = write(&format!(
        r#"_format_version: "3.0"
services:
- name: users
  url: http://{}
  routes:
  - paths: [/api/users]
    plugins:
    - name: jwt
      config:
        secret: "{{vault://env/GATEHOUSE_TEST_JWT_SECRET}}"
        algorithms: [HS256]
        required_claims: [exp, sub]
"#,
        up.addr()
    ));
    let secret = "from-the-environment-7c1d";
    let gw = Running::start_with_env(f.path(), &[("GATEHOUSE_TEST_JWT_SECRET", secret)]);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = serde_json::json!({"sub": "user-42", "roles": ["admin"], "exp": exp});
    let good = crate::jwt_signer::sign_hmac("HS256", secret.as_bytes(), &claims);
    let other = crate::jwt_signer::sign_hmac("HS256", b"change-me-in-production", &claims);
    rt.block_on(async {
        for (token, expected) in [(&good, 200), (&other, 401)] {
            let status = crate::support::client()
                .get(format!("http://{}/api/users", gw.addr))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, expected);
        }
    });
    gw.signal("-TERM");
    gw.assert_exits_cleanly();
}
