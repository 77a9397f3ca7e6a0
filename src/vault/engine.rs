//! The token engine: tokenise and reveal batches against a [`Store`], sealing values under derived keys.
//!
//! Tokenise, per batch: parse every value (shape) -> take the batch's cards from their card ranges' budgets
//! (before any lookup, so a refusal tells nothing about what is held) -> look the values up by keyed fingerprint
//! (deterministic: one token per value and class, unless the class draws afresh), in the same store call as the
//! candidate tokens drawn for the valid ones -> values that are themselves tokens come back unchanged
//! (idempotent; from the public side only where the format keeps tokens out of the space of real values, see
//! [`Terms::strict`]) -> validate the new ones (checksums) ->
//! seal the candidates and insert them in one durable group commit; candidates another value already holds, and
//! candidates that are themselves a value of the batch or of the vault (tokenised again, they would read as that
//! value), are redrawn. Nothing is inserted unless every value of the batch is valid, and a token is returned
//! only after its record is committed. Known values and tokens
//! tokenised again are marked used (`last_used_at`, which retention counts from; written at most once per
//! [`TOUCH_EVERY`] per record unless a subject must be linked anyway), and with a subject every token of the
//! batch is linked to it — in the same transaction as the new records.
//!
//! Values seen before are answered from memory ([`Known`]) instead of the store while that is provably safe; see
//! the `known` module.

use std::collections::HashSet;
use std::sync::Arc;

use crate::budget::{Budgets, Rate, Reservation};
use crate::vault::links::Links;

use crate::crypto::KeySet;
use crate::crypto::Secret;
use crate::domain::Class;
use crate::store::{Fingerprint, Inserted, Record, SealedId, Store, StoreError, SubjectRow, Volatile, Write};
use crate::token::{self, ClassFormats};
use crate::token::{Invalid, Layout, Parsed};
use crate::vault::known::{Hit, Known};

/// Redraws allowed for one value before giving up (the formats widen their room as attempts grow).
const MAX_ATTEMPTS: u32 = 96;
/// Seconds: a record's `last_used_at` is moved on re-tokenisation only when it is at least this old, so a hot
/// value does not cost a write per request. Retention is therefore counted with this granularity.
pub const TOUCH_EVERY: i64 = 3600;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("item {index}: {reason}")]
    Invalid { index: usize, reason: Invalid },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no free token could be drawn for a value")]
    Exhausted,
    #[error("a record could not be sealed or opened")]
    Crypto,
    /// More cards in one BIN + last four than that range has left today (retry in `retry_after` s).
    #[error("the batch holds more cards of one range than its budget has left")]
    OverBudget { retry_after: u64 },
}

/// A card range's key: length, BIN and last four (see [`token::card_range`]).
type CardRange = (u8, [u8; 6], [u8; 4]);

/// The terms one tokenisation runs under (the vault API's default: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Terms<'a> {
    /// `(cvc item, card item)`: each `cvc` item of the batch is kept bound to the token of that `pan` item.
    pub binds: &'a [(usize, usize)],
    /// The values come from the public side (the ingress): a value of an enumerable class equal to an issued
    /// token is taken for that token only where the class's format keeps tokens out of the space of real values.
    /// Elsewhere it is tokenised as the value it may well be — a real card that happens to equal a token (or
    /// that a flood of submissions made one) never passes as another value's token.
    pub strict: bool,
    /// The ingress client's address (after trusted `X-Forwarded-For`) a proxy in this process tokenises for:
    /// recorded in the audit log as the call's origin.
    pub client: Option<std::net::IpAddr>,
}

/// Why one item of a reveal has no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    NotFound,
    /// Erased or purged: the token is known, its value deleted.
    Gone,
    /// A CVC asked for by its card's token: none is live (used up, expired, or never given).
    CvcUnavailable,
    /// Not linked to a subject of every token the answer goes to (see [`Engine::within_audience`]).
    NotLinked,
}

impl Missing {
    /// Every reason, for the API description (a test checks none is left out).
    pub const ALL: [Missing; 4] = [Missing::NotFound, Missing::Gone, Missing::CvcUnavailable, Missing::NotLinked];

    pub fn code(self) -> &'static str {
        match self {
            Missing::NotFound => "not_found",
            Missing::Gone => "gone",
            Missing::CvcUnavailable => "cvc_unavailable",
            Missing::NotLinked => "not_linked",
        }
    }

    /// The sentence an API answer gives with the code.
    pub fn message(self) -> &'static str {
        match self {
            Missing::NotLinked => "the token is not linked to a subject of every audience token",
            Missing::NotFound | Missing::Gone | Missing::CvcUnavailable => "no value is held for this token",
        }
    }
}

/// A revealed value: its canonical form and the layout the token was written in.
pub struct Revealed {
    pub canonical: Secret<String>,
    pub layout: Layout,
}

impl Revealed {
    pub fn render(&self) -> String {
        self.layout.render(self.canonical.expose())
    }
}

/// A data subject as a tokenisation links it: its fingerprint under key `version`, and its id, which a write that
/// links is given sealed (kept once per subject so its links can be moved to a new key version's fingerprint).
/// Sealed only then: a request whose links are all known writes nothing and seals nothing.
#[derive(Debug)]
pub struct Subject {
    pub fp: Fingerprint,
    pub version: u32,
    pub id: Option<Secret<String>>,
}

