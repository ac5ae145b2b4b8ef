//! The fence agent: an external command that cuts a node off the shared disk.
//!
//! Run as `fence_command... <node-id> <node-name>` with `MXFS_FENCE_NODE_ID` and
//! `MXFS_FENCE_NODE_NAME` set, bounded by `fence_timeout_ms`. Exit status 0 means fenced;
//! anything else (or the timeout, after which the command is killed) means not fenced, and the
//! daemon retries: recovery never proceeds on an unconfirmed fence.

use crate::agent::{run_once, AgentError};

/// Delay between attempts after a failed fence.
pub const FENCE_RETRY_DELAY_MS: u64 = 500;

/// Runs the fence command once against `node`.
pub async fn fence_once(
    command: &[String],
    node: u32,
    name: &str,
    timeout_ms: u64,
) -> Result<(), AgentError> {
    let env = [
        ("MXFS_FENCE_NODE_ID", node.to_string()),
        ("MXFS_FENCE_NODE_NAME", name.to_string()),
    ];
    run_once("fence command", command, node, name, &env, timeout_ms).await
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
            Err(AgentError::Failed { .. })
        ));
        assert!(matches!(
            fence_once(&sh("sleep 5"), 3, "n3", 100).await,
            Err(AgentError::Timeout {
                timeout_ms: 100,
                ..
            })
        ));
        assert!(matches!(
            fence_once(&["/nonexistent/fence".to_string()], 3, "n3", 100).await,
            Err(AgentError::Spawn { .. })
        ));
    }
}
