//! The operator-facing deployment files in deploy/: systemd units checked by `systemd-analyze verify`, the
//! Kubernetes sidecar manifest and Prometheus files checked against veil's real config and /metrics, promtool,
//! a real Prometheus server scraping a running veil, and the metrics the alert rules need.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::prom::{self, Prometheus};
use common::*;
use http_body_util::{BodyExt, Full};
use serde::Deserialize;
use serde_json::json;
use serde_norway::Value as Yaml;

const UNITS: &[(&str, &str)] =
    &[("veil.service", "run"), ("veil-proxy.service", "proxy"), ("veil-vault.service", "vault")];

fn deploy(rel: &str) -> std::path::PathBuf {
    prom::repo_root().join("deploy").join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(deploy(rel)).unwrap_or_else(|e| panic!("deploy/{rel}: {e}"))
}

// ---------------------------------------------------------------- systemd

/// `systemd-analyze verify` on a copy of `text` whose ExecStart names the veil binary built for this test
/// (verify insists the executable exists). Returns the problems it printed about the unit.
fn systemd_verify(name: &str, text: &str) -> Vec<String> {
    let tool = prom::require("systemd-analyze", "systemd");
    let dir = tempfile::tempdir().unwrap();
    let unit = text.replace("/usr/local/bin/veil", env!("CARGO_BIN_EXE_veil"));
    assert_ne!(unit, text, "{name}: ExecStart should run /usr/local/bin/veil");
    std::fs::write(dir.path().join(name), unit).unwrap();
    let (ok, stdout, stderr) = prom::run_tool(&tool, &["verify", &format!("./{name}")], Some(dir.path()));
    // verify prints unknown keys and unparsable values as warnings on stderr (exit code 0): count those too.
    let mut problems: Vec<String> =
        stderr.lines().chain(stdout.lines()).filter(|l| l.contains(name)).map(str::to_owned).collect();
    if !ok {
        problems.push(format!("exit status non-zero; stderr: {stderr}"));
    }
    problems
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    for (name, _) in UNITS {
        let problems = systemd_verify(name, &read(&format!("systemd/{name}")));
        assert!(problems.is_empty(), "{name}: {problems:#?}");
    }
}

#[test]
fn systemd_verify_reports_a_broken_unit() {
    let text = read("systemd/veil.service");
    let broken = text.replace("NoNewPrivileges=yes", "NoNewPrivileges=maybe\nProtectEverything=yes");
    let problems = systemd_verify("veil.service", &broken);
    assert!(problems.iter().any(|p| p.contains("maybe")), "{problems:#?}");
    assert!(problems.iter().any(|p| p.contains("ProtectEverything")), "{problems:#?}");
}

/// `Key=value` lines of the [Service] section (keys may repeat).
fn service_section(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut in_service = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service && !line.is_empty() && !line.starts_with('#') {
            let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("not key=value: {line}"));
            out.entry(k.to_owned()).or_default().push(v.to_owned());
        }
    }
    out
}

#[test]
fn systemd_units_are_hardened() {
    for (name, command) in UNITS {
        let s = service_section(&read(&format!("systemd/{name}")));
        let one = |k: &str| -> &str {
            let v = s.get(k).unwrap_or_else(|| panic!("{name}: {k}= missing"));
            v.last().unwrap()
        };
        assert_eq!(one("ExecStart"), format!("/usr/local/bin/veil {command} -c /etc/veil/{}.toml", config_name(name)));
        assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID", "{name}: reload = certificate reload");
        assert_eq!((one("User"), one("Group")), ("veil", "veil"), "{name}: dedicated user");
        for (k, v) in [
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("PrivateDevices", "yes"),
            ("CapabilityBoundingSet", ""),
            ("AmbientCapabilities", ""),
            ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
            ("MemoryDenyWriteExecute", "yes"),
            ("LockPersonality", "yes"),
            ("ReadOnlyPaths", "/etc/veil"),
            ("RestrictSUIDSGID", "yes"),
            ("ProtectKernelTunables", "yes"),
            ("SystemCallArchitectures", "native"),
            ("LimitCORE", "0"),
        ] {
            assert_eq!(one(k), v, "{name}: {k}");
        }
        assert_eq!(s["SystemCallFilter"][0], "@system-service", "{name}");
        assert!(s["SystemCallFilter"].iter().any(|f| f.starts_with("~@privileged")), "{name}");
        match *command {
            "proxy" => assert!(!s.contains_key("ReadWritePaths"), "{name}: the proxy writes nothing"),
            "run" => assert_eq!(one("ReadWritePaths"), "/var/lib/veil"),
            _ => assert_eq!(one("ReadWritePaths"), "/var/lib/veil-vault"),
        }
    }
    let sysusers = read("systemd/veil.sysusers");
    assert!(sysusers.lines().any(|l| l.starts_with("u veil ")), "{sysusers}");
}

