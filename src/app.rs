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
use crate::config::{Config, ConfigError, EgressConfig, ProxyConfig, StoreUrl, VaultConfig};
use crate::crypto::provider::shares::Unsealer;
use crate::crypto::{BlobKeys, BlobSlot, KeySet, Keyring, MasterKeySpec, Secret};
use crate::domain::Class;
use crate::metrics::Metrics;
use crate::proxy::egress::Egress;
use crate::proxy::Proxy;
use crate::server::{self, AnsweredHere, Limits};
use crate::store::postgres::{PostgresOptions, PostgresStore};
use crate::store::sqlite::{SqliteOptions, SqliteStore};
use crate::store::Store;
use crate::tls::ReloadableCert;
use crate::vault::api::{self, ApiState};
use crate::vault::audit::AuditLog;
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
            if cfg.proxy.is_none() && cfg.egress.is_empty() {
                problems.push(format!("proxy: `{cmd}` needs a [proxy] section or [[egress]] routes to serve"));
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
    if mode == Mode::Vault {
        if cfg.proxy.is_some() || !cfg.egress.is_empty() {
            tracing::warn!("`veil vault` serves the vault API only; [proxy] and [[egress]] are for `veil proxy`");
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
    }

    let mut admin_addr = None;
    if let Some(a) = &cfg.admin {
        admin_addr = Some(start_admin(a.listen, metrics.clone(), vault, &stopped, &mut tasks).await?);
    }
    Ok(Running { proxy_addr, vault_addr, admin_addr, egress_addrs, stop, tasks, opened_tasks, proxy_cert, metrics })
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
    let audit = AuditLog::open(&v.audit_log, keys.audit.clone())?;
    let store = open_store(v).await?;
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
            Some(TlsAcceptor::from(crate::tls::server_config(&t.cert, &t.key, t.client_ca.as_deref())?))
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
            move |req| api::handle(state.clone(), conn.tls_identities.clone(), req)
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
        Some(c) => Some(TlsAcceptor::from(c.server_config()?)),
        None => None,
    };
    if let Some(expiry) = cert.as_ref().and_then(|c| c.not_after()) {
        metrics.set_certificate_expiry("proxy", expiry);
    }
    // Requests refused before any route is matched count under route "-", like those no route matches.
    let answered_here = count_answered_here(&metrics, "-");
    let proxy = Arc::new(Proxy::new(pc, cfg.routes.clone(), vault, blobs, metrics)?);
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
            let (proxy, client) = (proxy.clone(), crate::proxy::ClientAddr::new(conn.peer.ip()));
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
        (Some(c), _) => Caller { name: c.name.clone(), allow: c.allow.clone(), new_values: c.new_values },
        // A remote vault holds the caller's rights and checks them; the proxy only sends its key.
        (None, Some(vc)) if vc.api_keys.contains_key(&e.caller) => {
            Caller { name: e.caller.clone(), allow: Vec::new(), new_values: None }
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
