//! Checking a whole log: every signed line's signature, every line's sequence and link to the line before, and
//! the chain's end against the head the store holds — so a log cut short, rolled back to an older copy, emptied or
//! deleted is broken, not "intact". A log ends on a signed line (the last of every group commit): unsigned lines
//! after the last signed one were appended by someone without the key, unless a torn line follows them (a group
//! commit's write cut by a crash, never acknowledged; cut at the vault's start).

use std::io::BufRead;

use super::line::{self, Line, GENESIS, OP_RESTART, OP_START};
use crate::crypto::audit_key::AuditVerifier;
use crate::store::AuditHead;

/// The result of checking a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every line checks and the store's head is one of them. `tail` is the last signed line; lines after the
    /// head (`unacknowledged`) were written but their answers never left (a crash between the file and the store).
    /// `torn`: the file goes on after `tail` with a write cut by a crash (a torn line, and `cut` complete unsigned
    /// lines of its group before it), never acknowledged. `end`: the byte length of the log through `tail`.
    /// `signed`: how many lines carry a signature.
    Intact { entries: u64, tail: AuditHead, unacknowledged: u64, torn: bool, cut: u64, signed: u64, end: u64 },
    /// No line, and the store holds no head: a log not yet started.
    Empty,
    /// Not to be trusted: `line` (1-based; 0 = the log as a whole) and why.
    Broken { line: usize, reason: String },
}

impl Verdict {
    fn broken(line: usize, reason: impl Into<String>) -> Verdict {
        Verdict::Broken { line, reason: reason.into() }
    }
}

/// Checks the log read from `reader` (`None`: the file does not exist) against `head`, the store's head for
/// `log_id`. Lines must be signed by `verifier`; the first must start (or restart) the chain of `log_id`.
/// A last line without its newline (a write torn by a crash, never acknowledged) is left out.
pub fn verify<R: BufRead>(
    reader: Option<R>,
    verifier: &AuditVerifier,
    log_id: &str,
    head: Option<&AuditHead>,
) -> std::io::Result<Verdict> {
    let Some(mut reader) = reader else {
        return Ok(match head {
            None => Verdict::Empty,
            Some(h) => Verdict::broken(
                0,
                format!("the log file is missing, but the store's head is at line {}: it was deleted or moved", h.seq),
            ),
        });
    };
    let mut prev = GENESIS.to_owned();
    let mut expected = 1u64;
    let mut torn = false;
    let mut buf = Vec::new();
    let mut number = 0usize;
    let mut read = 0u64;
    // The last signed line: its seq, hash and where it ends; how many lines are signed; the first unsigned line
    // after it.
    let (mut last_seq, mut last_hash, mut last_end, mut signed) = (0u64, GENESIS.to_owned(), 0u64, 0u64);
    let mut unsigned_from = 0usize;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        number += 1;
        if buf.last() != Some(&b'\n') {
            torn = true;
            break;
        }
        read += buf.len() as u64;
        buf.pop();
        let Ok(text) = std::str::from_utf8(&buf) else { return Ok(Verdict::broken(number, "not UTF-8")) };
        let (l, is_signed) = match line::read(verifier, text) {
            Ok(l) => l,
            Err(reason) => return Ok(Verdict::broken(number, reason)),
        };
        if let Some(reason) = first_line_problem(&l, expected, log_id) {
            return Ok(Verdict::broken(number, reason));
        }
        if l.seq != expected {
            return Ok(Verdict::broken(
                number,
                format!("sequence number {} where {expected} belongs (a line was removed, added or moved)", l.seq),
            ));
        }
        if l.prev != prev {
            return Ok(Verdict::broken(
                number,
                format!(
                    "chain broken: prev is not the hash of line {} (that line was edited, or a line was removed, \
                     added or moved)",
                    number - 1
                ),
            ));
        }
        let h = line::hash(text);
        if let Some(head) = head.filter(|hd| hd.seq == l.seq) {
            if head.hash != h {
                return Ok(Verdict::broken(
                    number,
                    "this line differs from the one the store's head names: the log was replaced or rolled back",
                ));
            }
        }
        if is_signed {
            (last_seq, last_hash, last_end, unsigned_from) = (l.seq, h.clone(), read, 0);
            signed += 1;
        } else if unsigned_from == 0 {
            unsigned_from = number;
        }
        prev = h;
        expected += 1;
    }
    let cut = expected - 1 - last_seq;
    if cut > 0 && !torn {
        return Ok(Verdict::broken(
            unsigned_from,
            format!(
                "the log ends on {cut} line(s) without a signature after line {last_seq}, the last signed one: \
                 appended by someone without the audit key (every group commit ends on a signed line)"
            ),
        ));
    }
    let entries = last_seq;
    Ok(match (entries, head) {
        (0, None) => Verdict::Empty,
        (0, Some(h)) => Verdict::broken(
            0,
            format!("the log is empty, but the store's head is at line {}: it was emptied or replaced", h.seq),
        ),
        (_, None) => Verdict::broken(
            0,
            format!(
                "the store holds no head for log {log_id}: the store was replaced or reset, or this log is not this \
                 store's"
            ),
        ),
        (n, Some(h)) if n < h.seq => Verdict::broken(
            0,
            format!(
                "the log ends at line {n}, but the store's head is at line {}: lines were cut off (truncated, or \
                 rolled back to an older copy)",
                h.seq
            ),
        ),
        (n, Some(h)) => Verdict::Intact {
            entries: n,
            tail: AuditHead { seq: n, hash: last_hash },
            unacknowledged: n - h.seq,
            torn,
            cut,
            signed,
            end: last_end,
        },
    })
}

