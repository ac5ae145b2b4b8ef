//! The daemon's external agents: the fence command ([`crate::fence`]) and the journal replay
//! command ([`crate::replay`]). Each runs once for one node as `command... <node-id>
//! <node-name>` with its environment variables, stdin closed, its standard error kept (the end
//! of it, for the failure report), and is killed when it runs past its timeout. Exit status 0
//! means done; anything else means not done, and the caller retries: recovery never goes on
//! past an agent that did not confirm. The agent's standard output is the daemon's (what it
//! says lands in the daemon's log).

use std::process::Stdio;
use std::time::Duration;

/// How much of an agent's standard error a failure report keeps, in bytes (the end of it).
pub const AGENT_STDERR_BYTES_MAX: usize = 1024;

/// Why one run of an agent failed; `what` names the agent (`fence command`, ...).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The command could not be started (or is empty).
    #[error("{what} could not start: {err}")]
    Spawn {
        /// The agent.
        what: &'static str,
        /// Why.
        err: std::io::Error,
    },
    /// It exited non-zero.
    #[error("{what} failed with {status}: {stderr}")]
    Failed {
        /// The agent.
        what: &'static str,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The end of its standard error.
        stderr: String,
    },
    /// It ran past the timeout and was killed.
    #[error("{what} timed out after {timeout_ms} ms and was killed")]
    Timeout {
        /// The agent.
        what: &'static str,
        /// The timeout.
        timeout_ms: u64,
    },
    /// Waiting for it failed.
    #[error("{what} wait: {err}")]
    Wait {
        /// The agent.
        what: &'static str,
        /// Why.
        err: std::io::Error,
    },
}

/// Runs agent `what` (`command`) once for `node` (`name`), with `env` set, for at most
/// `timeout_ms`.
pub async fn run_once(
    what: &'static str,
    command: &[String],
    node: u32,
    name: &str,
    env: &[(&str, String)],
    timeout_ms: u64,
) -> Result<(), AgentError> {
    let Some((program, args)) = command.split_first() else {
        // Config validation requires a program; an empty command runs nothing.
        let err = std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command");
        return Err(AgentError::Spawn { what, err });
    };
    let child = tokio::process::Command::new(program)
        .args(args)
        .arg(node.to_string())
        .arg(name)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| AgentError::Spawn { what, err })?;
    // On the timeout the future, and with it the child, is dropped: `kill_on_drop` kills it.
    match tokio::time::timeout(Duration::from_millis(timeout_ms), child.wait_with_output()).await {
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let tail = &out.stderr[out.stderr.len().saturating_sub(AGENT_STDERR_BYTES_MAX)..];
            Err(AgentError::Failed {
                what,
                status: out.status,
                stderr: String::from_utf8_lossy(tail).trim().to_string(),
            })
        }
        Ok(Err(err)) => Err(AgentError::Wait { what, err }),
        Err(_) => Err(AgentError::Timeout { what, timeout_ms }),
    }
}
