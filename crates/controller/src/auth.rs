//! Passwords (argon2id) and bearer tokens (random, stored as SHA-256 hashes).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Prefix of every bearer token, so a leaked one is easy to recognise in a scan.
const TOKEN_PREFIX: &str = "nbs_";

/// Hashes a password with argon2id and a random salt (PHC string format).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("{e}"))?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))?;
    Ok(hash.to_string())
}

/// Checks a password against a stored hash; any malformed hash is a mismatch.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A new random bearer token (256 bits).
pub fn new_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
}

/// What is stored for a token: its SHA-256, so a database leak leaks no tokens.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Bounds the argon2 work of logins and registrations: at most one hashing
/// per core runs at a time (each takes ~19 MiB and a core for tens of
/// milliseconds), a bounded number wait, and the rest are turned away at
/// once, so a flood of logins cannot exhaust memory or queue without end.
#[derive(Clone, Debug)]
pub struct PasswordWork {
    /// One permit per hashing allowed to run.
    running: Arc<Semaphore>,
    /// One permit per hashing allowed to run or wait.
    admitted: Arc<Semaphore>,
}

/// Too many password hashings are running and waiting: try again shortly.
#[derive(Debug, thiserror::Error)]
#[error("too many logins at once; try again in a moment")]
pub struct Busy;

impl PasswordWork {
    /// `parallel` hashings at a time (at least one), `queue` more waiting.
    pub fn new(parallel: usize, queue: usize) -> Self {
        let parallel = parallel.max(1);
        Self {
            running: Arc::new(Semaphore::new(parallel)),
            admitted: Arc::new(Semaphore::new(parallel + queue)),
        }
    }

    /// One hashing per core of this machine, `queue` more waiting.
    pub fn per_core(queue: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(cores, queue)
    }

    /// Runs `work` (a hashing or a verification) on a blocking thread once a
    /// core is free, or answers [`Busy`] when the queue is full. The permits
    /// go with the work, so an abandoned request frees them only when its
    /// hashing is done.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let admitted = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| Busy)?;
        let running = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Busy)?;
        tokio::task::spawn_blocking(move || {
            let out = work();
            drop((running, admitted));
            out
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "password hashing panicked");
            Busy
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_verifies_only_the_right_password() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_ne!(token_hash(&a), a);
    }

    #[tokio::test]
    async fn password_work_runs_a_bounded_number_and_turns_the_rest_away() {
        // One may run and one wait; the third is turned away at once.
        let work = PasswordWork::new(1, 1);
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let w = work.clone();
        let first = tokio::spawn(async move {
            w.run(move || {
                started_tx.send(()).unwrap();
                hold.recv().unwrap();
                1
            })
            .await
        });
        started.await.unwrap();
        let w = work.clone();
        let second = tokio::spawn(async move { w.run(|| 2).await });
        // The second waits for the first's core: its admission is taken.
        while work.admitted.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        assert!(
            work.run(|| 3).await.is_err(),
            "a full queue turns work away"
        );
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), 1);
        assert_eq!(second.await.unwrap().unwrap(), 2);
        // Positive control: with the queue empty again, work runs.
        assert_eq!(work.run(|| 4).await.unwrap(), 4);
    }
}
