//! A listening socket that every run of a server task can serve from.

use std::io;

/// Keeps a bound socket open across runs of a server task, so a restarted
/// server serves the same address without binding again (and no other
/// process can take the port in between).
#[derive(Debug)]
pub struct SharedListener {
    socket: std::net::TcpListener,
}

impl SharedListener {
    /// Takes over a bound listener.
    pub fn new(listener: tokio::net::TcpListener) -> io::Result<Self> {
        Ok(Self {
            socket: listener.into_std()?,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.socket.local_addr()
    }

    /// A tokio listener on the same socket, for one run; call inside a runtime.
    pub fn listener(&self) -> io::Result<tokio::net::TcpListener> {
        let socket = self.socket.try_clone()?;
        socket.set_nonblocking(true)?;
        tokio::net::TcpListener::from_std(socket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BackgroundTask, Policy, Supervisor, TaskBoard};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers one connection with its run number and then
    /// stops (a failure): the restarted run answers on the same address.
    #[tokio::test]
    async fn a_restarted_server_serves_the_same_address() {
        let socket = std::sync::Arc::new(
            SharedListener::new(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
                .unwrap(),
        );
        let addr = socket.local_addr().unwrap();
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(0));
        let mut supervisor = Supervisor::new(
            TaskBoard::default(),
            Policy {
                first_backoff: Duration::from_millis(1),
                ..Policy::DEFAULT
            },
        );
        supervisor.spawn(BackgroundTask::new("one-shot server", move || {
            let (socket, runs) = (socket.clone(), runs.clone());
            async move {
                let listener = socket.listener()?;
                let run = runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                let (mut conn, _) = listener.accept().await?;
                conn.write_all(&[run]).await?;
                anyhow::bail!("served one connection")
            }
        }));
        for want in [1u8, 2, 3] {
            let mut conn = tokio::time::timeout(Duration::from_secs(30), async {
                loop {
                    if let Ok(c) = tokio::net::TcpStream::connect(addr).await {
                        return c;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
            .expect("the server listens again");
            let mut got = [0u8];
            conn.read_exact(&mut got).await.unwrap();
            assert_eq!(got[0], want, "answered by run {want}");
        }
    }
}
