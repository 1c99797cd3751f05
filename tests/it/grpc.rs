//! gRPC pass-through: a real tonic server behind the gateway (service `protocol: grpc`, route
//! `protocols: [grpc]`), a real tonic client in front (h2c with prior knowledge). Every call
//! kind, a status error from the server with its trailers, the gateway's own errors in gRPC
//! form, Kong's gRPC route checks, and the one multiplexed upstream connection per worker.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use futures_util::{Stream, StreamExt, stream};
use http::uri::PathAndQuery;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataValue;
use tonic::server::{
    ClientStreamingService, Grpc, NamedService, ServerStreamingService, StreamingService,
    UnaryService,
};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status, Streaming};

use crate::harness::TestGateway;
use crate::http2::hang_up;
use crate::support::{client, closed_port};

/// Messages are raw bytes: no protobuf, no code generation.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}

type BoxStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;
type BoxFut<T> = Pin<Box<dyn std::future::Future<Output = Result<Response<T>, Status>> + Send>>;

/// `/test.Echo/Unary`: `echo:<msg>`, or an INVALID_ARGUMENT status for `fail`.
struct UnarySvc;
impl UnaryService<Bytes> for UnarySvc {
    type Response = Bytes;
    type Future = BoxFut<Bytes>;
    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        Box::pin(async move {
            let msg = req.into_inner();
            if &msg[..] == b"fail" {
                let mut status = Status::invalid_argument("bad input: fail");
                status
                    .metadata_mut()
                    .insert("x-detail", MetadataValue::from_static("trailer-kept"));
                return Err(status);
            }
            let mut out = b"echo:".to_vec();
            out.extend_from_slice(&msg);
            Ok(Response::new(Bytes::from(out)))
        })
    }
}

/// `/test.Echo/ServerStream`: three messages `<msg>-0`, `<msg>-1`, `<msg>-2`.
struct ServerStreamSvc;
impl ServerStreamingService<Bytes> for ServerStreamSvc {
    type Response = Bytes;
    type ResponseStream = BoxStream;
    type Future = BoxFut<BoxStream>;
    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        Box::pin(async move {
            let msg = String::from_utf8_lossy(&req.into_inner()).into_owned();
            let items = (0..3).map(move |i| Ok(Bytes::from(format!("{msg}-{i}"))));
            Ok(Response::new(Box::pin(stream::iter(items)) as BoxStream))
        })
    }
}

/// `/test.Echo/ClientStream`: the messages joined with `+`.
struct ClientStreamSvc;
impl ClientStreamingService<Bytes> for ClientStreamSvc {
    type Response = Bytes;
    type Future = BoxFut<Bytes>;
    fn call(&mut self, req: Request<Streaming<Bytes>>) -> Self::Future {
        Box::pin(async move {
            let mut input = req.into_inner();
            let mut parts = Vec::new();
            while let Some(m) = input.message().await? {
                parts.push(String::from_utf8_lossy(&m).into_owned());
            }
            Ok(Response::new(Bytes::from(parts.join("+"))))
        })
    }
}

/// `/test.Echo/Bidi`: each message upper-cased, as soon as it arrives.
struct BidiSvc;
impl StreamingService<Bytes> for BidiSvc {
    type Response = Bytes;
    type ResponseStream = BoxStream;
    type Future = BoxFut<BoxStream>;
    fn call(&mut self, req: Request<Streaming<Bytes>>) -> Self::Future {
        Box::pin(async move {
            let out = req
                .into_inner()
                .map(|m| m.map(|b| Bytes::from(b.to_ascii_uppercase())));
            Ok(Response::new(Box::pin(out) as BoxStream))
        })
    }
}

/// The test service, routed by method path as generated code does.
#[derive(Clone)]
struct Echo;

