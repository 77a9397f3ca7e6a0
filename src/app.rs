//! Builds the running parts from a validated [`Config`] for one [`Mode`] — keys, store, engine, audit, vault API
//! (`run`, `vault`), or a remote vault client (`proxy`); proxy and egress routes (`run`, `proxy`); admin — binds
//! their listeners, and runs them until SIGTERM/SIGINT, then drains.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::admin::{self, AdminState};
use crate::config::{Config, ConfigError, EgressConfig, ProxyConfig, SmtpConfig, StoreUrl, VaultConfig};
use crate::crypto::audit_key::AuditSigner;
use crate::crypto::provider::shares::Unsealer;
use crate::crypto::{BlobKeys, BlobSlot, KeySet, Keyring, MasterKeySpec, Secret};
use crate::domain::Class;
use crate::metrics::Metrics;
use crate::proxy::egress::Egress;
use crate::proxy::reveal::Staff;
use crate::proxy::Proxy;
use crate::server::{self, AnsweredHere, Limits};
use crate::store::postgres::{PostgresOptions, PostgresStore};
use crate::store::sqlite::{SqliteOptions, SqliteStore};
use crate::store::Store;
use crate::tls::ReloadableCert;
use crate::vault::api::{self, ApiState};
use crate::vault::audit::{AuditLog, AuditSetup};
use crate::vault::auth::{Caller, Callers};
use crate::vault::engine::{self, Clock, Engine};
use crate::vault::remote::RemoteVault;
use crate::vault::seal::{Gate, Opener};
use crate::vault::{LocalVault, Vault};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("master key: {0}")]
    Keys(#[from] crate::crypto::keys::KeyError),
    #[error("master key: {0}")]
    Provider(#[from] crate::crypto::ProviderError),
    #[error("master key: the key provider did not finish: {0}")]
    ProviderTask(String),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("audit: {0}")]
    Audit(#[from] crate::vault::audit::AuditError),
    #[error("tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("egress {0}: its caller is not configured")]
    EgressCaller(String),
    #[error("smtp {0}: its caller is not configured")]
    SmtpCaller(String),
    #[error("{0}")]
    Mode(ConfigError),
    #[error(transparent)]
    VaultClient(#[from] crate::vault::remote::RemoteSetupError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A started veil: the addresses it listens on, and a handle to stop it.
pub struct Running {
    pub proxy_addr: Option<SocketAddr>,
    /// The vault API's address (`veil run`, `veil vault`).
    pub vault_addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    /// Each egress route's name and address.
    pub egress_addrs: Vec<(String, SocketAddr)>,
    /// Each SMTP listener's name and address.
    pub smtp_addrs: Vec<(String, SocketAddr)>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Tasks started once the vault opened (at start, or when a sealed vault is unsealed): the retention purge.
    opened_tasks: OpenedTasks,
    proxy_cert: Option<Arc<ReloadableCert>>,
    metrics: Arc<Metrics>,
}

impl Running {
    /// Re-reads the proxy's certificate files (SIGHUP); the old certificate stays on error.
    pub fn reload_certificates(&self) -> Result<(), crate::tls::TlsError> {
        let Some(c) = &self.proxy_cert else { return Ok(()) };
        c.reload()?;
        if let Some(expiry) = c.not_after() {
            self.metrics.set_certificate_expiry("proxy", expiry);
        }
        Ok(())
    }

    /// Stops accepting, lets in-flight requests finish, and returns when every listener has drained.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let opened: Vec<_> = std::mem::take(&mut *self.opened_tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in opened {
            let _ = t.await;
        }
    }
}

/// Which parts a process serves: `veil run` (all), `veil vault` (the vault API), `veil proxy` (proxy and egress
/// routes, calling a remote vault).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    All,
    Vault,
    Proxy,
}

impl Mode {
    pub fn command(self) -> &'static str {
        match self {
            Mode::All => "veil run",
            Mode::Vault => "veil vault",
            Mode::Proxy => "veil proxy",
        }
    }
}