#[test]
fn systemd_example_config_fits_the_unit() {
    let cfg =
        veil::config::parse(&read("systemd/veil.toml")).unwrap_or_else(|e| panic!("deploy/systemd/veil.toml: {e}"));
    let unit = service_section(&read("systemd/veil.service"));
    let (read_only, writable) = (&unit["ReadOnlyPaths"][0], &unit["ReadWritePaths"][0]);
    let proxy = cfg.proxy.as_ref().unwrap();
    let (cert, key) = proxy.tls.as_ref().expect("[proxy.tls]");
    for p in [cert.as_path(), key.as_path(), cfg.vault.as_ref().unwrap().master_key_file().unwrap()] {
        assert!(p.is_absolute() && p.starts_with(read_only), "{} is not under {read_only}", p.display());
    }
    assert!(cfg.vault.as_ref().unwrap().audit_log.starts_with(writable), "the audit log must be writable");
    let veil::config::StoreUrl::Sqlite(store) = &cfg.vault.as_ref().unwrap().store else {
        panic!("sqlite store expected")
    };
    assert!(store.contains(writable.as_str()), "the SQLite store must be writable: {store}");
    assert_eq!(unit["WorkingDirectory"][0], *writable);
    let ports: Vec<u16> =
        [Some(proxy.listen), Some(cfg.vault.as_ref().unwrap().listen), cfg.admin.as_ref().map(|a| a.listen)]
            .into_iter()
            .flatten()
            .map(|a| a.port())
            .collect();
    assert!(ports.iter().all(|p| *p >= 1024), "no CAP_NET_BIND_SERVICE is granted: {ports:?}");
    // Prometheus scrapes the admin listener this config opens.
    let scrape: Yaml = serde_norway::from_str(&read("prometheus/prometheus.yml")).unwrap();
    let target = by_name_key(&scrape["scrape_configs"], "job_name", "veil")["static_configs"][0]["targets"][0]
        .as_str()
        .unwrap()
        .parse::<std::net::SocketAddr>()
        .unwrap();
    assert_eq!(Some(target), cfg.admin.as_ref().map(|a| a.listen));
}

fn config_name(unit: &str) -> &'static str {
    match unit {
        "veil-proxy.service" => "proxy",
        "veil-vault.service" => "vault",
        _ => "veil",
    }
}

// ---------------------------------------------------------------- Kubernetes

fn yaml_docs(text: &str) -> Vec<Yaml> {
    serde_norway::Deserializer::from_str(text).map(|d| Yaml::deserialize(d).unwrap()).filter(|v| !v.is_null()).collect()
}

fn kind<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
    docs.iter().find(|d| d["kind"].as_str() == Some(kind)).unwrap_or_else(|| panic!("no {kind}"))
}

fn by_name<'a>(list: &'a Yaml, name: &str) -> &'a Yaml {
    list.as_sequence()
        .unwrap_or_else(|| panic!("not a list: {list:?}"))
        .iter()
        .find(|x| x["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no entry named {name}"))
}

fn port_of(addr: &std::net::SocketAddr) -> u64 {
    u64::from(addr.port())
}

