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
