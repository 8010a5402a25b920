//! What every supervised task is doing now, for readiness checks.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The state of one supervised task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TaskState {
    /// Running now.
    Running,
    /// Stopped; waiting before its next start.
    Restarting {
        /// Failures in a row so far.
        failures: u32,
        last_error: String,
    },
    /// Failed past its budget; the supervisor gave up on it.
    Failed { last_error: String },
}

/// A task's name and state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TaskStatus {
    pub name: String,
    #[serde(flatten)]
    pub state: TaskState,
}

/// The states of a process's supervised tasks, shared by the supervisor
/// (which writes) and readiness checks (which read). Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct TaskBoard {
    tasks: Arc<Mutex<BTreeMap<String, TaskState>>>,
}

impl TaskBoard {
    /// Records `state` for the task `name`.
    pub fn set(&self, name: &str, state: TaskState) {
        self.lock().insert(name.to_owned(), state);
    }

    /// Every task's state, by name.
    pub fn snapshot(&self) -> Vec<TaskStatus> {
        self.lock()
            .iter()
            .map(|(name, state)| TaskStatus {
                name: name.clone(),
                state: state.clone(),
            })
            .collect()
    }

    /// The tasks not running now.
    pub fn not_running(&self) -> Vec<TaskStatus> {
        self.snapshot()
            .into_iter()
            .filter(|t| t.state != TaskState::Running)
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, TaskState>> {
        // A panic while holding this lock cannot leave the map half-written.
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_running_lists_only_tasks_that_are_down() {
        let board = TaskBoard::default();
        board.set("a", TaskState::Running);
        board.set(
            "b",
            TaskState::Restarting {
                failures: 1,
                last_error: "boom".into(),
            },
        );
        let down = board.not_running();
        assert_eq!(down.len(), 1);
        assert_eq!(down[0].name, "b");
        assert_eq!(board.snapshot().len(), 2);
        board.set("b", TaskState::Running);
        assert!(board.not_running().is_empty());
    }
}
