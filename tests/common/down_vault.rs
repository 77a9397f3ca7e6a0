//! A vault that is down or hangs, for fail-closed tests of the proxy and egress routes (services in memory).
#![allow(dead_code)]

use std::time::Duration;

/// A vault that is down (`slow = false`) or hangs (`slow = true`).
pub struct DownVault {
    pub slow: bool,
}

#[async_trait::async_trait]
impl veil::vault::Vault for DownVault {
    async fn tokenize_on(
        &self,
        _: &veil::vault::auth::Caller,
        _: &[(veil::domain::Class, &str)],
        _: Option<&str>,
        _: veil::vault::Terms<'_>,
    ) -> Result<Vec<String>, veil::vault::VaultError> {
        if self.slow {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Err(veil::vault::VaultError::StoreUnavailable)
    }
    async fn detokenize(
        &self,
        _: &veil::vault::auth::Caller,
        _: &[(veil::domain::Class, &str)],
        _: Option<&str>,
    ) -> Result<Vec<veil::vault::ItemResult>, veil::vault::VaultError> {
        if self.slow {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
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
        false
    }
}
