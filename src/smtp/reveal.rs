//! What the listener asks the vault, as its caller: whether an envelope recipient is an e-mail token (and its
//! address), and the tokens in a message's address headers, Subject and text parts — revealed where the caller
//! may detokenize their class, masked where it may only mask, left as they are otherwise — in one detokenize and
//! one mask call per message. Only for its audience: a message to customers shows only what is linked to them,
//! one to the shop's trusted staff what the caller may see, one to anyone else no value at all.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::reply::{self, Reply};
use crate::domain::permission::{allowed, Permission};
use crate::domain::{Class, Op};
use crate::metrics::Metrics;
use crate::rewrite::html_escape;
use crate::rewrite::mime::{Limits, Message, Place, Slot};
use crate::vault::auth::Caller;
use crate::vault::{ItemResult, Vault, VaultError};

/// What the listener knows of its caller's rights.
#[derive(Debug, Clone)]
pub enum Rights {
    /// The caller's `allow` list (the vault is in this process).
    Known(Vec<Permission>),
    /// A remote vault holds them (`veil proxy`): ask, and learn from a refusal.
    Remote,
}

impl Rights {
    pub fn may(&self, op: Op, class: Class) -> bool {
        match self {
            Rights::Known(allow) => allowed(allow, op, class),
            Rights::Remote => true,
        }
    }
}

/// The vault as one listener's caller.
pub struct Revealer {
    pub vault: Arc<dyn Vault>,
    pub caller: Caller,
    pub rights: Rights,
    pub purpose: String,
    pub timeout: Duration,
    pub metrics: Arc<Metrics>,
    pub listener: String,
    /// `[class.email] relay_domain`: addresses there are tokens or nothing.
    pub relay_domain: Option<&'static str>,
    /// `trusted_recipients`: addresses and `@domain`s, lower case.
    pub trusted: Vec<String>,
}

/// Whom a message goes to, for what it may show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience<'a> {
    /// The shop's trusted recipients only: what the caller may reveal.
    Staff,
    /// Customers (their e-mail tokens), maybe with staff on copy: only what is linked to every one of them — a
    /// token someone planted in what the app sends them (a comment, a gift message) stays a token.
    Customers(Vec<(Class, &'a str)>),
    /// Someone with a plain address the shop does not trust: no value at all.
    Nobody,
}

/// A value the vault gave back for a token: kept to scrub it from what the upstream answers.
pub type Revealed = (String, String);

/// Classes looked for in each kind of place.
fn classes_in(place: Place) -> &'static [Class] {
    match place {
        Place::Address(_) => &[Class::Email, Class::Name],
        Place::Subject | Place::Body { .. } => {
            &[Class::Email, Class::Phone, Class::Pan, Class::Iban, Class::Name, Class::Address]
        }
    }
}

/// Whether a revealed address can go into an envelope as it is.
fn deliverable(address: &str) -> bool {
    address.len() <= super::command::MAX_PATH
        && address.chars().all(|c| c.is_ascii_graphic() && !"<>".contains(c))
        && address.rsplit_once('@').is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
}

