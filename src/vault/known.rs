//! Known values: an in-memory map (class, value fingerprint) → token, so a value tokenised again is answered
//! without a store read.
//!
//! A token handed out from here must still be live in the store. Records stop being live only by erasure or
//! purge (they become tombstones), so an entry is trusted only while all of these hold:
//! - it was read under the current *generation*, which this process bumps after every erasure or purge it does;
//! - it was read under the store's current *epoch*, which a shared store (PostgreSQL) moves whenever another
//!   process erased or purged records, and makes odd while it cannot follow them (the cache is then bypassed);
//! - its record was used within the *trust* window (at most [`super::engine::TOUCH_EVERY`] and at most the
//!   shortest retention), so a purge run by another process (`veil purge` beside the vault) cannot have taken
//!   it: a purge takes only records unused for a whole retention.
//!
//! Values enter on their second tokenisation (the first store hit), so a stream of unique values does not fill
//! memory; the map is bounded and simply cleared when full.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use dashmap::DashMap;
use tokio::sync::watch;

use crate::domain::Class;
use crate::store::Fingerprint;

/// Most entries held; a full map is cleared (entries come back on their next store hit).
const CAPACITY: usize = 65_536;

/// When an entry was read: it is valid only while both still match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    generation: u64,
    epoch: u64,
}

/// A cached token and when its record was last marked used.
#[derive(Debug, Clone)]
pub struct Hit {
    pub token: String,
    pub last_used_at: i64,
}

struct Entry {
    hit: Hit,
    stamp: Stamp,
}

pub struct Known {
    /// Keyed by keyed-HMAC fingerprints no client can choose: a fast hash (foldhash) instead of SipHash.
    map: DashMap<(Class, Fingerprint), Entry, foldhash::fast::RandomState>,
    generation: AtomicU64,
    /// The store's erasure epoch (`None`: only this process changes the store).
    epoch: Option<watch::Receiver<u64>>,
    /// Seconds since `last_used_at` an entry is trusted.
    trust: AtomicI64,
}

impl Known {
    pub fn new(epoch: Option<watch::Receiver<u64>>, trust: i64) -> Known {
        Known { map: DashMap::default(), generation: AtomicU64::new(0), epoch, trust: AtomicI64::new(trust) }
    }

    /// Narrows the trust window (e.g. to the shortest retention); it never widens.
    pub fn limit_trust(&self, secs: i64) {
        self.trust.fetch_min(secs.max(0), Ordering::Relaxed);
    }

    /// The stamp to read the store under, or `None` while the cache may not be used (the store's erasures
    /// cannot be followed right now). Take it *before* the store read whose results are [`Known::put`].
    pub fn stamp(&self) -> Option<Stamp> {
        let epoch = self.epoch.as_ref().map_or(0, |rx| *rx.borrow());
        epoch.is_multiple_of(2).then(|| Stamp { generation: self.generation.load(Ordering::Acquire), epoch })
    }

    /// The token for a value, if known, read under `stamp` and used recently enough at `now`.
    pub fn get(&self, stamp: Stamp, class: Class, fp: &Fingerprint, now: i64) -> Option<Hit> {
        let entry = self.map.get(&(class, *fp))?;
        let fresh = now - entry.hit.last_used_at < self.trust.load(Ordering::Relaxed);
        (entry.stamp == stamp && fresh).then(|| entry.hit.clone())
    }

    /// Remembers a live record read under `stamp` (a no-op if an erasure has moved the stamp on since).
    pub fn put(&self, stamp: Stamp, class: Class, fp: Fingerprint, hit: Hit) {
        if self.map.len() >= CAPACITY {
            self.map.clear();
        }
        self.map.insert((class, fp), Entry { hit, stamp });
    }

    /// Forgets everything: records may have become tombstones (an erasure or purge in this process).
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.map.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: Fingerprint = [7; 32];

    fn hit(token: &str, at: i64) -> Hit {
        Hit { token: token.into(), last_used_at: at }
    }

    #[test]
    fn a_put_value_is_found_under_its_stamp() {
        let k = Known::new(None, 3600);
        let s = k.stamp().unwrap();
        assert!(k.get(s, Class::Pan, &FP, 100).is_none());
        k.put(s, Class::Pan, FP, hit("tok", 100));
        assert_eq!(k.get(s, Class::Pan, &FP, 100).unwrap().token, "tok");
        assert!(k.get(s, Class::Email, &FP, 100).is_none(), "classes are separate");
    }

    #[test]
    fn invalidation_drops_entries_and_refuses_puts_read_before_it() {
        let k = Known::new(None, 3600);
        let before = k.stamp().unwrap();
        k.put(before, Class::Pan, FP, hit("tok", 100));
        k.invalidate();
        let after = k.stamp().unwrap();
        assert!(k.get(after, Class::Pan, &FP, 100).is_none());
        // A store read that started before the erasure finishes after it: its result must not be trusted.
        k.put(before, Class::Pan, FP, hit("stale", 100));
        assert!(k.get(after, Class::Pan, &FP, 100).is_none());
    }

    #[test]
    fn entries_expire_with_the_trust_window_which_only_narrows() {
        let k = Known::new(None, 3600);
        let s = k.stamp().unwrap();
        k.put(s, Class::Pan, FP, hit("tok", 1000));
        assert!(k.get(s, Class::Pan, &FP, 1000 + 3599).is_some());
        assert!(k.get(s, Class::Pan, &FP, 1000 + 3600).is_none());
        k.limit_trust(60);
        assert!(k.get(s, Class::Pan, &FP, 1000 + 60).is_none());
        k.limit_trust(7200);
        assert!(k.get(s, Class::Pan, &FP, 1000 + 61).is_none(), "the window never widens");
        assert!(k.get(s, Class::Pan, &FP, 1000 + 59).is_some());
    }

    #[test]
    fn the_store_epoch_gates_the_cache() {
        let (tx, rx) = watch::channel(1u64);
        let k = Known::new(Some(rx), 3600);
        assert!(k.stamp().is_none(), "odd epoch: the store's erasures cannot be followed");
        tx.send_replace(2);
        let s = k.stamp().unwrap();
        k.put(s, Class::Pan, FP, hit("tok", 100));
        assert!(k.get(k.stamp().unwrap(), Class::Pan, &FP, 100).is_some());
        tx.send_replace(4); // another process erased something
        assert!(k.get(k.stamp().unwrap(), Class::Pan, &FP, 100).is_none());
    }

    #[test]
    fn a_full_map_is_cleared() {
        let k = Known::new(None, 3600);
        let s = k.stamp().unwrap();
        for i in 0..CAPACITY {
            let mut fp = [0u8; 32];
            fp[..8].copy_from_slice(&(i as u64).to_le_bytes());
            k.put(s, Class::Pan, fp, hit("t", 0));
        }
        assert_eq!(k.map.len(), CAPACITY);
        k.put(s, Class::Pan, FP, hit("t", 0));
        assert_eq!(k.map.len(), 1);
    }
}
