//! Criterion micro-benchmarks of veil's hot-path pieces, through the crate's public API only: each token format,
//! AES-256-GCM-SIV seal/open of a short field (with and without subkey derivation), keyed fingerprints, JSON and
//! form rewrites of a 1 KiB checkout body with four fields, free-text detection over 10 KiB, and the embedded
//! store's durable inserts (single, batched, group-committed) and lookups.
//! Run: `cargo bench --bench micro` (add `-- --quick` for a fast pass); CI only builds it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use veil::crypto::aead::Sealer;
use veil::crypto::{KeySet, Keyring};
use veil::domain::Class;
use veil::rewrite::form::FormDoc;
use veil::rewrite::json::JsonDoc;
use veil::rewrite::select::JsonPath;
use veil::rewrite::{Edit, Found};
use veil::store::sqlite::{SqliteOptions, SqliteStore};
use veil::store::{Record, Store};
use veil::token::{self, ClassFormats};

const MASTER: [u8; 32] = [42; 32];

/// One sample value per class (as a client would send it).
const SAMPLES: &[(Class, &str)] = &[
    (Class::Pan, "4111 1111 1111 1111"),
    (Class::Iban, "DE89 3704 0044 0532 0130 00"),
    (Class::Email, "jane.doe@example.org"),
    (Class::Phone, "+49 151 23456789"),
    (Class::Name, "Jane Doe"),
    (Class::Address, "42 Main Street, 12345 Springfield"),
    (Class::Text, "allergic to nuts, ring twice"),
];

fn keyset() -> KeySet {
    match KeySet::derive(&Keyring::from_keys([(1, MASTER)]), &Class::names()) {
        Ok(k) => k,
        Err(e) => panic!("key derivation: {e}"),
    }
}

/// What the engine does per new value: parse (shape + canonical form), validate (checksums), draw a token.
fn token_formats(c: &mut Criterion) {
    let mut g = c.benchmark_group("token");
    let formats = ClassFormats::default();
    for &(class, value) in SAMPLES {
        g.bench_function(class.name(), |b| {
            let mut rng = rand::thread_rng();
            b.iter(|| {
                let parsed = token::parse(class, black_box(value)).ok()?;
                token::validate(class, &parsed.canonical).ok()?;
                let token = token::generate(class, &formats, &parsed.canonical, 0, &mut rng);
                Some(parsed.layout.render(&token))
            })
        });
    }
    g.finish();
}

fn crypto(c: &mut Criterion) {
    let mut g = c.benchmark_group("crypto");
    let ring = Keyring::from_keys([(1, MASTER)]);
    let keys = keyset();
    let value = b"4111111111111111";
    let token = "4111118304731111";
    let Some(sealer) = keys.sealer("pan", 1) else { panic!("no pan sealer") };
    let Ok(sealed) = sealer.seal("pan", token, 1, value) else { panic!("seal failed") };

    g.bench_function("hkdf_subkey_derivation", |b| {
        b.iter(|| ring.derive(black_box("seal"), black_box("pan"), 1).map(|k| Sealer::new(k.expose())))
    });
    g.bench_function("seal_pan_16B", |b| b.iter(|| sealer.seal("pan", token, 1, black_box(value))));
    g.bench_function("open_pan_16B", |b| b.iter(|| sealer.open("pan", token, 1, black_box(&sealed))));
    g.bench_function("derive_then_seal_and_open_pan_16B", |b| {
        b.iter(|| {
            let k = ring.derive("seal", "pan", 1)?;
            let s = Sealer::new(k.expose());
            let sealed = s.seal("pan", token, 1, black_box(value)).ok()?;
            s.open("pan", token, 1, &sealed).ok()
        })
    });
    g.bench_function("hmac_value_fingerprint_pan", |b| {
        b.iter(|| keys.value_fingerprint("pan", black_box("4111111111111111")))
    });
    g.bench_function("encrypt_action_blob_text", |b| {
        b.iter(|| keys.encrypt_blob("text", black_box("allergic to nuts")))
    });
    g.bench_function("keyset_derive_all_classes_one_version", |b| {
        b.iter(|| KeySet::derive(&ring, &Class::names()).is_ok())
    });
    g.finish();
}