#[test]
fn kubernetes_sidecar_matches_veil_config() {
    let docs = yaml_docs(&read("kubernetes/veil-sidecar.yaml"));
    let cm = kind(&docs, "ConfigMap");
    let toml = cm["data"]["veil.toml"].as_str().unwrap();
    let cfg = veil::config::parse(toml).unwrap_or_else(|e| panic!("the ConfigMap's veil.toml: {e}"));
    let proxy = cfg.proxy.as_ref().expect("[proxy]");
    let admin = cfg.admin.as_ref().expect("[admin]").listen;
    assert!(cfg.vault.as_ref().unwrap().listen.ip().is_loopback(), "the vault API stays inside the pod");

    let deploy = kind(&docs, "Deployment");
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(false));
    let containers = &pod["containers"];
    assert!(containers.as_sequence().unwrap().len() >= 2, "an app container beside veil");
    let app = by_name(containers, "app");
    let veil = by_name(containers, "veil");

    // Ports and probes agree with the config veil is given.
    assert_eq!(by_name(&veil["ports"], "https")["containerPort"].as_u64(), Some(port_of(&proxy.listen)));
    assert_eq!(by_name(&veil["ports"], "admin")["containerPort"].as_u64(), Some(port_of(&admin)));
    assert!(!admin.ip().is_loopback(), "the kubelet probes the pod IP: admin must not listen on loopback only");
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &veil[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert_eq!(get["port"].as_str(), Some("admin"), "{probe}");
    }
    let upstream_port = format!(":{}", by_name(&app["ports"], "app-http")["containerPort"].as_u64().unwrap());
    assert!(proxy.upstream.to_string().contains(&upstream_port), "veil forwards to the app container");
    assert!(proxy.upstream.to_string().contains("127.0.0.1"), "the app is reached inside the pod");

    // Hardened containers with resources.
    for c in pod["containers"].as_sequence().unwrap().iter().chain(pod["initContainers"].as_sequence().unwrap()) {
        let name = c["name"].as_str().unwrap();
        let sc = &c["securityContext"];
        assert_eq!(sc["runAsNonRoot"].as_bool(), Some(true), "{name}");
        assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true), "{name}");
        assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false), "{name}");
        assert_eq!(sc["capabilities"]["drop"][0].as_str(), Some("ALL"), "{name}");
        assert!(c["resources"]["limits"]["memory"].is_string(), "{name}: memory limit");
        assert!(c["resources"]["requests"]["cpu"].is_string(), "{name}: cpu request");
    }

    // Secrets as read-only files, owner-read only; every file the config names is on a mount.
    let volumes = &pod["volumes"];
    let mounts = |c: &Yaml| -> Vec<(String, String, bool)> {
        c["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap().to_owned(),
                    m["mountPath"].as_str().unwrap().to_owned(),
                    m["readOnly"].as_bool().unwrap_or(false),
                )
            })
            .collect()
    };
    for secret in ["master-key", "proxy-tls"] {
        assert_eq!(by_name(volumes, secret)["secret"]["defaultMode"].as_u64(), Some(0o400), "{secret}");
    }
    let veil_mounts = mounts(veil);
    let mount_of = |path: &Path| -> (String, bool) {
        veil_mounts
            .iter()
            .find(|(_, at, _)| path.starts_with(at))
            .map(|(n, _, ro)| (n.clone(), *ro))
            .unwrap_or_else(|| panic!("{} is on no volume of the veil container", path.display()))
    };
    let (tls_cert, tls_key) = proxy.tls.as_ref().expect("[proxy.tls]");
    assert_eq!(mount_of(tls_cert), ("proxy-tls".to_owned(), true));
    assert_eq!(mount_of(tls_key), ("proxy-tls".to_owned(), true));
    assert_eq!(mount_of(cfg.vault.as_ref().unwrap().master_key_file().unwrap()), ("key-copy".to_owned(), true));
    assert_eq!(mount_of(&cfg.vault.as_ref().unwrap().audit_log).0, "data");
    let args: Vec<&str> = veil["args"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args[..2], ["run", "-c"]);
    assert_eq!(mount_of(Path::new(args[2])), ("config".to_owned(), true));
    assert_eq!(by_name(volumes, "key-copy")["emptyDir"]["medium"].as_str(), Some("Memory"));
    // The init container copies the key from the Secret to the in-memory volume veil reads it from.
    let init = by_name(&pod["initContainers"], "veil-key");
    let cmd: Vec<&str> = init["command"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    // The key files veil reads (master and audit) are copied from the Secret into that directory.
    assert_eq!(cmd[..3], ["install", "-m", "0400"]);
    let (sources, target) = (&cmd[3..cmd.len() - 1], Path::new(cmd[cmd.len() - 1]));
    let vault = cfg.vault.as_ref().unwrap();
    for wanted in [vault.master_key_file().unwrap(), vault.audit_key_file.as_deref().expect("audit_key_file")] {
        let name = wanted.file_name().unwrap();
        assert_eq!(wanted.parent().unwrap(), target, "{wanted:?}");
        assert!(sources.iter().any(|s| Path::new(s).file_name() == Some(name)), "{name:?} not copied: {cmd:?}");
        assert_eq!(mount_of(wanted), ("key-copy".to_owned(), true));
    }
    assert!(mounts(init).contains(&("master-key".to_owned(), "/etc/veil/keys".to_owned(), true)));
    assert!(sources.iter().all(|s| Path::new(s).starts_with("/etc/veil/keys")));

    // The Service sends clients to veil's TLS port, never to the app.
    let svc = kind(&docs, "Service");
    let ports = &svc["spec"]["ports"];
    assert_eq!(by_name(ports, "https")["targetPort"].as_str(), Some("https"));
    assert!(ports.as_sequence().unwrap().iter().all(|p| p["targetPort"].as_str() != Some("app-http")));
    assert_eq!(svc["spec"]["selector"], deploy["spec"]["selector"]["matchLabels"]);
}