/// Clock in unix seconds; replaceable in tests.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
    })
}

pub struct Engine {
    keys: Arc<KeySet>,
    store: Arc<dyn Store>,
    formats: ClassFormats,
    clock: Clock,
    /// Links this process wrote recently: a repeated tokenisation for the same subject needs no durable write.
    links: Links,
    /// Known values → tokens (skips the store read for a value tokenised again).
    known: Known,
    /// New cards taken per card range (`ClassFormats::pan_range_per_day`), in this process.
    ranges: Budgets<CardRange>,
    /// The key versions value lookups ask under, newest first (normally one; two while a rewrap pass moves
    /// fingerprints): read from the store's list once, at the first tokenisation.
    lookup_versions: tokio::sync::OnceCell<Vec<u32>>,
}

struct Pending {
    /// Indexes of the batch items that share this value.
    items: Vec<usize>,
    class: Class,
    canonical: String,
    value_fp: [u8; 32],
    /// The fingerprint the record is stored under: `value_fp`, or random bytes for a class tokenised afresh
    /// every time (no lookup can find it by value, and the store's one-token-per-value index never matches).
    stored_fp: [u8; 32],
    attempt: u32,
    /// A candidate drawn before the store lookup, and whether it is a value the vault or the batch holds (that
    /// lookup answered it too); `None` for a redraw, checked on its own.
    drawn: Option<(String, bool)>,
}

impl Pending {
    /// The same value, to draw again with more room; an error once it has had all its attempts.
    fn redrawn(mut self) -> Result<Pending, EngineError> {
        self.attempt += 1;
        self.drawn = None;
        match self.attempt < MAX_ATTEMPTS {
            true => Ok(self),
            false => Err(EngineError::Exhausted),
        }
    }
}

impl Engine {
    pub fn new(keys: impl Into<Arc<KeySet>>, store: Arc<dyn Store>, formats: ClassFormats, clock: Clock) -> Engine {
        let known = Known::new(store.erasure_epoch(), TOUCH_EVERY);
        Engine {
            keys: keys.into(),
            store,
            formats,
            clock,
            links: Links::default(),
            known,
            ranges: Budgets::default(),
            lookup_versions: tokio::sync::OnceCell::new(),
        }
    }

    /// The key versions value fingerprints are looked up under, newest first. The first call lists this
    /// keyring's newest version in the store (before anything is written under it) and reads which others are
    /// in use; a version in use that this keyring lacks is an error (its rows could not be found: a value would
    /// get a second token).
    pub async fn lookup_versions(&self) -> Result<&[u32], EngineError> {
        let versions = self
            .lookup_versions
            .get_or_try_init(|| async {
                let (current, oldest) = (self.keys.current_version(), self.keys.oldest_version());
                let listed = match self.store.fp_versions(current).await? {
                    Some(listed) => listed,
                    None => self.keys.versions().collect(),
                };
                let mut out = vec![current];
                for v in listed.into_iter().map(|v| if v == 0 { oldest } else { v }) {
                    if self.keys.subject_at(v).is_none() {
                        return Err(EngineError::Store(StoreError::Corrupt(format!(
                            "the store holds fingerprints under master key version {v}, which this keyring lacks: \
                             start with the keyring that has it"
                        ))));
                    }
                    if !out.contains(&v) {
                        out.push(v);
                    }
                }
                out[1..].sort_unstable_by(|a, b| b.cmp(a));
                Ok::<_, EngineError>(out)
            })
            .await?;
        Ok(versions)
    }

    /// `canonical`'s value fingerprint under each of `versions`, in order.
    fn fingerprints(&self, class: &str, canonical: &str, versions: &[u32]) -> Result<Vec<Fingerprint>, EngineError> {
        versions
            .iter()
            .map(|v| self.keys.value_fingerprint_at(class, canonical, *v).ok_or(EngineError::Crypto))
            .collect()
    }