/// A checkout body of about 1 KiB with a card number, an email, an IBAN and a birth date among other fields.
fn checkout_json() -> Vec<u8> {
    let mut body = serde_json::json!({
        "order": {"id": "ord-2026-000123", "currency": "EUR", "total": "129.90",
                  "items": [{"sku": "SKU-1001", "qty": 1, "price": "99.90"}, {"sku": "SKU-2002", "qty": 2, "price": "15.00"}]},
        "card": {"number": "4111 1111 1111 1111", "expiry": "12/29", "holder": "JANE DOE"},
        "customer": {"id": "cust-42", "email": "jane.doe@example.org", "birth_date": "1990-01-01",
                     "iban": "DE89370400440532013000", "address": {"street": "42 Main Street", "city": "Springfield"}},
        "comment": ""
    });
    let len = serde_json::to_vec(&body).map(|v| v.len()).unwrap_or(0);
    body["comment"] = serde_json::Value::String("x".repeat(1024usize.saturating_sub(len)));
    serde_json::to_vec(&body).unwrap_or_default()
}

fn checkout_form() -> Vec<u8> {
    let mut body = String::from(
        "order=ord-2026-000123&currency=EUR&total=129.90&card=4111+1111+1111+1111&expiry=12%2F29&holder=JANE+DOE\
         &email=jane.doe%40example.org&birth_date=1990-01-01&iban=DE89370400440532013000&street=42+Main+Street\
         &city=Springfield&comment=",
    );
    while body.len() < 1024 {
        body.push('x');
    }
    body.into_bytes()
}

/// Replacement per found value: a same-length stand-in token, or removal for the birth date (field 3).
fn edits(found: &[Found]) -> Vec<Edit> {
    found
        .iter()
        .map(|f| match f.origin {
            veil::rewrite::Origin::Field(3) => Edit::Remove,
            _ => Edit::Replace("9".repeat(f.value.len())),
        })
        .collect()
}

fn rewrite(c: &mut Criterion) {
    let mut g = c.benchmark_group("rewrite");
    let json = checkout_json();
    let paths: Vec<JsonPath> = ["$.card.number", "$.customer.email", "$.customer.iban", "$.customer.birth_date"]
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect();
    let path_refs: Vec<&JsonPath> = paths.iter().collect();
    g.throughput(Throughput::Bytes(json.len() as u64));
    for (name, detect) in
        [("json_1KiB_4_fields", &[][..]), ("json_1KiB_4_fields_detect_pan_iban", &[Class::Pan, Class::Iban][..])]
    {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut doc = JsonDoc::parse(black_box(&json)).ok()?;
                let found = doc.find(&path_refs, detect).ok()?;
                doc.apply(&edits(&found)).ok()
            })
        });
    }
    let form = checkout_form();
    let names = ["card", "email", "iban", "birth_date"];
    g.throughput(Throughput::Bytes(form.len() as u64));
    g.bench_function("form_1KiB_4_fields", |b| {
        b.iter(|| {
            let mut doc = FormDoc::parse(black_box(&form)).ok()?;
            let found = doc.find(&names, &[]);
            doc.apply(&edits(&found)).ok()
        })
    });
    g.finish();
}

/// About 10 KiB of support-ticket prose with a card number, an IBAN, an email and a phone number in it.
fn ticket_text() -> String {
    let filler = "The customer called about order 2026-000123 placed on 12/03, total 129.90 EUR, delivery to \
                  Springfield failed twice; please call back between 9 and 17 h. ";
    let mut text = String::new();
    let secrets = [
        "card 4111 1111 1111 1111 ",
        "IBAN DE89 3704 0044 0532 0130 00 ",
        "mail jane.doe@example.org ",
        "phone +49 151 23456789 ",
    ];
    let mut i = 0;
    while text.len() < 10 * 1024 {
        text.push_str(filler);
        if i % 8 == 0 {
            text.push_str(secrets[(i / 8) % secrets.len()]);
        }
        i += 1;
    }
    text
}

