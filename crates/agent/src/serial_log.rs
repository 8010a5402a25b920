//! The serial console log, bounded. QEMU does not write the log itself: its
//! serial port is a unix socket it listens on (`-chardev socket,server=on,
//! wait=off` in the instance directory), and the agent copies what arrives
//! into `console.log`. When the file reaches [`ROTATE_AT`] it is replaced
//! (temp file + rename, so readers see one or the other) by its last
//! [`KEEP`] bytes, from a line start: the file never exceeds `ROTATE_AT`,
//! and `console-log` still returns the newest output.
//!
//! While the agent is down nobody reads the socket and QEMU drops the
//! output, so the file cannot grow then either (the price: output of that
//! time is lost). A guest writing faster than the agent reads is slowed
//! down (the UART waits), never buffered without bound. QEMU creates the
//! socket itself, so it works the same for an unprivileged QEMU.

use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// The log is cut back when it reaches this size.
pub const ROTATE_AT: u64 = 8 << 20;
/// What a cut keeps: the newest bytes.
pub const KEEP: u64 = 4 << 20;

/// How long to wait before connecting again to a socket that is not there
/// (QEMU starting, or exited and the actor not told yet).
const RETRY: Duration = Duration::from_secs(1);

/// Copies one QEMU's serial output into its log until dropped.
pub struct SerialLog {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SerialLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SerialLog {
    /// Connects to `socket` (awaited once, so a guest started paused loses
    /// nothing) and keeps copying into `log`, reconnecting after QEMU drops
    /// the connection, with the given limits.
    pub async fn attach(socket: PathBuf, log: PathBuf) -> Self {
        Self::attach_with(socket, log, ROTATE_AT, KEEP).await
    }

    /// [`Self::attach`] with other limits (tests use small ones).
    pub async fn attach_with(socket: PathBuf, log: PathBuf, rotate_at: u64, keep: u64) -> Self {
        let first = crate::jail::safe_fs::connect(&socket).await.ok();
        let task = tokio::spawn(async move {
            let mut stream = first;
            loop {
                if let Some(s) = stream.take() {
                    if let Err(e) = copy(s, &log, rotate_at, keep).await {
                        tracing::warn!(log = %log.display(), error = %e, "serial console log");
                    }
                }
                tokio::time::sleep(RETRY).await;
                stream = crate::jail::safe_fs::connect(&socket).await.ok();
            }
        });
        Self { task }
    }
}

/// Appends what `stream` sends to `log` until it ends, cutting the file
/// back to its tail whenever it reaches `rotate_at`.
async fn copy(
    mut stream: UnixStream,
    log: &Path,
    rotate_at: u64,
    keep: u64,
) -> std::io::Result<()> {
    let mut file = open_append(log).await?;
    let mut len = file.metadata().await?.len();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            // Write only up to the limit, so the file never exceeds it.
            let room = rotate_at.saturating_sub(len) as usize;
            let part = chunk.len().min(room);
            file.write_all(&chunk[..part]).await?;
            len += part as u64;
            chunk = &chunk[part..];
            if len >= rotate_at {
                file.flush().await?;
                drop(file);
                len = keep_tail(log, keep).await?;
                file = open_append(log).await?;
            }
        }
    }
}

async fn open_append(log: &Path) -> std::io::Result<tokio::fs::File> {
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log)
        .await
}

/// Replaces `log` by its last `keep` bytes, from the first line start in
/// them; returns the new length.
async fn keep_tail(log: &Path, keep: u64) -> std::io::Result<u64> {
    let mut file = tokio::fs::File::open(log).await?;
    let len = file.metadata().await?.len();
    file.seek(std::io::SeekFrom::Start(len.saturating_sub(keep)))
        .await?;
    let mut tail = Vec::with_capacity(keep as usize);
    file.read_to_end(&mut tail).await?;
    // Start at a whole line when there is one to start at.
    let start = match tail.iter().position(|&b| b == b'\n') {
        Some(i) if i + 1 < tail.len() => i + 1,
        _ => 0,
    };
    let temp = log.with_extension("log.tmp");
    tokio::fs::write(&temp, &tail[start..]).await?;
    tokio::fs::rename(&temp, log).await?;
    Ok((tail.len() - start) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    /// A fake QEMU: listens on the socket, writes `total` bytes of numbered
    /// lines to whoever connects, then closes.
    async fn serve(listener: UnixListener, total: usize) -> Vec<u8> {
        let mut sent = Vec::new();
        let mut i = 0;
        while sent.len() < total {
            sent.extend_from_slice(format!("line {i:08}\n").as_bytes());
            i += 1;
        }
        let (mut conn, _) = listener.accept().await.unwrap();
        conn.write_all(&sent).await.unwrap();
        sent
    }

    #[tokio::test]
    async fn the_log_is_cut_back_to_its_tail_and_never_exceeds_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("serial.sock");
        let log = dir.path().join("console.log");
        let listener = UnixListener::bind(&socket).unwrap();
        let server = tokio::spawn(serve(listener, 100_000));
        let serial = SerialLog::attach_with(socket, log.clone(), 10_000, 4_000).await;
        let sent = server.await.unwrap();
        // Wait until the last line has arrived (bounded: not a timing check).
        let last = String::from_utf8(sent[sent.len() - 14..].to_vec()).unwrap();
        for _ in 0..200 {
            let now = std::fs::read_to_string(&log).unwrap_or_default();
            if now.ends_with(&last) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        drop(serial);
        let kept = std::fs::read(&log).unwrap();
        assert!(kept.len() <= 10_000, "{} bytes", kept.len());
        assert!(kept.ends_with(last.as_bytes()), "the newest output is kept");
        assert!(kept.starts_with(b"line "), "starts at a line");
        // Positive control: what is kept is exactly the end of what was sent.
        assert!(sent.ends_with(&kept));
        assert!(kept.len() >= 4_000 - 14, "{} bytes", kept.len());
    }

    #[tokio::test]
    async fn a_small_log_is_appended_across_connections() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("serial.sock");
        let log = dir.path().join("console.log");
        std::fs::write(&log, b"boot-count: 1\n").unwrap();
        let listener = UnixListener::bind(&socket).unwrap();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            conn.write_all(b"boot-count: 2\n").await.unwrap();
        });
        let serial = SerialLog::attach(socket, log.clone()).await;
        server.await.unwrap();
        for _ in 0..200 {
            if std::fs::read_to_string(&log).unwrap().contains("2\n") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        drop(serial);
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "boot-count: 1\nboot-count: 2\n"
        );
    }
}
