//! End to end, issue 19 (items 3 and 4): on a route with detection, a card number or an email address in a place
//! the rewriters used to skip — a JSON number or key, a multipart part of any type (binary, JSON, nested
//! multipart) or its headers, an XML attribute, comment or split text, a form field name — reaches the app only
//! as a token; a body with a value veil cannot rewrite where it is, or cannot read, is refused and nothing is
//! forwarded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use serde_json::Value;

const CARD: &str = "5555555555554444";
const EMAIL: &str = "jane.doe@example.org";

/// Sends `body` through veil (XML to `/soap`, the rest to `/pay`); returns the status and the body the app received (if any).
async fn send(proxy: std::net::SocketAddr, app: &App, content_type: &str, body: Vec<u8>) -> (u16, Option<Vec<u8>>) {
    let before = app.requests().len();
    let path = if content_type.ends_with("xml") { "/soap" } else { "/pay" };
    let req = hyper::Request::post(format!("http://{proxy}{path}"))
        .header("host", "shop")
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let (status, _, _) = send_request(proxy, None, false, req).await.unwrap();
    let requests = app.requests();
    (status, (requests.len() > before).then(|| requests.last().unwrap().body.to_vec()))
}

/// The few character references the cases use, decoded.
fn decode(s: &str) -> String {
    s.replace("&#53;", "5").replace("&#x35;", "5").replace("&#64;", "@").replace("&#46;", ".").replace("&amp;", "&")
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn values_in_every_place_reach_the_app_only_as_tokens() {
    let app = App::start().await;
    let dir = tempfile::tempdir().unwrap();
    veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
    let text = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{}\"\n{}\n\
         [[route]]\nname = \"pay\"\nmatch = {{ path = \"/pay\" }}\ndetect = [\"pan\", \"email\"]\n\
         [[route]]\nname = \"soap\"\nmatch = {{ path = \"/soap\" }}\ndetect = [\"pan\", \"email\"]\n\
         fields = [ {{ xml = \"number\", class = \"pan\" }} ]\n",
        app.addr,
        config_text(dir.path(), false, None)
    );
    let running =
        veil::app::start(veil::config::parse(&text).unwrap(), veil::vault::engine::system_clock()).await.unwrap();
    let proxy = running.proxy_addr.unwrap();
    let mp = "multipart/form-data; boundary=XyZ";
    let part = |headers: &str, body: &[u8]| {
        [format!("--XyZ\r\nContent-Disposition: form-data; {headers}\r\n\r\n").as_bytes(), body, b"\r\n"].concat()
    };
    let nested = format!("--in\r\nContent-Type: text/plain\r\n\r\ncard {CARD}\r\n--in--");
    let multipart = [
        part(
            "name=\"pic\"; filename=\"a.png\"\r\nContent-Type: image/png",
            &[b"\x89PNG\x00", CARD.as_bytes(), b"\xff"].concat(),
        ),
        part("name=\"doc\"\r\nContent-Type: application/json", format!(r#"{{"n":{CARD},"{EMAIL}":1}}"#).as_bytes()),
        part(&format!("name=\"f\"; filename=\"{CARD}.csv\""), b"x"),
        part("name=\"all\"\r\nContent-Type: multipart/mixed; boundary=in", nested.as_bytes()),
        b"--XyZ--\r\n".to_vec(),
    ]
    .concat();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", format!(r#"{{"pan":{CARD},"a":[-{CARD}],"e":5.555555555554444e15}}"#).into_bytes()),
        ("application/json", format!(r#"{{"{CARD}":"x","{EMAIL}":true,"\u0035555555555554444":0}}"#).into_bytes()),
        ("application/x-www-form-urlencoded", format!("{CARD}=1&note%20{}=2", EMAIL.replace('@', "%40")).into_bytes()),
        (mp, multipart),
        (
            "application/xml",
            format!("<o card=\"{CARD}\"><!-- {EMAIL} --><n>5555 5555<!-- -->5555 4444</n><?pi {CARD}?></o>")
                .into_bytes(),
        ),
    ];
    // Written as character references in a page or a mail the app relays (decoded, it is the card and address).
    let escaped = "<p>card 5555&#53;555&#x35;5554444 from jane.doe&#64;example&#46;org &amp; more</p>";
    assert_eq!(decode(escaped), format!("<p>card {CARD} from {EMAIL} & more</p>"));
    let cases = [cases, vec![("text/html", escaped.as_bytes().to_vec())]].concat();
    for (ct, body) in cases {
        let shown = String::from_utf8_lossy(&body).into_owned();
        let (status, seen) = send(proxy, &app, ct, body).await;
        assert_eq!(status, 200, "{shown}");
        let seen = seen.unwrap();
        let decoded = decode(&String::from_utf8_lossy(&seen));
        assert!(!decoded.contains(CARD) && !decoded.contains(EMAIL), "{shown} reached the app as {decoded}");
        for secret in [CARD, EMAIL, "5555 5555", "\\u0035555"] {
            assert!(!contains(&seen, secret), "{shown} reached the app as {}", String::from_utf8_lossy(&seen));
        }
        if ct == "application/json" {
            let v: Value = serde_json::from_slice(&seen).unwrap();
            assert!(v.get("pan").is_none_or(Value::is_number) && v.get("e").is_none_or(Value::is_number), "{v}");
        }
    }
    // What cannot be read or rewritten where it is: refused, nothing forwarded.
    let refused: Vec<(&str, Vec<u8>)> = vec![
        (mp, [part("name=\"a\"", b"caf\xe9"), b"--XyZ--\r\n".to_vec()].concat()),
        (mp, [part("name=\"a\"\r\nContent-Type: text/plain; charset=utf-16", b"x"), b"--XyZ--\r\n".to_vec()].concat()),
        (mp, [part("name=a; filename*=UTF-8''5555%205555%205555%204444", b"x"), b"--XyZ--\r\n".to_vec()].concat()),
        ("application/xml", format!("<o><number>{CARD}<x/></number></o>").into_bytes()),
        ("application/xml", format!("<o-{CARD}/>").into_bytes()),
    ];
    for (ct, body) in refused {
        let shown = String::from_utf8_lossy(&body).into_owned();
        let (status, seen) = send(proxy, &app, ct, body).await;
        assert_eq!((status, seen.is_none()), (400, true), "{shown}");
    }
    running.shutdown().await;
}
