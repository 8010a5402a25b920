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

/// Names of the links whose name starts with `prefix`.
pub async fn links_with_prefix(prefix: &str) -> anyhow::Result<Vec<String>> {
    let json = run("ip", &["-j", "link", "show"]).await?;
    let links: Vec<serde_json::Value> =
        serde_json::from_str(&json).context("parsing ip -j link")?;
    Ok(links
        .iter()
        .filter_map(|l| l["ifname"].as_str())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect())
}

/// Whether a link exists.
pub async fn link_exists(name: &str) -> bool {
    run("ip", &["link", "show", "dev", name]).await.is_ok()
}
