//! A client of a running node's HTTP interface, for the CLI's commands that work on a running
//! node (`peerwatt ledger export` while the node holds its ledger).

use std::net::SocketAddr;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Why a request to the node failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// No connection.
    #[error("cannot reach the node's HTTP interface at {addr}: {source}")]
    Connect {
        /// Where.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed (the node stopped mid-answer, …).
    #[error("HTTP: {0}")]
    Http(String),
    /// The node refused, with its JSON error.
    #[error("the node answered {status}: {message}")]
    Refused {
        /// The status code.
        status: u16,
        /// The node's `error`.
        message: String,
    },
    /// Writing what arrived failed.
    #[error("{0}")]
    Write(#[from] std::io::Error),
}

/// `GET path` from the node at `addr` (with `token` as bearer, if any), the body written to
/// `out` as it arrives; returns the bytes written.
pub async fn download(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    out: &mut (impl tokio::io::AsyncWrite + Unpin),
) -> Result<u64, ClientError> {
    let stream = TcpStream::connect(addr).await.map_err(|source| ClientError::Connect { addr, source })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    tokio::spawn(async move {
        let _ = connection.await; // ends with the exchange
    });
    let mut request = hyper::Request::get(path).header(hyper::header::HOST, addr.to_string());
    if let Some(t) = token {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let request = request.body(Empty::<Bytes>::new()).map_err(|e| ClientError::Http(e.to_string()))?;
    let response = sender.send_request(request).await.map_err(|e| ClientError::Http(e.to_string()))?;
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let bytes = body.collect().await.map_err(|e| ClientError::Http(e.to_string()))?.to_bytes();
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        return Err(ClientError::Refused { status: status.as_u16(), message });
    }
    let mut written = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ClientError::Http(format!("the answer was cut off: {e}")))?;
        if let Ok(data) = frame.into_data() {
            out.write_all(&data).await?;
            written += data.len() as u64;
        }
    }
    out.flush().await?;
    Ok(written)
}

/// The address a client on this machine reaches the interface of `[api] listen` at (an
/// unspecified address, `0.0.0.0`, is reached on loopback).
pub fn local_address(listen: &str) -> Option<SocketAddr> {
    let addr: SocketAddr = listen.parse().ok()?;
    Some(if addr.ip().is_unspecified() {
        SocketAddr::new(
            if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() },
            addr.port(),
        )
    } else {
        addr
    })
}