    /// The in-memory map of known values (for erasure and purge to invalidate, and retention to narrow).
    pub fn known(&self) -> &Known {
        &self.known
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn keys(&self) -> &Arc<KeySet> {
        &self.keys
    }

    fn remember_links(&self, subject: Option<Fingerprint>, links: Vec<(String, String)>, now: i64) {
        if let Some(subject) = subject {
            self.links.remember(subject, links, now);
        }
    }

    /// Forgets the links remembered for `subject` (its erasure removed them from the store).
    pub fn forget_links(&self, subject: &Fingerprint) {
        self.links.forget(subject);
    }

    /// Tokens for `items` (class, value), in order, each written like its value.
    pub async fn tokenize(&self, items: &[(Class, &str)]) -> Result<Vec<String>, EngineError> {
        self.tokenize_for(items, None).await
    }

    /// The keyed fingerprint of a subject id under the newest key version (the id itself is never stored in
    /// clear).
    pub fn subject_fingerprint(&self, subject: &str) -> Fingerprint {
        self.keys.subject.fingerprint(subject.as_bytes())
    }

    /// A subject to link: its fingerprint under the newest key version, and its id (sealed when a write needs it).
    pub fn subject(&self, id: &str) -> Subject {
        let (fp, version) = (self.subject_fingerprint(id), self.keys.current_version());
        Subject { fp, version, id: Some(Secret::new(id.to_owned())) }
    }

    /// The subject's id sealed under the newest key version, bound to its fingerprint `fp`.
    pub fn seal_subject(&self, fp: &Fingerprint, id: &str) -> Result<SealedId, EngineError> {
        let version = self.keys.current_version();
        let sealer = self.keys.subject_sealer(version).ok_or(EngineError::Crypto)?;
        let sealed = sealer
            .seal_bound(crate::crypto::keys::SUBJECT_SEAL, "", version, fp, id.as_bytes())
            .map_err(|_| EngineError::Crypto)?;
        Ok(SealedId { key_version: version, sealed })
    }

    /// Opens a sealed subject id the store keeps.
    pub fn open_subject(&self, row: &SubjectRow) -> Result<Secret<String>, EngineError> {
        let sealer = self.keys.subject_sealer(row.id.key_version).ok_or(EngineError::Crypto)?;
        let plain = sealer
            .open_bound(crate::crypto::keys::SUBJECT_SEAL, "", row.id.key_version, &row.subject_fp, &row.id.sealed)
            .map_err(|_| EngineError::Crypto)?;
        String::from_utf8(plain).map(Secret::new).map_err(|_| EngineError::Crypto)
    }

    /// The subject id's fingerprint under every key version held but the newest (where older links may be).
    pub fn older_subject_fingerprints(&self, id: &str) -> Vec<Fingerprint> {
        let current = self.keys.current_version();
        self.keys
            .versions()
            .filter(|v| *v != current)
            .filter_map(|v| self.keys.subject_at(v).map(|f| f.fingerprint(id.as_bytes())))
            .collect()
    }

    /// The canonical form of a token as written by a caller (separators dropped), if it has the class's shape.
    pub fn canonical_token(&self, class: Class, token: &str) -> Option<String> {
        token::parse(class, token).ok().map(|p| p.canonical)
    }

    /// The clock this engine stamps records with.
    pub fn now(&self) -> i64 {
        (self.clock)()
    }

    /// Opens a live record's sealed value: a row with a fingerprint version has its fingerprint bound in the AAD.
    pub fn open_record(&self, rec: &Record) -> Result<Secret<String>, EngineError> {
        let sealer = self.keys.sealer(&rec.class, rec.key_version).ok_or(EngineError::Crypto)?;
        let plain = match rec.fp_version {
            Some(_) => sealer.open_bound(&rec.class, &rec.token, rec.key_version, &rec.value_fp, &rec.sealed),
            None => sealer.open(&rec.class, &rec.token, rec.key_version, &rec.sealed),
        };
        String::from_utf8(plain.map_err(|_| EngineError::Crypto)?).map(Secret::new).map_err(|_| EngineError::Crypto)
    }

    /// The fingerprint a record of `canonical` is stored under now: its value fingerprint under the newest
    /// version, or random bytes for a class tokenised afresh every time (no lookup may find it by value).
    pub fn stored_fingerprint(&self, class: &str, canonical: &str) -> Result<Fingerprint, EngineError> {
        match class.parse::<Class>() {
            Ok(c) if !self.formats.deterministic(c) => Ok(rand::random()),
            _ => self.keys.value_fingerprint(class, canonical).ok_or(EngineError::Crypto),
        }
    }

    /// A record of `canonical` under `token`, fingerprinted (`fp`, under the newest version) and sealed under
    /// the newest version with the fingerprint bound.
    pub fn seal_record(
        &self,
        class: &str,
        token: String,
        fp: Fingerprint,
        canonical: &str,
        now: i64,
    ) -> Result<Record, EngineError> {
        let version = self.keys.current_version();
        let sealer = self.keys.sealer(class, version).ok_or(EngineError::Crypto)?;
        let sealed =
            sealer.seal_bound(class, &token, version, &fp, canonical.as_bytes()).map_err(|_| EngineError::Crypto)?;
        Ok(Record {
            class: class.to_owned(),
            token,
            value_fp: fp,
            fp_version: Some(version),
            key_version: version,
            sealed,
            created_at: now,
            last_used_at: now,
            gone_at: None,
        })
    }

    /// Like [`Engine::tokenize`]; with `subject` (a fingerprint from [`Engine::subject_fingerprint`]) every
    /// token of the batch is linked to that subject.
    pub async fn tokenize_for(
        &self,
        items: &[(Class, &str)],
        subject: Option<Fingerprint>,
    ) -> Result<Vec<String>, EngineError> {
        let version = self.keys.current_version();
        let subject = subject.map(|fp| Subject { fp, version, id: None });
        self.tokenize_on(items, subject, Terms::default()).await
    }

    /// Like [`Engine::tokenize_for`], under `terms`. A `cvc` item is not tokenised: it is kept as a volatile
    /// secret bound to the token of the card item `terms.binds` names (sealed, for `[class.cvc] ttl`, revealed
    /// at most `uses` times), stored only after the card's token is durable; its answer is a placeholder.
    pub async fn tokenize_on(
        &self,
        items: &[(Class, &str)],
        subject: Option<Subject>,
        terms: Terms<'_>,
    ) -> Result<Vec<String>, EngineError> {
        if !items.iter().any(|(c, _)| *c == Class::Cvc) {
            return self.tokenize_values(items, subject, terms).await;
        }
        // The card each CVC belongs to, checked before anything is written.
        let mut cards = Vec::new();
        for (index, (class, value)) in items.iter().enumerate().filter(|(_, (c, _))| *c == Class::Cvc) {
            let unbound =
                EngineError::Invalid { index, reason: Invalid("a cvc must be bound to a card of its request") };
            let card = match terms.binds.iter().find(|(cvc, _)| *cvc == index) {
                Some(&(_, card)) if items.get(card).is_some_and(|(c, _)| *c == Class::Pan) => card,
                _ => return Err(unbound),
            };
            let code = token::parse(*class, value).map_err(|reason| EngineError::Invalid { index, reason })?;
            cards.push((index, card, code.canonical));
        }
        let (values, at): (Vec<(Class, &str)>, Vec<usize>) =
            items.iter().enumerate().filter(|(_, (c, _))| *c != Class::Cvc).map(|(i, item)| (*item, i)).unzip();
        let tokens = self.tokenize_values(&values, subject, terms).await.map_err(|e| match e {
            EngineError::Invalid { index, reason } => EngineError::Invalid { index: at[index], reason },
            e => e,
        })?;
        let mut out: Vec<String> = vec![String::new(); items.len()];
        for (token, i) in tokens.into_iter().zip(&at) {
            out[*i] = token;
        }
        let (now, version) = ((self.clock)(), self.keys.current_version());
        let mut secrets = Vec::with_capacity(cards.len());
        for (index, card, code) in cards {
            let card_token = token::parse(Class::Pan, &out[card]).map_err(|_| EngineError::Crypto)?.canonical;
            let sealer = self.keys.sealer(Class::Cvc.name(), version).ok_or(EngineError::Crypto)?;
            let sealed = sealer
                .seal(Class::Cvc.name(), &card_token, version, code.as_bytes())
                .map_err(|_| EngineError::Crypto)?;
            secrets.push(Volatile {
                bind_fp: self.cvc_binding(&card_token, version)?,
                fp_version: Some(version),
                key_version: version,
                sealed,
                expires_at: now.saturating_add(i64::try_from(self.formats.cvc_ttl).unwrap_or(i64::MAX)),
                uses: self.formats.cvc_uses,
            });
            out[index] = token::cvc::placeholder(&code, &mut rand::thread_rng());
        }
        self.store.put_volatile(secrets).await?;
        Ok(out)
    }

    /// The fingerprint a CVC is kept under: of its card's canonical token, under the `cvc` class's key of
    /// `version`.
    fn cvc_binding(&self, card_token: &str, version: u32) -> Result<Fingerprint, EngineError> {
        self.keys.value_fingerprint_at(Class::Cvc.name(), card_token, version).ok_or(EngineError::Crypto)
    }

    /// Erases the CVCs whose time is up (retention runs it); how many.
    pub async fn purge_volatile(&self) -> Result<u64, EngineError> {
        Ok(self.store.purge_volatile((self.clock)()).await?)
    }

    /// Tokenises values (no `cvc` item).
    async fn tokenize_values(
        &self,
        items: &[(Class, &str)],
        subject: Option<Subject>,
        terms: Terms<'_>,
    ) -> Result<Vec<String>, EngineError> {
        let now = (self.clock)();
        let versions = self.lookup_versions().await?;
        let (subject, subject_version, subject_id) = match subject {
            Some(s) => (Some(s.fp), Some(s.version), s.id),
            None => (None, None, None),
        };
        // The subject's id sealed for a write, made at its first.
        let mut sealed_id: Option<SealedId> = None;
        let mut subject_sealed = || -> Result<Option<SealedId>, EngineError> {
            match (&sealed_id, subject, &subject_id) {
                (Some(id), _, _) => Ok(Some(id.clone())),
                (None, Some(fp), Some(id)) => Ok(Some(sealed_id.insert(self.seal_subject(&fp, id.expose())?).clone())),
                _ => Ok(None),
            }
        };
        // Taken before any store read: a result read under it is remembered only if no erasure intervened.
        let stamp = self.known.stamp();
        // Existing records to mark used (and link): (class, token), once each.
        let mut touch: Vec<(String, String)> = Vec::new();
        let recently_linked =
            |class: &str, token: &str| subject.is_some_and(|s| self.links.fresh(&s, class, token, now));
        // Whether this live record will be marked used by this call's write.
        let mut touch_one = |class: &str, token: &str, last_used_at: i64| {
            let listed = touch.iter().any(|(c, t)| c == class && t == token);
            let due = (subject.is_some() && !recently_linked(class, token)) || now - last_used_at >= TOUCH_EVERY;
            if due && !listed {
                touch.push((class.to_owned(), token.to_owned()));
            }
            due || listed
        };
        let mut parsed = Vec::with_capacity(items.len());
        for (index, (class, value)) in items.iter().enumerate() {
            let p = token::parse(*class, value).map_err(|reason| EngineError::Invalid { index, reason })?;
            let fp = self.keys.value_fingerprint(class.name(), &p.canonical).ok_or(EngineError::Crypto)?;
            parsed.push((p, fp));
        }
        // Before any lookup: what is refused must not depend on what the vault holds.
        let mut ranges = self.reserve_ranges(items, &parsed)?;
        let mut out: Vec<Option<String>> = vec![None; items.len()];
        // Store hits to remember once this call's write (if any) has committed: (item, token, last used).
        let mut learned: Vec<(usize, Hit)> = Vec::new();

        // Known values: their existing token, from memory or the store.
        let mut misses = Vec::with_capacity(items.len());
        for (i, (class, _)) in items.iter().enumerate() {
            // Not from memory: a value that may also be a token the API must answer as that token (see below).
            let remembered = self.formats.deterministic(*class) && (terms.strict || !self.shares_value_space(*class));
            let hit = stamp.filter(|_| remembered).and_then(|st| self.known.get(st, *class, &parsed[i].1, now));
            match hit {
                Some(hit) => {
                    out[i] = Some(parsed[i].0.layout.render(&hit.token));
                    if touch_one(class.name(), &hit.token, hit.last_used_at) {
                        learned.push((i, Hit { last_used_at: now, ..hit }));
                    }
                }
                None => misses.push(i),
            }
        }
        // The others: known to the store by value, or tokens already (returned unchanged) — one store call. It
        // also answers, for a token drawn now for each valid one (used if the value turns out new), whether that
        // candidate is itself a value the vault holds: a new value costs one lookup, not a second for its token.
        let mut ahead: Vec<Option<(String, bool)>> = vec![None; items.len()];
        // The batch's own values, which a drawn token must not be. Only a miss makes a new value: without one
        // nothing is drawn and the set is never read, so a batch of known values builds none.
        let batch: HashSet<&Fingerprint> =
            if misses.is_empty() { HashSet::new() } else { parsed.iter().map(|(_, fp)| fp).collect() };
        if !misses.is_empty() {
            // Each value under every version in use (normally one), in the same read: the newest's first.
            let n = versions.len();
            let mut values: Vec<(String, Fingerprint)> = Vec::with_capacity(2 * misses.len() * n);
            for &i in &misses {
                values.push((items[i].0.name().to_owned(), parsed[i].1));
                if n > 1 {
                    for fp in self.fingerprints(items[i].0.name(), &parsed[i].0.canonical, &versions[1..])? {
                        values.push((items[i].0.name().to_owned(), fp));
                    }
                }
            }
            let tokens: Vec<(String, String)> =
                misses.iter().map(|&i| (items[i].0.name().to_owned(), parsed[i].0.canonical.clone())).collect();
            let candidates = self.draw_ahead(items, &parsed, &misses, versions)?;
            for (i, _, fps) in &candidates {
                values.extend(fps.iter().map(|fp| (items[*i].0.name().to_owned(), *fp)));
            }
            let (mut by_value, by_token) = self.store.find_by_values_and_tokens(&values, &tokens).await?;
            let by_candidate = by_value.split_off((misses.len() * n).min(by_value.len()));
            let mut by_candidate = by_candidate.into_iter();
            for (i, token, fps) in candidates {
                let found = first_found(by_candidate.by_ref().take(n));
                ahead[i] = Some((token, held(found, &fps[0], &batch)));
            }
            let mut by_value = by_value.into_iter();
            let by_value: Vec<Option<Record>> = misses.iter().map(|_| first_found(by_value.by_ref().take(n))).collect();
            let owned = match terms.strict {
                true => self.owned_tokens(subject, &by_token, now).await?,
                false => Vec::new(),
            };
            for ((&i, by_value), by_token) in misses.iter().zip(by_value).zip(by_token) {
                let class = items[i].0;
                // A tombstone's fingerprint is random bytes: a value never finds one. Nor does a fresh class's.
                let by_value = by_value.filter(|r| r.gone_at.is_none() && self.formats.deterministic(class));
                // Digits that are both a token and a value (a token posted back through the ingress was taken for
                // the value it may be): the API, the app's own side, means the token (tokenising a token returns
                // it); the ingress means the value. From the ingress a token of the space of real values is
                // never taken for a token at all: it may as well be a real card that a flood made a token. Nor is
                // anyone else's token: a token posted by someone it is not linked to is their value (a token of
                // it is issued), else whoever holds a leaked token could have its value put into their own
                // order, mail or payment by the egress.
                let as_token = by_token.as_ref().is_some_and(|rec| match terms.strict {
                    false => true,
                    // (Its owner's token even where someone else's posting made the same text a value.)
                    true => {
                        !self.shares_value_space(class) && owned.iter().any(|(c, t)| *c == rec.class && *t == rec.token)
                    }
                });
                if let Some(rec) = by_value.filter(|_| !as_token) {
                    out[i] = Some(parsed[i].0.layout.render(&rec.token));
                    let touched = touch_one(&rec.class, &rec.token, rec.last_used_at);
                    let last_used_at = if touched { now } else { rec.last_used_at };
                    // Text that is also an issued token of a class whose tokens a posting may mean is not
                    // answered from memory: its owner's posting means the token, and only the store tells who
                    // owns it. (In the space of real values a posting always means the value.)
                    if by_token.is_none() || self.shares_value_space(class) {
                        learned.push((i, Hit { token: rec.token, last_used_at }));
                    }
                } else if let Some(rec) = by_token.filter(|_| as_token) {
                    out[i] = Some(parsed[i].0.layout.render(&parsed[i].0.canonical));
                    if rec.gone_at.is_none() {
                        touch_one(&rec.class, &rec.token, rec.last_used_at);
                    }
                }
            }
        }

        // New values: validate all before inserting any; one pending entry per distinct value.
        let mut pending: Vec<Pending> = Vec::new();
        for i in (0..items.len()).filter(|i| out[*i].is_none()) {
            let (class, (p, fp)) = (items[i].0, &parsed[i]);
            // A value with a candidate passed validation before it was drawn.
            if ahead[i].is_none() {
                token::validate(class, &p.canonical).map_err(|reason| EngineError::Invalid { index: i, reason })?;
            }
            match pending.iter_mut().find(|e| e.class == class && e.value_fp == *fp) {
                Some(e) => e.items.push(i),
                None => pending.push(Pending {
                    items: vec![i],
                    class,
                    canonical: p.canonical.clone(),
                    value_fp: *fp,
                    stored_fp: if self.formats.deterministic(class) { *fp } else { rand::random() },
                    attempt: 0,
                    drawn: ahead[i].take(),
                }),
            }
        }

        let mut touch = Some(touch);
        if let Some(touch) = touch.take_if(|t| pending.is_empty() && !t.is_empty()) {
            let linked: Vec<(String, String)> = if subject.is_some() { touch.clone() } else { Vec::new() };
            let sealed = subject_sealed()?;
            let write = Write { records: Vec::new(), touch, subject, subject_version, subject_sealed: sealed, now };
            self.store.write(write).await?;
            self.remember_links(subject, linked, now);
        }
        while !pending.is_empty() {
            let mut records = Vec::with_capacity(pending.len());
            // Per record: whether its token is a held value, if the lookup above answered it already.
            let mut held = Vec::with_capacity(pending.len());
            {
                let mut rng = rand::thread_rng();
                for e in &mut pending {
                    let (token, answered) = match e.drawn.take() {
                        Some((token, is_held)) => (token, Some(is_held)),
                        None => (self.draw(e.class, &e.canonical, e.attempt, &mut rng), None),
                    };
                    held.push(answered);
                    records.push(self.seal_record(e.class.name(), token, e.stored_fp, &e.canonical, now)?);
                }
            }
            // A candidate that is itself a value of this batch or of the vault would later be read as that value
            // when tokenised again, and answered with that value's token: redrawn instead, before anything is
            // written.
            let clashes = self.values_among(&records, held, &batch, versions).await?;
            let mut retry = Vec::new();
            let (mut kept, mut kept_records) = (Vec::with_capacity(pending.len()), Vec::with_capacity(records.len()));
            for ((e, rec), clash) in std::mem::take(&mut pending).into_iter().zip(records).zip(clashes) {
                if clash {
                    retry.push(e.redrawn()?);
                } else {
                    kept.push(e);
                    kept_records.push(rec);
                }
            }
            let (drawing, records) = (kept, kept_records);
            // The store takes the records; keep only the drawn tokens (no copy of the sealed values).
            let drawn: Vec<String> = records.iter().map(|r| r.token.clone()).collect();
            let touched = touch.take().unwrap_or_default();
            let mut linked: Vec<(String, String)> = if subject.is_some() { touched.clone() } else { Vec::new() };
            let outcomes = match records.is_empty() && touched.is_empty() {
                true => Vec::new(),
                false => {
                    let sealed = subject_sealed()?;
                    let write =
                        Write { records, touch: touched, subject, subject_version, subject_sealed: sealed, now };
                    self.store.write(write).await?
                }
            };
            for ((e, token), outcome) in drawing.into_iter().zip(drawn).zip(outcomes) {
                let token = match outcome {
                    Inserted::New => {
                        if subject.is_some() {
                            linked.push((e.class.name().to_owned(), token.clone()));
                        }
                        token
                    }
                    Inserted::Existing(existing) => existing.token,
                    Inserted::TokenTaken => {
                        retry.push(e.redrawn()?);
                        continue;
                    }
                };
                for &i in &e.items {
                    out[i] = Some(parsed[i].0.layout.render(&token));
                }
            }
            self.remember_links(subject, linked, now);
            pending = retry;
        }
        if let Some(stamp) = stamp {
            for (i, hit) in learned {
                self.known.put(stamp, items[i].0, parsed[i].1, hit);
            }
        }
        let tokens = out.into_iter().map(|t| t.ok_or(EngineError::Exhausted)).collect::<Result<_, _>>()?;
        for r in &mut ranges {
            r.spend(r.granted());
        }
        Ok(tokens)
    }

    /// The issued tokens among `found` (a by-token lookup's answers) that `subject` is linked to: only those may
    /// be posted back through the ingress as themselves. Without a subject nobody owns a token. One store read,
    /// and only when a token was posted that this process did not link to the subject just now.
    async fn owned_tokens(
        &self,
        subject: Option<Fingerprint>,
        found: &[Option<Record>],
        now: i64,
    ) -> Result<Vec<(String, String)>, EngineError> {
        let Some(subject) = subject else { return Ok(Vec::new()) };
        let posted: Vec<&Record> = found.iter().flatten().filter(|r| r.gone_at.is_none()).collect();
        if posted.is_empty() {
            return Ok(Vec::new());
        }
        if posted.iter().all(|r| self.links.fresh(&subject, &r.class, &r.token, now)) {
            return Ok(posted.into_iter().map(|r| (r.class.clone(), r.token.clone())).collect());
        }
        let held = self.store.subject_records(&subject).await?;
        Ok(posted
            .into_iter()
            .filter(|r| held.iter().any(|h| h.class == r.class && h.token == r.token))
            .map(|r| (r.class.clone(), r.token.clone()))
            .collect())
    }

    /// Do this class's tokens live among its real values, in a space small enough to enumerate (so a value equal
    /// to a token may be a real one)?
    fn shares_value_space(&self, class: Class) -> bool {
        class.enumerable() && !self.formats.distinguishable(class)
    }

    /// Takes the batch's cards from their ranges' budgets: all of them, or an error and nothing taken. Every card
    /// counts, known or new: a budget of new ones only would tell, by refusing or not, whether a card is held.
    fn reserve_ranges(
        &self,
        items: &[(Class, &str)],
        parsed: &[(Parsed, Fingerprint)],
    ) -> Result<Vec<Reservation<'_, CardRange>>, EngineError> {
        let Some(per_day) = self.formats.pan_range_per_day else { return Ok(Vec::new()) };
        let rate = Rate { amount: per_day, per: std::time::Duration::from_secs(86_400) };
        let mut wanted: Vec<(CardRange, usize)> = Vec::new();
        for ((p, _), _) in parsed.iter().zip(items).filter(|(_, (c, _))| *c == Class::Pan) {
            let Some(range) = token::card_range(&p.canonical) else { continue };
            match wanted.iter_mut().find(|(r, _)| *r == range) {
                Some((_, n)) => *n += 1,
                None => wanted.push((range, 1)),
            }
        }
        let mut taken = Vec::with_capacity(wanted.len());
        for (range, n) in wanted {
            let r = self.ranges.reserve(&range, rate, n);
            if r.granted() < n {
                return Err(EngineError::OverBudget { retry_after: r.retry_after() });
            }
            taken.push(r);
        }
        Ok(taken)
    }

