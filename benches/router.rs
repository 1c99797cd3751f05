//! Router lookup benchmarks.
//!
//! Contract: measures `Router::find` for tables of 10 / 1,000 / 10,000 prefix routes
//! (`/svc{i}/v1`), 10,000 exact-literal regex routes (`~/svc{i}/health$`), 10,000 host routes
//! (`svc{i}.example.com`), 100 / 10,000 real regex routes with captures
//! (`~/svc{i}/items/(?<id>\d+)$`), and a naive linear scan over the same
//! 10,000 prefix routes as a baseline. Each iteration looks up one request from a fixed
//! rotation of 64 requests spread over the table (all hits), so that caches are not
//! flattered by a single hot key.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gatehouse::router::{RequestView, RouteMatch, RouteSpec, Router, RouterBuilder};
use http::{HeaderMap, Method};

const ROTATION: usize = 64;

struct Request {
    host: String,
    path: String,
}

fn build(specs: impl Iterator<Item = RouteSpec>) -> Router {
    let mut b = RouterBuilder::new();
    for (i, s) in specs.enumerate() {
        if let Err(e) = b.add(i, &s) {
            panic!("route {i}: {e:?}");
        }
    }
    b.build()
}

fn prefix_routes(n: usize) -> Router {
    build((0..n).map(|i| RouteSpec {
        paths: vec![format!("/svc{i}/v1")],
        ..RouteSpec::default()
    }))
}

fn requests(n: usize, f: impl Fn(usize) -> Request) -> Vec<Request> {
    (0..ROTATION)
        .map(|k| f(k * n / ROTATION + (k % 3)))
        .collect()
}

fn lookup(c: &mut Criterion, group: &str, param: usize, router: &Router, reqs: &[Request]) {
    let headers = HeaderMap::new();
    let method = Method::GET;
    // Every request must hit, or the benchmark measures the wrong thing.
    for r in reqs {
        let view = RequestView {
            method: &method,
            host: &r.host,
            path: &r.path,
            query: None,
            headers: &headers,
            tls: false,
        };
        assert!(
            matches!(router.find(&view), RouteMatch::Matched(_)),
            "{} {}",
            r.host,
            r.path
        );
    }
    let mut g = c.benchmark_group(group);
    g.bench_with_input(BenchmarkId::from_parameter(param), reqs, |b, reqs| {
        let mut k = 0;
        b.iter(|| {
            k = (k + 1) % reqs.len();
            let r = &reqs[k];
            let view = RequestView {
                method: &method,
                host: &r.host,
                path: &r.path,
                query: None,
                headers: &headers,
                tls: false,
            };
            black_box(router.find(black_box(&view)))
        });
    });
    g.finish();
}

fn bench_prefix(c: &mut Criterion) {
    for n in [10, 1_000, 10_000] {
        let router = prefix_routes(n);
        let reqs = requests(n, |i| Request {
            host: "api.example.com".into(),
            path: format!("/svc{}/v1/users/42", i % n),
        });
        lookup(c, "prefix_routes", n, &router, &reqs);
    }
}

fn bench_exact_regex(c: &mut Criterion) {
    let n = 10_000;
    let router = build((0..n).map(|i| RouteSpec {
        paths: vec![format!("~/svc{i}/health$")],
        ..RouteSpec::default()
    }));
    let reqs = requests(n, |i| Request {
        host: String::new(),
        path: format!("/svc{}/health", i % n),
    });
    lookup(c, "exact_regex_routes", n, &router, &reqs);
}

fn bench_hosts(c: &mut Criterion) {
    let n = 10_000;
    let router = build((0..n).map(|i| RouteSpec {
        hosts: vec![format!("svc{i}.example.com")],
        paths: vec!["/".into()],
        ..RouteSpec::default()
    }));
    let reqs = requests(n, |i| Request {
        host: format!("svc{}.example.com:8443", i % n),
        path: "/orders/7".into(),
    });
    lookup(c, "host_routes", n, &router, &reqs);
}

fn bench_regex(c: &mut Criterion) {
    for n in [100, 10_000] {
        bench_regex_n(c, n);
    }
}

fn bench_regex_n(c: &mut Criterion, n: usize) {
    let router = build((0..n).map(|i| RouteSpec {
        paths: vec![format!(r"~/svc{i}/items/(?<id>\d+)$")],
        ..RouteSpec::default()
    }));
    let reqs = requests(n, |i| Request {
        host: String::new(),
        path: format!("/svc{}/items/{}", i % n, i),
    });
    lookup(c, "regex_routes", n, &router, &reqs);
}

/// The naive approach: every route in precedence order, first `starts_with` wins.
fn bench_linear_baseline(c: &mut Criterion) {
    let n = 10_000;
    let mut routes: Vec<(String, usize)> = (0..n).map(|i| (format!("/svc{i}/v1"), i)).collect();
    routes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
    let reqs = requests(n, |i| Request {
        host: String::new(),
        path: format!("/svc{}/v1/users/42", i % n),
    });
    let mut g = c.benchmark_group("linear_scan_baseline");
    g.bench_with_input(BenchmarkId::from_parameter(n), &reqs, |b, reqs| {
        let mut k = 0;
        b.iter(|| {
            k = (k + 1) % reqs.len();
            let path = black_box(reqs[k].path.as_str());
            black_box(
                routes
                    .iter()
                    .find(|(p, _)| path.starts_with(p.as_str()))
                    .map(|r| r.1),
            )
        });
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_prefix,
    bench_exact_regex,
    bench_hosts,
    bench_regex,
    bench_linear_baseline
);
criterion_main!(benches);
