//! The subject links this process wrote recently: a repeated tokenisation for the same subject then needs no
//! durable write. Only a cache: a link missing here is written again (an idempotent upsert), never lost.
//!
//! Kept by subject, so asking about a (subject, class, token) allocates nothing: the proxy asks once per field of
//! every request that names a subject.

use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;

use crate::store::Fingerprint;

/// How long a link this process wrote is trusted without writing it again (another replica's erasure of the
/// subject is seen after at most this long).
const LINK_FRESH: i64 = 60;

/// Bound on remembered links; beyond it the memory is simply cleared. A link costs ~100 bytes (two short strings
/// and a time, in its subject's list), a subject ~100 more: 8,192 links hold this memory to ~1–2 MiB when every
/// request brings a new subject. A repeated subject is remembered as long as fewer than ~2,000 other four-field
/// checkouts come between.
const LINKS_REMEMBERED: usize = 8_192;

/// Links remembered per subject; the oldest go first beyond it (a subject with many tokens re-links some).
const PER_SUBJECT: usize = 64;

/// One remembered link: class, token, when it was written.
struct Link {
    class: String,
    token: String,
    at: i64,
}

#[derive(Default)]
pub struct Links {
    /// Keyed by keyed-HMAC fingerprints no client can choose: a fast hash (foldhash) instead of SipHash.
    by_subject: DashMap<Fingerprint, Vec<Link>, foldhash::fast::RandomState>,
    /// Links held, over all subjects (kept beside the map, which counts subjects).
    count: AtomicUsize,
}

impl Links {
    /// Was this link written by this process less than [`LINK_FRESH`] seconds before `now`?
    pub fn fresh(&self, subject: &Fingerprint, class: &str, token: &str, now: i64) -> bool {
        self.by_subject
            .get(subject)
            .is_some_and(|links| links.iter().any(|l| l.token == token && l.class == class && now - l.at < LINK_FRESH))
    }

    /// Remembers `links` (class, token) as written for `subject` at `now`.
    pub fn remember(&self, subject: Fingerprint, links: Vec<(String, String)>, now: i64) {
        if links.is_empty() {
            return;
        }
        if self.count.load(Ordering::Relaxed) + links.len() > LINKS_REMEMBERED {
            self.by_subject.clear();
            self.count.store(0, Ordering::Relaxed);
        }
        let mut list = self.by_subject.entry(subject).or_default();
        let before = list.len();
        for (class, token) in links {
            match list.iter_mut().find(|l| l.token == token && l.class == class) {
                Some(l) => l.at = now,
                None => {
                    if list.len() >= PER_SUBJECT {
                        list.remove(0);
                    }
                    list.push(Link { class, token, at: now });
                }
            }
        }
        // A list only grows or stays (a link dropped beyond the bound makes room for one added).
        self.count.fetch_add(list.len().saturating_sub(before), Ordering::Relaxed);
    }

    /// Forgets the links remembered for `subject` (its erasure removed them from the store).
    pub fn forget(&self, subject: &Fingerprint) {
        if let Some((_, list)) = self.by_subject.remove(subject) {
            // Saturating: a concurrent clear may have zeroed the count since these links were added.
            let _ =
                self.count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| Some(c.saturating_sub(list.len())));
        }
    }

    /// Links held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn links(n: usize) -> Vec<(String, String)> {
        (0..n).map(|i| ("email".to_string(), format!("t{i}"))).collect()
    }

    #[test]
    fn a_link_is_fresh_for_its_subject_class_and_token_only_and_for_a_while() {
        let l = Links::default();
        l.remember([1; 32], vec![("pan".into(), "4111".into())], 100);
        assert!(l.fresh(&[1; 32], "pan", "4111", 100));
        assert!(l.fresh(&[1; 32], "pan", "4111", 100 + LINK_FRESH - 1));
        assert!(!l.fresh(&[1; 32], "pan", "4111", 100 + LINK_FRESH), "stale");
        assert!(!l.fresh(&[2; 32], "pan", "4111", 100), "another subject");
        assert!(!l.fresh(&[1; 32], "iban", "4111", 100), "another class");
        assert!(!l.fresh(&[1; 32], "pan", "4112", 100), "another token");
        l.remember([1; 32], vec![("pan".into(), "4111".into())], 200);
        assert!(l.fresh(&[1; 32], "pan", "4111", 200 + LINK_FRESH - 1), "written again: fresh again");
        assert_eq!(l.len(), 1, "the same link is held once");
        l.forget(&[1; 32]);
        assert!(!l.fresh(&[1; 32], "pan", "4111", 200));
        assert_eq!(l.len(), 0);
    }

    /// The remembered links never exceed their bound: a full memory is cleared, and the links of the call that
    /// filled it are remembered afresh; one subject holds at most [`PER_SUBJECT`].
    #[test]
    fn remembered_links_stay_within_their_bounds() {
        let l = Links::default();
        for s in 0..LINKS_REMEMBERED / 4 {
            let mut subject = [0u8; 32];
            subject[..8].copy_from_slice(&(s as u64).to_le_bytes());
            l.remember(subject, links(4), 0);
        }
        assert_eq!(l.len(), LINKS_REMEMBERED);
        l.remember([255; 32], links(4), 0);
        assert_eq!(l.len(), 4, "a full memory is cleared before the new links");
        assert!(l.fresh(&[255; 32], "email", "t3", 0));
        l.remember([254; 32], links(PER_SUBJECT + 10), 0);
        assert_eq!(l.len(), 4 + PER_SUBJECT);
        assert!(!l.fresh(&[254; 32], "email", "t0", 0), "the oldest went first");
        assert!(l.fresh(&[254; 32], "email", &format!("t{}", PER_SUBJECT + 9), 0));
    }
}
