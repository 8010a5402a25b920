//! Restarts stopped tasks with a growing pause; gives up past a budget.

use crate::board::{TaskBoard, TaskState};
use crate::task::BackgroundTask;
use std::time::{Duration, Instant};
use tokio::task::{JoinError, JoinHandle, JoinSet};

/// When to restart a stopped task and when to give up on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The pause before the first restart; it doubles with every failure in a row.
    pub first_backoff: Duration,
    /// The longest pause between restarts.
    pub max_backoff: Duration,
    /// Failures in a row that are restarted; the next one makes the
    /// supervisor give up.
    pub budget: u32,
    /// A run that lasted this long was healthy: failures count from zero again.
    pub healthy_after: Duration,
}

impl Policy {
    /// Ten restarts over about three minutes (1 s, 2 s, 4 s ... 30 s), then
    /// give up; a run of five minutes clears the count.
    pub const DEFAULT: Policy = Policy {
        first_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(30),
        budget: 10,
        healthy_after: Duration::from_secs(300),
    };

    /// The pause after the `failures`-th failure in a row (from 1).
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff)
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Runs background tasks, restarting each when it stops, and reports their
/// states on a [`TaskBoard`]. Dropping it stops every task.
pub struct Supervisor {
    board: TaskBoard,
    policy: Policy,
    watchers: JoinSet<anyhow::Error>,
}

impl Supervisor {
    /// A supervisor writing task states to `board`.
    pub fn new(board: TaskBoard, policy: Policy) -> Self {
        Self {
            board,
            policy,
            watchers: JoinSet::new(),
        }
    }

    /// Starts `task` under supervision (call inside a tokio runtime).
    pub fn spawn(&mut self, task: BackgroundTask) {
        self.board.set(task.name(), TaskState::Running);
        self.watchers
            .spawn(watch(task, self.board.clone(), self.policy));
    }

    /// Starts every task of `tasks` under supervision.
    pub fn spawn_all(&mut self, tasks: impl IntoIterator<Item = BackgroundTask>) {
        for task in tasks {
            self.spawn(task);
        }
    }

    /// The board this supervisor writes to.
    pub fn board(&self) -> &TaskBoard {
        &self.board
    }

    /// Waits until a task has failed past its budget and returns why; the
    /// other tasks keep running until the supervisor is dropped. Never
    /// returns while every task is kept running.
    pub async fn gave_up(&mut self) -> anyhow::Error {
        match self.watchers.join_next().await {
            Some(Ok(error)) => error,
            Some(Err(e)) => anyhow::anyhow!("the supervisor of a background task stopped: {e}"),
            None => std::future::pending().await,
        }
    }
}

