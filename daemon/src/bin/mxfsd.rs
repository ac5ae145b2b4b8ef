//! `mxfsd --config FILE`: the MXFS cluster lock daemon.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// MXFS cluster lock daemon.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// TOML config file.
    #[arg(long, short)]
    config: PathBuf,
    /// Only parse and validate the config, then exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cfg = match mxfs_daemon::config::Config::from_file(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mxfsd: {}: {e}", args.config.display());
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("mxfsd: {}: config OK", args.config.display());
        return ExitCode::SUCCESS;
    }
    // One thread: the lock core is single-threaded by design, and keeping the socket tasks on
    // the same thread avoids a cross-thread wake-up on every hop of a remote grant.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mxfsd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The event loop runs as a spawned task, not as the `block_on` future: a wake-up of a task
    // is a push onto the run queue, while a wake-up of the `block_on` future costs the
    // scheduler an extra zero-timeout epoll_wait before it is polled again.
    match rt.block_on(async { tokio::spawn(mxfs_daemon::daemon::run(cfg)).await }) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("mxfsd: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("mxfsd: the event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}
