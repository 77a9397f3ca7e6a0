//! Budgets of new values (the tokenisation oracle, issue 20): a token bucket per key — a vault caller, an ingress
//! client's address — from which a tokenisation reserves what it may add before the vault is asked, and gives
//! back what it did not use when it is done. Reserving first means concurrent requests cannot overspend, and a
//! request that is refused (or fails) costs nothing.

use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// How many new values a key may add per period; a key's bucket holds one period's worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub amount: u32,
    pub per: Duration,
}

impl Rate {
    pub fn per_minute(amount: u32) -> Rate {
        Rate { amount, per: Duration::from_secs(60) }
    }

    pub fn per_hour(amount: u32) -> Rate {
        Rate { amount, per: Duration::from_secs(3600) }
    }

    fn per_sec(self) -> f64 {
        f64::from(self.amount) / self.per.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

struct Bucket {
    level: f64,
    at: Instant,
    rate: Rate,
}

impl Bucket {
    /// The level now, refilled since it was last looked at.
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + elapsed * self.rate.per_sec()).min(self.cap());
        self.at = now;
    }

    fn cap(&self) -> f64 {
        f64::from(self.rate.amount)
    }
}

/// Keys held before buckets that are full again (they say nothing) are swept out.
const SWEEP_AT: usize = 16_384;
/// Most keys held at once: past it, new keys share one bucket, so a flood of addresses degrades to one budget
/// for the newcomers rather than unbounded memory.
const MAX_KEYS: usize = 1 << 20;

/// One bucket per key (`None`: the shared bucket of keys past [`MAX_KEYS`]).
pub struct Budgets<K: Hash + Eq> {
    buckets: DashMap<Option<K>, Bucket>,
    next_sweep: AtomicUsize,
}

impl<K: Hash + Eq + Clone> Default for Budgets<K> {
    fn default() -> Self {
        Budgets { buckets: DashMap::new(), next_sweep: AtomicUsize::new(SWEEP_AT) }
    }
}

impl<K: Hash + Eq + Clone> Budgets<K> {
    /// Takes up to `want` from `key`'s bucket: the reservation holds what was granted (possibly less, or none).
    /// Whatever it does not [`Reservation::spend`] goes back when it is dropped.
    pub fn reserve(&self, key: &K, rate: Rate, want: usize) -> Reservation<'_, K> {
        self.reserve_at(key, rate, want, Instant::now())
    }

    fn reserve_at(&self, key: &K, rate: Rate, want: usize, now: Instant) -> Reservation<'_, K> {
        let slot = self.slot(key, now);
        let full = || Bucket { level: f64::from(rate.amount), at: now, rate };
        let mut bucket = self.buckets.entry(slot.clone()).or_insert_with(full);
        bucket.refill(now);
        bucket.rate = rate;
        let granted = (want as f64).min(bucket.level.floor()).max(0.0);
        bucket.level -= granted;
        // Seconds until the rest of `want` would be there: for a Retry-After.
        let short = want as f64 - granted;
        let wait = if short > 0.0 { ((short - bucket.level) / rate.per_sec()).ceil().max(1.0) } else { 0.0 };
        drop(bucket);
        Reservation { budgets: self, slot, granted: granted as usize, spent: 0, retry_after: wait as u64 }
    }

    /// The map key for `key`: its own while there is room, else the shared one.
    fn slot(&self, key: &K, now: Instant) -> Option<K> {
        let slot = Some(key.clone());
        if self.buckets.contains_key(&slot) {
            return slot;
        }
        if self.buckets.len() >= self.next_sweep.load(Ordering::Relaxed) {
            self.buckets.retain(|k, b| {
                b.refill(now);
                k.is_none() || b.level < b.cap()
            });
            self.next_sweep.store((self.buckets.len() * 2).max(SWEEP_AT), Ordering::Relaxed);
        }
        if self.buckets.len() >= MAX_KEYS {
            None
        } else {
            slot
        }
    }

    fn refund(&self, slot: &Option<K>, amount: usize) {
        if amount == 0 {
            return;
        }
        if let Some(mut b) = self.buckets.get_mut(slot) {
            b.level = (b.level + amount as f64).min(b.cap());
        }
    }

    /// Keys currently held (for tests and the sweep).
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// New values taken from a budget for one tokenisation.
pub struct Reservation<'a, K: Hash + Eq + Clone> {
    budgets: &'a Budgets<K>,
    slot: Option<K>,
    granted: usize,
    spent: usize,
    retry_after: u64,
}

impl<K: Hash + Eq + Clone> Reservation<'_, K> {
    /// How many new values the tokenisation may add.
    pub fn granted(&self) -> usize {
        self.granted
    }

    /// Whole seconds until the budget would have granted everything asked (0 if it did).
    pub fn retry_after(&self) -> u64 {
        self.retry_after
    }

    /// Records that `n` new values were added (at most what was granted); the rest goes back on drop.
    pub fn spend(&mut self, n: usize) {
        self.spent = n.min(self.granted);
    }
}

impl<K: Hash + Eq + Clone> Drop for Reservation<'_, K> {
    fn drop(&mut self) {
        self.budgets.refund(&self.slot, self.granted - self.spent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_grants_a_period_then_refills_over_it() {
        let b = Budgets::default();
        let rate = Rate::per_hour(30);
        let t0 = Instant::now();
        let mut r = b.reserve_at(&1u32, rate, 20, t0);
        assert_eq!(r.granted(), 20);
        r.spend(20);
        drop(r);
        let r = b.reserve_at(&1u32, rate, 20, t0);
        assert_eq!((r.granted(), r.retry_after()), (10, 1200), "10 left; 10 more take 20 minutes");
        std::mem::forget(r);
        assert_eq!(b.reserve_at(&2u32, rate, 5, t0).granted(), 5, "another key has its own bucket");
        let r = b.reserve_at(&1u32, rate, 5, t0 + Duration::from_secs(240));
        assert_eq!(r.granted(), 2, "4 minutes refill 2");
    }

    #[test]
    fn what_is_not_spent_goes_back() {
        let b = Budgets::default();
        let rate = Rate::per_minute(10);
        let t0 = Instant::now();
        let mut r = b.reserve_at(&"c", rate, 10, t0);
        r.spend(3);
        drop(r);
        assert_eq!(b.reserve_at(&"c", rate, 10, t0).granted(), 7);
        // A failed call spends nothing: dropping the reservation returns all of it.
        let r = b.reserve_at(&"d", rate, 10, t0);
        drop(r);
        assert_eq!(b.reserve_at(&"d", rate, 10, t0).granted(), 10);
    }

    #[test]
    fn concurrent_reservations_never_grant_more_than_the_bucket() {
        let b = Budgets::default();
        let rate = Rate::per_hour(30);
        let t0 = Instant::now();
        let held: Vec<_> = (0..10).map(|_| b.reserve_at(&0u8, rate, 8, t0)).collect();
        assert_eq!(held.iter().map(Reservation::granted).sum::<usize>(), 30);
    }

    #[test]
    fn full_buckets_are_swept_and_keys_past_the_cap_share_one() {
        let b = Budgets::default();
        let rate = Rate::per_minute(10);
        let t0 = Instant::now();
        for k in 0..SWEEP_AT as u32 {
            drop(b.reserve_at(&k, rate, 1, t0));
        }
        assert_eq!(b.len(), SWEEP_AT, "nothing spent: every bucket is full");
        drop(b.reserve_at(&u32::MAX, rate, 1, t0));
        assert_eq!(b.len(), 1, "full buckets were swept");
    }
}
