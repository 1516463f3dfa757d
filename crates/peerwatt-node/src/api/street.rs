//! The page of `peerwatt demo --serve`: the street's households, each linking to its node's
//! own dashboard (every node serves its own, on a port of its own).

use axum::Router;
use axum::http::header;
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
    /// Its node's dashboard.
    pub url: String,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The page.
pub fn page(houses: &[House]) -> String {
    let items: String = houses
        .iter()
        .map(|h| {
            format!(
                "<li><a class=\"house\" href=\"{}\">{}</a> <span class=\"muted\">{}</span></li>\n",
                escape(&h.url),
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
        first = houses.first().map(|h| escape(&h.url)).unwrap_or_default(),
        n = houses.len(),
    )
}

/// Serves the page on `listener` until the task is aborted.
pub fn spawn(listener: TcpListener, houses: Vec<House>) -> JoinHandle<()> {
    let html = page(&houses);
    let app = Router::new().route(
        "/",
        get(move || {
            let html = html.clone();
            async move { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response() }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the street's page stopped");
        }
    })
}
