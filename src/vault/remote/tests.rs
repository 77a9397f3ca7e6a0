//! RemoteVault against an in-memory HTTP server on 127.0.0.1: every answer the vault API can give, mapped back.

use serde_json::json;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::*;

/// One request as the fake vault saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    auth: Option<String>,
    body: serde_json::Value,
}

type Reply = Arc<dyn Fn(&Seen) -> (u16, String) + Send + Sync>;

/// A fake vault API answering with `reply`, recording every request.
async fn fake_vault(reply: Reply) -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (log, reply) = (log.clone(), reply.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (log, reply) = (log.clone(), reply.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                        let s = Seen {
                            method: parts.method.to_string(),
                            path: parts.uri.path().to_owned(),
                            auth: parts.headers.get("authorization").map(|v| v.to_str().unwrap().to_owned()),
                            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                        };
                        let (status, text) = reply(&s);
                        log.lock().unwrap().push(s);
                        let mut resp = hyper::Response::new(Full::new(Bytes::from(text)));
                        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    (addr, seen)
}

fn config(addr: SocketAddr, max_batch: usize, api_keys: BTreeMap<String, std::path::PathBuf>) -> VaultClientConfig {
    VaultClientConfig {
        url: format!("http://{addr}").parse().unwrap(),
        identity: None,
        ca: None,
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        max_batch,
        api_keys,
        encrypt_key_file: None,
    }
}

async fn vault_answering(status: u16, body: &str) -> RemoteVault {
    let body = body.to_owned();
    let (addr, _) = fake_vault(Arc::new(move |_| (status, body.clone()))).await;
    RemoteVault::new(&config(addr, 100, BTreeMap::new())).unwrap()
}

fn caller(name: &str) -> Caller {
    Caller { name: name.into(), allow: vec![], new_values: None, origin: Default::default() }
}

const ITEMS: &[(Class, &str)] = &[(Class::Pan, "4111111111111111"), (Class::Iban, "DE89370400440532013000")];

fn error(code: &str, message: &str) -> String {
    json!({"error": {"code": code, "message": message}}).to_string()
}

/// An error about one item, as the vault's API writes it: the item's class or index in structured fields.
fn item_error(code: &str, class: Option<&str>, index: Option<usize>) -> String {
    let mut body = json!({"error": {"code": code, "message": "a sentence the client does not read"}});
    if let Some(c) = class {
        body["error"]["class"] = json!(c);
    }
    if let Some(i) = index {
        body["error"]["index"] = json!(i);
    }
    body.to_string()
}

#[tokio::test]
async fn each_refusal_maps_to_the_in_process_error() {
    let forbidden = vault_answering(403, &item_error("forbidden", Some("iban"), None)).await;
    assert!(matches!(
        forbidden.detokenize(&caller("payments"), ITEMS, None).await,
        Err(VaultError::Forbidden { op: Op::Detokenize, class: Class::Iban })
    ));
    // A refusal that names no class is about the whole call: the first item's class stands for it.
    let unnamed = vault_answering(403, &error("forbidden", "caller may not detokenize class iban")).await;
    assert!(matches!(
        unnamed.detokenize(&caller("payments"), ITEMS, None).await,
        Err(VaultError::Forbidden { op: Op::Detokenize, class: Class::Pan })
    ));
    let invalid = vault_answering(422, &item_error("invalid_value", None, Some(1))).await;
    match invalid.tokenize(&caller("proxy"), ITEMS, None).await {
        Err(VaultError::Invalid { index: 1, reason }) => assert_eq!(reason, REMOTE_INVALID),
        other => panic!("{other:?}"),
    }
    // An invalid value the vault does not name (or names outside the batch) is not guessed at: refused.
    for body in [error("invalid_value", "item 1: not a valid IBAN"), item_error("invalid_value", None, Some(2))] {
        let v = vault_answering(422, &body).await;
        assert!(matches!(v.tokenize(&caller("proxy"), ITEMS, None).await, Err(VaultError::Internal)), "{body}");
    }
    let store = vault_answering(503, &error("store_unavailable", "the vault store is unavailable")).await;
    assert!(matches!(store.tokenize(&caller("proxy"), ITEMS, None).await, Err(VaultError::StoreUnavailable)));
    let audit = vault_answering(503, &error("audit_unavailable", "x")).await;
    assert!(matches!(audit.detokenize(&caller("p"), ITEMS, None).await, Err(VaultError::AuditUnavailable)));
    for (status, body) in
        [(500, error("internal", "x")), (502, "bad gateway".to_owned()), (401, error("unauthenticated", "x"))]
    {
        let v = vault_answering(status, &body).await;
        assert!(matches!(v.tokenize(&caller("proxy"), ITEMS, None).await, Err(VaultError::Unavailable)), "{status}");
    }
    for (status, body) in [
        (400, error("malformed_json", "x")),
        (413, error("batch_too_large", "x")),
        (200, r#"{"items":[{"token":"only one"}]}"#.to_owned()),
        (200, "not json".to_owned()),
    ] {
        let v = vault_answering(status, &body).await;
        assert!(
            matches!(v.tokenize(&caller("proxy"), ITEMS, None).await, Err(VaultError::Internal)),
            "{status} {body}"
        );
    }
}

#[tokio::test]
async fn per_item_errors_come_back_as_missing_values() {
    let v = vault_answering(200, r#"{"items":[{"value":"4111111111111111"},{"error":{"code":"gone","message":"x"}}]}"#)
        .await;
    let got = v.detokenize(&caller("payments"), ITEMS, Some("payment")).await.unwrap();
    assert_eq!(got, vec![Ok("4111111111111111".to_owned()), Err(Missing::Gone)]);
    let v = vault_answering(200, r#"{"items":[{"masked":"************1111"},{"error":{"code":"not_found"}}]}"#).await;
    let got = v.mask(&caller("payments"), ITEMS, None).await.unwrap();
    assert_eq!(got, vec![Ok("************1111".to_owned()), Err(Missing::NotFound)]);
    let v = vault_answering(200, r#"{"items":[{"value":"a","error":{"code":"gone"}},{}]}"#).await;
    assert!(matches!(v.detokenize(&caller("payments"), ITEMS, None).await, Err(VaultError::Internal)));
}

#[tokio::test]
async fn big_batches_are_split_and_concatenated_in_order() {
    let reply: Reply = Arc::new(|s: &Seen| {
        let items = s.body["items"].as_array().unwrap();
        if items.iter().any(|i| i["value"] == "bad") {
            let pos = items.iter().position(|i| i["value"] == "bad").unwrap();
            return (422, item_error("invalid_value", None, Some(pos)));
        }
        let tokens: Vec<_> =
            items.iter().map(|i| json!({"token": format!("t-{}", i["value"].as_str().unwrap())})).collect();
        (200, json!({ "items": tokens }).to_string())
    });
    let (addr, seen) = fake_vault(reply).await;
    let v = RemoteVault::new(&config(addr, 2, BTreeMap::new())).unwrap();
    let items: Vec<(Class, &str)> = ["a", "b", "c", "d", "e"].iter().map(|s| (Class::Text, *s)).collect();
    let tokens = v.tokenize(&caller("proxy"), &items, Some("cust-1")).await.unwrap();
    assert_eq!(tokens, ["t-a", "t-b", "t-c", "t-d", "t-e"]);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|s| s.path == "/v1/tokenize" && s.method == "POST" && s.body["subject"] == "cust-1"));
        assert_eq!(seen[2].body["items"], json!([{"class": "text", "value": "e"}]));
    }
    let items: Vec<(Class, &str)> = ["a", "b", "c", "bad"].iter().map(|s| (Class::Text, *s)).collect();
    assert!(matches!(v.tokenize(&caller("proxy"), &items, None).await, Err(VaultError::Invalid { index: 3, .. })));
}

#[tokio::test]
async fn a_caller_with_a_key_file_sends_its_bearer_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("payments.key");
    std::fs::write(&key, "s3cret-key\n").unwrap();
    let reply: Reply = Arc::new(|s: &Seen| {
        let n = s.body["items"].as_array().map(Vec::len).unwrap_or(0);
        (200, json!({"items": vec![json!({"value": "v", "token": "t"}); n]}).to_string())
    });
    let (addr, seen) = fake_vault(reply).await;
    let v = RemoteVault::new(&config(addr, 10, BTreeMap::from([("payments".to_owned(), key)]))).unwrap();
    v.detokenize(&caller("payments"), ITEMS, Some("payment")).await.unwrap();
    v.tokenize(&caller("proxy"), ITEMS, None).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].auth.as_deref(), Some("Bearer s3cret-key"));
    assert_eq!((seen[0].path.as_str(), &seen[0].body["purpose"]), ("/v1/detokenize", &json!("payment")));
    assert_eq!(seen[1].auth, None, "no key file: the client certificate alone authenticates");
}

