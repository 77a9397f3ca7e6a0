//! End to end: the vault API over TLS on 127.0.0.1:0 with rcgen certificates — round trips, authentication,
//! authorisation, every error shape, audit and metrics. One suite, both stores: every test runs on SQLite
//! (`sqlite::NAME`) and on PostgreSQL (`postgres::NAME`, a fresh database each; see tests/common/pg.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::pg::Backend;
use common::*;
use serde_json::{json, Value};

common::pg::on_both_stores!(
    tokenize_detokenize_round_trip_over_tls,
    client_certificate_identifies_the_caller,
    authentication_and_authorisation_errors,
    unknown_tokens_and_every_bad_request_get_a_clear_error,
    audit_chain_verifies_and_tampering_is_detected,
    unwritable_audit_log_refuses_reveals_with_503,
    admin_serves_metrics_health_and_readiness,
    graceful_shutdown_stops_listening,
    an_audience_sees_only_what_is_linked_to_it,
);

const VALUES: &[(&str, &str)] = &[
    ("pan", "4111 1111 1111 1111"),
    ("pan", "5500-0000-0000-0004"),
    ("iban", "DE89 3704 0044 0532 0130 00"),
    ("iban", "FR1420041010050500013M02606"),
    ("email", "jane.doe@example.org"),
    ("phone", "+49 (30) 1234-5678"),
    ("name", "Jane O'Doe"),
    ("address", "Hauptstraße 5, 10115 Berlin"),
    ("text", "Allergic to nuts"),
];

