//! One custodian's share of the unseal key, as written to a share file and sent to `POST /v1/unseal`:
//!
//! ```text
//! # veil unseal share 2 of 5: any 3 shares unseal the vault. One custodian keeps this; never log or send it elsewhere.
//! veil-share-v1:<set id: 16 hex>:<threshold>:<share: x ‖ y as hex>
//! ```
//! The set id names the share set (`veil keygen --shares` draws one per set), so a share of another set is
//! refused on arrival, not only when the combined key fails its check value.

use crate::crypto::Secret;

const PREFIX: &str = "veil-share-v1:";

/// A share text that cannot be read. Never carries the share's bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    #[error("not a veil share: expected one line `veil-share-v1:<set>:<threshold>:<hex>`")]
    Malformed,
    #[error("this share belongs to another share set than the vault's keyring")]
    OtherSet,
    #[error("this share was already given")]
    Duplicate,
}

/// A parsed share: which set, the threshold it was made for, and the share itself (x ‖ y, zeroized on drop).
pub struct Share {
    pub set: [u8; 8],
    pub threshold: u8,
    pub bytes: Secret<Vec<u8>>,
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Share").field("set", &hex::encode(self.set)).field("x", &self.x()).finish()
    }
}

impl Share {
    /// The share's x coordinate (its number in the set, 1..=255).
    pub fn x(&self) -> u8 {
        self.bytes.expose().first().copied().unwrap_or(0)
    }

    /// Reads a share text; comment lines (`#`) and blank lines around the one share line are ignored.
    pub fn parse(text: &str) -> Result<Share, ShareError> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
        let line = lines.next().ok_or(ShareError::Malformed)?;
        if lines.next().is_some() {
            return Err(ShareError::Malformed);
        }
        let rest = line.strip_prefix(PREFIX).ok_or(ShareError::Malformed)?;
        let mut parts = rest.split(':');
        let (Some(set), Some(threshold), Some(data), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ShareError::Malformed);
        };
        let mut set_id = [0u8; 8];
        hex::decode_to_slice(set, &mut set_id).map_err(|_| ShareError::Malformed)?;
        let threshold: u8 = threshold.parse().map_err(|_| ShareError::Malformed)?;
        // x ‖ a 32-byte y: exactly 66 hex digits, x never 0 (x = 0 would be the secret itself).
        if threshold < 2 || data.len() != 66 {
            return Err(ShareError::Malformed);
        }
        let bytes = Secret::new(hex::decode(data).map_err(|_| ShareError::Malformed)?);
        let share = Share { set: set_id, threshold, bytes };
        if share.x() == 0 {
            return Err(ShareError::Malformed);
        }
        Ok(share)
    }

    /// The share file's text: a comment saying what it is, then the share line.
    pub fn render(&self, of: usize) -> Secret<String> {
        Secret::new(format!(
            "# veil unseal share {x} of {of}: any {t} shares unseal the vault. One custodian keeps this; never log \
             or send it elsewhere.\n{PREFIX}{set}:{t}:{data}\n",
            x = self.x(),
            t = self.threshold,
            set = hex::encode(self.set),
            data = hex::encode(self.bytes.expose()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Share {
        let mut bytes = vec![3u8];
        bytes.extend([0xabu8; 32]);
        Share { set: [7; 8], threshold: 2, bytes: Secret::new(bytes) }
    }

    #[test]
    fn renders_and_parses_back() {
        let text = sample().render(5);
        assert!(text.expose().starts_with("# veil unseal share 3 of 5: any 2 shares"), "{}", text.expose());
        let back = Share::parse(text.expose()).unwrap();
        assert_eq!((back.set, back.threshold, back.x()), ([7; 8], 2, 3));
        assert_eq!(back.bytes.expose(), sample().bytes.expose());
        assert!(!format!("{back:?}").contains("abab"), "Debug never shows the share");
    }

    #[test]
    fn refuses_malformed_texts() {
        let good = sample().render(5).expose().lines().nth(1).unwrap().to_owned();
        let zero_x = good.replacen(":2:03", ":2:00", 1);
        let one_of = good.replacen(":2:", ":1:", 1);
        let short = good[..good.len() - 2].to_owned();
        let two = format!("{good}\n{good}");
        for bad in
            ["", "# only", "veil-share-v1:", "veil-share-v2:0707070707070707:2:03", &zero_x, &one_of, &short, &two]
        {
            assert_eq!(Share::parse(bad).unwrap_err(), ShareError::Malformed, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_errors_never_echo_input(text in ".{0,200}") {
            if let Err(e) = Share::parse(&text) {
                let shown = e.to_string();
                prop_assert!(text.len() < 8 || !shown.contains(&text));
            }
        }

        #[test]
        fn any_share_round_trips(set in any::<[u8; 8]>(), t in 2u8..=255, x in 1u8..=255, y in any::<[u8; 32]>()) {
            let mut bytes = vec![x];
            bytes.extend(y);
            let s = Share { set, threshold: t, bytes: Secret::new(bytes.clone()) };
            let back = Share::parse(s.render(255).expose()).unwrap();
            prop_assert_eq!((back.set, back.threshold), (set, t));
            prop_assert_eq!(back.bytes.expose(), &bytes);
        }
    }
}