impl NamedService for Echo {
    const NAME: &'static str = "test.Echo";
}

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for Echo {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let mut grpc = Grpc::new(Raw);
            Ok(match req.uri().path() {
                "/test.Echo/Unary" => grpc.unary(UnarySvc, req).await,
                "/test.Echo/ServerStream" => grpc.server_streaming(ServerStreamSvc, req).await,
                "/test.Echo/ClientStream" => grpc.client_streaming(ClientStreamSvc, req).await,
                "/test.Echo/Bidi" => grpc.streaming(BidiSvc, req).await,
                "/test.Echo/Slow" => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    grpc.unary(UnarySvc, req).await
                }
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

/// A tonic server on `addr` (port 0: any), counting the connections it accepts.
struct GrpcUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl GrpcUpstream {
    async fn start_on(addr: SocketAddr) -> GrpcUpstream {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        let incoming = stream::unfold(listener, move |l| {
            let counted = counted.clone();
            async move {
                let accepted = l.accept().await.map(|(s, _)| s);
                counted.fetch_add(1, Ordering::SeqCst);
                Some((accepted, l))
            }
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(Echo)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
        });
        GrpcUpstream {
            addr,
            connections,
            stop: Some(stop),
            task,
        }
    }

    async fn start() -> GrpcUpstream {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Shut down gracefully (GOAWAY to open connections) and wait until it is gone.
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
}

fn config(upstream_port: u16) -> String {
    format!(
        r#"_format_version: "3.0"
services:
- name: grpc-svc
  url: grpc://127.0.0.1:{upstream_port}
  routes:
  - name: grpc-route
    protocols: [grpc]
    paths: [/test.Echo/]
    strip_path: false
  - name: locked
    protocols: [grpc]
    paths: [/locked.Echo/]
    strip_path: false
    plugins: [{{name: key-auth}}]
- name: slow
  url: grpc://127.0.0.1:{upstream_port}
  read_timeout: 300
  routes:
  - name: slow-route
    protocols: [grpc]
    paths: [/test.Echo/Slow]
    strip_path: false
- name: grpcs-only
  url: grpc://127.0.0.1:{upstream_port}
  routes:
  - name: tls-only
    protocols: [grpcs]
    paths: [/secure.Echo/]
"#
    )
}

async fn channel(gw: &TestGateway) -> Channel {
    Endpoint::from_shared(format!("http://{}", gw.addr))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("connect to the gateway over h2c")
}

async fn unary(ch: &Channel, path: &'static str, msg: &'static [u8]) -> Result<Bytes, Status> {
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready().await.expect("ready");
    grpc.unary(
        Request::new(Bytes::from_static(msg)),
        PathAndQuery::from_static(path),
        Raw,
    )
    .await
    .map(Response::into_inner)
}

#[tokio::test]
async fn every_call_kind_passes_through() {
    let up = GrpcUpstream::start().await;
    let gw = TestGateway::start(&config(up.addr.port()));
    let ch = channel(&gw).await;
    let mut grpc = tonic::client::Grpc::new(ch.clone());

    // Unary.
    let got = unary(&ch, "/test.Echo/Unary", b"hello")
        .await
        .expect("unary");
    assert_eq!(&got[..], b"echo:hello");

    // Server streaming: every message, then the OK status from the trailers.
    grpc.ready().await.expect("ready");
    let mut s = grpc
        .server_streaming(
            Request::new(Bytes::from_static(b"m")),
            PathAndQuery::from_static("/test.Echo/ServerStream"),
            Raw,
        )
        .await
        .expect("server streaming")
        .into_inner();
    let mut got = Vec::new();
    while let Some(m) = s.message().await.expect("message") {
        got.push(String::from_utf8_lossy(&m).into_owned());
    }
    assert_eq!(got, ["m-0", "m-1", "m-2"]);
    let trailers = s.trailers().await.expect("trailers");
    assert!(trailers.is_some(), "the trailers arrived");

    // Client streaming.
    grpc.ready().await.expect("ready");
    let input = stream::iter([&b"a"[..], b"b", b"c"].map(Bytes::from_static));
    let got = grpc
        .client_streaming(
            Request::new(input),
            PathAndQuery::from_static("/test.Echo/ClientStream"),
            Raw,
        )
        .await
        .expect("client streaming")
        .into_inner();
    assert_eq!(&got[..], b"a+b+c");

    // Bidirectional, interleaved: each answer comes back before the next message is sent,
    // which only works if neither direction is buffered by the gateway.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let input = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    grpc.ready().await.expect("ready");
    let mut answers = grpc
        .streaming(
            Request::new(input),
            PathAndQuery::from_static("/test.Echo/Bidi"),
            Raw,
        )
        .await
        .expect("bidi")
        .into_inner();
    for word in ["one", "two", "three"] {
        tx.send(Bytes::from_static(word.as_bytes()))
            .await
            .expect("send");
        let answer = tokio::time::timeout(Duration::from_secs(5), answers.message())
            .await
            .expect("answer in time")
            .expect("message")
            .expect("not the end");
        assert_eq!(answer, word.to_ascii_uppercase().as_bytes());
    }
    drop(tx);
    assert!(answers.message().await.expect("clean end").is_none());

    // All of it over one multiplexed upstream connection.
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
    hang_up((ch, grpc, s, answers)).await;
    up.stop().await;
}

#[tokio::test]
async fn status_errors_and_their_trailers_come_back() {
    let up = GrpcUpstream::start().await;
    let gw = TestGateway::start(&config(up.addr.port()));
    let ch = channel(&gw).await;
    let status = unary(&ch, "/test.Echo/Unary", b"fail")
        .await
        .expect_err("a status error");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "bad input: fail");
    assert_eq!(
        status
            .metadata()
            .get("x-detail")
            .and_then(|v| v.to_str().ok()),
        Some("trailer-kept")
    );
    // A method the server does not know: its own UNIMPLEMENTED.
    let status = unary(&ch, "/test.Echo/Nope", b"x")
        .await
        .expect_err("status");
    assert_eq!(status.code(), Code::Unimplemented);
    assert_eq!(status.message(), "no such method");
    hang_up(ch).await;
    up.stop().await;
}

#[tokio::test]
async fn gateway_errors_take_grpc_form() {
    let up = GrpcUpstream::start().await;
    let gw = TestGateway::start(&config(up.addr.port()));
    let ch = channel(&gw).await;

    // No route: UNIMPLEMENTED, with the gateway's message.
    let status = unary(&ch, "/other.Service/Call", b"x")
        .await
        .expect_err("no route");
    assert_eq!(status.code(), Code::Unimplemented);
    assert_eq!(status.message(), "no Route matched with those values");

    // A plugin's refusal: key-auth's 401 becomes UNAUTHENTICATED.
    let status = unary(&ch, "/locked.Echo/Call", b"x")
        .await
        .expect_err("401");
    assert_eq!(status.code(), Code::Unauthenticated);

    // The service's read_timeout passed: DEADLINE_EXCEEDED.
    let status = unary(&ch, "/test.Echo/Slow", b"x")
        .await
        .expect_err("timeout");
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(status.message(), "The upstream server is timing out");

    // A grpcs-only route over plain text: Kong's CANCELLED.
    let status = unary(&ch, "/secure.Echo/Call", b"x")
        .await
        .expect_err("grpcs");
    assert_eq!(status.code(), Code::Cancelled);
    assert_eq!(status.message(), "gRPC request matched gRPCs route");
    hang_up(ch).await;
    up.stop().await;

    // The upstream gone: UNAVAILABLE.
    drop(gw);
    let gw = TestGateway::start(&config(closed_port()));
    let ch = channel(&gw).await;
    let status = unary(&ch, "/test.Echo/Unary", b"x")
        .await
        .expect_err("down");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        status.message(),
        "An invalid response was received from the upstream server"
    );
    hang_up(ch).await;
}

#[tokio::test]
async fn grpc_routes_refuse_other_requests_as_kong_does() {
    let up = GrpcUpstream::start().await;
    let gw = TestGateway::start(&config(up.addr.port()));
    // Not gRPC at all: 415.
    let resp = client()
        .post(gw.url("/test.Echo/Unary"))
        .body("plain")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 415);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["message"], "Non-gRPC request matched gRPC route");
    // gRPC over HTTP/1.1: 426, asking for HTTP/2.
    let resp = client()
        .post(gw.url("/test.Echo/Unary"))
        .header("content-type", "application/grpc")
        .body(vec![0, 0, 0, 0, 0])
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 426);
    assert_eq!(resp.headers()["upgrade"], "HTTP/2");
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        0,
        "nothing forwarded"
    );
    up.stop().await;
}