/// What `mode` needs of a valid config beyond validation; every problem with its path.
pub fn mode_problems(cfg: &Config, mode: Mode) -> Vec<String> {
    let cmd = mode.command();
    let mut problems = Vec::new();
    match (mode, &cfg.vault) {
        (Mode::Proxy, _) => {
            if cfg.vault_client.is_none() {
                problems.push(format!("vault_client: `{cmd}` needs a [vault_client] section (the remote vault)"));
            }
            if cfg.proxy.is_none() && cfg.egress.is_empty() && cfg.smtp.is_empty() {
                problems.push(format!(
                    "proxy: `{cmd}` needs a [proxy] section, [[egress]] routes or [[smtp]] listeners to serve"
                ));
            }
        }
        (_, None) => {
            problems.push(format!("vault: `{cmd}` needs a [vault] section ([vault_client] is for `veil proxy`)"))
        }
        (Mode::Vault, Some(v)) => {
            let mtls = v.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
            if !mtls && !v.listen.ip().is_loopback() {
                problems.push(format!(
                    "vault.tls.client_ca: `{cmd}` on a non-loopback address needs [vault.tls] with client_ca (mTLS)"
                ));
            }
        }
        (Mode::All, Some(_)) => {}
    }
    problems
}

/// Opens the store named by the config.
pub async fn open_store(vault: &VaultConfig) -> Result<Arc<dyn Store>, StartError> {
    match &vault.store {
        StoreUrl::Sqlite(url) => Ok(Arc::new(SqliteStore::open(url, SqliteOptions::default()).await?)),
        StoreUrl::Postgres(url) => Ok(Arc::new(PostgresStore::open(url, PostgresOptions::default()).await?)),
    }
}

/// The subkeys of a clear key file (provider `file`).
pub fn load_keys(master_key_file: &Path) -> Result<KeySet, StartError> {
    let ring = Keyring::load(master_key_file)?;
    Ok(KeySet::derive(&ring, &Class::names())?)
}

/// The audit signing key: `[vault] audit_key_file`; without one (development, `veil check` warns), a key derived
/// from the master keyring's audit subkey — then whoever holds the master key can also sign audit lines.
pub fn audit_signer(v: &VaultConfig, keys: &KeySet) -> Result<AuditSigner, StartError> {
    match &v.audit_key_file {
        Some(path) => Ok(AuditSigner::load(path)?),
        None => {
            let mut seed = keys.audit_signing_seed().fingerprint(b"veil/audit-signing-key/v1");
            let signer = AuditSigner::from_seed(&seed);
            zeroize::Zeroize::zeroize(&mut seed);
            Ok(signer)
        }
    }
}