#[test]
fn dockerfile_is_multi_stage_and_runs_unprivileged() {
    let text = read("Dockerfile");
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    let froms: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert!(froms.len() >= 2, "a build stage and a runtime stage");
    assert!(froms[0].starts_with("FROM rust:") && froms[0].ends_with(" AS build"), "{}", froms[0]);
    let last_stage = &lines[lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap()..];
    assert!(!last_stage[0].contains("rust:"), "no toolchain in the runtime image");
    let user = last_stage.iter().rev().find(|l| l.starts_with("USER ")).expect("USER in the runtime stage");
    let uid = user.trim_start_matches("USER ").split(':').next().unwrap();
    assert!(uid != "root" && uid != "0", "{user}");
    assert!(last_stage.iter().any(|l| l.starts_with("COPY --from=build")));
    assert!(last_stage.iter().any(|l| l.starts_with("ENTRYPOINT [\"/usr/local/bin/veil\"]")));
    // The uid the Kubernetes manifest runs as is the image's user.
    let docs = yaml_docs(&read("kubernetes/veil-sidecar.yaml"));
    let pod = &kind(&docs, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsUser"].as_u64().map(|u| u.to_string()).as_deref(), Some(uid));
}

// ---------------------------------------------------------------- Prometheus files

#[test]
fn promtool_accepts_the_config_and_rules_and_the_rule_tests_pass() {
    let promtool = prom::require("promtool", "prometheus");
    let dir = deploy("prometheus");
    for args in [
        &["check", "config", "prometheus.yml"][..],
        &["check", "rules", "alerts.yml"],
        &["test", "rules", "alerts_test.yml"],
    ] {
        let (ok, stdout, stderr) = prom::run_tool(&promtool, args, Some(&dir));
        assert!(ok, "promtool {args:?} failed:\n{stdout}\n{stderr}");
    }
    // promtool really checks: a rule with a PromQL syntax error is refused.
    let tmp = tempfile::tempdir().unwrap();
    let broken = read("prometheus/alerts.yml").replace("veil_vault_ready == 0", "veil_vault_ready == = 0");
    std::fs::write(tmp.path().join("alerts.yml"), broken).unwrap();
    let (ok, _, _) = prom::run_tool(&promtool, &["check", "rules", "alerts.yml"], Some(tmp.path()));
    assert!(!ok, "promtool accepted a broken rule");
}

/// Every `veil_*` metric name an alert expression uses.
fn alert_metric_names() -> BTreeSet<String> {
    let rules: Yaml = serde_norway::from_str(&read("prometheus/alerts.yml")).unwrap();
    let mut names = BTreeSet::new();
    let mut alerts = 0;
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            alerts += 1;
            let expr = rule["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(i) = rest.find("veil_") {
                let tail = &rest[i..];
                let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
                names.insert(tail[..end].to_owned());
                rest = &tail[end..];
            }
        }
    }
    let wanted = [
        "VeilVaultUnavailable",
        "VeilHighErrorRatio",
        "VeilUnusualDetokenizeRate",
        "VeilAuditWriteFailures",
        "VeilCertificateExpiresSoon",
        "VeilTokenisationBudgetExceeded",
    ];
    let text = read("prometheus/alerts.yml");
    for a in wanted {
        assert!(text.contains(&format!("alert: {a}\n")), "missing alert {a}");
    }
    assert!(alerts >= wanted.len());
    names
}

