//! Running the host's network tools (`ip`, `nft`) with argument vectors.

use anyhow::{bail, Context};
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

/// Runs `prog args...`; fails with its stderr when it exits non-zero.
pub async fn run(prog: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {prog}"))?;
    if !out.status.success() {
        bail!(
            "{prog} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `prog args...` with `input` on standard input.
pub async fn run_with_input(prog: &str, args: &[&str], input: &str) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new(prog)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {prog}"))?;
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(input.as_bytes()).await?;
    drop(stdin);
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        bail!(
            "{prog} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs several `ip` commands in one process (`ip -batch -`). With `force`,
/// a failing line (e.g. "exists") does not stop the ones after it.
pub async fn ip_batch(lines: &[String], force: bool) -> anyhow::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut input = lines.join("\n");
    input.push('\n');
    let args: &[&str] = if force {
        &["-force", "-batch", "-"]
    } else {
        &["-batch", "-"]
    };
    run_with_input("ip", args, &input).await
}

/// Names of the links whose name starts with `prefix`, from the calling
/// thread's own network namespace (/proc/thread-self/net/dev: unlike
/// /sys/class/net or /proc/self, it follows a thread's setns), at no process.
pub async fn links_with_prefix(prefix: &str) -> anyhow::Result<Vec<String>> {
    let dev = tokio::fs::read_to_string("/proc/thread-self/net/dev")
        .await
        .context("reading /proc/thread-self/net/dev")?;
    Ok(dev
        .lines()
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim()))
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect())
}

/// Whether a link exists (in the calling thread's namespace, at no process).
pub async fn link_exists(name: &str) -> bool {
    links_with_prefix(name)
        .await
        .is_ok_and(|links| links.iter().any(|l| l == name))
}