    /// For each drawn record: is its token also a value, of this batch or of a live record in the vault?
    /// `answered` has the answer already where the first lookup gave it; the others take one store lookup together.
    /// (Fingerprints are keyed per class: equal ones are of the same class.)
    async fn values_among(
        &self,
        records: &[Record],
        answered: Vec<Option<bool>>,
        batch: &HashSet<&Fingerprint>,
        versions: &[u32],
    ) -> Result<Vec<bool>, EngineError> {
        let mut keys = Vec::new();
        let mut newest = Vec::new();
        for (r, _) in records.iter().zip(&answered).filter(|(_, h)| h.is_none()) {
            let fps = self.fingerprints(&r.class, &r.token, versions)?;
            newest.push(fps[0]);
            keys.extend(fps.into_iter().map(|fp| (r.class.clone(), fp)));
        }
        if keys.is_empty() {
            return Ok(answered.into_iter().map(|h| h.unwrap_or(true)).collect());
        }
        // The lookup the tokenising path already uses: on SQLite, queued to the writer with the others.
        let (found, _) = self.store.find_by_values_and_tokens(&keys, &[]).await?;
        let mut found = found.into_iter();
        let mut answers = newest
            .iter()
            .map(|fp| held(first_found(found.by_ref().take(versions.len())), fp, batch))
            .collect::<Vec<_>>()
            .into_iter();
        // A key the store left unanswered counts as held: that candidate is drawn again.
        Ok(answered.into_iter().map(|h| h.or_else(|| answers.next()).unwrap_or(true)).collect())
    }