fn items(pairs: &[(&str, &str)], field: &str) -> Value {
    json!({ "items": pairs.iter().map(|(c, v)| json!({"class": c, field: v})).collect::<Vec<_>>() })
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

async fn tokenize_detokenize_round_trip_over_tls(backend: Backend) {
    let v = TestVault::start_on(backend, true, None).await;
    let (status, body) = v.client.post_json("/v1/tokenize", PAYMENTS_KEY, &items(VALUES, "value")).await;
    assert_eq!(status, 200, "{body}");
    let tokens: Vec<String> =
        body["items"].as_array().unwrap().iter().map(|i| i["token"].as_str().unwrap().to_owned()).collect();
    assert_eq!(tokens.len(), VALUES.len());
    for ((class, value), token) in VALUES.iter().zip(&tokens) {
        assert_ne!(token, value, "{class} token equals its value");
        assert_eq!(token.chars().count(), value.chars().count(), "{class} token keeps its length");
    }
    // Card details with each card token: brand from the IIN, last four; none for other classes.
    let answered = body["items"].as_array().unwrap();
    assert_eq!((answered[0]["brand"].as_str(), answered[0]["last4"].as_str()), (Some("visa"), Some("1111")));
    assert_eq!((answered[1]["brand"].as_str(), answered[1]["last4"].as_str()), (Some("mastercard"), Some("0004")));
    assert!(answered[2..].iter().all(|i| i.get("brand").is_none() && i.get("last4").is_none()), "{body}");
    // pan: Luhn-valid, separators, first six and last four kept.
    assert!(luhn_valid(&tokens[0]));
    assert_eq!(&tokens[0][..7], "4111 11");
    assert_eq!(&tokens[0][15..], "1111");
    assert_eq!(tokens[1].matches('-').count(), 3);
    assert!(tokens[4].ends_with("@example.org"));
    assert!(tokens[5].starts_with("+49 ("));

    // Deterministic, and idempotent on tokens.
    let (_, again) = v.client.post_json("/v1/tokenize", PAYMENTS_KEY, &items(VALUES, "value")).await;
    assert_eq!(again["items"], body["items"]);
    let token_pairs: Vec<(&str, &str)> = VALUES.iter().zip(&tokens).map(|((c, _), t)| (*c, t.as_str())).collect();
    let (_, retok) = v.client.post_json("/v1/tokenize", PAYMENTS_KEY, &items(&token_pairs, "value")).await;
    assert_eq!(retok["items"], body["items"], "tokenising a token returns it unchanged");

    // Same value written differently: same token, written the new way.
    let (_, plain) =
        v.client.post_json("/v1/tokenize", PAYMENTS_KEY, &items(&[("pan", "4111111111111111")], "value")).await;
    assert_eq!(plain["items"][0]["token"].as_str().unwrap(), tokens[0].replace(' ', ""));

    let (status, revealed) = v.client.post_json("/v1/detokenize", PAYMENTS_KEY, &items(&token_pairs, "token")).await;
    assert_eq!(status, 200, "{revealed}");
    for (i, (_, value)) in VALUES.iter().enumerate() {
        assert_eq!(revealed["items"][i]["value"].as_str().unwrap(), *value);
    }

    let (status, masked) =
        v.client.post_json("/v1/mask", PAYMENTS_KEY, &items(&[("pan", tokens[0].as_str())], "token")).await;
    assert_eq!(status, 200);
    assert_eq!(masked["items"][0]["masked"], "**** **** **** 1111");
}

async fn client_certificate_identifies_the_caller(backend: Backend) {
    let v = TestVault::start_on(backend, true, None).await;
    let (_, body) =
        v.client.post_json("/v1/tokenize", PAYMENTS_KEY, &items(&[("pan", "4111111111111111")], "value")).await;
    let token = body["items"][0]["token"].as_str().unwrap().to_owned();
    let mtls = v.client.with_client_cert();
    let req = serde_json::to_vec(&items(&[("pan", &token)], "token")).unwrap();
    let (status, body) = mtls.post("/v1/detokenize", None, req.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"][0]["value"], "4111111111111111");
    // The certificate's caller may detokenize pan only.
    let (status, body) = mtls.post("/v1/mask", None, req).await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"));
    // Without a certificate or key: unauthenticated.
    let (status, body) = v.client.post("/v1/detokenize", None, b"{}".to_vec()).await;
    assert_eq!((status, error_code(&body)), (401, "unauthenticated"));
}

async fn authentication_and_authorisation_errors(backend: Backend) {
    let v = TestVault::start_on(backend, false, None).await;
    let req = items(&[("pan", "4111111111111111")], "value");
    let (status, body) = v.client.post_json("/v1/tokenize", "wrong-key", &req).await;
    assert_eq!((status, error_code(&body)), (401, "unauthenticated"));
    let (status, body) = v.client.post("/v1/tokenize", None, serde_json::to_vec(&req).unwrap()).await;
    assert_eq!((status, error_code(&body)), (401, "unauthenticated"));

    let (_, body) = v.client.post_json("/v1/tokenize", APP_KEY, &req).await;
    let token = body["items"][0]["token"].as_str().unwrap().to_owned();
    let (status, body) = v.client.post_json("/v1/detokenize", APP_KEY, &items(&[("pan", &token)], "token")).await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"), "{body}");
    assert!(body.get("items").is_none(), "nothing revealed on 403");
    let (status, _) = v.client.post_json("/v1/mask", APP_KEY, &items(&[("pan", &token)], "token")).await;
    assert_eq!(status, 200, "app may mask pan");
    let (status, _) = v
        .client
        .post_json("/v1/mask", APP_KEY, &items(&[("pan", &token), ("iban", "DE89370400440532013000")], "token"))
        .await;
    assert_eq!(status, 403, "one forbidden class refuses the whole call");

    let audit = std::fs::read_to_string(v.audit_path()).unwrap();
    assert!(audit.contains("\"outcome\":\"denied\""));
    // Unauthenticated calls are counted, never written to the log (anyone could fill it).
    assert!(!audit.contains("\"outcome\":\"unauthenticated\""));
    let metrics = get(v.admin, "/metrics").await.1;
    assert!(metrics.contains("veil_vault_unauthenticated_total{op=\"tokenize\"} 2"), "{metrics}");

    // Two Authorization headers: refused, even when one of them holds a good key.
    let tcp = tokio::net::TcpStream::connect(v.client.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post("/v1/tokenize")
        .header("host", "localhost")
        .header("authorization", format!("Bearer {APP_KEY}"))
        .header("authorization", "Bearer wrong-key")
        .body(http_body_util::Full::new(bytes::Bytes::from(serde_json::to_vec(&req).unwrap())))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 400);
}

async fn unknown_tokens_and_every_bad_request_get_a_clear_error(backend: Backend) {
    let v = TestVault::start_on(backend, false, None).await;
    let c = &v.client;
    let (status, body) = c
        .post_json(
            "/v1/detokenize",
            PAYMENTS_KEY,
            &items(&[("pan", "4000 0000 0000 0002"), ("email", "nobody@example.com"), ("iban", "garbage")], "token"),
        )
        .await;
    assert_eq!(status, 200);
    for i in 0..3 {
        assert_eq!(body["items"][i]["error"]["code"], "not_found", "{body}");
    }

    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("/v1/tokenize", b"{not json".to_vec(), 400, "malformed_json"),
        ("/v1/tokenize", br#"{"items":[{"class":"pan"}]}"#.to_vec(), 400, "malformed_json"),
        ("/v1/tokenize", br#"{"items":[],"extra":1}"#.to_vec(), 400, "malformed_json"),
        ("/v1/tokenize", br#"{"items":[{"class":"ssn","value":"078-05-1120"}]}"#.to_vec(), 400, "unknown_class"),
        (
            "/v1/detokenize",
            br#"{"items":[{"class":"pan","token":"1"}],"purpose":"Card 4111"}"#.to_vec(),
            400,
            "invalid_request",
        ),
        ("/v1/tokenize", br#"{"items":[{"class":"pan","value":"4111111111111112"}]}"#.to_vec(), 422, "invalid_value"),
        (
            "/v1/tokenize",
            br#"{"items":[{"class":"iban","value":"DE00370400440532013000"}]}"#.to_vec(),
            422,
            "invalid_value",
        ),
        ("/v1/tokenize", br#"{"items":[{"class":"email","value":"no-at-sign"}]}"#.to_vec(), 422, "invalid_value"),
        ("/v1/nope", b"{}".to_vec(), 404, "no_route"),
    ];
    for (path, body, want_status, want_code) in cases {
        let (status, resp) = c.post(path, Some(PAYMENTS_KEY), body.clone()).await;
        assert_eq!((status, error_code(&resp)), (want_status, want_code), "{path} {}", String::from_utf8_lossy(&body));
        assert!(resp["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        for secret in ["4111111111111112", "DE00370400440532013000", "078-05-1120", "no-at-sign"] {
            assert!(!resp.to_string().contains(secret), "error echoes the value: {resp}");
        }
    }

    let big: Vec<(&str, &str)> = (0..51).map(|_| ("pan", "4111111111111111")).collect();
    let (status, body) = c.post_json("/v1/tokenize", PAYMENTS_KEY, &items(&big, "value")).await;
    assert_eq!((status, error_code(&body)), (413, "batch_too_large"));
    let (status, body) = c.post("/v1/tokenize", Some(PAYMENTS_KEY), vec![b' '; 70_000]).await;
    assert_eq!((status, error_code(&body)), (413, "body_too_large"));
    let (status, body) = c.request("GET", "/v1/tokenize", Some(PAYMENTS_KEY), bytes::Bytes::new()).await;
    assert_eq!(status, 405, "{}", String::from_utf8_lossy(&body));

    // An invalid item refuses the whole batch: the valid one got no token either.
    let (status, _) = c
        .post_json(
            "/v1/tokenize",
            PAYMENTS_KEY,
            &items(&[("pan", "5555555555554444"), ("pan", "5555555555554445")], "value"),
        )
        .await;
    assert_eq!(status, 422);
    let (_, body) = c.post_json("/v1/detokenize", PAYMENTS_KEY, &items(&[("pan", "5555555555554444")], "token")).await;
    assert_eq!(body["items"][0]["error"]["code"], "not_found");
}

async fn audit_chain_verifies_and_tampering_is_detected(backend: Backend) {
    let v = TestVault::start_on(backend, false, None).await;
    let (_, body) =
        v.client.post_json("/v1/tokenize", PAYMENTS_KEY, &items(&[("pan", "4111111111111111")], "value")).await;
    let token = body["items"][0]["token"].as_str().unwrap().to_owned();
    for _ in 0..5 {
        let (status, _) = v
            .client
            .post_json(
                "/v1/detokenize",
                PAYMENTS_KEY,
                &json!({"items":[{"class":"pan","token":token}],"purpose":"payment"}),
            )
            .await;
        assert_eq!(status, 200);
    }
    let text = std::fs::read_to_string(v.audit_path()).unwrap();
    assert_eq!(text.lines().count(), 7, "the chain's start, the tokenisation, five reveals");
    assert!(!text.contains("4111111111111111") && !text.contains(&token), "audit holds no values or tokens");
    assert!(text.contains("\"purpose\":\"payment\""));

    let cfg = v.config_path();
    let verify = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_veil"))
            .args(["audit", "verify", "-c"])
            .arg(&cfg)
            .output()
            .unwrap()
    };
    let out = verify();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("intact, 7 entries"));

    std::fs::write(v.audit_path(), text.replacen("\"purpose\":\"payment\"", "\"purpose\":\"refund\"", 1)).unwrap();
    let out = verify();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 3"));
}

async fn unwritable_audit_log_refuses_reveals_with_503(backend: Backend) {
    let v = TestVault::start_on(backend, false, Some("/dev/full")).await;
    let (status, body) =
        v.client.post_json("/v1/tokenize", PAYMENTS_KEY, &items(&[("pan", "4111111111111111")], "value")).await;
    assert_eq!((status, error_code(&body)), (503, "audit_unavailable"), "tokenisations are audited too");
    assert!(!body.to_string().contains("4111"));
    let token = "4111118304731111";
    for path in ["/v1/detokenize", "/v1/mask"] {
        let (status, body) = v.client.post_json(path, PAYMENTS_KEY, &items(&[("pan", token)], "token")).await;
        assert_eq!((status, error_code(&body)), (503, "audit_unavailable"), "{path}");
        assert!(!body.to_string().contains("4111"), "no value without an audit record");
    }
}

async fn admin_serves_metrics_health_and_readiness(backend: Backend) {
    let v = TestVault::start_on(backend, false, None).await;
    v.client
        .post_json("/v1/tokenize", PAYMENTS_KEY, &items(&[("pan", "4111111111111111"), ("email", "a@b.co")], "value"))
        .await;
    let (_, body) = v.client.post_json("/v1/tokenize", APP_KEY, &items(&[("pan", "4111111111111111")], "value")).await;
    let token = body["items"][0]["token"].as_str().unwrap().to_owned();
    v.client.post_json("/v1/detokenize", APP_KEY, &items(&[("pan", &token)], "token")).await;
    v.client.post_json("/v1/detokenize", PAYMENTS_KEY, &items(&[("pan", &token)], "token")).await;

    let (status, text) = get(v.admin, "/metrics").await;
    assert_eq!(status, 200);
    assert!(text.contains(r#"veil_vault_operations_total{class="pan",op="tokenize",outcome="ok"} 2"#), "{text}");
    assert!(text.contains(r#"veil_vault_operations_total{class="email",op="tokenize",outcome="ok"} 1"#));
    assert!(text.contains(r#"veil_detokenize_total{caller="app",class="pan",outcome="denied"} 1"#));
    assert!(text.contains(r#"veil_detokenize_total{caller="payments",class="pan",outcome="ok"} 1"#));
    assert!(text.contains("veil_vault_operation_duration_seconds_count{op=\"detokenize\"} 1"));
    assert!(!text.contains("4111") && !text.contains(&token));
    // Every sample line parses as `name{labels} number`.
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample line {line}");
    }
    assert_eq!(get(v.admin, "/healthz").await.0, 200);
    assert_eq!(get(v.admin, "/readyz").await.0, 200);
}

async fn graceful_shutdown_stops_listening(backend: Backend) {
    let mut v = TestVault::start_on(backend, false, None).await;
    let addr = v.client.addr;
    v.running.take().unwrap().shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listener closed after shutdown");
}

/// `audience` on detokenize and mask: an item is answered only where it is linked to a subject of every audience
/// token (`not_linked` otherwise), and nothing is revealed through an audience of nobody.
async fn an_audience_sees_only_what_is_linked_to_it(backend: Backend) {
    let v = TestVault::start_on(backend, false, None).await;
    let tokenize = |subject: &'static str, pairs: &'static [(&'static str, &'static str)]| {
        let client = v.client.clone();
        async move {
            let mut body = items(pairs, "value");
            body["subject"] = json!(subject);
            let (status, body) = client.post_json("/v1/tokenize", PAYMENTS_KEY, &body).await;
            assert_eq!(status, 200, "{body}");
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["token"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let jane =
        tokenize("jane", &[("email", "jane@example.org"), ("name", "Jane Doe"), ("pan", "4111111111111111")]).await;
    let mal = tokenize("mal", &[("email", "mal@example.net"), ("name", "Mal Lory")]).await;
    // Both gave the same card: it is linked to both.
    tokenize("mal", &[("pan", "4111111111111111")]).await;
    let nobody = tokenize_plain(&v, "Nobody Atall").await;
    let ask = |audience: Vec<&str>, op: &'static str| {
        let client = v.client.clone();
        let asked: Vec<(&str, &str)> =
            vec![("name", &jane[1]), ("name", &mal[1]), ("pan", &jane[2]), ("email", &jane[0]), ("name", &nobody)];
        let mut body = items(&asked, "token");
        body["audience"] = json!(audience.iter().map(|t| json!({"class": "email", "token": t})).collect::<Vec<_>>());
        async move {
            let (status, body) = client.post_json(op, PAYMENTS_KEY, &body).await;
            assert_eq!(status, 200, "{body}");
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| match (&i["value"], &i["masked"], &i["error"]["code"]) {
                    (Value::String(v), _, _) | (_, Value::String(v), _) => v.clone(),
                    (_, _, Value::String(code)) => format!("<{code}>"),
                    _ => panic!("{i}"),
                })
                .collect::<Vec<_>>()
        }
    };
    let n = "<not_linked>";
    assert_eq!(ask(vec![&jane[0]], "/v1/detokenize").await, ["Jane Doe", n, "4111111111111111", "jane@example.org", n]);
    assert_eq!(ask(vec![&mal[0]], "/v1/detokenize").await, [n, "Mal Lory", "4111111111111111", n, n]);
    assert_eq!(ask(vec![&jane[0], &mal[0]], "/v1/detokenize").await, [n, n, "4111111111111111", n, n]);
    assert_eq!(ask(vec![&jane[0]], "/v1/mask").await[1], n, "masks follow the audience too");
    assert_eq!(ask(vec!["unknown@example.org"], "/v1/detokenize").await, [n, n, n, n, n]);
    // An audience item of an unknown class is a bad request like any item.
    let mut bad = items(&[("name", jane[1].as_str())], "token");
    bad["audience"] = json!([{"class": "shoe", "token": "x"}]);
    let (status, body) = v.client.post_json("/v1/detokenize", PAYMENTS_KEY, &bad).await;
    assert_eq!(status, 400, "{body}");
}

/// A name token linked to nobody.
async fn tokenize_plain(v: &TestVault, name: &str) -> String {
    let (_, body) = v.client.post_json("/v1/tokenize", PAYMENTS_KEY, &items(&[("name", name)], "value")).await;
    body["items"][0]["token"].as_str().unwrap().to_owned()
}
