//! The journal replay of a lost node (DESIGN.md §5.5): an external command that replays the
//! node's XFS log into the shared volume (in production a proxy mount
//! `-o ro,mxfs,mxfs_recover=N,nouuid,logdev=<N's log>` of a second block device over the shared
//! volume, then an unmount, which writes an unmount record into N's log).
//!
//! Run as `replay_command... <node-id> <node-name>` with `MXFS_REPLAY_NODE_ID`,
//! `MXFS_REPLAY_NODE_NAME` and `MXFS_REPLAY_EPOCH` set, bounded by `replay_timeout_ms`. Exit
//! status 0 means replayed; anything else (or the timeout, after which the command is killed)
//! means not replayed: the lock core keeps recovery frozen and asks again after
//! `mxfs_core::REPLAY_RETRY_DELAY_MS`. The command must be safe to run again after it failed or
//! was killed (e.g. unmount a proxy mount left behind first); replaying a replayed log changes
//! nothing.

use std::process::Stdio;
use std::time::Duration;

/// How much of the command's standard error a failure report keeps, in bytes (the end of it).
pub const REPLAY_STDERR_BYTES_MAX: usize = 1024;

/// Why a replay attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The command could not be started.
    #[error("replay command could not start: {0}")]
    Spawn(std::io::Error),
    /// It exited non-zero.
    #[error("replay command failed with {status}: {stderr}")]
    Failed {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The end of its standard error.
        stderr: String,
    },
    /// It ran past the timeout and was killed.
    #[error("replay command timed out after {0} ms and was killed")]
    Timeout(u64),
    /// Waiting for it failed.
    #[error("replay command wait: {0}")]
    Wait(std::io::Error),
}

/// Runs the replay command once for lost node `node` (recovery of `epoch`).
pub async fn replay_once(
    command: &[String],
    node: u32,
    name: &str,
    epoch: u64,
    timeout_ms: u64,
) -> Result<(), ReplayError> {
    let Some((program, args)) = command.split_first() else {
        // Config validation requires a program; an empty command replays nothing.
        return Err(ReplayError::Spawn(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "empty replay_command",
        )));
    };
    let child = tokio::process::Command::new(program)
        .args(args)
        .arg(node.to_string())
        .arg(name)
        .env("MXFS_REPLAY_NODE_ID", node.to_string())
        .env("MXFS_REPLAY_NODE_NAME", name)
        .env("MXFS_REPLAY_EPOCH", epoch.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(ReplayError::Spawn)?;
    // On the timeout the future, and with it the child, is dropped: `kill_on_drop` kills it.
    match tokio::time::timeout(Duration::from_millis(timeout_ms), child.wait_with_output()).await {
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let tail = &out.stderr[out.stderr.len().saturating_sub(REPLAY_STDERR_BYTES_MAX)..];
            Err(ReplayError::Failed {
                status: out.status,
                stderr: String::from_utf8_lossy(tail).trim().to_string(),
            })
        }
        Ok(Err(e)) => Err(ReplayError::Wait(e)),
        Err(_) => Err(ReplayError::Timeout(timeout_ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replay_reports_success_failure_and_timeout() {
        let sh = |s: &str| {
            vec![
                "/bin/sh".to_string(),
                "-c".into(),
                s.into(),
                "replay".into(),
            ]
        };
        assert!(replay_once(
            &sh(
                "test \"$1\" = 3 && test \"$2\" = n3 && test \"$MXFS_REPLAY_NODE_ID\" = 3 \
                 && test \"$MXFS_REPLAY_NODE_NAME\" = n3 && test \"$MXFS_REPLAY_EPOCH\" = 7"
            ),
            3,
            "n3",
            7,
            5_000
        )
        .await
        .is_ok());
        match replay_once(
            &sh("echo 'mount: bad superblock' >&2; exit 32"),
            3,
            "n3",
            7,
            5_000,
        )
        .await
        {
            Err(ReplayError::Failed { status, stderr }) => {
                assert_eq!(status.code(), Some(32));
                assert_eq!(stderr, "mount: bad superblock");
            }
            other => panic!("{other:?}"),
        }
        let t = std::time::Instant::now();
        assert!(matches!(
            replay_once(&sh("sleep 5"), 3, "n3", 7, 100).await,
            Err(ReplayError::Timeout(100))
        ));
        assert!(t.elapsed() < Duration::from_secs(4), "not killed in time");
        assert!(matches!(
            replay_once(&["/nonexistent/replay".to_string()], 3, "n3", 7, 100).await,
            Err(ReplayError::Spawn(_))
        ));
        assert!(matches!(
            replay_once(&[], 3, "n3", 7, 100).await,
            Err(ReplayError::Spawn(_))
        ));
    }
}