#[tokio::test]
async fn a_closed_upstream_connection_is_replaced() {
    let up = GrpcUpstream::start().await;
    let addr = up.addr;
    let gw = TestGateway::start(&config(addr.port()));
    let ch = channel(&gw).await;
    assert_eq!(
        &unary(&ch, "/test.Echo/Unary", b"1").await.expect("first")[..],
        b"echo:1"
    );
    // The upstream restarts (its connections get GOAWAY and close).
    up.stop().await;
    let up = GrpcUpstream::start_on(addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        &unary(&ch, "/test.Echo/Unary", b"2")
            .await
            .expect("after restart")[..],
        b"echo:2"
    );
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
    hang_up(ch).await;
    up.stop().await;
}

#[test]
fn grpc_protocols_in_the_configuration() {
    // Kong's groups cannot be mixed on one route; a gRPC service names no path.
    crate::harness::config_errors(
        r#"_format_version: "3.0"
services:
- name: s
  url: grpc://127.0.0.1:50051/path
  routes:
  - name: mixed
    protocols: [http, grpc]
    paths: [/]
"#,
        &[
            "these sets are mutually exclusive",
            "value must be null for protocol `grpc`",
        ],
    );
    crate::harness::config_errors(
        r#"_format_version: "3.0"
services:
- name: s
  url: grpcs://127.0.0.1:50051/path
- name: t
  url: tcp://127.0.0.1:50051
"#,
        &[
            "value must be null for protocol `grpcs`",
            "protocol `tcp` is not supported by this version of Gatehouse (http, https, grpc, grpcs)",
        ],
    );
}