    /// Candidates for the misses that are valid values of their class, drawn before the store is asked about
    /// them: (item, token, the token's fingerprint as a value). A miss that is not valid gets none: it is
    /// refused, or found to be a token, after the lookup.
    fn draw_ahead(
        &self,
        items: &[(Class, &str)],
        parsed: &[(Parsed, Fingerprint)],
        misses: &[usize],
        versions: &[u32],
    ) -> Result<Vec<(usize, String, Vec<Fingerprint>)>, EngineError> {
        let mut rng = rand::thread_rng();
        let mut out = Vec::with_capacity(misses.len());
        for &i in misses {
            let (class, canonical) = (items[i].0, &parsed[i].0.canonical);
            if token::validate(class, canonical).is_err() {
                continue;
            }
            let token = self.draw(class, canonical, 0, &mut rng);
            let fps = self.fingerprints(class.name(), &token, versions)?;
            out.push((i, token, fps));
        }
        Ok(out)
    }

    /// A candidate token that differs from the value (the formats promise it; checked again here).
    fn draw(&self, class: Class, canonical: &str, mut attempt: u32, rng: &mut impl rand::Rng) -> String {
        loop {
            let token = token::generate(class, &self.formats, canonical, attempt, rng);
            if token != canonical {
                return token;
            }
            attempt += 1;
        }
    }

