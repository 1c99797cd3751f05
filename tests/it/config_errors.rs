//! Every validation error is reported, all at once, with file, line, column and field path.

use gatehouse::config::{ConfigError, load_str};
use gatehouse::snapshot::compile;

fn errors(yaml: &str) -> Vec<ConfigError> {
    match gatehouse::snapshot::load_str("kong.yml", yaml) {
        Err(e) => e.0,
        Ok(_) => panic!("expected errors for:\n{yaml}"),
    }
}

fn find<'a>(errs: &'a [ConfigError], path: &str) -> &'a ConfigError {
    errs.iter().find(|e| e.path == path).unwrap_or_else(|| {
        panic!(
            "no error at {path}; got:\n{}",
            gatehouse::config::ConfigErrors(errs.to_vec())
        )
    })
}

#[test]
fn semantic_errors_are_all_reported_with_positions() {
    let yaml = r#"_format_version: "3.0"
services:
- name: users
  url: http://users:8080
  routes:
  - name: r1
    paths: ["~/users/(?<id>\\d+"]
  - name: r1
    paths: [/ok]
  - name: nothing
    strip_path: true
- name: users
  url: ftp://x
plugins:
- name: no-such-plugin
- name: request-termination
  config:
    status_code: 99
    message: hi
    body: also
"#;
    let errs = errors(yaml);
    let regex = find(&errs, "services[0].routes[0].paths[0]");
    assert_eq!((regex.line, regex.column.is_some()), (Some(7), true));
    assert!(regex.message.contains("regex"), "{}", regex.message);
    let dup = find(&errs, "services[0].routes[1].name");
    assert!(dup.message.contains("duplicate"), "{}", dup.message);
    assert_eq!(dup.line, Some(8));
    let empty = find(&errs, "services[0].routes[2]");
    assert!(
        empty.message.contains("must set one of"),
        "{}",
        empty.message
    );
    assert!(
        find(&errs, "services[1].name")
            .message
            .contains("duplicate")
    );
    assert!(find(&errs, "services[1].url").message.contains("ftp"));
    let unknown = find(&errs, "plugins[0].name");
    assert!(
        unknown.message.contains("no-such-plugin"),
        "{}",
        unknown.message
    );
    assert!(
        find(&errs, "plugins[1].config.status_code")
            .message
            .contains("between 200 and 599")
    );
    assert!(
        find(&errs, "plugins[1].config.message")
            .message
            .contains("cannot be used")
    );
    // Rendered as file:line:column: path: message
    let text = regex.to_string();
    assert!(text.starts_with("kong.yml:7:"), "{text}");
}

#[test]
fn schema_errors_are_all_reported() {
    let errs = errors(
        "_format_version: \"3.0\"\nservices:\n- name: a\n  url: http://a\n  retries: lots\n  colour: red\n  routes:\n  - paths: [/a]\n    methods: GET\n    bogus: true\nconsumers:\n- custom_id: c\n  oauth2_credentials: [{name: app}]\nunknown_top: 1\n",
    );
    assert!(
        find(&errs, "services[0].retries")
            .message
            .contains("expected u32")
    );
    assert!(
        find(&errs, "services[0].colour")
            .message
            .contains("unknown field")
    );
    assert_eq!(find(&errs, "services[0].routes[0].bogus").line, Some(10));
    assert!(
        find(&errs, "services[0].routes[0].methods")
            .message
            .contains("sequence")
    );
    assert!(
        find(&errs, "consumers[0].oauth2_credentials")
            .message
            .contains("not supported")
    );
    assert!(
        find(&errs, "unknown_top")
            .message
            .contains("unknown top-level")
    );
}

