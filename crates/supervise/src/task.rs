//! A background task that can be started again after it stopped.

use std::future::Future;
use std::pin::Pin;

/// One run of a background task.
pub type TaskRun = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// A named background task: a way to start one run of it, as often as needed.
pub struct BackgroundTask {
    name: String,
    start: Box<dyn FnMut() -> TaskRun + Send>,
}

impl BackgroundTask {
    /// A task whose every run comes from `start`. A run should never end;
    /// when it does (even with `Ok`), the supervisor counts a failure.
    pub fn new<F, Fut>(name: impl Into<String>, mut start: F) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Self {
            name: name.into(),
            start: Box::new(move || Box::pin(start())),
        }
    }

    /// The name used in logs, readiness reports and the final error.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts one run.
    pub fn start(&mut self) -> TaskRun {
        (self.start)()
    }
}

impl std::fmt::Debug for BackgroundTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackgroundTask")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