    /// The values behind `items` (class, token), in order. A `cvc` item names its card's token; with
    /// `take_cvc`, and only if every other item of the call was revealed, one use of the CVC kept for that card is
    /// taken (and the CVC erased with its last); otherwise it is not touched.
    /// Which of `items` an answer going to the owners of every `audience` token may carry: those linked to a
    /// subject of each audience token (the audience tokens themselves included when they are linked). A token
    /// linked to no subject has no peers: nothing passes. A `cvc` item counts as its card's token. With one
    /// audience token (a mail's recipient), one store read.
    pub async fn within_audience(
        &self,
        audience: &[(Class, &str)],
        items: &[(Class, &str)],
    ) -> Result<Vec<bool>, EngineError> {
        let canonical = |class: Class, token: &str| {
            let class = if class == Class::Cvc { Class::Pan } else { class };
            token::parse(class, token).ok().map(|p| (class.name().to_owned(), p.canonical))
        };
        let mut allowed: Option<HashSet<(String, String)>> = None;
        for &(class, token) in audience {
            let Some((class, token)) = canonical(class, token) else { return Ok(vec![false; items.len()]) };
            let peers: HashSet<(String, String)> =
                self.store.subject_peers(&class, &token).await?.into_iter().collect();
            allowed = Some(match allowed {
                None => peers,
                Some(before) => before.intersection(&peers).cloned().collect(),
            });
        }
        let allowed = allowed.unwrap_or_default();
        Ok(items.iter().map(|&(class, token)| canonical(class, token).is_some_and(|k| allowed.contains(&k))).collect())
    }

