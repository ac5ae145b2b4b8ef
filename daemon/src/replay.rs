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

use crate::agent::{run_once, AgentError};

/// Runs the replay command once for lost node `node` (recovery of `epoch`).
pub async fn replay_once(
    command: &[String],
    node: u32,
    name: &str,
    epoch: u64,
    timeout_ms: u64,
) -> Result<(), AgentError> {
    let env = [
        ("MXFS_REPLAY_NODE_ID", node.to_string()),
        ("MXFS_REPLAY_NODE_NAME", name.to_string()),
        ("MXFS_REPLAY_EPOCH", epoch.to_string()),
    ];
    run_once("replay command", command, node, name, &env, timeout_ms).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
            Err(AgentError::Failed { status, stderr, .. }) => {
                assert_eq!(status.code(), Some(32));
                assert_eq!(stderr, "mount: bad superblock");
            }
            other => panic!("{other:?}"),
        }
        let t = std::time::Instant::now();
        assert!(matches!(
            replay_once(&sh("sleep 5"), 3, "n3", 7, 100).await,
            Err(AgentError::Timeout {
                timeout_ms: 100,
                ..
            })
        ));
        assert!(t.elapsed() < Duration::from_secs(4), "not killed in time");
        assert!(matches!(
            replay_once(&["/nonexistent/replay".to_string()], 3, "n3", 7, 100).await,
            Err(AgentError::Spawn { .. })
        ));
        assert!(matches!(
            replay_once(&[], 3, "n3", 7, 100).await,
            Err(AgentError::Spawn { .. })
        ));
    }
}
