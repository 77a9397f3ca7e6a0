//! Per-client connection accounting: how many connections one client address holds, and how many of those are
//! still in their header phase (TLS handshake, or waiting for the first request head). One address cannot then
//! take every slot of the listener with half-open connections and lock other clients out.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

/// Per-address caps (both at least 1).
#[derive(Debug, Clone, Copy)]
pub struct ClientCaps {
    /// Connections one address may hold open.
    pub connections: usize,
    /// Of those, connections still before their first request.
    pub pending: usize,
}

impl Default for ClientCaps {
    fn default() -> Self {
        ClientCaps { connections: 1024, pending: 256 }
    }
}

/// Open and pending connections per client address.
#[derive(Default)]
pub struct PerClient {
    counts: DashMap<IpAddr, (usize, usize)>,
}

impl PerClient {
    /// A slot for a new connection from `ip`, or `None` when the address is at one of its caps.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, caps: ClientCaps) -> Option<ClientSlot> {
        let mut entry = self.counts.entry(ip).or_insert((0, 0));
        let (open, pending) = *entry;
        if open >= caps.connections || pending >= caps.pending {
            return None;
        }
        *entry = (open + 1, pending + 1);
        Some(ClientSlot { clients: self.clone(), ip, pending: AtomicBool::new(true) })
    }

    fn release(&self, ip: IpAddr, pending: bool) {
        let gone = match self.counts.get_mut(&ip) {
            Some(mut e) => {
                e.0 = e.0.saturating_sub(1);
                if pending {
                    e.1 = e.1.saturating_sub(1);
                }
                e.0 == 0
            }
            None => false,
        };
        if gone {
            self.counts.remove_if(&ip, |_, v| v.0 == 0);
        }
    }

    fn started(&self, ip: IpAddr) {
        if let Some(mut e) = self.counts.get_mut(&ip) {
            e.1 = e.1.saturating_sub(1);
        }
    }

    #[cfg(test)]
    fn of(&self, ip: IpAddr) -> (usize, usize) {
        self.counts.get(&ip).map(|e| *e).unwrap_or((0, 0))
    }
}

/// One admitted connection; released when dropped.
pub struct ClientSlot {
    clients: Arc<PerClient>,
    ip: IpAddr,
    pending: AtomicBool,
}

impl ClientSlot {
    /// The connection's first request arrived: it leaves the header phase.
    pub fn started(&self) {
        if self.pending.swap(false, Ordering::AcqRel) {
            self.clients.started(self.ip);
        }
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.clients.release(self.ip, self.pending.load(Ordering::Acquire));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_cannot_take_every_slot() {
        let clients = Arc::new(PerClient::default());
        let caps = ClientCaps { connections: 3, pending: 2 };
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = clients.admit(a, caps).unwrap();
        let second = clients.admit(a, caps).unwrap();
        assert!(clients.admit(a, caps).is_none(), "two half-open connections are the pending cap");
        assert!(clients.admit(b, caps).is_some(), "another address is not affected");
        first.started();
        first.started(); // once only
        let third = clients.admit(a, caps).unwrap();
        third.started();
        assert_eq!(clients.of(a), (3, 1));
        assert!(clients.admit(a, caps).is_none(), "three open connections are the cap");
        drop((second, third));
        assert_eq!(clients.of(a), (1, 0));
        drop(first);
        assert_eq!(clients.of(a), (0, 0));
        assert!(clients.counts.is_empty(), "addresses without connections are forgotten");
    }
}