impl Revealer {
    /// The audience of a message to these recipients: `tokens` were revealed (customers), `plain` were not.
    pub fn audience<'a>(&self, tokens: &'a [Revealed], plain: &[String]) -> Audience<'a> {
        let trusted = |address: &String| {
            let address = address.to_ascii_lowercase();
            self.trusted.iter().any(|t| if t.starts_with('@') { address.ends_with(t.as_str()) } else { address == *t })
        };
        match (plain.iter().all(trusted), tokens.is_empty()) {
            (false, _) => Audience::Nobody,
            (true, true) => Audience::Staff,
            (true, false) => {
                Audience::Customers(tokens.iter().map(|(token, _)| (Class::Email, token.as_str())).collect())
            }
        }
    }

    async fn call(
        &self,
        op: Op,
        items: &[(Class, &str)],
        audience: Option<&[(Class, &str)]>,
    ) -> Result<Vec<ItemResult>, VaultError> {
        let purpose = Some(self.purpose.as_str());
        let call = async {
            match (op, audience) {
                (_, Some(audience)) => self.vault.reveal_to(&self.caller, op, items, purpose, audience).await,
                (Op::Mask, None) => self.vault.mask(&self.caller, items, purpose).await,
                _ => self.vault.detokenize(&self.caller, items, purpose).await,
            }
        };
        tokio::time::timeout(self.timeout, call).await.unwrap_or(Err(VaultError::Unavailable))
    }

    /// The address to deliver to for envelope recipient `to`: revealed if it is a token the vault knows, as it
    /// is if it is no token; a refusal (550 for an unknown token at the relay or reserved domain, 451 when the
    /// vault cannot answer) otherwise.
    pub async fn recipient(&self, to: &str) -> Result<(String, Option<Revealed>), Reply> {
        let domain = to.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default();
        let token_domain = self.relay_domain == Some(domain.as_str())
            || domain == crate::token::email::RESERVED_DOMAIN
            || domain.ends_with(&format!(".{}", crate::token::email::RESERVED_DOMAIN));
        let answer = match self.rights.may(Op::Detokenize, Class::Email) {
            true => self.call(Op::Detokenize, &[(Class::Email, to)], None).await,
            false => Err(VaultError::ForbiddenOp(Op::Detokenize)),
        };
        match answer.map(|mut v| v.pop()) {
            Ok(Some(Ok(address))) if deliverable(&address) => {
                self.metrics.smtp_recipients_revealed.with_label_values(&[&self.listener]).inc();
                Ok((address.clone(), Some((to.to_owned(), address))))
            }
            Ok(Some(Ok(_))) => {
                tracing::warn!(listener = %self.listener, "a revealed recipient is not a deliverable address");
                Err(reply::UNKNOWN_RECIPIENT)
            }
            Ok(_) | Err(VaultError::Forbidden { .. } | VaultError::ForbiddenOp(_)) if token_domain => {
                Err(reply::UNKNOWN_RECIPIENT)
            }
            Ok(_) | Err(VaultError::Forbidden { .. } | VaultError::ForbiddenOp(_)) => Ok((to.to_owned(), None)),
            Err(e) => {
                tracing::warn!(listener = %self.listener, error = %e, "recipient could not be checked with the vault");
                Err(reply::VAULT_UNAVAILABLE)
            }
        }
    }

    /// `raw` (DATA, dot-unstuffed) with its tokens revealed or masked for `audience`, and the values revealed; or
    /// the refusal.
    pub async fn message(&self, raw: &[u8], audience: &Audience<'_>) -> Result<(Vec<u8>, Vec<Revealed>), Reply> {
        let message = Message::parse(raw, &Limits::default()).map_err(|e| {
            tracing::info!(listener = %self.listener, error = %e, "message refused: not parseable MIME");
            reply::MALFORMED
        })?;
        let slots = message.slots();
        // Every distinct (class, token) once, with where it was found.
        let mut found: Vec<(usize, usize, usize, usize)> = Vec::new(); // (slot, start, end, item)
        let mut items: Vec<(Class, String)> = Vec::new();
        let mut index: HashMap<(Class, String), usize> = HashMap::new();
        for (s, Slot { place, text }) in slots.iter().enumerate() {
            let wanted: Vec<Class> = classes_in(*place)
                .iter()
                .copied()
                .filter(|c| self.rights.may(Op::Detokenize, *c) || self.rights.may(Op::Mask, *c))
                .collect();
            if wanted.is_empty() {
                continue;
            }
            // Candidates by their formats (tagged for names and addresses); the vault confirms them or not. In HTML
            // the app escaped what it wrote: a token with an apostrophe is there as `&#39;`.
            let candidates = match place {
                Place::Body { html: true } => crate::rewrite::refs::find_tokens(text, &wanted),
                _ => crate::rewrite::refs::find_tokens_as_written(text, &wanted),
            };
            for m in candidates {
                let item = *index.entry((m.class, m.text.clone())).or_insert_with(|| {
                    items.push((m.class, m.text));
                    items.len() - 1
                });
                found.push((s, m.range.start, m.range.end, item));
            }
        }
        let items: Vec<(Class, &str)> = items.iter().map(|(c, t)| (*c, t.as_str())).collect();
        let answers = match audience {
            Audience::Nobody => {
                if !items.is_empty() {
                    tracing::info!(listener = %self.listener, "a plain recipient is not trusted: no token revealed");
                }
                vec![None; items.len()]
            }
            Audience::Staff => self.reveal_items(&items, None).await?,
            Audience::Customers(tokens) => self.reveal_items(&items, Some(tokens)).await?,
        };
        let mut new: Vec<Option<String>> = vec![None; slots.len()];
        let mut revealed = Vec::new();
        for (s, slot) in slots.iter().enumerate() {
            let mut out = String::new();
            let mut last = 0;
            for &(_, start, end, item) in found.iter().filter(|f| f.0 == s) {
                let (Some((op, value)), Some((class, token))) = (&answers[item], items.get(item)) else { continue };
                out.push_str(&slot.text[last..start]);
                match slot.place {
                    Place::Body { html: true } => out.push_str(&html_escape(value)),
                    _ => out.push_str(value),
                }
                last = end;
                let labels = [self.listener.as_str(), class.name(), op.name()];
                self.metrics.smtp_fields_revealed.with_label_values(&labels).inc();
                if *op == Op::Detokenize {
                    revealed.push(((*token).to_owned(), value.clone()));
                }
            }
            if last > 0 {
                out.push_str(&slot.text[last..]);
                new[s] = Some(out);
            }
        }
        let rendered = message.render(&new).map_err(|e| {
            tracing::warn!(listener = %self.listener, error = %e, "message could not be rendered");
            reply::MALFORMED
        })?;
        Ok((rendered, revealed))
    }

    /// For each item: the operation that answered and its answer, or `None` (unknown token, or no right).
    /// One detokenize call for the classes the caller may reveal, one mask call for those it may only mask;
    /// with a remote vault's rights unknown, a class refused is moved on (detokenize → mask → left).
    async fn reveal_items(
        &self,
        items: &[(Class, &str)],
        audience: Option<&[(Class, &str)]>,
    ) -> Result<Vec<Option<(Op, String)>>, Reply> {
        let mut out: Vec<Option<(Op, String)>> = vec![None; items.len()];
        let mut detokenize: Vec<usize> =
            (0..items.len()).filter(|&i| self.rights.may(Op::Detokenize, items[i].0)).collect();
        let mut mask: Vec<usize> = (0..items.len())
            .filter(|&i| !self.rights.may(Op::Detokenize, items[i].0) && self.rights.may(Op::Mask, items[i].0))
            .collect();
        for op in [Op::Detokenize, Op::Mask] {
            // Each refusal takes one class out; the loop ends when a call succeeds or nothing is left.
            for _ in 0..=Class::ALL.len() {
                let which = if op == Op::Detokenize { &mut detokenize } else { &mut mask };
                if which.is_empty() {
                    break;
                }
                let batch: Vec<(Class, &str)> = which.iter().map(|&i| items[i]).collect();
                match self.call(op, &batch, audience).await {
                    Ok(answers) => {
                        for (&i, a) in which.iter().zip(answers) {
                            out[i] = a.ok().map(|v| (op, v));
                        }
                        break;
                    }
                    Err(VaultError::Forbidden { class, .. }) => {
                        let (refused, kept): (Vec<usize>, Vec<usize>) =
                            which.iter().partition(|&&i| items[i].0 == class);
                        *which = kept;
                        if op == Op::Detokenize {
                            mask.extend(refused);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(listener = %self.listener, error = %e, op = op.name(), "vault call failed");
                        return Err(reply::VAULT_UNAVAILABLE);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// `text` with every revealed value put back as its token (ASCII case-insensitively, as servers echo addresses
/// in their own case): what the upstream says about a recipient must not tell the shop the real address.
pub fn scrub(text: &str, revealed: &[Revealed]) -> String {
    let mut out = text.to_owned();
    for (token, value) in revealed {
        if value.is_empty() {
            continue;
        }
        let lower = out.to_ascii_lowercase();
        let needle = value.to_ascii_lowercase();
        let mut result = String::with_capacity(out.len());
        let mut last = 0;
        for (at, _) in lower.match_indices(&needle) {
            result.push_str(&out[last..at]);
            result.push_str(token);
            last = at + needle.len();
        }
        result.push_str(&out[last..]);
        out = result;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_scrubbing() {
        assert_eq!(html_escape("O'Neil & <Söhne> \"x\""), "O&#39;Neil &amp; &lt;Söhne&gt; &quot;x&quot;");
        let revealed = vec![("k3f9@customers.shop.example".to_owned(), "Jane.Doe@gmail.com".to_owned())];
        assert_eq!(
            scrub("5.1.1 <jane.doe@GMAIL.com>: Recipient address rejected; Jane.Doe@gmail.com", &revealed),
            "5.1.1 <k3f9@customers.shop.example>: Recipient address rejected; k3f9@customers.shop.example"
        );
        assert_eq!(scrub("nothing here", &revealed), "nothing here");
    }

    #[test]
    fn deliverable_addresses() {
        assert!(deliverable("jane@example.org"));
        assert!(!deliverable("jane@example.org\r\nRCPT TO:<x@y>"));
        assert!(!deliverable("jane"));
        assert!(!deliverable("<jane@x>"));
    }
}