#[test]
fn references_versions_and_vaults() {
    let errs = errors(
        "_format_version: \"9.9\"\nroutes:\n- paths: [/x]\n  service: ghost\nservices:\n- name: s\n  host: \"{vault://env/GATEHOUSE_TEST_SURELY_UNSET}\"\n",
    );
    assert!(find(&errs, "_format_version").message.contains("3.0"));
    assert!(find(&errs, "routes[0].service").message.contains("ghost"));
    assert!(
        find(&errs, "services[0].host")
            .message
            .contains("GATEHOUSE_TEST_SURELY_UNSET")
    );
}

#[test]
fn syntax_errors_point_at_the_line() {
    let errs = errors("_format_version: \"3.0\"\nservices:\n  - name: [unclosed\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].line.is_some_and(|l| l >= 3), "{:?}", errs[0]);
}

#[test]
fn unsupported_features_are_errors_not_silence() {
    let errs = errors(
        "_format_version: \"3.0\"\nupstreams:\n- name: u\n  algorithm: fastest\n  healthchecks:\n    active:\n      type: grpc\n      healthy:\n        interval: 5\n",
    );
    assert!(
        find(&errs, "upstreams[0].algorithm")
            .message
            .contains("expected one of: round-robin, least-connections, consistent-hashing")
    );
    assert!(
        find(&errs, "upstreams[0].healthchecks.active.type")
            .message
            .contains("grpc")
    );
    // Kong's disabled defaults load fine.
    let ok = load_str(
        "k.yml",
        "_format_version: \"3.0\"\nupstreams:\n- name: u\n  healthchecks:\n    active: {healthy: {interval: 0, successes: 0}, unhealthy: {interval: 0}}\n    passive: {unhealthy: {http_failures: 0}}\n",
    )
    .unwrap();
    assert!(compile(ok).is_ok());
}

#[test]
fn consumer_plugins_duplicate_targets_and_bad_ports() {
    let errs = errors(
        "_format_version: \"3.0\"\nconsumers:\n- username: alice\n  plugins:\n  - name: key-auth\nupstreams:\n- name: u\n  targets:\n  - target: 10.0.0.1:80\n  - target: 10.0.0.1:80\nservices:\n- name: s\n  host: example.com\n  port: 0\n",
    );
    assert!(
        find(&errs, "consumers[0].plugins[0].consumer")
            .message
            .contains("cannot be configured on a consumer")
    );
    assert!(
        find(&errs, "upstreams[0].targets[1].target")
            .message
            .contains("duplicate target")
    );
    assert!(
        find(&errs, "services[0].port")
            .message
            .contains("between 1 and 65535")
    );
}

#[test]
fn service_paths_and_transformer_headers_are_checked() {
    let errs = errors(
        "_format_version: \"3.0\"\nservices:\n- name: s\n  url: \"http://a/v1 beta\"\n- name: t\n  host: a\n  path: \"/x?y\"\nplugins:\n- name: request-transformer\n  config: {add: {headers: [\"Content-Length: 5\"]}}\n",
    );
    assert!(
        errs.iter()
            .any(|e| e.path.starts_with("services[0].url") || e.path == "services[0].path"),
        "{errs:?}"
    );
    assert!(
        find(&errs, "services[1].path")
            .message
            .contains("invalid path")
    );
    assert!(
        find(&errs, "plugins[0].config.add.headers[0]")
            .message
            .contains("cannot be added")
    );
}

#[test]
fn ip_restriction_config_is_checked() {
    let errs = errors(
        "_format_version: \"3.0\"\nplugins:\n- name: ip-restriction\n  config: {allow: [\"10.0.0.0/8\", \"10.0.0.300\"], status: 99}\n- name: ip-restriction\n  route: r\n  config: {}\nroutes:\n- name: r\n  paths: [/]\n",
    );
    assert!(
        find(&errs, "plugins[0].config.allow[1]")
            .message
            .contains("invalid ip or cidr")
    );
    assert!(
        find(&errs, "plugins[0].config.status")
            .message
            .contains("between 200 and 599")
    );
    assert!(
        find(&errs, "plugins[1].config")
            .message
            .contains("at least one of these fields")
    );
}
