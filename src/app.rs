//! Builds the running parts from a validated [`Config`] — keys, store, engine, audit, vault API, admin —
//! binds their listeners, and runs them until SIGTERM/SIGINT, then drains.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::admin::{self, AdminState};
use crate::config::{Config, EgressConfig, StoreUrl};
use crate::crypto::{KeySet, Keyring};
use crate::metrics::Metrics;
use crate::proxy::egress::Egress;
use crate::proxy::Proxy;
use crate::server::{self, Limits};
use crate::store::sqlite::{SqliteOptions, SqliteStore};
use crate::store::Store;
use crate::tls::ReloadableCert;
use crate::vault::api::{self, ApiState};
use crate::vault::audit::AuditLog;
use crate::vault::auth::{Caller, Callers};
use crate::vault::class::Class;
use crate::vault::engine::{self, Clock, Engine};
use crate::vault::{LocalVault, Vault};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("master key: {0}")]
    Keys(#[from] crate::crypto::keys::KeyError),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("store: {0} is not supported by this build yet; use sqlite://PATH")]
    StoreKind(&'static str),
    #[error("audit: {0}")]
    Audit(#[from] crate::vault::audit::AuditError),
    #[error("tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("egress {0}: its caller is not configured")]
    EgressCaller(String),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A started veil: the addresses it listens on, and a handle to stop it.
pub struct Running {
    pub proxy_addr: Option<SocketAddr>,
    pub vault_addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    /// Each egress route's name and address.
    pub egress_addrs: Vec<(String, SocketAddr)>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
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
    }
}

/// Opens the store named by the config.
pub async fn open_store(cfg: &Config) -> Result<Arc<dyn Store>, StartError> {
    match &cfg.vault.store {
        StoreUrl::Sqlite(url) => Ok(Arc::new(SqliteStore::open(url, SqliteOptions::default()).await?)),
        StoreUrl::Postgres(_) => Err(StartError::StoreKind("postgres://")),
    }
}

pub fn load_keys(cfg: &Config) -> Result<KeySet, StartError> {
    let ring = Keyring::load(&cfg.vault.master_key_file)?;
    Ok(KeySet::derive(&ring, &Class::names())?)
}

/// Starts the vault API and admin listeners; returns once they are bound.
pub async fn start(cfg: Config, clock: Clock) -> Result<Running, StartError> {
    let keys = Arc::new(load_keys(&cfg)?);
    let audit = AuditLog::open(&cfg.vault.audit_log, keys.audit.clone())?;
    let store = open_store(&cfg).await?;
    let metrics = Arc::new(Metrics::new()?);
    let engine = Engine::new(keys.clone(), store, cfg.formats, clock.clone());
    let vault = Arc::new(LocalVault::new(engine, audit, metrics.clone(), clock.clone()));

    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();

    let tls = match &cfg.vault.tls {
        Some(t) => {
            metrics.set_certificate_expiry("vault", crate::tls::chain_not_after(&t.cert)?);
            Some(TlsAcceptor::from(crate::tls::server_config(&t.cert, &t.key, t.client_ca.as_deref())?))
        }
        None => None,
    };
    let listener = bind(cfg.vault.listen).await?;
    let vault_addr = local_addr(&listener, cfg.vault.listen)?;
    let state = Arc::new(ApiState {
        vault: vault.clone(),
        callers: Callers::new(cfg.callers.clone()),
        max_body_bytes: cfg.vault.max_body_bytes,
        max_batch: cfg.vault.max_batch,
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
    tracing::info!(addr = %vault_addr, tls = cfg.vault.tls.is_some(), "vault API listening");

    let mut proxy_addr = None;
    let mut proxy_cert = None;
    if let Some(pc) = &cfg.proxy {
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
        let dyn_vault: Arc<dyn Vault> = vault.clone();
        let proxy = Arc::new(Proxy::new(pc, cfg.routes.clone(), dyn_vault, keys.clone(), metrics.clone())?);
        let listener = bind(pc.listen).await?;
        proxy_addr = Some(local_addr(&listener, pc.listen)?);
        let limits = Limits {
            handshake_timeout: pc.handshake_timeout,
            header_timeout: pc.header_timeout,
            max_connections: pc.max_connections,
            max_header_bytes: pc.max_header_bytes,
            write_timeout: pc.write_timeout,
            ..Limits::default()
        };
        tasks.push(tokio::spawn(server::serve(
            listener,
            tls,
            limits,
            move |conn: server::ConnInfo| {
                let proxy = proxy.clone();
                move |req| proxy.clone().handle(conn.peer, req)
            },
            stopped.clone(),
        )));
        tracing::info!(addr = ?proxy_addr, tls = cert.is_some(), routes = cfg.routes.len(), "proxy listening");
        proxy_cert = cert;
    }

    let dyn_vault: Arc<dyn Vault> = vault.clone();
    let mut egress_addrs = Vec::new();
    for e in &cfg.egress {
        let addr = start_egress(&cfg, e, dyn_vault.clone(), metrics.clone(), &stopped, &mut tasks).await?;
        egress_addrs.push((e.name().to_owned(), addr));
    }

    let mut admin_addr = None;
    if let Some(a) = &cfg.admin {
        let listener = bind(a.listen).await?;
        admin_addr = Some(local_addr(&listener, a.listen)?);
        let dyn_vault: Arc<dyn Vault> = vault;
        let state = Arc::new(AdminState { metrics: metrics.clone(), vault: dyn_vault });
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
        tracing::info!(addr = ?admin_addr, "admin listening");
    }
    Ok(Running { proxy_addr, vault_addr, admin_addr, egress_addrs, stop, tasks, proxy_cert, metrics })
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
    let caller =
        cfg.callers.iter().find(|c| c.name == e.caller).ok_or_else(|| StartError::EgressCaller(e.name().into()))?;
    let caller = Caller { name: caller.name.clone(), allow: caller.allow.clone() };
    let egress = Arc::new(Egress::new(e.clone(), caller, vault, metrics)?);
    let listener = bind(e.listen).await?;
    let addr = local_addr(&listener, e.listen)?;
    tasks.push(tokio::spawn(server::serve(
        listener,
        None,
        Limits::default(),
        move |_conn| {
            let egress = egress.clone();
            move |req| egress.clone().handle(req)
        },
        stopped.clone(),
    )));
    tracing::info!(egress = e.name(), addr = %addr, upstream = %e.upstream, "egress listening");
    Ok(addr)
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })
}

fn local_addr(l: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, StartError> {
    l.local_addr().map_err(|source| StartError::Bind { addr, source })
}

/// Runs until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn run(cfg: Config) -> Result<(), StartError> {
    let running = start(cfg, engine::system_clock()).await?;
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