#[test]
fn key_files_must_hold_a_key_and_errors_name_only_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.key");
    std::fs::write(&empty, "\n").unwrap();
    let cfg = config("127.0.0.1:1".parse().unwrap(), 10, BTreeMap::from([("payments".to_owned(), empty)]));
    let err = RemoteVault::new(&cfg).err().unwrap().to_string();
    assert!(err.starts_with("vault_client.api_keys.payments: ") && err.contains("empty"), "{err}");
    let cfg = config("127.0.0.1:1".parse().unwrap(), 10, BTreeMap::from([("x".to_owned(), dir.path().join("no"))]));
    assert!(RemoteVault::new(&cfg).err().unwrap().to_string().contains("cannot read"));
}

#[tokio::test]
async fn an_unreachable_or_silent_vault_is_unavailable() {
    let closed = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let v = RemoteVault::new(&config(closed, 10, BTreeMap::new())).unwrap();
    assert!(matches!(v.tokenize(&caller("proxy"), ITEMS, None).await, Err(VaultError::Unavailable)));
    assert!(!v.ready().await);

    // Accepts connections, never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = held.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = silent.accept().await {
            h.lock().unwrap().push(s);
        }
    });
    let mut cfg = config(addr, 10, BTreeMap::new());
    cfg.request_timeout = Duration::from_millis(200);
    let v = RemoteVault::new(&cfg).unwrap();
    assert!(matches!(v.detokenize(&caller("payments"), ITEMS, None).await, Err(VaultError::Unavailable)));
}

