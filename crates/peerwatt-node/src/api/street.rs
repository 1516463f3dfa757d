//! The page of `peerwatt demo --serve`: the street's households, each linking to its node's
//! own dashboard (every node serves its own, on a port of its own).

use axum::Router;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A household of the street.
#[derive(Debug, Clone)]
pub struct House {
    /// Its name.
    pub name: String,
    /// What it is (load, PV, battery).
    pub about: String,
    /// The port its node's dashboard is on (on the same host as the street's page).
    pub port: u16,
    /// A read token for its node, when the page is served beyond loopback (in the link:
    /// the dashboard keeps it in the browser).
    pub token: Option<String>,
}

impl House {
    /// The link to its dashboard, for a browser that reached the street's page at `host`.
    fn url(&self, host: &str) -> String {
        let token = self.token.as_ref().map(|t| format!("#token={t}")).unwrap_or_default();
        format!("http://{host}:{}/{token}", self.port)
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The page, for a browser that reached it at `host` (the host part of its `Host` header).
pub fn page(houses: &[House], host: &str) -> String {
    let items: String = houses
        .iter()
        .map(|h| {
            format!(
                "<li><a class=\"house\" href=\"{}\">{}</a> <span class=\"muted\">{}</span></li>\n",
                escape(&h.url(host)),
                escape(&h.name),
                escape(&h.about)
            )
        })
        .collect();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>peerwatt demo street</title>\
<link rel=\"stylesheet\" href=\"{first}dashboard.css\"></head>\n<body><header><div><h1>The demo street</h1>\
<p class=\"muted\">{n} households, each running its own peerwatt node. Open one to watch it trade with its neighbours.</p>\
</div></header>\n<main><section class=\"card wide\"><ul>\n{items}</ul></section></main></body></html>\n",
        first = houses.first().map(|h| escape(&format!("http://{host}:{}/", h.port))).unwrap_or_default(),
        n = houses.len(),
    )
}

/// The host part of a `Host` header (`[::1]:8480` → `[::1]`), if it is one a link can name.
fn host_of(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::HOST)?.to_str().ok()?;
    let host = match value.rfind(':') {
        Some(i) if !value[i..].contains(']') => &value[..i],
        _ => value,
    };
    let plain = host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    (!host.is_empty() && plain).then(|| host.to_owned())
}

/// Serves the page on `listener` until the task is aborted; links name the host the browser
/// asked for (else `fallback`), so the page works from another device on the LAN.
pub fn spawn(listener: TcpListener, houses: Vec<House>, fallback: String) -> JoinHandle<()> {
    let houses = std::sync::Arc::new(houses);
    let app = Router::new().route(
        "/",
        get(move |headers: HeaderMap| {
            let html = page(&houses, &host_of(&headers).unwrap_or_else(|| fallback.clone()));
            async move { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response() }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the street's page stopped");
        }
    })
}
