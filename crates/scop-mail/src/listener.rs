//! Accept loops: one task per connection, a cap on concurrent connections
//! per client address and in total, and a graceful stop.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::session::{self, Handler, SessionConfig};

/// Connection limits of a listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Concurrent connections from one address.
    pub per_ip: usize,
    /// Concurrent connections in all.
    pub total: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            per_ip: 10,
            total: 1000,
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    per_ip: HashMap<IpAddr, usize>,
    total: usize,
}

struct Slot {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Serves `listener` until `stop` turns true; sessions in progress finish
/// on their own (their timeouts bound them).
pub async fn run<H: Handler>(
    name: &'static str,
    listener: TcpListener,
    cfg: Arc<SessionConfig>,
    handler: Arc<H>,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
) {
    let counts = Arc::new(Mutex::new(Counts::default()));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (mut tcp, addr) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(listener = name, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let admitted = {
            let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
            let ip_count = c.per_ip.get(&addr.ip()).copied().unwrap_or(0);
            if ip_count >= limits.per_ip || c.total >= limits.total {
                false
            } else {
                *c.per_ip.entry(addr.ip()).or_default() += 1;
                c.total += 1;
                true
            }
        };
        if !admitted {
            tracing::info!(listener = name, peer = %addr, "connection limit reached");
            tokio::spawn(async move {
                tcp.write_all(b"421 4.7.0 Too many connections, try again later\r\n")
                    .await
                    .ok();
                tcp.shutdown().await.ok();
            });
            continue;
        }
        let slot = Slot {
            counts: counts.clone(),
            ip: addr.ip(),
        };
        let cfg = cfg.clone();
        let handler = handler.clone();
        tokio::spawn(async move {
            let _slot = slot;
            tcp.set_nodelay(true).ok();
            match session::serve(tcp, addr, &cfg, handler.as_ref()).await {
                Ok(outcome) => {
                    tracing::debug!(listener = name, peer = %addr, ?outcome, "session ended")
                }
                Err(e) => {
                    tracing::info!(listener = name, peer = %addr, error = %e, "session failed")
                }
            }
        });
    }
}