    pub async fn reveal(
        &self,
        items: &[(Class, &str)],
        take_cvc: bool,
    ) -> Result<Vec<Result<Revealed, Missing>>, EngineError> {
        let mut keys = Vec::with_capacity(items.len());
        let mut layouts = Vec::with_capacity(items.len());
        for (class, token) in items {
            if *class == Class::Cvc {
                keys.push((class.name().to_owned(), String::new()));
                layouts.push(None);
                continue;
            }
            match token::parse(*class, token) {
                Ok(p) => {
                    keys.push((class.name().to_owned(), p.canonical));
                    layouts.push(Some(p.layout));
                }
                Err(_) => {
                    // Not even shaped like a token of the class: it cannot be in the store.
                    keys.push((class.name().to_owned(), String::new()));
                    layouts.push(None);
                }
            }
        }
        let found = self.store.find_by_tokens(&keys).await?;
        let mut out = Vec::with_capacity(items.len());
        for ((rec, layout), (class, _)) in found.into_iter().zip(layouts).zip(items) {
            let (Some(rec), Some(layout)) = (rec, layout) else {
                out.push(Err(Missing::NotFound));
                continue;
            };
            if rec.gone_at.is_some() {
                out.push(Err(Missing::Gone));
                continue;
            }
            if rec.class != class.name() {
                return Err(EngineError::Crypto);
            }
            out.push(Ok(Revealed { canonical: self.open_record(&rec)?, layout }));
        }
        let others_ok = out.iter().zip(items).all(|(r, (c, _))| *c == Class::Cvc || r.is_ok());
        for (slot, (class, card)) in out.iter_mut().zip(items) {
            if *class == Class::Cvc {
                *slot = match take_cvc && others_ok {
                    true => self.take_cvc(card).await?,
                    false => Err(Missing::NotFound),
                };
            }
        }
        Ok(out)
    }

