//! Prometheus text metrics over a tiny HTTP/1.0 responder bound to a loopback address.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Upper bounds (ms) of the latency histogram buckets.
pub const LATENCY_BUCKETS_MS: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 100.0, 1000.0, 10000.0, 60000.0,
];
/// Largest HTTP request read, in bytes.
pub const HTTP_REQUEST_BYTES_MAX: usize = 8192;

/// A fixed-bucket histogram of milliseconds.
#[derive(Default, Debug)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_MS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe_ms(&self, ms: f64) {
        for (i, b) in LATENCY_BUCKETS_MS.iter().enumerate() {
            if ms <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add((ms * 1000.0) as u64, Ordering::Relaxed);
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, b) in LATENCY_BUCKETS_MS.iter().enumerate() {
            let v = self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {v}", b / 1000.0);
        }
        let c = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {c}");
        let s = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {s}\n{name}_count {c}");
    }
}

/// Every metric of the daemon.
#[derive(Default, Debug)]
pub struct Metrics {
    /// Grants delivered to the kernel or a local client.
    pub grants: AtomicU64,
    /// Denies delivered.
    pub denies: AtomicU64,
    /// Grants slower than `WAIT_THRESHOLD_MS` plus timed-out requests (contention).
    pub waits: AtomicU64,
    /// CACHE_INVALs delivered.
    pub cache_invals: AtomicU64,
    /// Recoveries finished.
    pub recoveries: AtomicU64,
    /// Fence attempts that failed.
    pub fence_failures: AtomicU64,
    /// Journal replays run (each attempt).
    pub journal_replays: AtomicU64,
    /// Journal replay attempts that failed.
    pub journal_replay_failures: AtomicU64,
    /// Events the core rejected.
    pub core_rejects: AtomicU64,
    /// Request to grant latency.
    pub grant_latency: Histogram,
    /// Recovery duration.
    pub recovery_duration: Histogram,
}

impl Metrics {
    /// Prometheus text exposition.
    pub fn render(&self, extra: &[(&str, u64)]) -> String {
        let mut s = String::new();
        let counters = [
            ("mxfs_grants_total", "Lock grants delivered", &self.grants),
            ("mxfs_denies_total", "Lock denies delivered", &self.denies),
            (
                "mxfs_waits_total",
                "Grants slower than 5 ms plus timed-out requests",
                &self.waits,
            ),
            (
                "mxfs_cache_invals_total",
                "CACHE_INVAL messages delivered",
                &self.cache_invals,
            ),
            (
                "mxfs_recoveries_total",
                "Recoveries finished",
                &self.recoveries,
            ),
            (
                "mxfs_fence_failures_total",
                "Failed fence attempts",
                &self.fence_failures,
            ),
            (
                "mxfs_journal_replays_total",
                "Journal replay attempts of lost nodes",
                &self.journal_replays,
            ),
            (
                "mxfs_journal_replay_failures_total",
                "Failed journal replay attempts",
                &self.journal_replay_failures,
            ),
            (
                "mxfs_core_rejects_total",
                "Events rejected by the lock core",
                &self.core_rejects,
            ),
        ];
        for (n, h, c) in counters {
            let _ = writeln!(
                s,
                "# HELP {n} {h}\n# TYPE {n} counter\n{n} {}",
                c.load(Ordering::Relaxed)
            );
        }
        for (n, v) in extra {
            let _ = writeln!(s, "# TYPE {n} gauge\n{n} {v}");
        }
        self.grant_latency.render(
            "mxfs_grant_latency_seconds",
            "Request to grant latency",
            &mut s,
        );
        self.recovery_duration.render(
            "mxfs_recovery_duration_seconds",
            "Recovery duration",
            &mut s,
        );
        s
    }
}

/// Serves `GET /metrics` (any path) until the listener fails. `body` renders the page.
pub async fn serve(listener: TcpListener, body: Arc<dyn Fn() -> String + Send + Sync>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let body = body.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; HTTP_REQUEST_BYTES_MAX];
            let read =
                tokio::time::timeout(std::time::Duration::from_secs(2), sock.read(&mut buf)).await;
            let n = match read {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let ok = buf[..n].starts_with(b"GET ");
            let resp = if ok {
                let b = body();
                format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{b}",
                    b.len()
                )
            } else {
                "HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n".to_string()
            };
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.grant_latency.observe_ms(0.2);
        m.grant_latency.observe_ms(3.0);
        m.grants.fetch_add(2, Ordering::Relaxed);
        let t = m.render(&[("mxfs_members", 3)]);
        assert!(t.contains("mxfs_grants_total 2"), "{t}");
        assert!(
            t.contains("mxfs_grant_latency_seconds_bucket{le=\"0.00025\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("mxfs_grant_latency_seconds_bucket{le=\"0.005\"} 2"),
            "{t}"
        );
        assert!(t.contains("mxfs_grant_latency_seconds_count 2"), "{t}");
        assert!(t.contains("mxfs_members 3"), "{t}");
    }
}