#[tokio::test]
async fn ready_asks_the_vault() {
    let (addr, seen) = fake_vault(Arc::new(|_| (200, r#"{"status":"ready"}"#.to_owned()))).await;
    assert!(RemoteVault::new(&config(addr, 10, BTreeMap::new())).unwrap().ready().await);
    let first = seen.lock().unwrap()[0].clone();
    assert_eq!((first.method.as_str(), first.path.as_str()), ("GET", "/v1/ready"));
    assert!(!vault_answering(503, &error("not_ready", "x")).await.ready().await);
}

#[tokio::test]
async fn a_connection_dropped_mid_request_is_retried_once_on_a_new_one() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Connection 1 takes the request and dies (a vault killed mid-call); later ones answer.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(Mutex::new(0usize));
    let count = accepted.clone();
    let always_drop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let drop_all = always_drop.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let n = {
                let mut c = count.lock().unwrap();
                *c += 1;
                *c
            };
            let drop_it = n == 1 || drop_all.load(std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                if drop_it {
                    return;
                }
                let body = r#"{"items":[{"token":"4111118304731111"},{"token":"DE44370400440532013001"}]}"#;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(format!("{head}{body}").as_bytes()).await;
                let _ = s.read(&mut buf).await;
            });
        }
    });
    let v = RemoteVault::new(&config(addr, 10, BTreeMap::new())).unwrap();
    let tokens = v.tokenize(&caller("proxy"), ITEMS, None).await.unwrap();
    assert_eq!(tokens.len(), 2);
    assert_eq!(*accepted.lock().unwrap(), 2, "one retry, on a new connection");

    // Only once: a vault that drops every call is unavailable.
    always_drop.store(true, std::sync::atomic::Ordering::SeqCst);
    let v = RemoteVault::new(&config(addr, 10, BTreeMap::new())).unwrap();
    assert!(matches!(v.tokenize(&caller("proxy"), ITEMS, None).await, Err(VaultError::Unavailable)));
    assert_eq!(*accepted.lock().unwrap(), 4);
}