/// A TLS front for the plain gRPC server at `plain` (ALPN `h2`), as a `grpcs` upstream looks
/// on the wire; records the protocol each handshake agreed on.
async fn tls_front(
    plain: SocketAddr,
    config: Arc<rustls::ServerConfig>,
) -> (SocketAddr, Arc<std::sync::Mutex<Vec<Option<Vec<u8>>>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let agreed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = agreed.clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                seen.lock().expect("lock").push(alpn);
                let Ok(mut backend) = tokio::net::TcpStream::connect(plain).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut backend).await;
            });
        }
    });
    (addr, agreed)
}

#[tokio::test]
async fn grpcs_services_are_reached_over_tls() {
    use crate::upstream_tls::{Ca, server_config};
    let up = GrpcUpstream::start().await;
    let ca = Ca::root();
    let mut tls = (*server_config(&ca.leaf(&["127.0.0.1"]), None)).clone();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let (front, agreed) = tls_front(up.addr, Arc::new(tls)).await;
    let other_ca = Ca::root();
    let yaml = |ca_pem: &str| {
        format!(
            "_format_version: \"3.0\"\nca_certificates:\n- id: grpc-ca\n  cert: {}\nservices:\n- name: secure\n  url: grpcs://127.0.0.1:{}\n  ca_certificates: [grpc-ca]\n  routes:\n  - protocols: [grpc]\n    paths: [/test.Echo/]\n    strip_path: false\n",
            crate::tls::q(ca_pem),
            front.port()
        )
    };
    let gw = TestGateway::start(&yaml(&ca.pem()));
    let ch = channel(&gw).await;
    let got = unary(&ch, "/test.Echo/Unary", b"over tls")
        .await
        .expect("unary over grpcs");
    assert_eq!(&got[..], b"echo:over tls");
    assert_eq!(
        *agreed.lock().expect("lock"),
        vec![Some(b"h2".to_vec())],
        "one TLS connection, HTTP/2 agreed by ALPN"
    );
    // An upstream certificate the configured CA did not sign: UNAVAILABLE, not a hang.
    gw.swap(&yaml(&other_ca.pem()));
    let err = unary(&ch, "/test.Echo/Unary", b"x")
        .await
        .expect_err("untrusted upstream");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    hang_up(ch).await;
    up.stop().await;
}
