//! Provider `shares`: the keyring sealed (see [`super::sealed`]) under a key-encrypting key that exists only as
//! N custodians' shares, any M of which recombine it (Shamir over GF(256), the `blahaj` crate). PCI DSS 3.6.1.2
//! ("at least two full-length key components or key shares") and 3.7.6 (split knowledge, dual control).
//!
//! `veil keygen --shares N --threshold M --out DIR` ([`generate`]) writes `DIR/keyring.sealed` and
//! `DIR/share-1.txt` … `share-N.txt` (0600, never overwriting); hand each share to one custodian and delete it
//! from DIR. An [`Unsealer`] collects shares one at a time (a vault being unsealed, or `--share` files of a
//! command) and, at M distinct ones, recombines the KEK and checks it against the file's key check value.

use std::path::{Path, PathBuf};

use rand::RngCore;
use zeroize::Zeroize;

use super::sealed::SealedKeyring;
use super::share::{Share, ShareError};
use super::{atomic, KeyProvider, ProviderError};
use crate::crypto::{Keyring, Secret};

/// The sealed keyring's file name in the directory `veil keygen --shares` writes.
pub const SEALED_FILE: &str = "keyring.sealed";

/// What `veil keygen --shares` wrote.
#[derive(Debug)]
pub struct Generated {
    pub sealed: PathBuf,
    pub shares: Vec<PathBuf>,
}

/// A new keyring sealed under a new KEK split into `n` shares of which `threshold` unseal. Refuses to write
/// anything when any of the files exists.
pub fn generate(dir: &Path, n: u8, threshold: u8) -> Result<Generated, ProviderError> {
    if threshold < 2 || threshold > n {
        return Err(ProviderError::Format {
            path: dir.display().to_string(),
            reason: format!("need 2 <= threshold <= shares <= 255 (got {threshold} of {n})"),
        });
    }
    let sealed_path = dir.join(SEALED_FILE);
    let share_paths: Vec<PathBuf> = (1..=n).map(|i| dir.join(format!("share-{i}.txt"))).collect();
    if let Some(p) = std::iter::once(&sealed_path).chain(&share_paths).find(|p| p.exists()) {
        return Err(ProviderError::Exists { path: p.display().to_string() });
    }
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let kek = Secret::new(raw);
    raw.zeroize();
    let mut set = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut set);
    let sealed = SealedKeyring::seal(&kek, set, threshold, n, &Keyring::generate_text())?;
    let shares: Vec<Share> = blahaj::Sharks(threshold)
        .dealer(kek.expose())
        .take(usize::from(n))
        .map(|s| Share { set, threshold, bytes: Secret::new(Vec::from(&s)) })
        .collect();
    atomic::create_new(&sealed_path, sealed.to_text().as_bytes())?;
    for (share, path) in shares.iter().zip(&share_paths) {
        atomic::create_new(path, share.render(usize::from(n)).expose().as_bytes())?;
    }
    Ok(Generated { sealed: sealed_path, shares: share_paths })
}

/// Shares collected toward unsealing one sealed keyring.
pub struct Unsealer {
    path: PathBuf,
    sealed: SealedKeyring,
    set: [u8; 8],
    shares: Vec<Share>,
}

impl Unsealer {
    /// Reads the sealed keyring; no share yet.
    pub fn open(path: &Path) -> Result<Unsealer, ProviderError> {
        let sealed = SealedKeyring::read(path)?;
        let set = sealed
            .set_id()
            .ok_or_else(|| ProviderError::Format { path: path.display().to_string(), reason: "bad set id".into() })?;
        Ok(Unsealer { path: path.to_path_buf(), sealed, set, shares: Vec::new() })
    }

    /// Shares given so far, and how many unseal.
    pub fn progress(&self) -> (usize, usize) {
        (self.shares.len(), usize::from(self.sealed.threshold))
    }

    /// Takes one share text: refused (and not kept) when malformed, of another set, or already given.
    pub fn add(&mut self, text: &str) -> Result<(usize, usize), ShareError> {
        let share = Share::parse(text)?;
        if share.set != self.set || share.threshold != self.sealed.threshold {
            return Err(ShareError::OtherSet);
        }
        if self.shares.iter().any(|s| s.x() == share.x()) {
            return Err(ShareError::Duplicate);
        }
        self.shares.push(share);
        Ok(self.progress())
    }

    /// With enough shares, recombines the KEK and checks it; the shares are dropped either way once tried (wrong
    /// ones cannot be told apart, so the custodians start over).
    pub fn unseal(&mut self) -> Result<SharesProvider, ProviderError> {
        let (have, need) = self.progress();
        if have < need {
            return Err(ProviderError::Sealed { have, need });
        }
        let shares: Vec<blahaj::Share> =
            self.shares.drain(..).filter_map(|s| blahaj::Share::try_from(s.bytes.expose().as_slice()).ok()).collect();
        let recovered = Secret::new(
            blahaj::Sharks(self.sealed.threshold).recover(&shares).map_err(|_| ProviderError::WrongShares)?,
        );
        let mut raw = [0u8; 32];
        if recovered.expose().len() != raw.len() {
            return Err(ProviderError::WrongShares);
        }
        raw.copy_from_slice(recovered.expose());
        let kek = Secret::new(raw);
        raw.zeroize();
        self.sealed.open(&kek)?;
        Ok(SharesProvider { path: self.path.clone(), kek, set: self.set, sealed: self.sealed.clone() })
    }

