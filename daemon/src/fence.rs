//! The fence agent: an external command that cuts a node off the shared disk.
//!
//! Run as `fence_command... <node-id> <node-name>` with `MXFS_FENCE_NODE_ID` and
//! `MXFS_FENCE_NODE_NAME` set, bounded by `fence_timeout_ms`. Exit status 0 means fenced;
//! anything else (or the timeout, after which the command is killed) means not fenced, and the
//! daemon retries: recovery never proceeds on an unconfirmed fence.

use std::process::Stdio;
use std::time::Duration;

/// Delay between attempts after a failed fence.
pub const FENCE_RETRY_DELAY_MS: u64 = 500;

/// Why a fence attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// The command could not be started.
    #[error("fence command could not start: {0}")]
    Spawn(std::io::Error),
    /// It exited non-zero.
    #[error("fence command failed with {0}")]
    Failed(std::process::ExitStatus),
    /// It ran past the timeout and was killed.
    #[error("fence command timed out after {0} ms")]
    Timeout(u64),
    /// Waiting for it failed.
    #[error("fence command wait: {0}")]
    Wait(std::io::Error),
}

/// Runs the fence command once against `node`.
pub async fn fence_once(
    command: &[String],
    node: u32,
    name: &str,
    timeout_ms: u64,
) -> Result<(), FenceError> {
    assert!(
        !command.is_empty(),
        "config validation requires a fence command"
    );
    let mut child = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .arg(node.to_string())
        .arg(name)
        .env("MXFS_FENCE_NODE_ID", node.to_string())
        .env("MXFS_FENCE_NODE_NAME", name)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(FenceError::Spawn)?;
    match tokio::time::timeout(Duration::from_millis(timeout_ms), child.wait()).await {
        Ok(Ok(st)) if st.success() => Ok(()),
        Ok(Ok(st)) => Err(FenceError::Failed(st)),
        Ok(Err(e)) => Err(FenceError::Wait(e)),
        Err(_) => {
            let _ = child.kill().await;
            Err(FenceError::Timeout(timeout_ms))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fence_reports_success_failure_and_timeout() {
        let sh = |s: &str| vec!["/bin/sh".to_string(), "-c".into(), s.into(), "fence".into()];
        assert!(fence_once(
            &sh("test \"$1\" = 3 && test \"$MXFS_FENCE_NODE_NAME\" = n3"),
            3,
            "n3",
            5_000
        )
        .await
        .is_ok());
        assert!(matches!(
            fence_once(&sh("exit 4"), 3, "n3", 5_000).await,
            Err(FenceError::Failed(_))
        ));
        assert!(matches!(
            fence_once(&sh("sleep 5"), 3, "n3", 100).await,
            Err(FenceError::Timeout(100))
        ));
        assert!(matches!(
            fence_once(&["/nonexistent/fence".to_string()], 3, "n3", 100).await,
            Err(FenceError::Spawn(_))
        ));
    }
}
