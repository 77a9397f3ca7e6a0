//! An in-memory filter of the keys the embedded store holds — (class, value fingerprint) and (class, token) of
//! every record — that tells tokenisation "never seen" without a store read.
//!
//! Exact-safe by construction: a key the store holds is always in the filter (added before the transaction that
//! writes it commits, and at open by a scan of the table), so "absent" is always right; "maybe" costs what the
//! store read cost before (a Bloom filter's false positives, ~1% at the sizes below). Tombstones never need a
//! key removed: their fingerprint is replaced by random bytes (the old key is a false positive from then on)
//! and their token stays taken. Until the scan at open has finished, every key answers "maybe".
//!
//! It sees only what this process writes: one process inserts records into an embedded store (the CLI's
//! purge, erasure and rewrap add no key). A scalable Bloom filter: when a layer is full, a twice larger one is
//! added; a key is looked up in every layer.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::RwLock;

use super::Fingerprint;

/// Bits per key of a layer at capacity, and probes per key: ~0.8% false positives per layer.
const BITS_PER_KEY: usize = 10;
const PROBES: u64 = 7;
/// Keys the first layer holds (a layer of 1.25 MiB).
const FIRST_CAPACITY: usize = 1 << 20;

struct Layer {
    bits: Box<[AtomicU64]>,
    capacity: usize,
    keys: AtomicUsize,
}

impl Layer {
    fn new(capacity: usize) -> Layer {
        let words = (capacity * BITS_PER_KEY).div_ceil(64).max(1);
        Layer { bits: (0..words).map(|_| AtomicU64::new(0)).collect(), capacity, keys: AtomicUsize::new(0) }
    }

    /// The bit positions of a key's hash (double hashing).
    fn probes(&self, hash: u64) -> impl Iterator<Item = (usize, u64)> + '_ {
        let n = (self.bits.len() * 64) as u64;
        let (h1, h2) = (hash & 0xffff_ffff, (hash >> 32) | 1);
        (0..PROBES).map(move |i| {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % n;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        })
    }

    fn insert(&self, hash: u64) {
        for (word, mask) in self.probes(hash) {
            self.bits[word].fetch_or(mask, Ordering::Relaxed);
        }
        self.keys.fetch_add(1, Ordering::Relaxed);
    }

    fn may_hold(&self, hash: u64) -> bool {
        self.probes(hash).all(|(word, mask)| self.bits[word].load(Ordering::Relaxed) & mask != 0)
    }
}

/// Which of a record's keys.
#[derive(Clone, Copy)]
enum Kind {
    Value = 0,
    Token = 1,
}

/// The keys one store holds (see the module's doc).
pub(crate) struct KeyFilter {
    layers: RwLock<Vec<Layer>>,
    hasher: RandomState,
    /// Set once the scan at open has added every key written before.
    ready: AtomicBool,
}

impl Default for KeyFilter {
    fn default() -> Self {
        KeyFilter::with_capacity(FIRST_CAPACITY)
    }
}

/// `found[j]` at position `at[j]` of `n` answers, `None` elsewhere (the keys the filter ruled out).
pub(crate) fn spread<T>(n: usize, at: &[usize], found: Vec<Option<T>>) -> Vec<Option<T>> {
    let mut out: Vec<Option<T>> = std::iter::repeat_with(|| None).take(n).collect();
    for (&i, r) in at.iter().zip(found) {
        out[i] = r;
    }
    out
}

impl KeyFilter {
    /// A filter whose first layer holds `capacity` keys at the designed false-positive rate.
    pub(crate) fn with_capacity(capacity: usize) -> KeyFilter {
        KeyFilter {
            layers: RwLock::new(vec![Layer::new(capacity.max(64))]),
            hasher: RandomState::new(),
            ready: AtomicBool::new(false),
        }
    }

    fn hash(&self, kind: Kind, class: &str, key: &[u8]) -> u64 {
        self.hasher.hash_one((kind as u8, class, key))
    }

    fn add(&self, hash: u64) {
        {
            let layers = self.layers.read().unwrap_or_else(|e| e.into_inner());
            if let Some(last) = layers.last().filter(|l| l.keys.load(Ordering::Relaxed) < l.capacity) {
                last.insert(hash);
                return;
            }
        }
        let mut layers = self.layers.write().unwrap_or_else(|e| e.into_inner());
        let full = layers.last().is_none_or(|l| l.keys.load(Ordering::Relaxed) >= l.capacity);
        if full {
            let capacity = layers.last().map_or(FIRST_CAPACITY, |l| l.capacity * 2);
            layers.push(Layer::new(capacity));
        }
        if let Some(last) = layers.last() {
            last.insert(hash);
        }
    }