/// The id the audit log's head is kept under in the store: `[vault] audit_log_id`, else this host's name and
/// the log's absolute path (vault replicas sharing one PostgreSQL each keep their own head).
pub fn audit_log_id(v: &VaultConfig) -> String {
    if let Some(id) = &v.audit_log_id {
        return id.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let path = std::path::absolute(&v.audit_log).unwrap_or_else(|_| v.audit_log.clone());
    format!("{host}:{}", path.display())
}

/// Opens the configured audit log on `store` (checked against the store's head; see [`AuditLog::open`]).
pub async fn open_audit(
    v: &VaultConfig,
    keys: &KeySet,
    store: Arc<dyn Store>,
    metrics: &Metrics,
    clock: &Clock,
) -> Result<AuditLog, StartError> {
    let setup = AuditSetup {
        path: v.audit_log.clone(),
        log_id: audit_log_id(v),
        signer: audit_signer(v, keys)?,
        new_chain: v.new_audit_chain,
        sequence: Some(metrics.audit_sequence.clone()),
    };
    Ok(AuditLog::open(setup, store, keys.audit.clone(), clock()).await?)
}

/// The subkeys of the keyring the configured provider holds; `shares` are custodians' shares (provider `shares`).
pub fn keys_from(spec: &MasterKeySpec, shares: &[Secret<String>]) -> Result<KeySet, StartError> {
    let ring = spec.provider_with(shares)?.keyring()?;
    Ok(KeySet::derive(&ring, &Class::names())?)
}

/// Everything `veil run` serves: [`start_mode`] with [`Mode::All`].
pub async fn start(cfg: Config, clock: Clock) -> Result<Running, StartError> {
    start_mode(cfg, Mode::All, clock).await
}

/// Starts the listeners `mode` serves; returns once they are bound.
pub async fn start_mode(cfg: Config, mode: Mode, clock: Clock) -> Result<Running, StartError> {
    let problems = mode_problems(&cfg, mode);
    if !problems.is_empty() {
        return Err(StartError::Mode(ConfigError { problems }));
    }
    let metrics = Arc::new(Metrics::new()?);
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    let opened_tasks = OpenedTasks::default();

    let mut vault_addr = None;
    let (vault, blobs): (Arc<dyn Vault>, BlobSlot) = match (mode, &cfg.vault, &cfg.vault_client) {
        (Mode::All | Mode::Vault, Some(v), _) => {
            let blobs = BlobSlot::default();
            let opening = Opening {
                cfg: cfg.clone(),
                blobs: blobs.clone(),
                metrics: metrics.clone(),
                clock: clock.clone(),
                stopped: stopped.clone(),
                tasks: opened_tasks.clone(),
            };
            let gate = match &v.master_key {
                MasterKeySpec::Shares { sealed } => {
                    let unsealer = Unsealer::open(sealed)?;
                    let need = unsealer.progress().1;
                    tracing::warn!(
                        need,
                        sealed = %sealed.display(),
                        "the vault is sealed: it serves nothing until {need} custodians have run `veil unseal`"
                    );
                    Arc::new(Gate::sealed(unsealer, opening.into_opener(), metrics.clone()))
                }
                spec => {
                    // An HSM or a KMS answers over blocking calls: kept off the runtime's workers.
                    let spec = spec.clone();
                    let ring = tokio::task::spawn_blocking(move || {
                        let provider = spec.provider_with(&[])?;
                        tracing::info!(provider = %provider.describe(), "master keyring loaded");
                        provider.keyring()
                    })
                    .await
                    .map_err(|e| StartError::ProviderTask(e.to_string()))??;
                    Arc::new(Gate::open(opening.open(ring).await?))
                }
            };
            let api = start_vault_api(&cfg, v, gate.clone(), clock, &metrics, &stopped, &mut tasks).await?;
            vault_addr = Some(api);
            (gate, blobs)
        }
        (Mode::Proxy, _, Some(c)) => {
            // The proxy holds no master keyring: only its own encrypt-only key, if a route encrypts.
            let blobs = match &c.encrypt_key_file {
                Some(path) => BlobKeys::load_encrypt_only(path)?.into_slot(),
                None => BlobSlot::default(),
            };
            tracing::info!(url = %c.url, mtls = c.identity.is_some(), "calling the remote vault");
            (Arc::new(RemoteVault::new(c)?), blobs)
        }
        _ => return Err(StartError::Mode(ConfigError { problems: vec!["no vault to serve or call".into()] })),
    };

    let mut proxy_addr = None;
    let mut proxy_cert = None;
    let mut egress_addrs = Vec::new();
    let mut smtp_addrs = Vec::new();
    if mode == Mode::Vault {
        if cfg.proxy.is_some() || !cfg.egress.is_empty() || !cfg.smtp.is_empty() {
            tracing::warn!(
                "`veil vault` serves the vault API only; [proxy], [[egress]] and [[smtp]] are for `veil proxy`"
            );
        }
    } else {
        if let Some(pc) = &cfg.proxy {
            let (addr, cert) =
                start_proxy(&cfg, pc, vault.clone(), blobs.clone(), metrics.clone(), &stopped, &mut tasks).await?;
            proxy_addr = Some(addr);
            proxy_cert = cert;
        }
        for e in &cfg.egress {
            let addr = start_egress(&cfg, e, vault.clone(), metrics.clone(), &stopped, &mut tasks).await?;
            egress_addrs.push((e.name().to_owned(), addr));
        }
        for s in &cfg.smtp {
            let addr = start_smtp(&cfg, s, vault.clone(), metrics.clone(), &stopped, &mut tasks).await?;
            smtp_addrs.push((s.name.clone(), addr));
        }
    }

    let mut admin_addr = None;
    if let Some(a) = &cfg.admin {
        admin_addr = Some(start_admin(a.listen, metrics.clone(), vault, &stopped, &mut tasks).await?);
    }
    Ok(Running {
        proxy_addr,
        vault_addr,
        admin_addr,
        egress_addrs,
        smtp_addrs,
        stop,
        tasks,
        opened_tasks,
        proxy_cert,
        metrics,
    })
}

/// Tasks a vault starts once it is open, awaited at shutdown like the listeners.
type OpenedTasks = Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>;

/// What opens the vault of this process once its keyring is known: at start, or when custodians unseal it.
struct Opening {
    cfg: Config,
    blobs: BlobSlot,
    metrics: Arc<Metrics>,
    clock: Clock,
    stopped: watch::Receiver<bool>,
    tasks: OpenedTasks,
}

impl Opening {
    /// Derives the subkeys, opens audit log and store, fills the proxy's blob keys, starts the retention purge.
    async fn open(&self, ring: Keyring) -> Result<Arc<LocalVault>, StartError> {
        let keys = Arc::new(KeySet::derive(&ring, &Class::names())?);
        drop(ring);
        let v = self.cfg.vault.as_ref().ok_or_else(|| StartError::Mode(ConfigError { problems: vec![] }))?;
        let local = local_vault(&self.cfg, v, keys.clone(), self.metrics.clone(), self.clock.clone()).await?;
        let _ = self.blobs.set(keys.blobs().clone());
        // Retention purge (and the veil_tokens gauge), at start and every purge_interval; it ends at shutdown.
        if let Err(e) = local.refresh_token_gauge().await {
            tracing::warn!(error = %e, "cannot count the stored records for veil_tokens");
        }
        let purge = crate::vault::retention::purge_task(local.clone(), v.purge_interval, self.stopped.clone());
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).push(tokio::spawn(purge));
        Ok(local)
    }

    /// [`Opening::open`] as a sealed vault's opener.
    fn into_opener(self) -> Opener {
        let this = Arc::new(self);
        Box::new(move |ring: Keyring| {
            let this = this.clone();
            Box::pin(async move { this.open(ring).await.map_err(|e| e.to_string()) })
        })
    }
}

