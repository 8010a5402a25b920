//! `--wait`: polls a server until it reaches a state, showing progress (a
//! spinner with the status and the time so far on a terminal, a plain line
//! per status change otherwise) and ending with the final state.

use crate::client::{failure_status, ApiClient};
use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use nubis_api::servers::{Server, ServerStatus};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How long `--wait` waits before giving up: far beyond a host's graceful
/// stop timeout (60 s by default) followed by the hard stop, and a boot
/// under emulation.
pub const WAIT_LIMIT: Duration = Duration::from_secs(900);

/// How often the server is polled.
const POLL: Duration = Duration::from_millis(500);

/// What `--wait` waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    /// One of these statuses.
    Status(&'static [ServerStatus]),
    /// The server is gone (deleted).
    Gone,
}

/// Progress of one wait: a spinner on a terminal, lines on a pipe or file.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    last: String,
    started: Instant,
}

impl Progress {
    pub(crate) fn new(name: &str, status: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .expect("valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        let mut p = Self {
            bar,
            last: String::new(),
            started: Instant::now(),
        };
        p.show(name, status);
        p
    }

    /// Shows the current status; without a terminal, only changes are printed.
    pub(crate) fn show(&mut self, name: &str, status: &str) {
        let line = format!("{name}: {status}");
        match &self.bar {
            Some(bar) => bar.set_message(line.clone()),
            None if line != self.last => eprintln!("{line}"),
            None => {}
        }
        self.last = line;
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `web: stopped (after 61 s)`.
pub fn final_line(name: &str, state: &str, elapsed: Duration) -> String {
    format!("{name}: {state} (after {} s)", elapsed.as_secs())
}

/// Where the final state line goes: stdout when it is the command's answer
/// (`server stop --wait`), stderr when the command prints something else
/// there (`server create --wait` prints the server, maybe as JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalLine {
    Stdout,
    Stderr,
}

/// Waits for `goal`; returns the server as last seen (`None` once gone) and
/// prints the final state. Ending in `error` or running out of time fails.
pub async fn wait_for(
    client: &ApiClient,
    server: &Server,
    goal: Goal,
    final_line_to: FinalLine,
) -> anyhow::Result<Option<Server>> {
    let mut progress = Progress::new(&server.name, server.status.as_str());
    let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
    loop {
        let current = match client
            .get::<Server>(&format!("/v1/servers/{}", server.id))
            .await
        {
            Ok(s) => Some(s),
            Err(e) if failure_status(&e) == Some(reqwest::StatusCode::NOT_FOUND) => None,
            Err(e) => return Err(e),
        };
        let status = current.as_ref().map_or("deleted", |s| s.status.as_str());
        progress.show(&server.name, status);
        let done = match (goal, &current) {
            (Goal::Gone, None) => true,
            (Goal::Status(_), None) => bail!("server '{}' was deleted", server.name),
            (Goal::Status(targets), Some(s)) => targets.contains(&s.status),
            (Goal::Gone, Some(_)) => false,
        };
        let elapsed = progress.elapsed();
        if done {
            drop(progress);
            let line = final_line(&server.name, status, elapsed);
            match final_line_to {
                FinalLine::Stdout => println!("{line}"),
                FinalLine::Stderr => eprintln!("{line}"),
            }
            return Ok(current);
        }
        if let Some(s) = current.as_ref().filter(|s| s.status == ServerStatus::Error) {
            drop(progress);
            bail!(
                "{}: {}",
                final_line(&s.name, "error", elapsed),
                s.fault.as_deref().unwrap_or("no fault recorded")
            );
        }
        if tokio::time::Instant::now() >= deadline {
            drop(progress);
            bail!(
                "gave up waiting after {} s: server '{}' is still {status}; its host may be \
                 busy or unreachable (see 'nubis server show {}')",
                elapsed.as_secs(),
                server.name,
                server.name
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_line_says_state_and_time() {
        assert_eq!(
            final_line("web", "stopped", Duration::from_millis(61_400)),
            "web: stopped (after 61 s)"
        );
    }
}