    fn may_hold(&self, hash: u64) -> bool {
        if !self.is_ready() {
            return true;
        }
        self.layers.read().unwrap_or_else(|e| e.into_inner()).iter().any(|l| l.may_hold(hash))
    }

    /// Adds a record's keys: its value fingerprint and its token.
    pub(crate) fn add_record(&self, class: &str, token: &str, value_fp: &Fingerprint) {
        self.add(self.hash(Kind::Value, class, value_fp));
        self.add(self.hash(Kind::Token, class, token.as_bytes()));
    }

    /// `false`: no record of `class` has this value fingerprint.
    pub(crate) fn may_hold_value(&self, class: &str, fp: &Fingerprint) -> bool {
        self.may_hold(self.hash(Kind::Value, class, fp))
    }

    /// `false`: no record of `class` has this token.
    pub(crate) fn may_hold_token(&self, class: &str, token: &str) -> bool {
        self.may_hold(self.hash(Kind::Token, class, token.as_bytes()))
    }

    /// Whether "absent" answers are given (the scan at open has finished).
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Every key written before is in: "absent" answers may be given from now on.
    pub(crate) fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Positions of the value keys the filter cannot rule out.
    pub(crate) fn maybe_values(&self, keys: &[(String, Fingerprint)]) -> Vec<usize> {
        (0..keys.len()).filter(|&i| self.may_hold_value(&keys[i].0, &keys[i].1)).collect()
    }

    /// Positions of the token keys the filter cannot rule out.
    pub(crate) fn maybe_tokens(&self, keys: &[(String, String)]) -> Vec<usize> {
        (0..keys.len()).filter(|&i| self.may_hold_token(&keys[i].0, &keys[i].1)).collect()
    }

    /// Bytes of bits held (for the README's memory account and tests).
    pub(crate) fn bytes(&self) -> usize {
        self.layers.read().unwrap_or_else(|e| e.into_inner()).iter().map(|l| l.bits.len() * 8).sum()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nothing_is_absent_before_the_filter_is_ready() {
        let f = KeyFilter::default();
        assert!(f.may_hold_value("pan", &[1; 32]));
        assert!(f.may_hold_token("pan", "x"));
        f.set_ready();
        assert!(!f.may_hold_value("pan", &[1; 32]));
        assert!(!f.may_hold_token("pan", "x"));
    }

    #[test]
    fn keys_are_per_class_and_kind_and_layers_grow() {
        let f = KeyFilter::with_capacity(64);
        f.set_ready();
        f.add_record("pan", "4111", &[7; 32]);
        assert!(f.may_hold_token("pan", "4111") && f.may_hold_value("pan", &[7; 32]));
        // The token is no value key, nor another class's: almost surely absent (one false positive is allowed).
        let absent = [
            f.may_hold_value("pan", &{
                let mut fp = [0; 32];
                fp[..4].copy_from_slice(b"4111");
                fp
            }),
            f.may_hold_token("iban", "4111"),
            f.may_hold_value("iban", &[7; 32]),
        ];
        assert!(absent.iter().filter(|a| **a).count() <= 1, "{absent:?}");
        for i in 0..1000u32 {
            f.add_record("email", &i.to_string(), &[0; 32]);
        }
        assert!(f.layers.read().unwrap().len() > 3, "full layers are followed by larger ones");
        assert!((0..1000u32).all(|i| f.may_hold_token("email", &i.to_string())));
    }

    #[test]
    fn false_positives_stay_near_the_design_rate() {
        let f = KeyFilter::with_capacity(20_000);
        f.set_ready();
        for i in 0..20_000u32 {
            f.add_record("email", &format!("t{i}"), &[0; 32]);
        }
        let fp = (0..20_000u32).filter(|i| f.may_hold_token("email", &format!("u{i}"))).count();
        assert!(fp < 400, "{fp} false positives in 20,000 (design ~1%)");
    }

    proptest! {
        /// Whatever was added is never reported absent (no false negatives), whatever the layer sizes.
        #[test]
        fn an_added_key_is_never_absent(
            keys in proptest::collection::vec((0u8..3, any::<[u8; 32]>(), "[a-z0-9]{1,12}"), 1..300),
            capacity in 64usize..512,
        ) {
            let f = KeyFilter::with_capacity(capacity);
            f.set_ready();
            let classes = ["pan", "iban", "email"];
            for (c, fp, token) in &keys {
                f.add_record(classes[*c as usize], token, fp);
            }
            for (c, fp, token) in &keys {
                prop_assert!(f.may_hold_value(classes[*c as usize], fp));
                prop_assert!(f.may_hold_token(classes[*c as usize], token));
            }
        }
    }
}