    /// One use of the CVC kept for the card token `card`.
    async fn take_cvc(&self, card: &str) -> Result<Result<Revealed, Missing>, EngineError> {
        let Ok(card) = token::parse(Class::Pan, card) else { return Ok(Err(Missing::CvcUnavailable)) };
        // Bound under the newest version; while a rewrap pass runs, possibly under an older one still.
        let mut taken = None;
        for v in self.lookup_versions().await? {
            let binding = self.cvc_binding(&card.canonical, *v)?;
            taken = self.store.take_volatile(&binding, (self.clock)()).await?;
            if taken.is_some() {
                break;
            }
        }
        let Some((version, sealed)) = taken else {
            return Ok(Err(Missing::CvcUnavailable));
        };
        let sealer = self.keys.sealer(Class::Cvc.name(), version).ok_or(EngineError::Crypto)?;
        let plain =
            sealer.open(Class::Cvc.name(), &card.canonical, version, &sealed).map_err(|_| EngineError::Crypto)?;
        let code = String::from_utf8(plain).map_err(|_| EngineError::Crypto)?;
        Ok(Ok(Revealed { canonical: Secret::new(code), layout: Layout::Identity }))
    }
}

/// The first record found among one value's lookups under each version in use.
fn first_found(found: impl Iterator<Item = Option<Record>>) -> Option<Record> {
    let mut first = None;
    for rec in found {
        first = first.or(rec);
    }
    first
}

/// Whether a candidate token (its fingerprint as a value, and the record the store holds for that) is a value
/// the vault holds live or one of the batch's own values.
fn held(rec: Option<Record>, fp: &Fingerprint, batch: &HashSet<&Fingerprint>) -> bool {
    rec.is_some_and(|r| r.gone_at.is_none()) || batch.contains(fp)
}