/// The vault in this process: keys, audit log, store, engine.
async fn local_vault(
    cfg: &Config,
    v: &VaultConfig,
    keys: Arc<KeySet>,
    metrics: Arc<Metrics>,
    clock: Clock,
) -> Result<Arc<LocalVault>, StartError> {
    let store = open_store(v).await?;
    let audit = open_audit(v, &keys, store.clone(), &metrics, &clock).await?;
    let engine = Engine::new(keys, store, cfg.formats, clock.clone());
    Ok(Arc::new(
        LocalVault::new(engine, audit, metrics, clock)
            .with_audit_path(v.audit_log.clone())
            .with_retention(cfg.retention.clone()),
    ))
}

/// Binds the vault API (TLS, optional client CA) and serves it; returns its address.
async fn start_vault_api(
    cfg: &Config,
    v: &VaultConfig,
    vault: Arc<Gate>,
    clock: Clock,
    metrics: &Metrics,
    stopped: &watch::Receiver<bool>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<SocketAddr, StartError> {
    let tls = match &v.tls {
        Some(t) => {
            metrics.set_certificate_expiry("vault", crate::tls::chain_not_after(&t.cert)?);
            let client = t.client_ca.as_deref().map(|ca| crate::tls::ClientAuth {
                ca,
                crls: &t.crls,
                required: t.require_client_cert,
            });
            Some(TlsAcceptor::from(crate::tls::server_config(&t.cert, &t.key, client)?))
        }
        None => None,
    };
    let listener = bind(v.listen).await?;
    let addr = local_addr(&listener, v.listen)?;
    let state = Arc::new(ApiState {
        vault,
        callers: Callers::new(cfg.callers.clone()),
        max_body_bytes: v.max_body_bytes,
        max_batch: v.max_batch,
        clock,
    });
    tasks.push(tokio::spawn(server::serve(
        listener,
        tls,
        Limits::default(),
        move |conn: server::ConnInfo| {
            let state = state.clone();
            move |req| api::handle(state.clone(), conn.peer, conn.tls_identities.clone(), req)
        },
        stopped.clone(),
    )));
    let mtls = v.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    tracing::info!(addr = %addr, tls = v.tls.is_some(), mtls, "vault API listening");
    Ok(addr)
}

/// Binds the ingress proxy and serves it; returns its address and its reloadable certificate.
async fn start_proxy(
    cfg: &Config,
    pc: &ProxyConfig,
    vault: Arc<dyn Vault>,
    blobs: BlobSlot,
    metrics: Arc<Metrics>,
    stopped: &watch::Receiver<bool>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<(SocketAddr, Option<Arc<ReloadableCert>>), StartError> {
    let cert = match &pc.tls {
        Some((c, k)) => Some(ReloadableCert::load(c, k)?),
        None => None,
    };
    let tls = match &cert {
        Some(c) => {
            // Customers' browsers connect without certificates: a staff certificate is optional, and checked.
            let client = pc.client_ca.as_deref().map(|ca| crate::tls::ClientAuth { ca, crls: &[], required: false });
            Some(TlsAcceptor::from(c.server_config(client)?))
        }
        None => None,
    };
    if let Some(expiry) = cert.as_ref().and_then(|c| c.not_after()) {
        metrics.set_certificate_expiry("proxy", expiry);
    }
    // Requests refused before any route is matched count under route "-", like those no route matches.
    let answered_here = count_answered_here(&metrics, "-");
    let proxy = Arc::new(Proxy::new(pc, cfg.routes.clone(), vault, blobs, metrics, staff(cfg))?);
    let listener = bind(pc.listen).await?;
    let addr = local_addr(&listener, pc.listen)?;
    let limits = Limits {
        handshake_timeout: pc.handshake_timeout,
        header_timeout: pc.header_timeout,
        max_connections: pc.max_connections,
        per_client: crate::server::per_client::ClientCaps {
            connections: pc.max_connections_per_client,
            pending: pc.max_pending_per_client,
        },
        max_header_bytes: pc.max_header_bytes,
        write_timeout: pc.write_timeout,
        answered_here,
        ..Limits::default()
    };
    tasks.push(tokio::spawn(server::serve(
        listener,
        tls,
        limits,
        move |conn: server::ConnInfo| {
            let client = crate::proxy::ClientAddr::new(conn.peer.ip()).with_identities(conn.tls_identities);
            let proxy = proxy.clone();
            move |req| proxy.clone().handle(client.clone(), req)
        },
        stopped.clone(),
    )));
    tracing::info!(addr = %addr, tls = cert.is_some(), routes = cfg.routes.len(), "proxy listening");
    Ok((addr, cert))
}

/// Binds the admin listener (`/metrics`, `/healthz`, `/readyz`: the vault answers) and serves it.
async fn start_admin(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    vault: Arc<dyn Vault>,
    stopped: &watch::Receiver<bool>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<SocketAddr, StartError> {
    let listener = bind(listen).await?;
    let addr = local_addr(&listener, listen)?;
    let state = Arc::new(AdminState { metrics, vault });
    tasks.push(tokio::spawn(server::serve(
        listener,
        None,
        Limits::default(),
        move |_conn| {
            let state = state.clone();
            move |req| admin::handle(state.clone(), req)
        },
        stopped.clone(),
    )));
    tracing::info!(addr = %addr, "admin listening");
    Ok(addr)
}

/// Who `reveal` routes may show values to: every `[[caller]]` of the local vault, and in a split deployment each
/// caller the proxy holds a key file for (their rights are the remote vault's).
fn staff(cfg: &Config) -> Vec<Staff> {
    let mut staff: Vec<Staff> = cfg
        .callers
        .iter()
        .map(|c| Staff {
            caller: Caller {
                name: c.name.clone(),
                allow: c.allow.clone(),
                new_values: None,
                origin: Default::default(),
            },
            tls_identity: c.tls_identity.clone(),
            reveals: c.reveals,
            remote: false,
        })
        .collect();
    if let Some(vc) = &cfg.vault_client {
        let remote: Vec<&String> = vc.api_keys.keys().filter(|n| !staff.iter().any(|s| &s.caller.name == *n)).collect();
        for name in remote {
            let caller = Caller { name: name.clone(), allow: Vec::new(), new_values: None, origin: Default::default() };
            staff.push(Staff { caller, tls_identity: None, reveals: None, remote: true });
        }
    }
    staff
}

/// Binds one egress route and serves it; returns its address.
async fn start_egress(
    cfg: &Config,
    e: &EgressConfig,
    vault: Arc<dyn Vault>,
    metrics: Arc<Metrics>,
    stopped: &watch::Receiver<bool>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<SocketAddr, StartError> {
    let caller = match (cfg.callers.iter().find(|c| c.name == e.caller), &cfg.vault_client) {
        (Some(c), _) => Caller {
            name: c.name.clone(),
            allow: c.allow.clone(),
            new_values: c.new_values,
            origin: Default::default(),
        },
        // A remote vault holds the caller's rights and checks them; the proxy only sends its key.
        (None, Some(vc)) if vc.api_keys.contains_key(&e.caller) => {
            Caller { name: e.caller.clone(), allow: Vec::new(), new_values: None, origin: Default::default() }
        }
        (None, _) => return Err(StartError::EgressCaller(e.name().into())),
    };
    let limits = Limits { answered_here: count_answered_here(&metrics, e.name()), ..Limits::default() };
    let egress = Arc::new(Egress::new(e.clone(), caller, vault, metrics)?);
    let listener = bind(e.listen).await?;
    let addr = local_addr(&listener, e.listen)?;
    tasks.push(tokio::spawn(server::serve(
        listener,
        None,
        limits,
        move |_conn| {
            let egress = egress.clone();
            move |req| egress.clone().handle(req)
        },
        stopped.clone(),
    )));
    tracing::info!(egress = e.name(), addr = %addr, upstream = %e.upstream, "egress listening");
    Ok(addr)
}

/// Binds one SMTP listener and serves it; returns its address.
async fn start_smtp(
    cfg: &Config,
    s: &SmtpConfig,
    vault: Arc<dyn Vault>,
    metrics: Arc<Metrics>,
    stopped: &watch::Receiver<bool>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<SocketAddr, StartError> {
    let (caller, rights) = match (cfg.callers.iter().find(|c| c.name == s.caller), &cfg.vault_client) {
        (Some(c), _) => {
            let caller = Caller {
                name: c.name.clone(),
                allow: c.allow.clone(),
                new_values: c.new_values,
                origin: Default::default(),
            };
            (caller, Some(c.allow.clone()))
        }
        // A remote vault holds the caller's rights and checks them; the proxy only sends its key.
        (None, Some(vc)) if vc.api_keys.contains_key(&s.caller) => {
            (Caller { name: s.caller.clone(), allow: Vec::new(), new_values: None, origin: Default::default() }, None)
        }
        (None, _) => return Err(StartError::SmtpCaller(s.name.clone())),
    };
    let relay = match cfg.formats.email {
        crate::token::email::EmailFormat::Relay(domain) => Some(domain),
        _ => None,
    };
    if let Some((cert, _)) = &s.tls {
        metrics.set_certificate_expiry("smtp", crate::tls::chain_not_after(cert)?);
    }
    let listener = Arc::new(crate::smtp::Listener::new(s.clone(), caller, rights, vault, metrics, relay)?);
    let tcp = bind(s.listen).await?;
    let addr = local_addr(&tcp, s.listen)?;
    tasks.push(tokio::spawn(listener.serve(tcp, stopped.clone())));
    let upstream = format!("{}:{}", s.upstream.host, s.upstream.port);
    tracing::info!(smtp = %s.name, addr = %addr, upstream = %upstream, "smtp listening");
    Ok(addr)
}

/// Counts the requests a listener answers itself (guard refusals, shedding) in `veil_requests_total` under `route`.
fn count_answered_here(metrics: &Arc<Metrics>, route: &str) -> AnsweredHere {
    let (metrics, route) = (metrics.clone(), route.to_owned());
    AnsweredHere(Arc::new(move |status| metrics.requests.with_label_values(&[&route, status.as_str()]).inc()))
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })
}

fn local_addr(l: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, StartError> {
    l.local_addr().map_err(|source| StartError::Bind { addr, source })
}

/// Runs until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn run(cfg: Config, mode: Mode) -> Result<(), StartError> {
    let running = start_mode(cfg, mode, engine::system_clock()).await?;
    wait_for_signal(&running).await;
    tracing::info!("shutting down: finishing in-flight requests");
    running.shutdown().await;
    Ok(())
}

/// Waits for SIGTERM or SIGINT; SIGHUP reloads the proxy certificate meanwhile.
async fn wait_for_signal(running: &Running) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hup)) = (signal(SignalKind::terminate()), signal(SignalKind::hangup())) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = tokio::signal::ctrl_c() => return,
            _ = hup.recv() => match running.reload_certificates() {
                Ok(()) => tracing::info!("certificate reloaded"),
                Err(e) => tracing::error!(error = %e, "certificate reload failed; keeping the old one"),
            },
        }
    }
}