    /// [`Unsealer::unseal`], consuming.
    pub fn into_provider(mut self) -> Result<SharesProvider, ProviderError> {
        self.unseal()
    }
}

/// An unsealed `shares` keyring: the recombined KEK, kept to open (and reseal, at rotation) the sealed file.
pub struct SharesProvider {
    path: PathBuf,
    kek: Secret<[u8; 32]>,
    set: [u8; 8],
    sealed: SealedKeyring,
}

impl KeyProvider for SharesProvider {
    fn describe(&self) -> String {
        format!("sealed keyring {} ({} of {} shares)", self.path.display(), self.sealed.threshold, self.sealed.shares)
    }

    fn load(&self) -> Result<Secret<String>, ProviderError> {
        // Read again: a rotation since the unseal replaced the file (same KEK, same set).
        SealedKeyring::read(&self.path)?.open(&self.kek)
    }

    fn store(&self, text: &Secret<String>) -> Result<(), ProviderError> {
        Keyring::from_text(text, &self.describe())?;
        let sealed = SealedKeyring::seal(&self.kek, self.set, self.sealed.threshold, self.sealed.shares, text)?;
        atomic::replace(&self.path, sealed.to_text().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(dir: &Path, i: usize) -> String {
        std::fs::read_to_string(dir.join(format!("share-{i}.txt"))).unwrap()
    }

    #[test]
    fn m_of_n_shares_open_the_keyring_and_fewer_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let g = generate(dir.path(), 5, 3).unwrap();
        assert_eq!(g.shares.len(), 5);
        use std::os::unix::fs::PermissionsExt;
        for p in g.shares.iter().chain([&g.sealed]) {
            assert_eq!(std::fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let mut u = Unsealer::open(&g.sealed).unwrap();
        assert_eq!(u.add(&share(dir.path(), 2)).unwrap(), (1, 3));
        assert_eq!(u.add(&share(dir.path(), 2)).unwrap_err(), ShareError::Duplicate);
        assert_eq!(u.add(&share(dir.path(), 5)).unwrap(), (2, 3));
        assert!(matches!(u.unseal(), Err(ProviderError::Sealed { have: 2, need: 3 })));
        u.add(&share(dir.path(), 4)).unwrap();
        let p = u.unseal().unwrap();
        let ring = p.keyring().unwrap();
        assert_eq!(ring.current_version(), 1);
        // Any other three open the same keyring.
        let mut other = Unsealer::open(&g.sealed).unwrap();
        for i in [1, 3, 5] {
            other.add(&share(dir.path(), i)).unwrap();
        }
        let same = other.into_provider().unwrap().keyring().unwrap();
        assert_eq!(same.derive("seal", "pan", 1).unwrap().expose(), ring.derive("seal", "pan", 1).unwrap().expose());
    }

    #[test]
    fn shares_of_another_set_or_damaged_ones_never_open_it() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ga = generate(a.path(), 3, 2).unwrap();
        generate(b.path(), 3, 2).unwrap();
        let mut u = Unsealer::open(&ga.sealed).unwrap();
        assert_eq!(u.add(&share(b.path(), 1)).unwrap_err(), ShareError::OtherSet);
        // A share of this set with its last byte changed passes the set check and fails the key check.
        u.add(&share(a.path(), 1)).unwrap();
        let good = share(a.path(), 2);
        let line = good.lines().nth(1).unwrap();
        let flipped = if line.ends_with('0') { "1" } else { "0" };
        let damaged = format!("{}{flipped}", &line[..line.len() - 1]);
        u.add(&damaged).unwrap();
        assert!(matches!(u.unseal(), Err(ProviderError::WrongShares)));
        assert_eq!(u.progress(), (0, 2), "every share is dropped after a failed try");
    }

    #[test]
    fn rotation_reseals_under_the_same_shares_and_keygen_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let g = generate(dir.path(), 2, 2).unwrap();
        let before = std::fs::read(&g.sealed).unwrap();
        assert!(matches!(generate(dir.path(), 2, 2), Err(ProviderError::Exists { .. })));
        assert_eq!(std::fs::read(&g.sealed).unwrap(), before);
        let open = |d: &Path| {
            let mut u = Unsealer::open(&d.join(SEALED_FILE)).unwrap();
            u.add(&share(d, 1)).unwrap();
            u.add(&share(d, 2)).unwrap();
            u.into_provider().unwrap()
        };
        assert_eq!(open(dir.path()).rotate().unwrap(), 2);
        assert_eq!(open(dir.path()).keyring().unwrap().versions().collect::<Vec<_>>(), vec![1, 2]);
        assert!(generate(dir.path(), 1, 2).is_err() && generate(dir.path(), 3, 1).is_err());
        // Retirement stores the shorter keyring under the same shares; the newest never goes.
        let v2 = open(dir.path()).keyring().unwrap().derive("seal", "pan", 2).unwrap();
        open(dir.path()).retire(1).unwrap();
        let ring = open(dir.path()).keyring().unwrap();
        assert_eq!(ring.versions().collect::<Vec<_>>(), vec![2]);
        assert_eq!(ring.derive("seal", "pan", 2).unwrap().expose(), v2.expose());
        assert!(open(dir.path()).retire(2).is_err());
    }
}
