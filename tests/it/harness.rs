//! Starts the real gateway in-process on `127.0.0.1:0` from declarative YAML.

use std::net::SocketAddr;

use gatehouse::proxy::{Gateway, ServerConfig};
use gatehouse::snapshot::Snapshot;

/// A running gateway, stopped on drop.
pub struct TestGateway {
    gateway: Option<Gateway>,
    pub addr: SocketAddr,
    /// The TLS listener, when asked for and the configuration has certificates.
    pub tls_addr: Option<SocketAddr>,
}

/// Compile YAML or panic with every error.
pub fn snapshot(yaml: &str) -> Snapshot {
    gatehouse::snapshot::load_str("test.yaml", yaml).unwrap_or_else(|e| panic!("{e}"))
}

impl TestGateway {
    /// Start on `yaml` with one worker.
    pub fn start(yaml: &str) -> TestGateway {
        Self::start_with(yaml, ServerConfig::default())
    }

    /// Start on `yaml` with one worker and a TLS listener on `127.0.0.1:0`.
    pub fn start_tls(yaml: &str) -> TestGateway {
        Self::start_with(
            yaml,
            ServerConfig {
                proxy_tls_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
                ..ServerConfig::default()
            },
        )
    }

    /// Start on `yaml` with these node settings (the listen address is always `127.0.0.1:0`,
    /// and so is the TLS one when set).
    pub fn start_with(yaml: &str, mut config: ServerConfig) -> TestGateway {
        config.proxy_listen = SocketAddr::from(([127, 0, 0, 1], 0));
        if config.proxy_tls_listen.is_some() {
            config.proxy_tls_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        }
        if config.workers == 0 {
            config.workers = 1;
        }
        let gateway = Gateway::start(config, snapshot(yaml)).expect("start gateway");
        let addr = gateway.proxy_addr();
        let tls_addr = gateway.tls_addr();
        TestGateway {
            gateway: Some(gateway),
            addr,
            tls_addr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `https://host:port/path` for the TLS listener (the client resolves `host` to it).
    pub fn tls_url(&self, host: &str, path: &str) -> String {
        let port = self.tls_addr.map_or(0, |a| a.port());
        format!("https://{host}:{port}{path}")
    }

    /// GET `path` with extra request headers; the body must be JSON.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = crate::support::client().get(self.url(path));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let resp = req.send().await.expect("request");
        Reply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: json(resp).await,
        }
    }

    /// Replace the configuration.
    pub fn swap(&self, yaml: &str) {
        if let Some(g) = &self.gateway {
            g.swap(snapshot(yaml));
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(g) = self.gateway.take() {
            g.shutdown();
        }
    }
}

/// Compile `yaml` (named `kong.yml`), which must be refused, and check that every `expected`
/// text is among the errors; returns the errors as printed.
pub fn config_errors(yaml: &str, expected: &[&str]) -> String {
    let errors = match gatehouse::snapshot::load_str("kong.yml", yaml) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    for e in expected {
        assert!(errors.contains(e), "missing `{e}` in:\n{errors}");
    }
    errors
}

/// `{"x": ...}` body of a response as JSON.
pub async fn json(resp: reqwest::Response) -> serde_json::Value {
    let text = resp.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// What [`TestGateway::get`] got back.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: serde_json::Value,
}

impl Reply {
    /// A response header as text (empty when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// A header the upstream echo server saw (`None` when it saw none).
    pub fn upstream_header(&self, name: &str) -> Option<&str> {
        self.body["headers"].get(name).and_then(|v| v.as_str())
    }
}
