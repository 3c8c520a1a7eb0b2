//! Measures sequential mesh mTLS handshakes over loopback (TCP connect,
//! TLS 1.3 with client certificate, role checks), one connection each.
//!
//! `cargo run --release -p scop-mesh --example handshakes [COUNT]`

use std::time::{Duration, Instant, SystemTime};

use scop_mesh::{Ca, ExtraNames, MeshConnector, MeshError, MeshListener, Role, Validity};
use tokio::io::AsyncWriteExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), MeshError> {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let now = SystemTime::now();
    let validity =
        Validity::starting(now - Duration::from_secs(3600), Duration::from_secs(86_400))?;
    let started = Instant::now();
    let ca = Ca::create(validity)?;
    let signer = ca.issue(Role::Signer, validity, &ExtraNames::none())?;
    let submission = ca.issue(Role::Submission, validity, &ExtraNames::none())?;
    let issue_time = started.elapsed();
    let trust = ca.trust();
    let listener = MeshListener::bind_policy("127.0.0.1:0", &signer, &trust).await?;
    let addr = listener.local_addr()?;
    let connector = MeshConnector::new(&submission, &trust, Role::Signer)?;
    let server = tokio::spawn(async move {
        for _ in 0..count {
            let incoming = listener.accept().await?;
            tokio::spawn(async move {
                if let Ok(mut conn) = incoming.handshake().await {
                    let _ = conn.stream.shutdown().await;
                }
            });
        }
        Ok::<_, MeshError>(())
    });
    let mut latencies = Vec::with_capacity(count);
    let started = Instant::now();
    for _ in 0..count {
        let t = Instant::now();
        let conn = connector.connect(addr).await?;
        latencies.push(t.elapsed());
        drop(conn);
    }
    let total = started.elapsed();
    server
        .await
        .map_err(|e| MeshError::Net(std::io::Error::other(e)))??;
    latencies.sort();
    let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    println!(
        "CA + 2 leaf certificates: {:?}\n{count} handshakes: {:.0}/s, p50 {:?}, p99 {:?}",
        issue_time,
        count as f64 / total.as_secs_f64(),
        pct(50),
        pct(99)
    );
    Ok(())
}
