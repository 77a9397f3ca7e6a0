//! Three real provider request shapes end to end (issue 21), each from its example in `config/providers/`:
//! browser → veil ingress (TLS, HTTP/1.1 and h2) → app → veil egress → a recording TLS provider. The provider
//! gets the card number and CVC (or the IBAN and holder's name); the app's stored bodies hold neither; a second
//! charge with the same CVC placeholder is refused with 422 `cvc_unavailable` and reaches no provider.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;

use bytes::Bytes;
use common::tls_app::TlsApp;
use common::*;
use http_body_util::Full;
use serde_json::{json, Value};

const PAN: &str = "4000056655665556";
const CVC: &str = "931";
const IBAN: &str = "DE89370400440532013000";
const HOLDER: &str = "Jane Quincy Doe";

struct Shop {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    pki: Pki,
    running: veil::app::Running,
    app: App,
    provider: TlsApp,
}

impl Shop {
    /// veil with TLS ingress and the example `file` appended, its upstream pointed at a recording provider.
    async fn start(file: &str, upstream: &str) -> Shop {
        let provider_dir = tempfile::tempdir().unwrap();
        Pki::new(provider_dir.path());
        let provider = TlsApp::start(provider_dir.path()).await;
        let app = App::start().await;
        let dir = tempfile::tempdir().unwrap();
        veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
        let pki = Pki::new(dir.path());
        let d = dir.path().display();
        let example = std::fs::read_to_string(format!("{}/config/providers/{file}", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
            .replace(
                &format!("upstream = \"{upstream}\""),
                &format!(
                    "upstream = \"https://{}\"\nca = \"{}\"",
                    provider.addr,
                    provider_dir.path().join("ca.pem").display()
                ),
            );
        let example = ephemeral_listens(&example);
        let text = format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{}\"\n[proxy.tls]\ncert = \"{d}/server.pem\"\n\
             key = \"{d}/server.key\"\n{}\n[class.name]\nformat = \"tagged\"\n{example}",
            app.addr,
            config_text(dir.path(), false, None),
        );
        let cfg = veil::config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let running = veil::app::start(cfg, veil::vault::engine::system_clock()).await.unwrap();
        Shop { _dirs: (dir, provider_dir), pki, running, app, provider }
    }

    /// The browser's request through the TLS ingress; the body the app received.
    async fn browser(&self, path: &str, content_type: &str, body: String, h2: bool) -> Bytes {
        let mut req = hyper::Request::post(format!("https://localhost{path}")).header("content-type", content_type);
        if !h2 {
            req = req.header("host", "localhost");
        }
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        let (status, _, answer) =
            send_request(self.running.proxy_addr.unwrap(), Some(&self.pki.ca_der), h2, req).await.unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        self.app.requests().pop().unwrap().body
    }

    /// The app's request to an egress route; status and answer.
    async fn app_sends(&self, route: &str, content_type: &str, body: String) -> (u16, Value) {
        let addr: SocketAddr = self.running.egress_addrs.iter().find(|(n, _)| n == route).unwrap().1;
        let req = hyper::Request::post(format!("http://{addr}/v1/charge"))
            .header("host", "provider.example")
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let (status, _, answer) = send_request(addr, None, false, req).await.unwrap();
        (status, serde_json::from_slice(&answer).unwrap_or(Value::Null))
    }

    /// The last request the provider received, and how many it has.
    fn provider_got(&self) -> (usize, Bytes) {
        let seen = self.provider.requests();
        (seen.len(), seen.last().map(|(_, s)| s.body.clone()).unwrap_or_default())
    }
}

/// The example's fixed egress listen addresses, as ports the OS picks.
fn ephemeral_listens(text: &str) -> String {
    text.lines()
        .map(|l| if l.starts_with("listen = \"127.0.0.1:845") { "listen = \"127.0.0.1:0\"" } else { l })
        .collect::<Vec<_>>()
        .join("\n")
}

fn form(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn refused_cvc((status, answer): (u16, Value)) {
    assert_eq!((status, answer["error"]["code"].as_str()), (422, Some("cvc_unavailable")), "{answer}");
}

#[tokio::test]
async fn a_form_encoded_card_api_with_bracketed_keys() {
    let shop = Shop::start("card-form.toml", "https://api.stripe.com").await;
    let ct = "application/x-www-form-urlencoded";
    for h2 in [false, true] {
        let sent = format!("amount=1999&card%5Bnumber%5D={PAN}&card%5Bcvc%5D={CVC}&card%5Bexp_month%5D=12");
        let bytes = shop.browser("/checkout", ct, sent, h2).await;
        assert!(!String::from_utf8_lossy(&bytes).contains(PAN), "the card reached the app");
        let stored = form(&bytes);
        let (token, placeholder) = (&stored["card[number]"], &stored["card[cvc]"]);
        assert!(token != PAN && placeholder != CVC && stored["card[exp_month]"] == "12", "{stored:?}");
        let charge = format!("amount=1999&card[number]={token}&card[cvc]={placeholder}&card[exp_month]=12");
        let (status, answer) = shop.app_sends("cards-form", ct, charge.clone()).await;
        assert_eq!(status, 200, "{answer}");
        let (n, body) = shop.provider_got();
        let got = form(&body);
        assert_eq!((got["card[number]"].as_str(), got["card[cvc]"].as_str()), (PAN, CVC));
        refused_cvc(shop.app_sends("cards-form", ct, charge).await);
        assert_eq!(shop.provider_got().0, n, "the refused charge reached no provider");
    }
}

#[tokio::test]
async fn a_json_card_api() {
    let shop = Shop::start("card-json.toml", "https://checkout-test.adyen.com").await;
    let ct = "application/json";
    for h2 in [false, true] {
        let pm = json!({"type": "scheme", "number": PAN, "cvc": CVC, "expiryMonth": "03", "holderName": HOLDER});
        let stored = shop.browser("/api/checkout", ct, json!({"paymentMethod": pm}).to_string(), h2).await;
        let text = String::from_utf8_lossy(&stored);
        assert!(!text.contains(PAN) && !text.contains(HOLDER), "{text}");
        let stored: Value = serde_json::from_slice(&stored).unwrap();
        assert_ne!(stored["paymentMethod"]["cvc"], CVC);
        let charge = json!({"paymentMethod": stored["paymentMethod"], "amount": {"value": 1999}}).to_string();
        let (status, answer) = shop.app_sends("cards-json", ct, charge.clone()).await;
        assert_eq!(status, 200, "{answer}");
        let (n, body) = shop.provider_got();
        let got: Value = serde_json::from_slice(&body).unwrap();
        let pm = &got["paymentMethod"];
        assert_eq!(
            (pm["number"].as_str(), pm["cvc"].as_str(), pm["holderName"].as_str()),
            (Some(PAN), Some(CVC), Some(HOLDER))
        );
        refused_cvc(shop.app_sends("cards-json", ct, charge).await);
        assert_eq!(shop.provider_got().0, n);
    }
}

#[tokio::test]
async fn a_sepa_direct_debit_mandate() {
    let shop = Shop::start("sepa-mandate.toml", "https://api.gocardless.com").await;
    for h2 in [false, true] {
        let sent = format!("iban={IBAN}&account_holder_name={}", HOLDER.replace(' ', "+"));
        let bytes = shop.browser("/account/mandate", "application/x-www-form-urlencoded", sent, h2).await;
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(IBAN) && !text.contains("Quincy"), "the account reached the app: {text}");
        let stored = form(&bytes);
        assert!(stored["iban"] != IBAN && stored["account_holder_name"] != HOLDER, "{stored:?}");
        let mandate = json!({"customer_bank_accounts": {"iban": stored["iban"], "account_holder_name": stored["account_holder_name"]}});
        let (status, answer) = shop.app_sends("sepa", "application/json", mandate.to_string()).await;
        assert_eq!(status, 200, "{answer}");
        let got: Value = serde_json::from_slice(&shop.provider_got().1).unwrap();
        let account = &got["customer_bank_accounts"];
        assert_eq!((account["iban"].as_str(), account["account_holder_name"].as_str()), (Some(IBAN), Some(HOLDER)));
    }
}

#[tokio::test]
async fn an_sms_to_the_customers_phone_token() {
    let shop = Shop::start("sms-json.toml", "https://rest.messagebird.com").await;
    const PHONE: &str = "+49 170 1234567";
    const NAME: &str = "Zoë O'Brien";
    // Another customer, whose name token someone got hold of and typed into what the app texts them.
    let other = shop
        .browser(
            "/account/phone",
            "application/x-www-form-urlencoded",
            "phone=%2B4915112345678&name=Eve+Else&customer=c-8".into(),
            false,
        )
        .await;
    let planted = form(&other)["name"].clone();
    for h2 in [false, true] {
        let sent =
            format!("phone={}&name={}&customer=c-7", PHONE.replace('+', "%2B").replace(' ', "+"), "Zo%C3%AB+O%27Brien");
        let bytes = shop.browser("/account/phone", "application/x-www-form-urlencoded", sent, h2).await;
        let stored = form(&bytes);
        let (token, name) = (stored["phone"].clone(), stored["name"].clone());
        assert_ne!(token, PHONE, "the app holds a token");
        assert!(name.starts_with("Zq") && name.ends_with("qZ") && !name.contains("Brien"), "a tagged name token");
        let body = format!(
            "Hi {name}, your parcel arrives today. Questions? We call you back on {token}, or ring +49 30 9876543. \
             (ZqNotAtokenqZ) {planted}"
        );
        let sms = json!({"recipients": [token], "body": body});
        let (status, answer) = shop.app_sends("sms", "application/json", sms.to_string()).await;
        assert_eq!(status, 200, "{answer}");
        let got: Value = serde_json::from_slice(&shop.provider_got().1).unwrap();
        assert_eq!(got["recipients"][0].as_str(), Some(PHONE), "the provider texts the real number");
        // Tokens in the text are revealed in place; a number or tag the vault does not know stays as written, and
        // so does another customer's token.
        let expected = format!(
            "Hi {NAME}, your parcel arrives today. Questions? We call you back on {PHONE}, or ring +49 30 9876543. \
             (ZqNotAtokenqZ) {planted}"
        );
        assert_eq!(got["body"].as_str(), Some(expected.as_str()));
    }
    // No recipient in the request: nothing in it is revealed (the body's name is not linked to nobody); an SMS
    // to the other customer does not show this one's name either.
    let stored = form(
        &shop
            .browser(
                "/account/phone",
                "application/x-www-form-urlencoded",
                "phone=%2B491701234567&name=Zo%C3%AB+O%27Brien&customer=c-7".into(),
                false,
            )
            .await,
    );
    for recipients in [json!([]), json!([form(&other)["phone"]])] {
        let sms = json!({"recipients": recipients, "body": format!("Hi {}", stored["name"])});
        let (status, answer) = shop.app_sends("sms", "application/json", sms.to_string()).await;
        assert_eq!(status, 200, "{answer}");
        let got: Value = serde_json::from_slice(&shop.provider_got().1).unwrap();
        assert_eq!(got["body"].as_str(), Some(format!("Hi {}", stored["name"]).as_str()), "{recipients}");
    }
}