fn detection(c: &mut Criterion) {
    let mut g = c.benchmark_group("detect");
    let text = ticket_text();
    g.throughput(Throughput::Bytes(text.len() as u64));
    let all = [Class::Pan, Class::Iban, Class::Email, Class::Phone];
    g.bench_function("text_10KiB_pan_iban_email_phone", |b| b.iter(|| veil::detect::find(black_box(&text), &all)));
    g.bench_function("text_10KiB_pan_only", |b| b.iter(|| veil::detect::find(black_box(&text), &[Class::Pan])));
    g.finish();
}

/// A unique sealed pan record: unique token and fingerprint from the counter.
fn record(keys: &KeySet, n: u64) -> Record {
    let token = format!("9{n:015}");
    let mut value_fp = [0u8; 32];
    value_fp[..8].copy_from_slice(&n.to_be_bytes());
    value_fp[8] = 0xbe;
    let sealed = keys
        .sealer("pan", 1)
        .and_then(|s| s.seal("pan", &token, 1, format!("4{n:015}").as_bytes()).ok())
        .unwrap_or_default();
    Record {
        class: "pan".into(),
        token,
        value_fp,
        fp_version: None,
        key_version: 1,
        sealed,
        created_at: 0,
        last_used_at: 0,
        gone_at: None,
    }
}

fn store(c: &mut Criterion) {
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread().enable_all().build() else { return };
    // On the target directory's disk (not a tmpfs), so that every commit pays a real fsync.
    let Ok(dir) = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")) else { return };
    let url = format!("sqlite://{}/bench.db", dir.path().display());
    let Ok(store) = rt.block_on(SqliteStore::open(&url, SqliteOptions::default())) else { return };
    let store = Arc::new(store);
    let keys = Arc::new(keyset());
    let next = Arc::new(AtomicU64::new(1));
    let fresh = |n: usize| -> Vec<Record> {
        let start = next.fetch_add(n as u64, Ordering::Relaxed);
        (start..start + n as u64).map(|i| record(&keys, i)).collect()
    };

    let mut g = c.benchmark_group("store_sqlite");
    g.sample_size(20);
    g.throughput(Throughput::Elements(1));
    g.bench_function("insert_1_durable", |b| {
        b.to_async(&rt).iter_batched(|| fresh(1), |recs| store.insert(recs), BatchSize::SmallInput)
    });
    g.throughput(Throughput::Elements(64));
    g.bench_function("insert_64_one_call_durable", |b| {
        b.to_async(&rt).iter_batched(|| fresh(64), |recs| store.insert(recs), BatchSize::SmallInput)
    });
    g.bench_function("insert_64_concurrent_group_commit", |b| {
        b.to_async(&rt).iter_batched(
            || fresh(64),
            |recs| {
                let store = store.clone();
                async move {
                    let tasks: Vec<_> = recs
                        .into_iter()
                        .map(|r| {
                            let store = store.clone();
                            tokio::spawn(async move { store.insert(vec![r]).await })
                        })
                        .collect();
                    for t in tasks {
                        let _ = t.await;
                    }
                }
            },
            BatchSize::SmallInput,
        )
    });

    // Lookups against a store of 10,000+ records.
    let base = next.load(Ordering::Relaxed);
    rt.block_on(async {
        for _ in 0..10 {
            let _ = store.insert(fresh(1000)).await;
        }
    });
    let known = record(&keys, base + 5000);
    let by_value = vec![("pan".to_owned(), known.value_fp)];
    let by_token = vec![("pan".to_owned(), known.token.clone())];
    g.throughput(Throughput::Elements(1));
    g.sample_size(50);
    g.bench_function("find_by_value_1", |b| b.to_async(&rt).iter(|| store.find_by_values(black_box(&by_value))));
    g.bench_function("find_by_token_1", |b| b.to_async(&rt).iter(|| store.find_by_tokens(black_box(&by_token))));
    let batch: Vec<(String, [u8; 32])> =
        (base + 4000..base + 4064).map(|i| ("pan".to_owned(), record(&keys, i).value_fp)).collect();
    g.throughput(Throughput::Elements(64));
    g.bench_function("find_by_value_64", |b| b.to_async(&rt).iter(|| store.find_by_values(black_box(&batch))));
    g.finish();
}

criterion_group!(benches, token_formats, crypto, rewrite, detection, store);
criterion_main!(benches);
