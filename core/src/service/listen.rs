//! Binding listeners, with errors an operator can act on: which setting, which address, what
//! went wrong (`server.listen 127.0.0.1:8085: address already in use`).

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpListener;

/// A listener that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("{key} {addr}: {reason}")]
pub struct BindError {
    /// The configuration key of the address, e.g. `server.listen`.
    pub key: String,
    /// The address.
    pub addr: SocketAddr,
    reason: String,
    #[source]
    source: io::Error,
}

impl BindError {
    fn new(key: &str, addr: SocketAddr, source: io::Error) -> Self {
        let reason = match source.kind() {
            io::ErrorKind::AddrInUse => "address already in use".to_owned(),
            io::ErrorKind::AddrNotAvailable => "address not available on this machine".to_owned(),
            io::ErrorKind::PermissionDenied => {
                "permission denied (ports below 1024 need privileges)".to_owned()
            }
            _ => source.to_string(),
        };
        Self {
            key: key.to_owned(),
            addr,
            reason,
            source,
        }
    }
}

/// Binds a Tokio listener on `addr`, configured under `key`.
pub async fn bind(addr: SocketAddr, key: &str) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|err| BindError::new(key, addr, err))
}

/// Binds a standard listener on `addr`, configured under `key` (for servers that take one,
/// or to bind before the runtime starts).
pub fn bind_std(addr: SocketAddr, key: &str) -> Result<std::net::TcpListener, BindError> {
    std::net::TcpListener::bind(addr).map_err(|err| BindError::new(key, addr, err))
}