/// Config for a `veil run` in `dir` (`proxy.pem`/`proxy.key` written there): TLS proxy in front of `upstream`,
/// plain loopback vault, admin.
fn veil_config(dir: &Path, upstream: std::net::SocketAddr) -> std::path::PathBuf {
    veil::crypto::Keyring::generate_file(&dir.join("master.key")).unwrap();
    let d = dir.display();
    let text = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{upstream}\"\n\
         [proxy.tls]\ncert = \"{d}/proxy.pem\"\nkey = \"{d}/proxy.key\"\n{}\n\
         [[route]]\nname = \"checkout\"\nmatch = {{ methods = [\"POST\"], path = \"/checkout\" }}\n\
         fields = [ {{ json = \"$.card.number\", class = \"pan\" }} ]\n",
        config_text(dir, false, None)
    );
    let path = dir.join("veil.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// POST /checkout with a card number through veil's TLS proxy; returns the status.
async fn checkout(proxy: std::net::SocketAddr, ca: &rustls::pki_types::CertificateDer<'static>) -> u16 {
    let body = json!({"card": {"number": random_pan("411111", 16)}}).to_string();
    let req = hyper::Request::builder()
        .method("POST")
        .uri("/checkout")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    send_request(proxy, Some(ca), false, req).await.unwrap().0
}

async fn tokenize_one(vault: std::net::SocketAddr) -> String {
    let body = json!({"items": [{"class": "pan", "value": random_pan("550000", 16)}]});
    let (status, out) = Client::plain(vault).post_json("/v1/tokenize", PAYMENTS_KEY, &body).await;
    assert_eq!(status, 200, "{out}");
    out["items"][0]["token"].as_str().unwrap().to_owned()
}

async fn detokenize(vault: std::net::SocketAddr, key: &str, token: &str) -> u16 {
    let body = json!({"items": [{"class": "pan", "token": token}], "purpose": "test"});
    Client::plain(vault).post_json("/v1/detokenize", key, &body).await.0
}

#[tokio::test]
async fn alert_rules_use_only_metrics_that_veil_exports() {
    let app = App::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = prom::write_cert(dir.path(), "proxy", (2031, 5, 17));
    let config = veil_config(dir.path(), app.addr);
    let mut veil = prom::spawn_veil_process(&config).await;
    let proxy = veil.proxy.unwrap();
    // Drive every labelled series the rules use into existence.
    assert_eq!(checkout(proxy, &ca).await, 200);
    let token = tokenize_one(veil.vault).await;
    assert_eq!(detokenize(veil.vault, PAYMENTS_KEY, &token).await, 200);

    let (status, metrics) = get(veil.admin, "/metrics").await;
    assert_eq!(status, 200);
    let exported: BTreeSet<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap())
        .collect();
    let used = alert_metric_names();
    assert!(used.len() >= 6, "{used:?}");
    for name in &used {
        assert!(exported.contains(name.as_str()), "alerts use {name}, which veil does not export:\n{metrics}");
    }
    veil.child.kill().await.unwrap();
}

