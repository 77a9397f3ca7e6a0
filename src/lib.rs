//! veil: a tokenisation and encryption proxy sidecar.
//!
//! ```text
//! vault API: TLS/mTLS -> authenticate (API key | client cert) -> authorise (caller x operation x class)
//!            -> audit (fail closed) -> token engine -> store
//! ```
//! Modules: `config` (raw TOML -> validated), `crypto` (keyring, HKDF subkeys, AES-GCM-SIV, HMAC
//! fingerprints), `token` (one format module per class), `store` (the `Store` trait, SQLite with group
//! commit), `vault` (engine, auth, policy, audit, HTTP API, the `Vault` trait), `server` (accept loop),
//! `tls`, `admin` + `metrics`, `app` (wiring), `cli`.

pub mod admin;
pub mod app;
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
pub mod stall;
pub mod store;
pub mod tls;
pub mod token;
pub mod vault;