/// Aborts a run when its watcher is dropped (the supervisor stopped).
struct AbortOnDrop(JoinHandle<anyhow::Result<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `task` again and again; returns the error that ends its budget.
async fn watch(mut task: BackgroundTask, board: TaskBoard, policy: Policy) -> anyhow::Error {
    let name = task.name().to_owned();
    let mut failures = 0u32;
    loop {
        board.set(&name, TaskState::Running);
        let started = Instant::now();
        let mut run = AbortOnDrop(tokio::spawn(task.start()));
        let outcome = (&mut run.0).await;
        let error = why_stopped(outcome);
        if started.elapsed() >= policy.healthy_after {
            failures = 0;
        }
        failures += 1;
        if failures > policy.budget {
            board.set(
                &name,
                TaskState::Failed {
                    last_error: error.clone(),
                },
            );
            tracing::error!(task = %name, failures, %error, "background task keeps failing; giving up");
            return anyhow::anyhow!(
                "background task '{name}' failed {failures} times in a row; giving up. Last error: {error}"
            );
        }
        let backoff = policy.backoff(failures);
        tracing::error!(
            task = %name,
            failures,
            backoff_ms = backoff.as_millis() as u64,
            %error,
            "background task stopped; restarting it"
        );
        board.set(
            &name,
            TaskState::Restarting {
                failures,
                last_error: error,
            },
        );
        tokio::time::sleep(backoff).await;
    }
}

/// A readable reason for a run's end.
fn why_stopped(outcome: Result<anyhow::Result<()>, JoinError>) -> String {
    match outcome {
        Ok(Ok(())) => "stopped although it should run forever".to_owned(),
        Ok(Err(e)) => format!("{e:#}"),
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_owned());
            format!("panicked: {message}")
        }
        Err(e) => format!("was cancelled: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::TaskStatus;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    /// Short pauses so tests run fast; the budget is what they check.
    const FAST: Policy = Policy {
        first_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        budget: 3,
        healthy_after: Duration::from_secs(3600),
    };

    fn state_of(board: &TaskBoard, name: &str) -> Option<TaskState> {
        board
            .snapshot()
            .into_iter()
            .find(|t: &TaskStatus| t.name == name)
            .map(|t| t.state)
    }

    #[tokio::test]
    async fn a_task_that_panics_is_restarted() {
        let starts = Arc::new(AtomicU32::new(0));
        let counter = starts.clone();
        let mut supervisor = Supervisor::new(TaskBoard::default(), FAST);
        supervisor.spawn(BackgroundTask::new("flaky", move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    panic!("first run fails");
                }
                std::future::pending::<()>().await;
                Ok(())
            }
        }));
        // Generous bound: the restart comes after 1 ms.
        let restarted = tokio::time::timeout(Duration::from_secs(30), async {
            while starts.load(Ordering::SeqCst) < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(restarted.is_ok(), "the panicking task was not restarted");
        assert_eq!(starts.load(Ordering::SeqCst), 2);
        // Running again, and the supervisor has not given up.
        assert_eq!(
            state_of(supervisor.board(), "flaky"),
            Some(TaskState::Running)
        );
        let gave_up = tokio::time::timeout(Duration::from_millis(200), supervisor.gave_up()).await;
        assert!(gave_up.is_err(), "gave up on a task that recovered");
    }

    #[tokio::test]
    async fn a_task_failing_past_its_budget_ends_supervision_with_its_error() {
        let starts = Arc::new(AtomicU32::new(0));
        let counter = starts.clone();
        let mut supervisor = Supervisor::new(TaskBoard::default(), FAST);
        supervisor.spawn(BackgroundTask::new("doomed", move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { anyhow::bail!("disk on fire") }
        }));
        // A healthy neighbour keeps running meanwhile.
        supervisor.spawn(BackgroundTask::new("steady", || async {
            std::future::pending::<()>().await;
            Ok(())
        }));
        let error = tokio::time::timeout(Duration::from_secs(30), supervisor.gave_up())
            .await
            .expect("the supervisor gives up within the bound");
        let message = format!("{error:#}");
        assert!(message.contains("'doomed'"), "{message}");
        assert!(message.contains("disk on fire"), "{message}");
        // The budget's restarts and then the last failure: budget + 1 runs.
        assert_eq!(starts.load(Ordering::SeqCst), FAST.budget + 1);
        assert_eq!(
            state_of(supervisor.board(), "doomed"),
            Some(TaskState::Failed {
                last_error: "disk on fire".into()
            })
        );
        assert_eq!(
            state_of(supervisor.board(), "steady"),
            Some(TaskState::Running)
        );
    }

    #[tokio::test]
    async fn a_task_that_returns_is_a_failure_too() {
        let mut supervisor = Supervisor::new(TaskBoard::default(), FAST);
        supervisor.spawn(BackgroundTask::new("quitter", || async { Ok(()) }));
        let error = tokio::time::timeout(Duration::from_secs(30), supervisor.gave_up())
            .await
            .expect("the supervisor gives up within the bound");
        assert!(format!("{error}").contains("should run forever"), "{error}");
    }

    #[tokio::test]
    async fn dropping_the_supervisor_stops_its_tasks() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut tx = Some(tx);
        let mut supervisor = Supervisor::new(TaskBoard::default(), FAST);
        supervisor.spawn(BackgroundTask::new("holder", move || {
            // Holds the sender until the run is aborted.
            let tx = tx.take();
            async move {
                let _tx = tx;
                std::future::pending::<()>().await;
                Ok(())
            }
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(supervisor);
        let closed = tokio::time::timeout(Duration::from_secs(30), rx).await;
        assert!(
            matches!(closed, Ok(Err(_))),
            "the run kept running after the supervisor was dropped"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let p = Policy::DEFAULT;
        assert_eq!(p.backoff(1), Duration::from_secs(1));
        assert_eq!(p.backoff(2), Duration::from_secs(2));
        assert_eq!(p.backoff(5), Duration::from_secs(16));
        assert_eq!(p.backoff(6), Duration::from_secs(30));
        assert_eq!(p.backoff(100), Duration::from_secs(30));
    }
}
