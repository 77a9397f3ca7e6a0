//! veil: a tokenisation and encryption proxy sidecar.
//!
//! ```text
//! ingress:   TLS -> HTTP/1.1 | h2 -> admit -> match (canonical path) -> gather (body, headers, query)
//!            -> decide -> one vault batch -> apply -> forward to the app
//! egress:    the app -> the same pipeline, revealing as the route's caller -> one provider -> tokenise echoes
//! smtp:      the shop's mailer -> EHLO/STARTTLS/AUTH -> each RCPT revealed -> DATA (MIME) -> one vault batch
//!            as the listener's caller -> the one mail server over verified TLS -> its reply
//! vault API: TLS/mTLS -> authenticate (API key | client cert) -> authorise (caller x operation x class)
//!            -> audit (fail closed) -> token engine -> store
//! ```
//! Layers, bottom up (imports point down only; `tests/layers.rs` checks it; ARCHITECTURE.md at the root):
//! `domain` (classes, permissions, purposes, durations, canonical paths) · `respond`, `budget`, `metrics`, `tls`,
//! `stall` · `token` (one format module per class), `crypto`, `store`, `server` (accept loop) · `vault` (engine,
//! auth, audit, API and its wire types, remote client), `detect` · `rewrite` (body formats) · `config` · `proxy`
//! (the flows on one pipeline), `smtp` (the mail listener), `admin`, `register` · `app` (wiring) · `cli`.

pub mod admin;
pub mod app;
pub mod budget;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod detect;
pub mod domain;
pub mod metrics;
pub mod proxy;
pub mod register;
pub mod respond;
pub mod rewrite;
pub mod server;
pub mod smtp;
pub mod stall;
pub mod store;
pub mod tls;
pub mod token;
pub mod vault;