#[test]
fn prometheus_scrape_config_matches_veil_admin_listener() {
    let scrape: Yaml = serde_norway::from_str(&read("prometheus/prometheus.yml")).unwrap();
    assert_eq!(scrape["rule_files"][0].as_str(), Some("alerts.yml"));
    let job = by_name_key(&scrape["scrape_configs"], "job_name", "veil");
    assert_eq!(job["metrics_path"].as_str(), Some("/metrics"));
    let target = job["static_configs"][0]["targets"][0].as_str().unwrap();
    let shipped = veil::config::parse(&std::fs::read_to_string(prom::repo_root().join("config/veil.toml")).unwrap())
        .unwrap_or_else(|e| panic!("config/veil.toml: {e}"));
    assert_eq!(target.parse::<std::net::SocketAddr>().unwrap(), shipped.admin.unwrap().listen);
    // /metrics waits for the readiness check (2 s at most): the scrape timeout leaves room for it.
    assert!(job["scrape_timeout"].as_str().unwrap().trim_end_matches('s').parse::<u64>().unwrap() > 2);
}

fn by_name_key<'a>(list: &'a Yaml, key: &str, name: &str) -> &'a Yaml {
    list.as_sequence().unwrap().iter().find(|x| x[key].as_str() == Some(name)).unwrap_or_else(|| panic!("no {name}"))
}