/// What is wrong with line `expected` as a chain's first line (or with a later line posing as one).
fn first_line_problem(l: &Line, expected: u64, log_id: &str) -> Option<String> {
    let starts = l.op == OP_START || l.op == OP_RESTART;
    if expected == 1 {
        if !starts || l.seq != 1 || l.prev != GENESIS {
            return Some("the first line does not start a chain (lines before it were removed)".into());
        }
        if l.log.as_deref() != Some(log_id) {
            return Some(format!(
                "the log is log {}, not {log_id} (another vault's log, or give --log-id)",
                l.log.as_deref().unwrap_or("?")
            ));
        }
    } else if starts {
        return Some("a chain start in the middle of the log (two logs joined)".into());
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::crypto::audit_key::AuditSigner;
    use crate::vault::audit::line::seal;

    fn chain(n: u64, signer: &AuditSigner) -> (String, Vec<AuditHead>) {
        grouped(n, signer, |_| true)
    }

    /// A chain of `n` lines where `signs(seq)` says which lines are signed (the last of their group commit).
    fn grouped(n: u64, signer: &AuditSigner, signs: impl Fn(u64) -> bool) -> (String, Vec<AuditHead>) {
        let mut text = String::new();
        let mut prev = GENESIS.to_owned();
        let mut heads = Vec::new();
        for seq in 1..=n {
            let l = Line {
                seq,
                ts: 1,
                log: (seq == 1).then(|| "log-a".to_owned()),
                caller: "vault".into(),
                op: if seq == 1 { OP_START.into() } else { "tokenize".into() },
                outcome: "ok".into(),
                prev: prev.clone(),
                ..Line::default()
            };
            let t = if signs(seq) { seal(signer, &l).unwrap() } else { line::unsigned(&l).unwrap() };
            prev = line::hash(&t);
            heads.push(AuditHead { seq, hash: prev.clone() });
            text.push_str(&t);
            text.push('\n');
        }
        (text, heads)
    }

    fn check(text: &str, head: Option<&AuditHead>) -> Verdict {
        let v = AuditSigner::from_seed(&[1; 32]).verifier();
        verify(Some(text.as_bytes()), &v, "log-a", head).unwrap()
    }

    #[test]
    fn intact_truncated_rolled_back_empty_missing_and_headless() {
        let s = AuditSigner::from_seed(&[1; 32]);
        let (text, heads) = chain(6, &s);
        assert!(matches!(check(&text, Some(&heads[5])), Verdict::Intact { entries: 6, unacknowledged: 0, .. }));
        assert!(matches!(check(&text, Some(&heads[4])), Verdict::Intact { unacknowledged: 1, .. }));
        let cut: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
        assert!(
            matches!(check(&cut, Some(&heads[5])), Verdict::Broken { line: 0, reason } if reason.contains("cut off"))
        );
        assert!(matches!(check("", Some(&heads[5])), Verdict::Broken { line: 0, reason } if reason.contains("empty")));
        assert_eq!(check("", None), Verdict::Empty);
        let v = s.verifier();
        let missing = verify(None::<&[u8]>, &v, "log-a", Some(&heads[5])).unwrap();
        assert!(matches!(missing, Verdict::Broken { reason, .. } if reason.contains("missing")));
        assert!(matches!(check(&text, None), Verdict::Broken { reason, .. } if reason.contains("no head")));
        // Another chain of the same length (a different history) is not the one the head names.
        let (other, _) = chain(6, &AuditSigner::from_seed(&[1; 32]));
        assert_eq!(other, text, "signatures are deterministic");
        let replaced = text.replacen("\"ts\":1,", "\"ts\":2,", 1);
        assert!(matches!(check(&replaced, Some(&heads[5])), Verdict::Broken { line: 1, .. }));
        // The wrong log id.
        assert!(matches!(
            verify(Some(text.as_bytes()), &v, "log-b", Some(&heads[5])).unwrap(),
            Verdict::Broken { line: 1, .. }
        ));
    }

    #[test]
    fn removed_first_lines_moved_lines_and_torn_tail() {
        let s = AuditSigner::from_seed(&[1; 32]);
        let (text, heads) = chain(5, &s);
        let lines: Vec<&str> = text.lines().collect();
        let no_first: String = lines[1..].iter().map(|l| format!("{l}\n")).collect();
        assert!(matches!(check(&no_first, Some(&heads[4])), Verdict::Broken { line: 1, .. }));
        let mut swapped = lines.clone();
        swapped.swap(2, 3);
        let swapped: String = swapped.iter().map(|l| format!("{l}\n")).collect();
        assert!(matches!(check(&swapped, Some(&heads[4])), Verdict::Broken { line: 3, .. }));
        let torn = format!("{text}{{\"seq\":6,\"ts");
        assert!(matches!(check(&torn, Some(&heads[4])), Verdict::Intact { entries: 5, torn: true, .. }));
    }

    fn joined(lines: &[&str]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    #[test]
    fn group_signed_chain_verifies_and_an_edited_unsigned_line_breaks_the_link_after_it() {
        let s = AuditSigner::from_seed(&[1; 32]);
        // Groups: 1 | 2 3 4 | 5 6 (signed: 1, 4, 6).
        let (text, heads) = grouped(6, &s, |seq| matches!(seq, 1 | 4 | 6));
        assert_eq!(
            check(&text, Some(&heads[5])),
            Verdict::Intact {
                entries: 6,
                tail: heads[5].clone(),
                unacknowledged: 0,
                torn: false,
                cut: 0,
                signed: 3,
                end: text.len() as u64
            }
        );
        // A head at an earlier group's end: the later group is written, not acknowledged.
        assert!(matches!(check(&text, Some(&heads[3])), Verdict::Intact { unacknowledged: 2, .. }));
        let lines: Vec<&str> = text.lines().collect();
        assert!(!lines[1].contains("\"sig\"") && lines[3].contains("\"sig\""));
        let edited = text.replacen("\"seq\":3,\"ts\":1,", "\"seq\":3,\"ts\":2,", 1);
        assert_ne!(edited, text);
        assert!(
            matches!(check(&edited, Some(&heads[5])), Verdict::Broken { line: 4, reason } if reason.contains("line 3"))
        );
        // An unsigned line removed, or two swapped.
        let removed = joined(&[lines[0], lines[1], lines[3], lines[4], lines[5]]);
        assert!(matches!(check(&removed, Some(&heads[5])), Verdict::Broken { line: 3, .. }));
        let swapped = joined(&[lines[0], lines[2], lines[1], lines[3], lines[4], lines[5]]);
        assert!(matches!(check(&swapped, Some(&heads[5])), Verdict::Broken { line: 2, .. }));
    }

    #[test]
    fn a_log_ends_on_a_signed_line_unless_a_crash_tore_the_write() {
        let s = AuditSigner::from_seed(&[1; 32]);
        let (text, heads) = grouped(6, &s, |seq| matches!(seq, 1 | 4 | 6));
        let lines: Vec<&str> = text.lines().collect();
        // Someone without the key appends lines that chain on correctly: no signature at the end.
        let (longer, _) = grouped(8, &s, |seq| matches!(seq, 1 | 4 | 6));
        assert!(longer.starts_with(&text));
        assert!(matches!(
            check(&longer, Some(&heads[5])),
            Verdict::Broken { line: 7, reason } if reason.contains("without a signature after line 6")
        ));
        // ... or cuts the log after an unsigned line (the head then names a later line too).
        let cut = joined(&lines[..5]);
        assert!(matches!(check(&cut, Some(&heads[3])), Verdict::Broken { line: 5, .. }));
        // The last line's signature stripped: unsigned at the end.
        let stripped = text.replacen(lines[5], &format!("{}}}", &lines[5][..lines[5].rfind(",\"sig\"").unwrap()]), 1);
        assert!(
            matches!(check(&stripped, Some(&heads[3])), Verdict::Broken { line: 5, reason } if reason.contains("2 line(s)"))
        );
        // A group's write cut by a crash: its complete unsigned lines and a torn one, after the last signed line.
        let signed_end = joined(&lines[..4]).len() as u64;
        let torn = format!("{}{}", joined(&lines[..5]), &lines[5][..40]);
        assert_eq!(
            check(&torn, Some(&heads[3])),
            Verdict::Intact {
                entries: 4,
                tail: heads[3].clone(),
                unacknowledged: 0,
                torn: true,
                cut: 1,
                signed: 2,
                end: signed_end
            }
        );
        // Only unsigned lines and a torn one, no head: nothing was ever acknowledged.
        let (only, _) = grouped(3, &s, |seq| seq == 3);
        let only: Vec<&str> = only.lines().collect();
        assert_eq!(check(&format!("{}{}", joined(&only[..2]), &only[2][..10]), None), Verdict::Empty);
    }
}
