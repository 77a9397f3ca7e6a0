//! The tokenisation oracle and the token-space flood (issue 20), tried as the attacks were found: a caller that may
//! only tokenise walks a card's candidates through the API; an attacker who reads the app's database walks them
//! through the public checkout; an anonymous client floods one BIN + last four, then real cards of that range are
//! sent. Each asserts on what the attacker and the app got. Also: the budgets behind the defences (caller, client
//! address through trusted proxies, card range), and tokens drawn afresh per class.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use serde_json::{json, Value};

/// The victim's card, and the range (BIN 555555, last four 4444) the attacks walk.
const BIN: &str = "555555";
const LAST4: &str = "4444";

const ROUTES: &str = r#"
[[route]]
name = "checkout"
match = { methods = ["POST"], path = "/checkout" }
fields = [ { json = "$.cards[*]", class = "pan" } ]
subject = { json = "$.customer" }

[[route]]
name = "signup"
match = { methods = ["POST"], path = "/signup" }
fields = [ { json = "$.name", class = "name" }, { json = "$.email", class = "email" }, { json = "$.card", class = "pan" } ]
subject = { json = "$.customer" }

[[route]]
name = "notes"
match = { path = "/notes" }
detect = ["pan"]
"#;

/// Luhn-valid cards of the range, in the order an attacker walks them (middle digits counting up).
fn range() -> impl Iterator<Item = String> {
    (0..1_000_000u32).map(|m| format!("{BIN}{m:06}{LAST4}")).filter(|c| luhn_valid(c))
}

/// The victim's card: the 200th candidate of the walk (today's main hands it over within 4 batches of 50).
fn victim() -> String {
    range().nth(200).unwrap()
}

struct Veil {
    _dir: tempfile::TempDir,
    running: veil::app::Running,
    app: App,
}

