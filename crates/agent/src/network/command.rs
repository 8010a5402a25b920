//! Running the host's tools (`ip`, `tc`, `nft`, ...) with argument vectors,
//! each under a time limit: a tool that hangs (a wedged netlink socket, a
//! lock held by someone else) is killed instead of blocking its caller.

use anyhow::{bail, Context};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How long one run of a host tool may take. `ip`, `tc` and `nft` answer in
/// milliseconds; a whole firewall ruleset loads in well under a second. Two
/// orders of magnitude above that still absorbs a host swapping or starved of
/// CPU by TCG guests, while a hung tool is found out within a converge pass.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `prog args...`; fails with its stderr when it exits non-zero.
pub async fn run(prog: &str, args: &[&str]) -> anyhow::Result<String> {
    run_limited(prog, args, None, COMMAND_TIMEOUT).await
}

/// Runs `prog args...` with `input` on standard input.
pub async fn run_with_input(prog: &str, args: &[&str], input: &str) -> anyhow::Result<()> {
    run_limited(prog, args, Some(input), COMMAND_TIMEOUT)
        .await
        .map(drop)
}

/// Runs `prog args...` (feeding it `input`), killing it after `limit`.
/// Returns its standard output; fails with its stderr when it exits non-zero.
pub async fn run_limited(
    prog: &str,
    args: &[&str],
    input: Option<&str>,
    limit: Duration,
) -> anyhow::Result<String> {
    let mut child = tokio::process::Command::new(prog)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Dropping the future (timeout, or a caller that gave up) kills it.
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running {prog}"))?;
    let stdin = child.stdin.take();
    let feed = async move {
        if let (Some(mut stdin), Some(input)) = (stdin, input) {
            stdin.write_all(input.as_bytes()).await?;
            // Closing stdin tells the tool the input is complete.
            drop(stdin);
        }
        Ok::<_, std::io::Error>(())
    };
    let command = std::iter::once(prog)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    // Fed while its output is read, so neither pipe can fill up and stall.
    let finished = tokio::time::timeout(limit, async {
        tokio::join!(feed, child.wait_with_output())
    })
    .await;
    let out = match finished {
        Ok((fed, out)) => {
            let out = out.with_context(|| format!("running {prog}"))?;
            if out.status.success() {
                fed.with_context(|| format!("writing to {prog}"))?;
            }
            out
        }
        Err(_) => bail!(
            "{command} did not finish within {} s; killed",
            limit.as_secs()
        ),
    };
    if !out.status.success() {
        bail!(
            "{command} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tool_that_hangs_is_killed_after_the_limit() {
        let started = std::time::Instant::now();
        let err = run_limited("sleep", &["600"], None, Duration::from_millis(300))
            .await
            .expect_err("sleep 600 cannot finish in time");
        assert!(err.to_string().contains("did not finish"), "{err:#}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not waited out"
        );
        // kill_on_drop: no `sleep 600` of ours is left behind.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let ours = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
            .filter(|stat| {
                let ppid = stat.rsplit_once(')').and_then(|(_, rest)| {
                    rest.split_whitespace()
                        .nth(1)
                        .and_then(|p| p.parse::<u32>().ok())
                });
                stat.contains("(sleep)")
                    && ppid == Some(std::process::id())
                    && !stat
                        .rsplit_once(')')
                        .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .count();
        assert_eq!(ours, 0, "the hung child was killed");
    }

    #[tokio::test]
    async fn a_quick_tool_answers_within_the_limit() {
        // Positive control for the test above: same path, a tool that ends.
        let out = run_limited("cat", &[], Some("hello\n"), Duration::from_secs(30))
            .await
            .expect("cat");
        assert_eq!(out, "hello\n");
        let err = run_limited("false", &[], None, Duration::from_secs(30))
            .await
            .expect_err("false fails");
        assert!(err.to_string().contains("false failed"), "{err:#}");
    }
}
