//! Every Prometheus metric veil exports, defined in one place (names fixed by the spec).
//!
//! Labels come from small fixed sets — operation, class, outcome, configured caller and route names — never a
//! value, token, path or id.

use std::sync::OnceLock;

use prometheus::core::{Metric, MetricVec, MetricVecBuilder};
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// One series of a labelled metric, looked up on first use and kept: `with_label_values` hashes the label
/// values and takes a lock on every call, which the proxy's hot path would pay several times per request. Like a
/// plain lookup, the series appears in the export only once it has been used.
pub struct Series<M>(OnceLock<M>);

impl<M> Default for Series<M> {
    fn default() -> Self {
        Series(OnceLock::new())
    }
}

impl<M: Metric + Clone> Series<M> {
    /// The series of `vec` with these label values (the same ones every call for this `Series`).
    pub fn of<T: MetricVecBuilder<M = M>>(&self, vec: &MetricVec<T>, labels: &[&str]) -> &M {
        self.0.get_or_init(|| vec.with_label_values(labels))
    }
}

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub fields: IntCounterVec,
    pub detected: IntCounterVec,
    pub upstream_errors: IntCounterVec,
    pub vault_operations: IntCounterVec,
    pub vault_operation_duration: HistogramVec,
    pub detokenize: IntCounterVec,
    /// Vault API calls refused as unauthenticated, by operation (counted, not audited: a stranger must not be
    /// able to make the vault write and sync its log).
    pub unauthenticated: IntCounterVec,
    /// Audit appends that failed (each one refused the audited operation, or lost a denial record).
    pub audit_write_failures: IntCounter,
    /// Sequence number of the audit log's last committed line (its head, also kept in the store).
    pub audit_sequence: IntGauge,
    /// `notAfter` (Unix seconds) of the certificate each TLS listener serves, by listener (`proxy`, `vault`).
    pub certificate_expiry: IntGaugeVec,
    /// 1 when the vault (its store, or the remote vault) answered the last readiness check, else 0.
    pub vault_ready: IntGauge,
    /// Records purged by retention, by class.
    pub purged: IntCounterVec,
    /// Live records held, by class (refreshed at start and by every purge run).
    pub tokens: IntGaugeVec,
    /// Tokenisations refused for a spent budget of new values, by scope (`caller`, `client`) and caller (`-` for
    /// clients: an address is never a label). Each one may be a tokenisation oracle being walked.
    pub budget_refusals: IntCounterVec,
    /// Values shown masked (or left as tokens) on `reveal` routes because the staff member's `reveals_per_hour`
    /// was spent, by caller (a configured name). Someone reading far more customers than their work needs.
    pub reveal_budget_exhausted: IntCounterVec,
    /// Messages an SMTP listener finished with, by listener and outcome (`delivered`, `upstream_refused`,
    /// `upstream_unavailable`, `vault_unavailable`, `malformed`).
    pub smtp_messages: IntCounterVec,
    /// Envelope recipients revealed (e-mail tokens the vault knew), by listener.
    pub smtp_recipients_revealed: IntCounterVec,
    /// Tokens in messages revealed or masked, by listener, class and op (`detokenize`, `mask`).
    pub smtp_fields_revealed: IntCounterVec,
    /// Replies refusing a command, recipient or message, by listener and reply code.
    pub smtp_refusals: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("veil_requests_total", "Proxied requests, by route and response status."),
            &["route", "status"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new("veil_request_duration_seconds", "Time to answer a proxied request.")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["route"],
        )?;
        let fields = IntCounterVec::new(
            Opts::new("veil_fields_total", "Fields handled by route rules, by route, class and action."),
            &["route", "class", "action"],
        )?;
        let detected = IntCounterVec::new(
            Opts::new("veil_detected_total", "Values found by detection, by route and class."),
            &["route", "class"],
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new("veil_upstream_errors_total", "Upstream failures, by route and kind."),
            &["route", "kind"],
        )?;
        for c in [&requests, &fields, &detected, &upstream_errors] {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(request_duration.clone()))?;
        let vault_operations = IntCounterVec::new(
            Opts::new("veil_vault_operations_total", "Vault items processed, by operation, class and outcome."),
            &["op", "class", "outcome"],
        )?;
        let vault_operation_duration = HistogramVec::new(
            HistogramOpts::new("veil_vault_operation_duration_seconds", "Time to serve one vault call.")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            &["op"],
        )?;
        let detokenize = IntCounterVec::new(
            Opts::new("veil_detokenize_total", "Values revealed or refused, by caller, class and outcome."),
            &["caller", "class", "outcome"],
        )?;
        registry.register(Box::new(vault_operations.clone()))?;
        registry.register(Box::new(vault_operation_duration.clone()))?;
        registry.register(Box::new(detokenize.clone()))?;
        let audit_write_failures = IntCounter::new(
            "veil_audit_write_failures_total",
            "Audit records that could not be written (the audited operation was refused).",
        )?;
        let certificate_expiry = IntGaugeVec::new(
            Opts::new(
                "veil_certificate_expiry_timestamp_seconds",
                "Expiry (notAfter, Unix seconds) of the certificate a TLS listener serves, by listener.",
            ),
            &["listener"],
        )?;
        let vault_ready = IntGauge::new(
            "veil_vault_ready",
            "1 if the vault and its store answered the readiness check made at this scrape, else 0.",
        )?;
        let unauthenticated = IntCounterVec::new(
            Opts::new("veil_vault_unauthenticated_total", "Vault API calls refused as unauthenticated, by operation."),
            &["op"],
        )?;
        registry.register(Box::new(unauthenticated.clone()))?;
        registry.register(Box::new(audit_write_failures.clone()))?;
        let audit_sequence = IntGauge::new(
            "veil_audit_sequence",
            "Sequence number of the audit log's last committed line (the head also kept in the store).",
        )?;
        registry.register(Box::new(audit_sequence.clone()))?;
        registry.register(Box::new(certificate_expiry.clone()))?;
        registry.register(Box::new(vault_ready.clone()))?;
        let purged = IntCounterVec::new(
            Opts::new("veil_purged_total", "Records deleted because their class's retention expired, by class."),
            &["class"],
        )?;
        let tokens =
            IntGaugeVec::new(Opts::new("veil_tokens", "Live records held in the vault, by class."), &["class"])?;
        registry.register(Box::new(purged.clone()))?;
        registry.register(Box::new(tokens.clone()))?;
        let budget_refusals = IntCounterVec::new(
            Opts::new(
                "veil_budget_refusals_total",
                "Tokenisations refused because a caller's or a client's budget of new values was spent.",
            ),
            &["scope", "caller"],
        )?;
        registry.register(Box::new(budget_refusals.clone()))?;
        let smtp_messages = IntCounterVec::new(
            Opts::new("veil_smtp_messages_total", "Messages an SMTP listener finished with, by listener and outcome."),
            &["listener", "outcome"],
        )?;
        let smtp_recipients_revealed = IntCounterVec::new(
            Opts::new("veil_smtp_recipients_revealed_total", "Envelope recipients revealed, by SMTP listener."),
            &["listener"],
        )?;
        let smtp_fields_revealed = IntCounterVec::new(
            Opts::new(
                "veil_smtp_fields_revealed_total",
                "Tokens in messages revealed or masked, by SMTP listener, class and operation.",
            ),
            &["listener", "class", "op"],
        )?;
        let smtp_refusals = IntCounterVec::new(
            Opts::new("veil_smtp_refusals_total", "SMTP refusals (4xx/5xx replies), by listener and reply code."),
            &["listener", "code"],
        )?;
        for c in [&smtp_messages, &smtp_recipients_revealed, &smtp_fields_revealed, &smtp_refusals] {
            registry.register(Box::new(c.clone()))?;
        }
        // Present from the start (client refusals carry no caller), so the alert's series is there at 0.
        budget_refusals.with_label_values(&["client", "-"]);
        let reveal_budget_exhausted = IntCounterVec::new(
            Opts::new(
                "veil_reveal_budget_exhausted_total",
                "Values not revealed on back-office routes because the staff member's reveals_per_hour was spent.",
            ),
            &["caller"],
        )?;
        registry.register(Box::new(reveal_budget_exhausted.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            request_duration,
            fields,
            detected,
            upstream_errors,
            vault_operations,
            vault_operation_duration,
            detokenize,
            unauthenticated,
            audit_write_failures,
            audit_sequence,
            certificate_expiry,
            vault_ready,
            purged,
            tokens,
            budget_refusals,
            reveal_budget_exhausted,
            smtp_messages,
            smtp_recipients_revealed,
            smtp_fields_revealed,
            smtp_refusals,
        })
    }

    /// Records the expiry of the certificate `listener` (a fixed name: `proxy`, `vault`) now serves.
    pub fn set_certificate_expiry(&self, listener: &'static str, not_after_unix: i64) {
        self.certificate_expiry.with_label_values(&[listener]).set(not_after_unix);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_spec_names() {
        let m = Metrics::new().unwrap();
        m.vault_operations.with_label_values(&["tokenize", "pan", "ok"]).inc();
        m.detokenize.with_label_values(&["payments", "pan", "ok"]).inc();
        m.vault_operation_duration.with_label_values(&["tokenize"]).observe(0.001);
        let text = m.render();
        assert!(text.contains("veil_vault_operations_total{class=\"pan\",op=\"tokenize\",outcome=\"ok\"} 1"), "{text}");
        assert!(text.contains("veil_detokenize_total{"));
        assert!(text.contains("veil_vault_operation_duration_seconds_bucket{"));
    }

    #[test]
    fn audit_failures_and_readiness_are_always_exported() {
        let m = Metrics::new().unwrap();
        let text = m.render();
        // Unlabelled: present from the start, so an alert on them sees 0 rather than nothing.
        assert!(text.contains("veil_audit_write_failures_total 0"), "{text}");
        assert!(text.contains("veil_vault_ready 0"), "{text}");
        m.audit_write_failures.inc();
        m.vault_ready.set(1);
        let text = m.render();
        assert!(text.contains("veil_audit_write_failures_total 1"), "{text}");
        assert!(text.contains("veil_vault_ready 1"), "{text}");
    }

    #[test]
    fn certificate_expiry_per_listener() {
        let m = Metrics::new().unwrap();
        m.set_certificate_expiry("proxy", 1_900_000_000);
        m.set_certificate_expiry("vault", 1_800_000_000);
        m.set_certificate_expiry("proxy", 1_950_000_000);
        let text = m.render();
        assert!(text.contains("veil_certificate_expiry_timestamp_seconds{listener=\"proxy\"} 1950000000"), "{text}");
        assert!(text.contains("veil_certificate_expiry_timestamp_seconds{listener=\"vault\"} 1800000000"), "{text}");
        assert_eq!(text.matches("veil_certificate_expiry_timestamp_seconds{").count(), 2, "{text}");
    }
}
