use super::*;

fn parse(value: &str) -> Option<Params<'_>> {
    parse_authorization(value)
}

fn headers(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn parses_kong_authorization_values() {
    let p = parse(
        r#"hmac username="alice", algorithm="hmac-sha256", headers="date request-line", signature="c2ln""#,
    )
    .expect("parsed");
    assert_eq!(p.username, "alice");
    assert_eq!(p.algorithm, "hmac-sha256");
    assert_eq!(p.headers, headers(&["date", "request-line"]));
    assert_eq!(p.signature, "c2ln");

    // Any order, no blanks after commas, upper-case scheme and names, bare values.
    let p = parse(
        r#"HMAC signature="c2ln",Headers="X-Date  Digest",algorithm=hmac-sha512,username=bob"#,
    )
    .expect("parsed");
    assert_eq!(p.username, "bob");
    assert_eq!(p.algorithm, "hmac-sha512");
    assert_eq!(p.headers, headers(&["x-date", "digest"]));

    // Escapes in quoted strings, a trailing comma, unknown parameters ignored.
    let p = parse(
        r#"  hmac username="a\"b\\c" , algorithm="hmac-sha1", headers="date", created=1, signature="x=","#,
    )
    .expect("parsed");
    assert_eq!(p.username, r#"a"b\c"#);
    assert_eq!(p.signature, "x=");
}

#[test]
fn parses_the_signature_scheme() {
    let p = parse(r#"Signature keyId="alice",algorithm="hmac-sha256",signature="c2ln""#)
        .expect("parsed");
    assert_eq!(p.username, "alice");
    assert_eq!(p.headers, headers(&["date"]), "the draft's default");
    let p = parse(
        r#"signature keyId="alice",algorithm="hmac-sha256",headers="(request-target) host",signature="c2ln""#,
    )
    .expect("parsed");
    assert_eq!(p.headers, headers(&["(request-target)", "host"]));
}

#[test]
fn refuses_malformed_authorization_values() {
    for bad in [
        "",
        "hmac",
        "hmac ",
        "asd",
        "Basic YWxpY2U6cHc=",
        "hmac username",
        "hmac :dXNlcm5hbWU6cGFzc3dvcmQ=",
        "hmac username=,algorithm,headers,dXNlcm5hbWU6cGFzc3dvcmQ=",
        // Kong's test cases: a parameter missing, misnamed, or a comma left out.
        r#"hmac algorithm="hmac-sha1", headers="date", signature="c2ln""#,
        r#"hmac username="bob", algorithm="hmac-sha1", wrong_header="date", signature="c2ln""#,
        r#"hmac username="bob", algorithm="hmac-sha1", headers="date", wrong_signature="c2ln""#,
        r#"hmac username="bob", algorithm="hmac-sha1" headers="date", signature="c2ln""#,
        r#"hmac username="", algorithm="hmac-sha1", headers="date", signature="c2ln""#,
        r#"hmac username="bob", algorithm="hmac-sha1", headers="  ", signature="c2ln""#,
        // Unterminated or dangling.
        r#"hmac username="bob, algorithm="hmac-sha1", headers="date", signature="c2ln"#,
        r#"hmac username="bob", algorithm="hmac-sha1", headers="date", signature="c2ln\"#,
        r#"hmac username="bob", algorithm="hmac-sha1", headers="date", signature="#,
        r#"hmac username="bob" "extra", algorithm="a", headers="date", signature="s""#,
        // A parameter twice, a header signed twice.
        r#"hmac username="bob", username="eve", algorithm="a", headers="date", signature="s""#,
        r#"hmac keyId="bob", username="eve", algorithm="a", headers="date", signature="s""#,
        r#"hmac username="bob", algorithm="a", headers="date Date", signature="s""#,
    ] {
        assert_eq!(parse(bad), None, "accepted: {bad}");
    }
    let many = (0..=MAX_SIGNED_HEADERS)
        .map(|i| format!("h{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let value = format!(r#"hmac username="u", algorithm="a", headers="{many}", signature="s""#);
    assert_eq!(parse(&value), None, "too many signed headers");
}

#[test]
fn malformed_input_never_panics() {
    let valid = r#"hmac username="al\"ice", algorithm="hmac-sha256", headers="date request-line", signature="c2ln==""#;
    // Every prefix and every single-byte deletion of a valid value.
    for end in 0..=valid.len() {
        if valid.is_char_boundary(end) {
            let _ = parse(&valid[..end]);
        }
    }
    for skip in 0..valid.len() {
        let mut s = valid.to_string();
        s.remove(skip);
        let _ = parse(&s);
    }
    // Pseudo-random strings over the characters that matter to the grammar.
    let alphabet: Vec<char> = "hmacSignatureusrkyId=\",\\ \t\u{e9}\u{1F600}abc-_"
        .chars()
        .collect();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..20_000 {
        let len = (state % 48) as usize;
        let mut s = String::with_capacity(len);
        for _ in 0..len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            s.push(alphabet[(state % alphabet.len() as u64) as usize]);
        }
        let _ = parse(&s);
        let _ = parse(&format!("hmac {s}"));
    }
}

fn request(target: &str, extra: &[(&str, &str)]) -> http::request::Parts {
    let mut builder = http::Request::builder().method("POST").uri(target);
    for (k, v) in extra {
        builder = builder.header(*k, *v);
    }
    builder
        .body(())
        .map(|r| r.into_parts().0)
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn builds_the_signing_string() {
    let req = request(
        "/orders/1?expand=items&x=%20",
        &[
            ("date", "Mon, 01 Jan 2024 00:00:00 GMT"),
            ("x-multi", "a"),
            ("x-multi", "b"),
        ],
    );
    let s = signing_string(
        &req,
        &headers(&[
            "date",
            "request-line",
            "@request-target",
            "(request-target)",
            "x-multi",
            "x-absent",
        ]),
    );
    assert_eq!(
        String::from_utf8_lossy(&s),
        "date: Mon, 01 Jan 2024 00:00:00 GMT\n\
         POST /orders/1?expand=items&x=%20 HTTP/1.1\n\
         post /orders/1?expand=items&x=%20\n\
         (request-target): post /orders/1?expand=items&x=%20\n\
         x-multi: a, b\n\
         x-absent:"
    );
    let weird = signing_string(&req, &headers(&["bad name(", "\u{e9}"]));
    assert_eq!(String::from_utf8_lossy(&weird), "bad name(:\n\u{e9}:");
    let mut old = request("/", &[]);
    old.version = http::Version::HTTP_10;
    assert_eq!(
        signing_string(&old, &headers(&["request-line"])),
        b"POST / HTTP/1.0"
    );
}

#[test]
fn checks_the_body_digest() {
    let body = br#"{"a":"apple"}"#;
    let good = format!(
        "SHA-256={}",
        general_purpose::STANDARD.encode(digest::digest(&digest::SHA256, body))
    );
    let map = |values: &[&str]| {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                DIGEST,
                HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{e}")),
            );
        }
        h
    };
    assert!(digest_matches(&map(&[&good]), body));
    assert!(digest_matches(
        &map(&[&format!("MD5=abc, sha-256={}", &good[8..])]),
        body
    ));
    assert!(!digest_matches(&map(&[&good]), b"tampered"));
    assert!(!digest_matches(&map(&[&format!("{good}x")]), body));
    assert!(!digest_matches(&map(&[&good, &good]), body), "two headers");
    assert!(!digest_matches(&map(&["SHA-512=abc"]), body));
    assert!(!digest_matches(&map(&[]), body), "a body needs a digest");
    assert!(
        digest_matches(&map(&[]), b""),
        "no body, no digest: Kong's rule"
    );
}

fn plugin(config: serde_json::Value) -> Result<HmacAuth, Vec<(String, String)>> {
    let consumers = Arc::new(Consumers::default());
    let ctx = BuildContext {
        consumers: &consumers,
    };
    let config: Config = serde_json::from_value(config).unwrap_or_else(|e| panic!("{e}"));
    HmacAuth::new(config, &ctx)
}

#[test]
fn config_is_validated() {
    let ok = plugin(serde_json::json!({})).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(!ok.needs_request_body());
    assert_eq!(ok.challenge, "hmac");
    assert_eq!(
        ok.algorithms,
        Algorithm::Sha224.bit()
            | Algorithm::Sha256.bit()
            | Algorithm::Sha384.bit()
            | Algorithm::Sha512.bit(),
        "sha1 only when listed"
    );
    let with = plugin(serde_json::json!({"validate_request_body": true, "realm": "api"}))
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(with.needs_request_body());
    assert_eq!(with.challenge, "hmac realm=\"api\"");

    let errors = plugin(serde_json::json!({
        "clock_skew": 0,
        "algorithms": ["hmac-sha256", "hmac-md5"],
        "enforce_headers": ["date", "two words"],
        "realm": "a\"b",
    }))
    .err()
    .unwrap_or_default();
    let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        ["clock_skew", "algorithms[1]", "enforce_headers[1]", "realm"],
        "{errors:?}"
    );
    assert!(errors[1].1.contains("got `hmac-md5`"));
    let empty = plugin(serde_json::json!({"algorithms": []}))
        .err()
        .unwrap_or_default();
    assert_eq!(empty[0].0, "algorithms");
}

#[test]
fn dates_must_be_within_the_skew_and_signed_when_signing_covers_them() {
    let p = plugin(serde_json::json!({"clock_skew": 10})).unwrap_or_else(|e| panic!("{e:?}"));
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let at = |offset: i64| {
        let t = if offset >= 0 {
            now + Duration::from_secs(offset.unsigned_abs())
        } else {
            now - Duration::from_secs(offset.unsigned_abs())
        };
        httpdate::fmt_http_date(t)
    };
    let map = |pairs: &[(&HeaderName, String)]| {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                *k,
                HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{e}")),
            );
        }
        h
    };
    let date = &header::DATE;
    let x_date = &X_DATE;
    assert!(p.date_ok(&map(&[(date, at(0))]), None, now));
    assert!(p.date_ok(&map(&[(date, at(-10))]), None, now));
    assert!(p.date_ok(&map(&[(date, at(10))]), None, now));
    assert!(!p.date_ok(&map(&[(date, at(-11))]), None, now), "too old");
    assert!(
        !p.date_ok(&map(&[(date, at(11))]), None, now),
        "too far ahead"
    );
    assert!(!p.date_ok(&map(&[(date, "yesterday".into())]), None, now));
    assert!(!p.date_ok(&map(&[]), None, now));
    assert!(
        !p.date_ok(&map(&[(date, at(0)), (date, at(0))]), None, now),
        "two dates"
    );
    // Either header will do (X-Date first), as in Kong.
    let both = map(&[(x_date, "wrong date".into()), (date, at(0))]);
    assert!(p.date_ok(&both, Some(&headers(&["request-line"])), now));
    // But a signed date must be the fresh one: a new unsigned X-Date cannot revive it.
    let replay = map(&[(x_date, at(0)), (date, at(-3600))]);
    assert!(p.date_ok(&replay, None, now));
    assert!(!p.date_ok(&replay, Some(&headers(&["date", "request-line"])), now));
    assert!(p.date_ok(&replay, Some(&headers(&["x-date"])), now));
}

#[test]
fn credentials_are_indexed_by_unique_username() {
    let cred = |username: &str, secret: &str, parent| Located {
        path: format!("hmacauth_credentials[{username}]"),
        item: HmacauthCredential {
            id: None,
            username: username.into(),
            secret: secret.into(),
            tags: vec![],
            consumer: None,
            created_at: None,
        },
        parent,
    };
    let mut errors = Vec::new();
    let index = HmacIndex::compile(
        &[
            cred("alice", "s1", Some(0)),
            cred("alice", "s2", Some(1)),
            cred("bob", "", Some(1)),
            cred("", "s", Some(1)),
            cred("orphan", "s", None),
        ],
        &["c0", "c1"],
        &mut errors,
    );
    assert_eq!(index.len(), 1);
    assert!(index.get("orphan").is_none());
    let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        [
            "hmacauth_credentials[alice].username",
            "hmacauth_credentials[bob].secret",
            "hmacauth_credentials[].username",
        ]
    );
    assert!(errors[0].1.contains("username `alice`"));
}
