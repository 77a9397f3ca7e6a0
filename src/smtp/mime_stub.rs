//! A stand-in for `crate::rewrite::mime` (being written on another branch) with the same API, so the SMTP flow
//! can be built and tested meanwhile: one-part `text/plain` or `text/html` messages in 7bit/8bit, address and
//! Subject headers taken as they are written. Everything else is refused (fail closed). Deleted when the real
//! module lands.

/// Bounds on a message's structure (unused by the stand-in).
#[allow(dead_code)]
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_depth: usize,
    pub max_parts: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_depth: 8, max_parts: 100 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MimeError {
    #[error("the message has no header/body separator")]
    NoBody,
    #[error("the message is not UTF-8 where it must be")]
    Encoding,
    #[error("this stand-in does not handle that message structure")]
    Unsupported,
    #[error("a replacement does not fit the slots")]
    Slots,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Address(&'static str),
    Subject,
    Body { html: bool },
}

#[derive(Debug, Clone)]
pub struct Slot {
    pub place: Place,
    pub text: String,
}

/// A parsed message: its header fields (unfolded) and one text body.
pub struct Message {
    headers: Vec<(String, String)>,
    /// Which header each slot is, or `None` for the body.
    at: Vec<Option<usize>>,
    slots: Vec<Slot>,
    body: String,
}

const ADDRESS_HEADERS: [&str; 4] = ["To", "Cc", "Bcc", "Reply-To"];

impl Message {
    pub fn parse(raw: &[u8], _limits: &Limits) -> Result<Message, MimeError> {
        let text = std::str::from_utf8(raw).map_err(|_| MimeError::Encoding)?;
        let (head, body) = text.split_once("\r\n\r\n").ok_or(MimeError::NoBody)?;
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.split("\r\n") {
            match (line.starts_with([' ', '\t']), headers.last_mut()) {
                (true, Some((_, v))) => v.push_str(line),
                (true, None) => return Err(MimeError::Unsupported),
                (false, _) => {
                    let (name, value) = line.split_once(':').ok_or(MimeError::Unsupported)?;
                    headers.push((name.trim().to_owned(), value.trim().to_owned()));
                }
            }
        }
        let get = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.to_ascii_lowercase());
        let html = match get("Content-Type") {
            None => false,
            Some(t) if t.starts_with("text/plain") => false,
            Some(t) if t.starts_with("text/html") => true,
            Some(_) => return Err(MimeError::Unsupported),
        };
        if !matches!(get("Content-Transfer-Encoding").as_deref(), None | Some("7bit" | "8bit")) {
            return Err(MimeError::Unsupported);
        }
        let (mut at, mut slots) = (Vec::new(), Vec::new());
        for (i, (name, value)) in headers.iter().enumerate() {
            let place = match ADDRESS_HEADERS.iter().find(|h| h.eq_ignore_ascii_case(name)) {
                Some(h) => Place::Address(h),
                None if name.eq_ignore_ascii_case("Subject") => Place::Subject,
                None => continue,
            };
            at.push(Some(i));
            slots.push(Slot { place, text: value.clone() });
        }
        at.push(None);
        slots.push(Slot { place: Place::Body { html }, text: body.to_owned() });
        Ok(Message { headers, at, slots, body: body.to_owned() })
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    pub fn render(&self, new: &[Option<String>]) -> Result<Vec<u8>, MimeError> {
        if new.len() != self.slots.len() {
            return Err(MimeError::Slots);
        }
        let mut headers = self.headers.clone();
        let mut body = self.body.clone();
        for (slot, text) in self.at.iter().zip(new) {
            let Some(text) = text else { continue };
            if text.contains(['\r', '\n']) && slot.is_some() {
                return Err(MimeError::Slots);
            }
            match slot.and_then(|i| headers.get_mut(i)) {
                Some((_, v)) => v.clone_from(text),
                None => body.clone_from(text),
            }
        }
        let mut out = String::new();
        for (k, v) in &headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&body);
        Ok(out.into_bytes())
    }
}