// ---------------------------------------------------------------- a real Prometheus

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_veil_and_evaluates_the_alert_rules() {
    let app = App::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = prom::write_cert(dir.path(), "proxy", (2031, 5, 17));
    let config = veil_config(dir.path(), app.addr);
    let mut veil = prom::spawn_veil_process(&config).await;
    let proxy = veil.proxy.unwrap();

    let scrape = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [alerts.yml]\n\
         scrape_configs:\n  - job_name: veil\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    \
         static_configs:\n      - targets: [\"{}\"]\n",
        veil.admin
    );
    let prometheus = Prometheus::start(&scrape, &[("alerts.yml", &read("prometheus/alerts.yml"))]).await;
    let within = Duration::from_secs(30);
    prometheus.wait_for(r#"up{job="veil"}"#, 1.0, within).await;

    for _ in 0..3 {
        assert_eq!(checkout(proxy, &ca).await, 200);
    }
    let token = tokenize_one(veil.vault).await;
    assert_eq!(detokenize(veil.vault, PAYMENTS_KEY, &token).await, 200);
    assert_eq!(detokenize(veil.vault, APP_KEY, &token).await, 403);

    prometheus.wait_for(r#"sum(veil_requests_total{job="veil",route="checkout",status="200"})"#, 3.0, within).await;
    prometheus
        .wait_for(r#"sum(veil_vault_operations_total{op="tokenize",class="pan",outcome="ok"})"#, 4.0, within)
        .await;
    prometheus.wait_for(r#"veil_detokenize_total{caller="payments",class="pan",outcome="ok"}"#, 1.0, within).await;
    prometheus.wait_for(r#"veil_detokenize_total{caller="app",class="pan",outcome="denied"}"#, 1.0, within).await;
    prometheus.wait_for("veil_vault_ready", 1.0, within).await;
    prometheus.wait_for("veil_audit_write_failures_total", 0.0, within).await;
    let expiry = prom::unix_day(2031, 5, 17) as f64;
    prometheus.wait_for(r#"veil_certificate_expiry_timestamp_seconds{listener="proxy"}"#, expiry, within).await;

    // A second refusal after Prometheus saw the first: the counter rises, and the alert on it fires.
    assert_eq!(detokenize(veil.vault, APP_KEY, &token).await, 403);
    prometheus.wait_for(r#"veil_detokenize_total{caller="app",class="pan",outcome="denied"}"#, 2.0, within).await;
    prometheus
        .wait_for(r#"count(ALERTS{alertname="VeilDetokenizeDenied",caller="app",alertstate="firing"})"#, 1.0, within)
        .await;

    // Every rule evaluates against veil's real series without error.
    let deadline = std::time::Instant::now() + within;
    loop {
        let rules = prometheus.api("rules", None).await;
        let all: Vec<&serde_json::Value> =
            rules["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap()).collect();
        assert!(all.len() >= 5, "{rules}");
        let bad: Vec<_> = all.iter().filter(|r| r["health"] != "ok").collect();
        if bad.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "rules not healthy: {bad:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Nothing else fires on a healthy veil.
    let firing =
        prometheus.api("query", Some(r#"ALERTS{alertstate="firing",alertname!="VeilDetokenizeDenied"}"#)).await;
    assert_eq!(firing["result"], json!([]), "{firing}");

    prometheus.stop().await;
    veil.child.kill().await.unwrap();
}

// ---------------------------------------------------------------- the metrics the alerts need

fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).map(|v| v.parse().unwrap()))
}

#[tokio::test]
async fn audit_write_failures_are_counted() {
    let v = TestVault::start_with(false, Some("/dev/full")).await;
    let (_, text) = get(v.admin, "/metrics").await;
    assert_eq!(metric_value(&text, "veil_audit_write_failures_total"), Some(0.0), "{text}");
    // Tokenisations are audited too: refused, and counted.
    let body = json!({"items": [{"class": "pan", "value": random_pan("550000", 16)}]});
    let (status, out) = Client::plain(v.client.addr).post_json("/v1/tokenize", PAYMENTS_KEY, &body).await;
    assert_eq!(status, 503, "{out}");
    assert_eq!(metric_value(&get(v.admin, "/metrics").await.1, "veil_audit_write_failures_total"), Some(1.0));
    let token = "5500001234560004";
    assert_eq!(detokenize(v.client.addr, PAYMENTS_KEY, token).await, 503);
    let (_, text) = get(v.admin, "/metrics").await;
    assert_eq!(metric_value(&text, "veil_audit_write_failures_total"), Some(2.0), "{text}");
    // A denial that cannot be audited counts too (the call is refused either way).
    assert_eq!(detokenize(v.client.addr, APP_KEY, token).await, 403);
    let (_, text) = get(v.admin, "/metrics").await;
    assert_eq!(metric_value(&text, "veil_audit_write_failures_total"), Some(3.0), "{text}");
    assert!(!text.contains(token), "no token in a metric");
}

#[tokio::test]
async fn audit_write_failures_stay_zero_when_the_log_is_written() {
    let v = TestVault::start(false).await;
    let token = tokenize_one(v.client.addr).await;
    assert_eq!(detokenize(v.client.addr, PAYMENTS_KEY, &token).await, 200);
    assert_eq!(detokenize(v.client.addr, APP_KEY, &token).await, 403);
    let (_, text) = get(v.admin, "/metrics").await;
    assert_eq!(metric_value(&text, "veil_audit_write_failures_total"), Some(0.0), "{text}");
}

#[tokio::test]
async fn certificate_expiry_is_exported_per_listener_and_follows_reload() {
    let app = App::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
    prom::write_cert(dir.path(), "proxy", (2031, 5, 17));
    prom::write_cert(dir.path(), "vault", (2030, 1, 2));
    let text = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{}\"\n\
         [proxy.tls]\ncert = \"{d}/proxy.pem\"\nkey = \"{d}/proxy.key\"\n{}\n\
         [vault.tls]\ncert = \"{d}/vault.pem\"\nkey = \"{d}/vault.key\"\n",
        app.addr,
        config_text(dir.path(), false, None)
    );
    let cfg = veil::config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let running = veil::app::start(cfg, veil::vault::engine::system_clock()).await.unwrap();
    let admin = running.admin_addr.unwrap();
    let series = |l: &str| format!("veil_certificate_expiry_timestamp_seconds{{listener=\"{l}\"}}");
    let expiry = |text: &str, l: &str| metric_value(text, &series(l));

    let (_, m) = get(admin, "/metrics").await;
    assert_eq!(expiry(&m, "proxy"), Some(prom::unix_day(2031, 5, 17) as f64), "{m}");
    assert_eq!(expiry(&m, "vault"), Some(prom::unix_day(2030, 1, 2) as f64), "{m}");

    let fresh_ca = prom::write_cert(dir.path(), "proxy", (2032, 2, 29));
    running.reload_certificates().unwrap();
    let (_, m) = get(admin, "/metrics").await;
    assert_eq!(expiry(&m, "proxy"), Some(prom::unix_day(2032, 2, 29) as f64), "{m}");
    let req = hyper::Request::builder().uri("/x").header("host", "localhost").body(Full::new(Bytes::new())).unwrap();
    assert!(send_request(running.proxy_addr.unwrap(), Some(&fresh_ca), false, req).await.is_ok());

    // A failed reload keeps the old certificate, and the gauge keeps showing the one still served.
    std::fs::write(dir.path().join("proxy.key"), "garbage").unwrap();
    assert!(running.reload_certificates().is_err());
    let (_, m) = get(admin, "/metrics").await;
    assert_eq!(expiry(&m, "proxy"), Some(prom::unix_day(2032, 2, 29) as f64), "{m}");
    running.shutdown().await;
}

#[test]
fn unix_day_matches_known_dates() {
    assert_eq!(prom::unix_day(1970, 1, 1), 0);
    assert_eq!(prom::unix_day(2000, 3, 1), 951_868_800);
    assert_eq!(prom::unix_day(2031, 5, 17), 1_936_742_400);
}

/// A vault whose readiness the test switches.
struct SwitchVault(AtomicBool);

#[async_trait::async_trait]
impl veil::vault::Vault for SwitchVault {
    async fn tokenize_on(
        &self,
        _: &veil::vault::auth::Caller,
        _: &[(veil::domain::Class, &str)],
        _: Option<&str>,
        _: veil::vault::Terms<'_>,
    ) -> Result<Vec<String>, veil::vault::VaultError> {
        Err(veil::vault::VaultError::StoreUnavailable)
    }
    async fn detokenize(
        &self,
        _: &veil::vault::auth::Caller,
        _: &[(veil::domain::Class, &str)],
        _: Option<&str>,
    ) -> Result<Vec<veil::vault::ItemResult>, veil::vault::VaultError> {
        Err(veil::vault::VaultError::StoreUnavailable)
    }
    async fn mask(
        &self,
        _: &veil::vault::auth::Caller,
        _: &[(veil::domain::Class, &str)],
        _: Option<&str>,
    ) -> Result<Vec<veil::vault::ItemResult>, veil::vault::VaultError> {
        Err(veil::vault::VaultError::StoreUnavailable)
    }
    async fn ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn vault_ready_gauge_follows_readiness_at_each_scrape() {
    let vault = Arc::new(SwitchVault(AtomicBool::new(true)));
    let state = Arc::new(veil::admin::AdminState {
        metrics: Arc::new(veil::metrics::Metrics::new().unwrap()),
        vault: vault.clone(),
    });
    let scrape = |state: Arc<veil::admin::AdminState>| async move {
        let req = hyper::Request::builder().uri("/metrics").body(()).unwrap();
        let resp = veil::admin::handle(state, req).await.unwrap();
        String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    };
    assert_eq!(metric_value(&scrape(state.clone()).await, "veil_vault_ready"), Some(1.0));
    vault.0.store(false, Ordering::SeqCst);
    assert_eq!(metric_value(&scrape(state.clone()).await, "veil_vault_ready"), Some(0.0));
    let req = hyper::Request::builder().uri("/readyz").body(()).unwrap();
    assert_eq!(veil::admin::handle(state.clone(), req).await.unwrap().status(), 503);
    vault.0.store(true, Ordering::SeqCst);
    assert_eq!(metric_value(&scrape(state).await, "veil_vault_ready"), Some(1.0));
}