impl Veil {
    /// veil with a proxy (plain HTTP) and the vault API; `extra` goes into `[proxy]`, `tail` after everything.
    async fn start(extra: &str, tail: &str) -> Veil {
        let app = App::start().await;
        let dir = tempfile::tempdir().unwrap();
        veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
        let text = format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{}\"\n{extra}\n{}\n{ROUTES}\n{tail}",
            app.addr,
            config_text(dir.path(), false, None)
        );
        let cfg = veil::config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let running = veil::app::start(cfg, veil::vault::engine::system_clock()).await.unwrap();
        Veil { _dir: dir, running, app }
    }

    fn api(&self) -> Client {
        Client::plain(self.running.vault_addr.unwrap())
    }

    async fn tokenize(&self, key: &str, cards: &[String]) -> (u16, Value) {
        let items: Vec<Value> = cards.iter().map(|c| json!({"class": "pan", "value": c})).collect();
        self.api().post_json("/v1/tokenize", key, &json!({ "items": items })).await
    }

    /// POSTs `body` (JSON) to the proxy from the loopback address, with these extra headers.
    async fn post(&self, path: &str, headers: &[(&str, &str)], body: &Value) -> (u16, http::HeaderMap, Value) {
        let mut req = hyper::Request::post(format!("http://localhost{path}"))
            .header("host", "localhost")
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
        let (status, headers, body) = send_request(self.proxy(), None, false, req).await.unwrap();
        (status, headers, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    fn proxy(&self) -> SocketAddr {
        self.running.proxy_addr.unwrap()
    }

    /// The cards (tokens) the app received in its last checkout.
    fn last_checkout(&self) -> Vec<String> {
        let seen = self.app.requests();
        let body: Value = serde_json::from_slice(&seen.last().unwrap().body).unwrap();
        body["cards"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect()
    }

    async fn metric(&self, series: &str) -> f64 {
        let (_, text) = get(self.running.admin_addr.unwrap(), "/metrics").await;
        text.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
    }
}

fn tokens(body: &Value) -> Vec<String> {
    body["items"].as_array().unwrap().iter().map(|i| i["token"].as_str().unwrap().to_owned()).collect()
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("-")
}

#[tokio::test]
async fn walking_a_cards_candidates_through_the_api_is_refused_before_it_reaches_the_card() {
    let veil = Veil::start("", "").await;
    let (status, body) = veil.tokenize(PAYMENTS_KEY, &[victim()]).await;
    assert_eq!(status, 200, "{body}");
    let target = tokens(&body).remove(0);

    // "app" may only tokenise: it walks the range comparing tokens, in batches of the vault's largest (50), and
    // on a refusal tries smaller ones down to single cards.
    let mut walk = range().take(1000);
    let (mut answered, mut refused, mut size) = (0, 0, 50);
    let mut batch: Vec<String> = Vec::new();
    loop {
        batch.extend(walk.by_ref().take(size - batch.len().min(size)));
        if batch.is_empty() {
            break;
        }
        let (status, body) = veil.tokenize(APP_KEY, &batch).await;
        match status {
            200 => {
                assert!(!tokens(&body).contains(&target), "the walk found the card behind the token");
                answered += batch.len();
                batch.clear();
            }
            429 => {
                assert_eq!(code(&body), "budget_exceeded", "{body}");
                refused += 1;
                if size == 1 {
                    break;
                }
                size /= 2;
                batch.truncate(size);
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(answered, 99, "the range's budget (100 a day, one taken by the victim) stopped the walk");
    let series = "veil_budget_refusals_total{caller=\"app\",scope=\"range\"}";
    assert_eq!(veil.metric(series).await, refused as f64, "every refusal is counted for the alert");

    // A card known to the vault is refused like a new one: the refusal tells nothing about what is held.
    let (status, _) = veil.tokenize(APP_KEY, &[victim()]).await;
    assert_eq!(status, 429, "a held card of the walked range is refused too");
    // Other ranges, and other classes, are served as before.
    let (status, body) = veil.tokenize(APP_KEY, &[random_pan("4", 16)]).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn walking_a_cards_candidates_through_the_checkout_is_refused_and_real_cards_never_pass() {
    let veil = Veil::start("", "").await;
    // The victim checks out: the app's database holds the token.
    let (status, _, body) = veil.post("/checkout", &[], &json!({ "cards": [victim()] })).await;
    assert_eq!(status, 200, "{body}");
    let target = veil.last_checkout().remove(0);

    // The attacker submits candidates through the same checkout and reads their tokens out of the database.
    let mut refusals = 0;
    for batch in range().take(1000).collect::<Vec<_>>().chunks(50) {
        let (status, headers, body) = veil.post("/checkout", &[], &json!({ "cards": batch })).await;
        match status {
            200 => {
                let got = veil.last_checkout();
                assert!(!got.contains(&target), "the walk found the card behind the token");
                assert!(batch.iter().zip(&got).all(|(card, token)| card != token), "a card reached the app in clear");
            }
            429 => {
                assert_eq!(code(&body), "budget_exceeded", "{body}");
                assert!(headers.get("retry-after").is_some(), "a refusal says when to retry");
                refusals += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(refusals >= 17, "the range's budget refused the walk: {refusals}");
    assert!(veil.metric("veil_budget_refusals_total{caller=\"proxy\",scope=\"range\"}").await >= 17.0);
    // Nothing of the walk past the budget reached the app.
    let seen = veil.app.requests();
    assert!(seen.len() <= 3, "{} checkouts reached the app", seen.len());
}

#[tokio::test]
async fn a_flood_of_one_range_never_makes_real_cards_pass_or_take_another_cards_token() {
    // The range budget lifted: what holds is the design, a card from the public side is never taken for a token.
    let veil = Veil::start("", "[class.pan]\nnew_values_per_range_per_day = 0\n").await;
    let all: Vec<String> = range().collect();
    // An anonymous client floods 10,000 cards of the range into a detecting route: 10,000 tokens in the range.
    let flood: Vec<String> = all.iter().step_by(10).take(10_000).cloned().collect();
    for batch in flood.chunks(50) {
        let (status, _, body) = veil.post("/notes", &[], &json!({ "text": batch.join(" ") })).await;
        assert_eq!(status, 200, "{body}");
    }
    let flooded: HashSet<String> = veil
        .app
        .requests()
        .iter()
        .flat_map(|s| {
            let body: Value = serde_json::from_slice(&s.body).unwrap();
            body["text"].as_str().unwrap().split(' ').map(str::to_owned).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(flooded.len(), flood.len(), "every flooded card was tokenised");

    // 1,000 real cards of the range, never sent before, check out.
    let flood_set: HashSet<&String> = flood.iter().collect();
    let real: Vec<String> = all.iter().filter(|c| !flood_set.contains(c)).step_by(7).take(1000).cloned().collect();
    let colliding = real.iter().filter(|c| flooded.contains(*c)).count();
    assert!(colliding > 50, "the flood's tokens cover real cards of the range ({colliding} of 1,000)");
    let mut given: HashMap<String, String> = HashMap::new();
    for batch in real.chunks(50) {
        let (status, _, body) = veil.post("/checkout", &[], &json!({ "cards": batch })).await;
        assert_eq!(status, 200, "{body}");
        for (card, token) in batch.iter().zip(veil.last_checkout()) {
            assert_ne!(card, &token, "a real card reached the app in clear");
            assert!(!flooded.contains(&token), "a real card was answered with a flooded card's token");
            given.insert(token, card.clone());
        }
    }
    // Each token the app got reveals the card that was sent, not another.
    let pairs: Vec<(String, String)> = given.into_iter().collect();
    for chunk in pairs.chunks(50) {
        let items: Vec<Value> = chunk.iter().map(|(t, _)| json!({"class": "pan", "token": t})).collect();
        let (status, body) = veil.api().post_json("/v1/detokenize", PAYMENTS_KEY, &json!({ "items": items })).await;
        assert_eq!(status, 200, "{body}");
        for ((_, card), item) in chunk.iter().zip(body["items"].as_array().unwrap()) {
            assert_eq!(item["value"].as_str(), Some(card.as_str()));
        }
    }
}

#[tokio::test]
async fn a_client_budget_follows_the_address_a_trusted_proxy_names() {
    let veil = Veil::start("new_values_per_hour = 5\ntrusted_proxies = [\"127.0.0.0/8\"]", "").await;
    let alice = [("x-forwarded-for", "198.51.100.1")];
    let cards = |n: usize| (0..n).map(|_| random_pan("4", 16)).collect::<Vec<_>>();
    let (status, _, body) = veil.post("/checkout", &alice, &json!({ "cards": cards(4) })).await;
    assert_eq!(status, 200, "{body}");
    // Two more would pass the five: the whole request is refused, nothing forwarded or stored.
    let before = veil.app.requests().len();
    let (status, headers, body) = veil.post("/checkout", &alice, &json!({ "cards": cards(2) })).await;
    assert_eq!((status, code(&body)), (429, "budget_exceeded"), "{body}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((600..=720).contains(&retry), "one more value takes 12 minutes at 5 an hour: {retry}");
    assert_eq!(veil.app.requests().len(), before);
    // Known cards cost the same as new ones (a refusal must not tell which are held).
    let (status, _, _) = veil.post("/checkout", &alice, &json!({ "cards": cards(1) })).await;
    assert_eq!(status, 200, "the fifth fits");
    let known = veil.last_checkout();
    let (status, _, _) = veil.post("/checkout", &alice, &json!({ "cards": known })).await;
    assert_eq!(status, 429, "a sixth, even one the vault holds, does not");
    // Another client behind the same proxy has its own budget; one that forges the header gets the address the
    // trusted proxy appended.
    let bob = [("x-forwarded-for", "198.51.100.1, 203.0.113.5")];
    let (status, _, body) = veil.post("/checkout", &bob, &json!({ "cards": cards(5) })).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = veil.post("/checkout", &bob, &json!({ "cards": cards(1) })).await;
    assert_eq!(status, 429);
    // Values of large classes are not budgeted.
    let (status, _, body) = veil.post("/notes", &alice, &json!({ "text": "mail jane.doe@example.org" })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(veil.metric("veil_budget_refusals_total{caller=\"-\",scope=\"client\"}").await, 3.0);
}

#[tokio::test]
async fn a_caller_budget_refuses_whole_batches() {
    let veil = {
        let app = App::start().await;
        let dir = tempfile::tempdir().unwrap();
        veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
        let text = config_text(dir.path(), false, None).replace(
            "allow = [\"tokenize:*\", \"mask:pan\"]",
            "allow = [\"tokenize:*\", \"mask:pan\"]\nnew_values_per_minute = 10",
        );
        let cfg = veil::config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let running = veil::app::start(cfg, veil::vault::engine::system_clock()).await.unwrap();
        Veil { _dir: dir, running, app }
    };
    let cards: Vec<String> = (0..8).map(|_| random_pan("4", 16)).collect();
    let (status, body) = veil.tokenize(APP_KEY, &cards).await;
    assert_eq!(status, 200, "{body}");
    let mut more: Vec<String> = (0..3).map(|_| random_pan("5", 16)).collect();
    let (status, body) = veil.tokenize(APP_KEY, &more).await;
    assert_eq!((status, code(&body)), (429, "budget_exceeded"), "{body}");
    // A refused batch costs nothing: two of the three still fit.
    more.truncate(2);
    let (status, body) = veil.tokenize(APP_KEY, &more).await;
    assert_eq!(status, 200, "the two that still fit: {body}");
    let (status, _) = veil.tokenize(APP_KEY, &cards[..1]).await;
    assert_eq!(status, 429, "a card the vault holds costs the same as a new one");
    let (status, body) = veil.tokenize(PAYMENTS_KEY, &cards).await;
    assert_eq!(status, 200, "another caller has its own budget: {body}");
    let emails = json!({"items": [{"class": "email", "value": "jane.doe@example.org"}]});
    let (status, body) = veil.api().post_json("/v1/tokenize", APP_KEY, &emails).await;
    assert_eq!(status, 200, "large classes are not budgeted: {body}");
    assert_eq!(veil.metric("veil_budget_refusals_total{caller=\"app\",scope=\"caller\"}").await, 2.0);
}

#[tokio::test]
async fn a_class_can_draw_a_fresh_token_every_time() {
    let veil = Veil::start("", "[class.pan]\ndeterministic = false\n").await;
    let card = random_pan("4", 16);
    let (_, first) = veil.tokenize(PAYMENTS_KEY, std::slice::from_ref(&card)).await;
    let (_, second) = veil.tokenize(PAYMENTS_KEY, std::slice::from_ref(&card)).await;
    let (a, b) = (tokens(&first).remove(0), tokens(&second).remove(0));
    assert_ne!(a, b, "the same card gets a new token each time: nothing to compare a walk against");
    for t in [&a, &b] {
        let items = json!({"items": [{"class": "pan", "token": t}]});
        let (status, body) = veil.api().post_json("/v1/detokenize", PAYMENTS_KEY, &items).await;
        assert_eq!((status, body["items"][0]["value"].as_str()), (200, Some(card.as_str())));
    }
    let (_, again) = veil.tokenize(PAYMENTS_KEY, std::slice::from_ref(&a)).await;
    assert_eq!(tokens(&again), vec![a], "a token sent to the API is still that token");
}

#[tokio::test]
async fn a_distinguishable_token_sent_back_by_its_owner_stays_itself_and_a_real_looking_one_does_not() {
    for (format, idempotent) in [("last4-reserved", true), ("keep-bin-last4", false)] {
        let veil = Veil::start("", &format!("[class.pan]\nformat = \"{format}\"\n")).await;
        let card = random_pan("4", 16);
        let (status, _, _) = veil.post("/checkout", &[], &json!({ "cards": [card], "customer": "c1" })).await;
        assert_eq!(status, 200);
        let token = veil.last_checkout().remove(0);
        // The app shows the token in the customer's form, and their browser posts it back.
        let (status, _, _) = veil.post("/checkout", &[], &json!({ "cards": [token], "customer": "c1" })).await;
        assert_eq!(status, 200);
        let again = veil.last_checkout().remove(0);
        assert_eq!(again == token, idempotent, "{format}: {token} came back as {again}");
        // Through the API, the app's own trusted channel, a token is that token in every format.
        let (_, body) = veil.tokenize(PAYMENTS_KEY, std::slice::from_ref(&token)).await;
        assert_eq!(tokens(&body), vec![token], "{format}");
    }
}

/// Someone who read the app's database (or a receipt, or a mail) holds the victim's tokens. Posted as their own
/// card, name or e-mail, a token must not become theirs: the egress would put the victim's card into their
/// payment, the mail would write the victim's name into their order confirmation. Whatever the app receives
/// instead reveals, at most, the token the attacker already had.
#[tokio::test]
async fn a_token_posted_by_someone_it_is_not_linked_to_never_stands_for_its_value() {
    let tail = "[class.pan]\nformat = \"last4-reserved\"\n[class.name]\nformat = \"tagged\"\n\
                [class.email]\nformat = \"relay\"\nrelay_domain = \"relay.shop.example\"\n";
    let veil = Veil::start("", tail).await;
    let victim = json!({ "name": "Jane Doe", "email": "jane@example.org", "card": random_pan("4", 16),
                         "customer": "victim" });
    let (status, _, _) = veil.post("/signup", &[], &victim).await;
    assert_eq!(status, 200);
    let leaked: Value = serde_json::from_slice(&veil.app.requests().last().unwrap().body).unwrap();
    let reveal = |class: &str, token: &str| json!({ "items": [{ "class": class, "token": token }], "purpose": "t" });
    for attacker in [Some("attacker"), None] {
        let mut body = leaked.clone();
        match attacker {
            Some(id) => body["customer"] = json!(id),
            None => drop(body.as_object_mut().unwrap().remove("customer")),
        }
        let (status, _, answer) = veil.post("/signup", &[], &body).await;
        let got: Value = serde_json::from_slice(&veil.app.requests().last().unwrap().body).unwrap();
        for (field, class) in [("name", "name"), ("email", "email"), ("card", "pan")] {
            let token = leaked[field].as_str().unwrap();
            if status != 200 {
                // Refused (a reserved card is no card): nothing reached the app.
                assert_eq!(status, 422, "{attacker:?}: {answer}");
                continue;
            }
            let theirs = got[field].as_str().unwrap();
            assert_ne!(theirs, token, "{attacker:?}: the victim's {field} token was taken as theirs");
            let (_, shown) = veil.api().post_json("/v1/detokenize", PAYMENTS_KEY, &reveal(class, theirs)).await;
            assert_ne!(shown["items"][0]["value"], victim[field], "{attacker:?}: {field} revealed the victim's value");
        }
    }
    // The victim's own re-posted form still carries the victim's tokens.
    let (status, _, _) = veil.post("/signup", &[], &leaked).await;
    assert_eq!(status, 200);
    let got: Value = serde_json::from_slice(&veil.app.requests().last().unwrap().body).unwrap();
    for field in ["name", "email", "card"] {
        assert_eq!(got[field], leaked[field], "the owner's {field} token stays itself");
    }
}
