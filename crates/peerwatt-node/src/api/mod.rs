//! The node's HTTP interface (`[api]` in node.toml, off without it): a versioned REST API
//! under `/api/v1` and Prometheus metrics on `/metrics`, served by axum on the node's runtime.
//!
//! Requests from loopback need no token (unless `trust_loopback = false`); any other needs a
//! bearer token (`tokens`), whose scope decides what it may do: 401 without a valid token, 403
//! with one of too small a scope. Every error is a JSON object (`{"error": …, "status": …}`),
//! bodies are limited, and a request that takes longer than `timeout_ms` is answered 503.

pub mod client;
mod dashboard;
pub mod exposition;
pub mod openapi;
pub mod street;
pub mod tokens;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use peerwatt_core::{PublicKey, Settlement, Signed, Trade};
use peerwatt_ledger::{ExportError, ExportSummary, Ledger, LedgerError, Store};

use crate::NodeCommand;
use crate::config::{ApiSection, PriceLimits};
use crate::status::Status;
use tokens::Scope;

/// The version the API reports and `/metrics` names in `peerwatt_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the API reads of the node's ledger, whatever its store.
pub(crate) trait LedgerAccess: Send + Sync {
    /// Writes the export of the first `size` entries to `out`.
    fn export(&self, size: u64, out: &mut dyn std::io::Write) -> Result<ExportSummary, ExportError>;
    /// Every trade in the ledger.
    fn trades(&self) -> Result<Vec<Signed<Trade>>, LedgerError>;
    /// Every settlement revision in the ledger.
    fn settlements(&self) -> Result<Vec<Settlement>, LedgerError>;
    /// The number of entries.
    fn len(&self) -> Result<u64, LedgerError>;
    /// An inclusion proof of entry `seq` against the latest head that covers it, if one does.
    fn prove(&self, seq: u64) -> Result<Option<peerwatt_ledger::InclusionProof>, LedgerError>;
}

impl<S: Store> LedgerAccess for Ledger<S> {
    fn export(&self, size: u64, out: &mut dyn std::io::Write) -> Result<ExportSummary, ExportError> {
        peerwatt_ledger::write_export_upto(self.reader(), out, size)
    }
    fn trades(&self) -> Result<Vec<Signed<Trade>>, LedgerError> {
        self.reader().trades()
    }
    fn settlements(&self) -> Result<Vec<Settlement>, LedgerError> {
        Ok(self.reader().settlements()?.into_iter().map(|s| s.body().clone()).collect())
    }
    fn len(&self) -> Result<u64, LedgerError> {
        self.reader().len()
    }
    fn prove(&self, seq: u64) -> Result<Option<peerwatt_ledger::InclusionProof>, LedgerError> {
        self.reader().prove_inclusion(seq)
    }
}

/// What the handlers read.
pub(crate) struct Api {
    /// The node's latest status.
    pub status: watch::Receiver<Option<Arc<Status>>>,
    /// The node's commands (limits).
    pub commands: mpsc::Sender<NodeCommand>,
    /// Where limits set through the API are kept for the next start.
    pub limits_file: PathBuf,
    /// The node's ledger, for exports while the node runs.
    pub ledger: Arc<dyn LedgerAccess>,
    /// The node's own key (which side of a trade it was).
    pub me: PublicKey,
    /// The community's interval length, ms.
    pub interval_ms: u64,
    /// How long requests and flushes took.
    pub timings: exposition::Timings,
    /// The meter's closed intervals (`meter-history.json`).
    pub meter_history: PathBuf,
    /// The tokens file (read on each request that needs a token, so a new token works at once).
    pub tokens: PathBuf,
    /// Serve loopback requests without a token.
    pub trust_loopback: bool,
    /// Longest a request may take.
    pub timeout: Duration,
    /// The latest ledger verification; locked while one runs.
    pub verification: Arc<tokio::sync::Mutex<Option<Verified>>>,
}

/// An error answer: a status code and a JSON body saying why.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }
}

/// The body of every error answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Why, in words.
    pub error: String,
    /// The HTTP status code again.
    pub status: u16,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.message, status: self.status.as_u16() };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Binds the API's listener (before the node starts, so a busy port is a start error).
pub(crate) async fn bind(section: &ApiSection) -> std::io::Result<TcpListener> {
    TcpListener::bind(&section.listen).await
}

/// Serves the API until `shutdown` turns true.
pub(crate) fn spawn(
    listener: TcpListener,
    api: Api,
    max_body_bytes: usize,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let app = router(Arc::new(api), max_body_bytes);
    tokio::spawn(async move {
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        let stopped = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        if let Err(e) = axum::serve(listener, service).with_graceful_shutdown(stopped).await {
            tracing::error!(error = %e, "the HTTP interface stopped");
        }
    })
}

fn router(api: Arc<Api>, max_body_bytes: usize) -> Router {
    let read = Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/state", get(state))
        .route("/api/v1/ledger/head", get(ledger_head))
        .route("/api/v1/ledger/export", get(ledger_export))
        .route("/api/v1/ledger/proof/:seq", get(ledger_proof))
        .route("/api/v1/ledger/verify", get(ledger_verify))
        .route("/api/v1/limits", get(limits))
        .route("/api/v1/trades", get(trades))
        .route("/api/v1/statement", get(statement))
        .route("/api/v1/intervals", get(intervals))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state((api.clone(), Scope::Read), authorise));
    // What anyone who can reach the port may read: the API's own description.
    let public = Router::new().route("/api/v1/openapi.json", get(openapi_document)).merge(dashboard::routes());
    let control = Router::new()
        .route("/api/v1/limits", put(set_limits))
        .route_layer(middleware::from_fn_with_state((api.clone(), Scope::Control), authorise));
    Router::new()
        .merge(public)
        .merge(read)
        .merge(control)
        .fallback(not_found)
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn_with_state(api.clone(), time_limit))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(api)
}

/// The scope a request has: every scope from a trusted loopback address, else its token's.
fn scope_of(api: &Api, peer: SocketAddr, headers: &HeaderMap) -> Result<Scope, ApiError> {
    if api.trust_loopback && peer.ip().is_loopback() {
        return Ok(Scope::Control);
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "a bearer token is required (peerwatt token new)"))?;
    let known = tokens::load(&api.tokens).map_err(|e| {
        tracing::error!(error = %e, "cannot read the API tokens");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the node cannot read its tokens file")
    })?;
    tokens::scope_of(&known, presented.trim())
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "the bearer token is not one of this node's"))
}

/// Lets a request through if its scope covers `needed`.
async fn authorise(
    State((api, needed)): State<(Arc<Api>, Scope)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    match scope_of(&api, peer, request.headers()) {
        Err(e) => e.into_response(),
        Ok(scope) if scope < needed => ApiError::new(
            StatusCode::FORBIDDEN,
            format!("this token's scope is {}; this needs {}", scope.name(), needed.name()),
        )
        .into_response(),
        Ok(_) => next.run(request).await,
    }
}

/// Answers 503 when a request takes longer than the configured time, and records how long
/// each took (until its answer's head: a streamed body goes on after).
async fn time_limit(State(api): State<Arc<Api>>, request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    // A full verification takes what the ledger's size takes; it runs one at a time.
    let unbounded = request.uri().path() == "/api/v1/ledger/verify";
    let answered = if unbounded {
        Ok(next.run(request).await)
    } else {
        tokio::time::timeout(api.timeout, next.run(request)).await
    };
    let response = match answered {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the request took longer than {} ms", api.timeout.as_millis()),
        )
        .into_response(),
    };
    api.timings.requests.since(started);
    response
}

/// Turns the framework's plain-text errors (405, 413, 400 of extractors) into JSON ones.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_owned();
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_owned() } else { text };
    ApiError::new(status, message).into_response()
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no such endpoint: {} {}", request.method(), request.uri().path()))
}

/// The latest status, or 503 while the node has not written one yet.
fn latest(api: &Api) -> Result<Arc<Status>, ApiError> {
    api.status.borrow().clone().ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the node is starting"))
}

/// The answer of `GET /health`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`; `starting` before the node's first report; `stopping` once it drains.
    pub status: &'static str,
    /// Whether the node runs.
    pub running: bool,
    /// When the node last reported (ms since the epoch).
    pub updated_at: u64,
    /// The node's version.
    pub version: &'static str,
}

/// For probes: 200 while the node runs, 503 while it starts or stops.
#[utoipa::path(get, path = "/api/v1/health", tag = "node",
    responses((status = 200, description = "The node runs", body = Health),
              (status = 503, description = "The node is starting (`starting`: it has not reported yet) or stopping", body = Health)))]
async fn health(State(api): State<Arc<Api>>) -> Result<Response, ApiError> {
    let Ok(status) = latest(&api) else {
        let body = Health { status: "starting", running: false, updated_at: 0, version: VERSION };
        return Ok((StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response());
    };
    let body = Health {
        status: if status.running { "ok" } else { "stopping" },
        running: status.running,
        updated_at: status.updated_at,
        version: VERSION,
    };
    let code = if status.running { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    Ok((code, axum::Json(body)).into_response())
}

/// Everything the node reports about itself: node, community, members and peers, meter,
/// market (open orders, the interval, tariffs, why it does not trade), today's trades and
/// totals, the settled month, the ledger, counters (the same as `peerwatt status --json`).
#[utoipa::path(get, path = "/api/v1/state", tag = "node",
    responses((status = 200, description = "The node's state", body = Status)))]
async fn state(State(api): State<Arc<Api>>) -> Result<Response, ApiError> {
    let status = latest(&api)?;
    let body = serde_json::to_vec(&*status)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the state: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The ledger's size and Merkle root.
#[utoipa::path(get, path = "/api/v1/ledger/head", tag = "ledger",
    responses((status = 200, description = "The ledger head", body = crate::status::LedgerStatus)))]
async fn ledger_head(State(api): State<Arc<Api>>) -> Result<Response, ApiError> {
    let status = latest(&api)?;
    Ok(axum::Json(&status.ledger).into_response())
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "node", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 description of this API", content_type = "application/json")))]
async fn openapi_document() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi::document()).into_response()
}

/// Prometheus metrics (text exposition format 0.0.4; docs/interfaces.md lists them).
#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses((status = 200, description = "The metrics", content_type = "text/plain; version=0.0.4")))]
async fn metrics(State(api): State<Arc<Api>>) -> Result<Response, ApiError> {
    let status = latest(&api)?;
    let text = exposition::render(&status, VERSION, &api.timings);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response())
}

/// The homeowner's price limits in force.
#[utoipa::path(get, path = "/api/v1/limits", tag = "market",
    responses((status = 200, description = "The limits", body = PriceLimits)))]
async fn limits(State(api): State<Arc<Api>>) -> Result<Response, ApiError> {
    let status = latest(&api)?;
    Ok(axum::Json(status.limits).into_response())
}

/// Highest price a limit may name, micro-currency per kWh (1,000 per kWh): beyond any tariff.
const MAX_PRICE: u64 = 1_000_000_000;

/// Sets the price limits: checked first, so a refused body changes nothing; applied by the
/// node, then kept in `limits.json` for the next start.
#[utoipa::path(put, path = "/api/v1/limits", tag = "market", request_body = PriceLimits,
    responses((status = 200, description = "The limits now in force", body = PriceLimits),
              (status = 400, description = "The body is not JSON", body = ErrorBody),
              (status = 413, description = "The body is too large", body = ErrorBody),
              (status = 415, description = "The body is not `application/json`", body = ErrorBody),
              (status = 422, description = "A field is unknown, of the wrong type or out of range", body = ErrorBody)))]
async fn set_limits(
    State(api): State<Arc<Api>>,
    body: Result<axum::Json<PriceLimits>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let axum::Json(wanted) = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    for (name, price) in [("min_sell_price", wanted.min_sell_price), ("max_buy_price", wanted.max_buy_price)] {
        if price.is_some_and(|p| p > MAX_PRICE) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{name} is above {MAX_PRICE} (micro-currency per kWh)"),
            ));
        }
    }
    let (reply, answer) = oneshot::channel();
    let command = NodeCommand::SetLimits {
        min_sell_price: wanted.min_sell_price.map(peerwatt_core::Price),
        max_buy_price: wanted.max_buy_price.map(peerwatt_core::Price),
        reply,
    };
    let stopped = || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the node is stopping");
    api.commands.send(command).await.map_err(|_| stopped())?;
    let in_force = PriceLimits::of(&answer.await.map_err(|_| stopped())?);
    if let Err(e) = in_force.save(&api.limits_file) {
        tracing::error!(error = %e, "cannot keep the limits for the next start");
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the limits are in force, but could not be kept for the next start: {e}"),
        ));
    }
    Ok(axum::Json(in_force).into_response())
}

/// Has the node sign a tree head over every entry; its size.
async fn sign_head(api: &Api) -> Result<u64, ApiError> {
    let (reply, answer) = oneshot::channel();
    let stopped = || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the node is stopping");
    api.commands.send(NodeCommand::SignHead { reply }).await.map_err(|_| stopped())?;
    answer
        .await
        .map_err(|_| stopped())?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot sign a tree head: {e}")))
}

/// An inclusion proof of entry `seq`, in the file form of `peerwatt ledger prove` (checked by
/// `peerwatt ledger check-proof`); the node signs a head first if none covers the entry yet.
#[utoipa::path(get, path = "/api/v1/ledger/proof/{seq}", tag = "ledger",
    params(("seq" = u64, Path, description = "The entry's sequence number")),
    responses((status = 200, description = "The proof", body = peerwatt_ledger::proof_file::ProofFile),
              (status = 400, description = "`seq` is not a number", body = ErrorBody),
              (status = 404, description = "The ledger has no such entry", body = ErrorBody)))]
async fn ledger_proof(
    State(api): State<Arc<Api>>,
    seq: Result<axum::extract::Path<u64>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let axum::extract::Path(seq) = seq.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let len = read_ledger(&api, |l| l.len()).await?;
    if seq >= len {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("the ledger has {len} entries; there is no entry {seq}"),
        ));
    }
    let mut proof = read_ledger(&api, move |l| l.prove(seq)).await?;
    if proof.is_none() {
        sign_head(&api).await?;
        proof = read_ledger(&api, move |l| l.prove(seq)).await?;
    }
    let proof = proof.ok_or_else(|| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("no signed head covers entry {seq}"))
    })?;
    Ok(axum::Json(peerwatt_ledger::proof_file::ProofFile::from_proof(&proof)).into_response())
}

/// What `GET /ledger/verify` found.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Verified {
    /// Whether every check passed.
    pub verified: bool,
    /// Entries verified (the ledger's size when the check began).
    pub entries: u64,
    /// Signed tree heads verified.
    pub heads: u64,
    /// The Merkle root over every entry (hex), when verified.
    pub root: Option<String>,
    /// The first problem found, when not.
    pub problem: Option<String>,
}

/// Runs every check of `peerwatt ledger verify` on the node's ledger (entries, hash chain,
/// Merkle tree, signed heads) as it stands: its export up to the current size, verified as
/// it is written (through a pipe: the node appends meanwhile, and a ledger of years is never
/// held whole). One at a time: a request while one runs waits for it, and a ledger that has
/// not grown since the last good check gets that check's answer. Not bound by `timeout_ms`
/// (a large ledger on a small device takes longer). 200 either way; `verified` says how it
/// went.
#[utoipa::path(get, path = "/api/v1/ledger/verify", tag = "ledger",
    responses((status = 200, description = "What the verification found", body = Verified),
              (status = 500, description = "The ledger could not be read", body = ErrorBody)))]
async fn ledger_verify(State(api): State<Arc<Api>>) -> Result<Response, ApiError> {
    let internal = |e: String| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e);
    // The check runs in a task of its own holding the lock: a client that goes away does not
    // free the lock for a second check while the first still runs.
    let ledger = api.ledger.clone();
    let last = api.verification.clone();
    let check = tokio::spawn(async move {
        let mut last = last.lock_owned().await;
        let size = {
            let ledger = ledger.clone();
            tokio::task::spawn_blocking(move || ledger.len())
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?
        };
        if let Some(done) = last.as_ref().filter(|v| v.verified && v.entries == size) {
            return Ok(done.clone());
        }
        let answer = verify_up_to(ledger, size).await?;
        *last = Some(answer.clone());
        Ok::<_, String>(answer)
    });
    let answer = check.await.map_err(|e| internal(e.to_string()))?.map_err(internal)?;
    Ok(axum::Json(answer).into_response())
}

/// Verifies the export of the ledger's first `size` entries; `Err` if the ledger cannot be
/// read (not the same as a ledger that is read and found bad).
async fn verify_up_to(ledger: Arc<dyn LedgerAccess>, size: u64) -> Result<Verified, String> {
    let (from_export, mut into_verifier) = std::io::pipe().map_err(|e| e.to_string())?;
    let writing = tokio::task::spawn_blocking(move || ledger.export(size, &mut into_verifier));
    let verifying = tokio::task::spawn_blocking(move || peerwatt_ledger::verify_export(from_export));
    let (written, outcome) = tokio::join!(writing, verifying);
    let outcome = outcome.map_err(|e| e.to_string())?;
    match written.map_err(|e| e.to_string())? {
        // A verifier that stops at a problem breaks the writer's pipe: the problem is the answer.
        Err(ExportError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(format!("cannot read the ledger: {e}")),
        Ok(_) => {}
    }
    Ok(match outcome {
        Ok(r) => {
            Verified { verified: true, entries: r.entries, heads: r.heads, root: Some(r.root.to_hex()), problem: None }
        }
        Err(e) => {
            tracing::error!(problem = %e, "the ledger failed verification");
            Verified { verified: false, entries: size, heads: 0, root: None, problem: Some(e.to_string()) }
        }
    })
}

/// The export file's bytes, handed from the blocking writer to the response body.
struct ChannelWriter(mpsc::Sender<Result<bytes::Bytes, std::io::Error>>);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(bytes::Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The same file as `peerwatt ledger export`, streamed while the node runs: the node signs a
/// head over every entry first, and the export ends there, so a signature covers it whole (a
/// cut-off download lacks the end marker and fails `ledger verify`).
#[utoipa::path(get, path = "/api/v1/ledger/export", tag = "ledger",
    responses((status = 200, description = "The export file (as `peerwatt ledger export`)", content_type = "application/octet-stream")))]
async fn ledger_export(State(api): State<Arc<Api>>) -> Result<Response, ApiError> {
    let size = sign_head(&api).await?;
    let (tx, rx) = mpsc::channel(16);
    let ledger = api.ledger.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter(tx.clone());
        if let Err(e) = ledger.export(size, &mut out) {
            tracing::warn!(error = %e, "ledger export over HTTP stopped");
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let chunks = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) });
    let name = latest(&api).map(|s| s.peer_id.clone()).unwrap_or_else(|_| "ledger".into());
    let headers = [
        (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
        (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}.pwl\"")),
    ];
    Ok((headers, axum::body::Body::from_stream(chunks)).into_response())
}

/// A range in the query: `month=YYYY-MM`, or `from`/`to` (`YYYY-MM-DD` or `YYYY-MM-DDTHH:MMZ`).
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct RangeQuery {
    /// A UTC month, `YYYY-MM` (instead of `from` and `to`).
    month: Option<String>,
    /// From (inclusive): `YYYY-MM-DD` or `YYYY-MM-DDTHH:MMZ`, UTC.
    from: Option<String>,
    /// To (exclusive), as `from`.
    to: Option<String>,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

impl RangeQuery {
    fn range(&self) -> Result<(u64, u64), ApiError> {
        peerwatt_market::bill::range(self.month.as_deref(), self.from.as_deref(), self.to.as_deref())
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))
    }

    fn csv(&self) -> Result<bool, ApiError> {
        match self.format.as_deref() {
            None | Some("json") => Ok(false),
            Some("csv") => Ok(true),
            Some(other) => Err(ApiError::new(StatusCode::BAD_REQUEST, format!("format {other:?}: json or csv"))),
        }
    }
}

/// A CSV answer.
fn csv_answer(text: String) -> Response {
    ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], text).into_response()
}

/// The query, or a JSON 400 naming what is wrong with it.
type Query = Result<axum::extract::Query<RangeQuery>, axum::extract::rejection::QueryRejection>;

fn query(q: Query) -> Result<RangeQuery, ApiError> {
    q.map(|axum::extract::Query(q)| q).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))
}

/// Reads the ledger off the runtime's threads.
async fn read_ledger<T: Send + 'static>(
    api: &Api,
    read: impl FnOnce(&dyn LedgerAccess) -> Result<T, LedgerError> + Send + 'static,
) -> Result<T, ApiError> {
    let ledger = api.ledger.clone();
    tokio::task::spawn_blocking(move || read(ledger.as_ref()))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the ledger: {e}")))
}

/// The node's trades whose delivery interval starts in the range, oldest first.
#[utoipa::path(get, path = "/api/v1/trades", tag = "market", params(RangeQuery),
    responses((status = 200, description = "The trades (`format=csv`: the same as CSV)", body = Vec<TradeRow>),
              (status = 400, description = "A malformed query", body = ErrorBody)))]
async fn trades(State(api): State<Arc<Api>>, q: Query) -> Result<Response, ApiError> {
    let q = query(q)?;
    let (from, to) = q.range()?;
    let csv = q.csv()?;
    let (me, ms) = (api.me, api.interval_ms);
    let mut rows = read_ledger(&api, |l| l.trades())
        .await?
        .iter()
        .filter_map(|t| {
            let trade = t.body();
            let terms = trade.request.body();
            let start = terms.interval.0.saturating_mul(ms);
            let sold = trade.seller() == &me;
            let counterparty = if sold { trade.buyer() } else { trade.seller() };
            (from..to).contains(&start).then(|| TradeRow {
                interval_start: start,
                direction: if sold { "sold" } else { "bought" },
                energy_wh: terms.energy.0,
                price: terms.price.0,
                counterparty: counterparty.to_string(),
                role: if terms.maker == me { "maker" } else { "taker" },
                accepted_at: trade.accepted_at.0,
                digest: t.digest().to_hex(),
            })
        })
        .collect::<Vec<_>>();
    rows.sort_by_key(|r| (r.interval_start, r.accepted_at));
    if csv {
        let mut text = String::from("interval_start,direction,energy_wh,price,counterparty,role,accepted_at,digest\n");
        for r in &rows {
            text.push_str(&format!(
                "{},{},{},{},{},{},{},{}\n",
                peerwatt_core::Timestamp(r.interval_start),
                r.direction,
                r.energy_wh,
                r.price,
                r.counterparty,
                r.role,
                peerwatt_core::Timestamp(r.accepted_at),
                r.digest
            ));
        }
        return Ok(csv_answer(text));
    }
    Ok(axum::Json(rows).into_response())
}

/// One trade as `/trades` lists it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct TradeRow {
    /// The delivery interval's start (ms since the epoch).
    interval_start: u64,
    /// `sold` or `bought`.
    direction: &'static str,
    /// Energy, Wh.
    energy_wh: u64,
    /// Price, micro-currency per kWh.
    price: u64,
    /// The other party's public id.
    counterparty: String,
    /// `maker` or `taker`: which side of the handshake this node was.
    role: &'static str,
    /// When the maker accepted it (ms since the epoch).
    accepted_at: u64,
    /// The signed trade's digest (hex): find it in the ledger export.
    digest: String,
}

/// The household's statement over the range, as `peerwatt statement --format json|csv`.
#[utoipa::path(get, path = "/api/v1/statement", tag = "settlement", params(RangeQuery),
    responses((status = 200, description = "The statement (`format=csv`: the CSV of `peerwatt statement`)", body = peerwatt_market::bill::Bill),
              (status = 400, description = "A malformed query", body = ErrorBody)))]
async fn statement(State(api): State<Arc<Api>>, q: Query) -> Result<Response, ApiError> {
    let q = query(q)?;
    let (from, to) = q.range()?;
    let csv = q.csv()?;
    let ms = api.interval_ms;
    let settlements = read_ledger(&api, |l| l.settlements()).await?;
    let bill = peerwatt_market::bill::statement_of(settlements, from, to, ms)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the statement: {e}")))?;
    if csv {
        let text = peerwatt_market::bill::csv(&bill, ms);
        return Ok(csv_answer(text));
    }
    Ok(axum::Json(bill).into_response())
}

/// The meter's closed intervals that start in the range, oldest first (what the node states
/// and forecasts from): `interval`, `start`, `imported`, `exported` (Wh), `complete`,
/// `covered_ms`, `counter_reset`, `source`; `format=csv` for a CSV of the same.
#[utoipa::path(get, path = "/api/v1/intervals", tag = "meter", params(RangeQuery),
    responses((status = 200, description = "The intervals (`format=csv`: the same as CSV)", body = Vec<IntervalRow>),
              (status = 400, description = "A malformed query", body = ErrorBody)))]
async fn intervals(State(api): State<Arc<Api>>, q: Query) -> Result<Response, ApiError> {
    let q = query(q)?;
    let (from, to) = q.range()?;
    let csv = q.csv()?;
    let path = api.meter_history.clone();
    let all = tokio::task::spawn_blocking(move || peerwatt_meter::History::read(&path))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the meter history: {e}")))?;
    let rows: Vec<IntervalRow> = all.iter().filter(|t| (from..to).contains(&t.start.0)).map(IntervalRow::of).collect();
    if csv {
        let mut text =
            String::from("interval_start,imported_wh,exported_wh,complete,covered_ms,counter_reset,source\n");
        for t in &rows {
            text.push_str(&format!(
                "{},{},{},{},{},{},{}\n",
                peerwatt_core::Timestamp(t.start),
                t.imported,
                t.exported,
                t.complete,
                t.covered_ms,
                t.counter_reset,
                t.source
            ));
        }
        return Ok(csv_answer(text));
    }
    Ok(axum::Json(rows).into_response())
}

/// One closed meter interval as `/intervals` lists it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct IntervalRow {
    /// The interval's number (its start divided by its length).
    interval: u64,
    /// When it started (ms since the epoch).
    start: u64,
    /// Imported from the grid, Wh.
    imported: u64,
    /// Exported to the grid, Wh.
    exported: u64,
    /// Whether readings covered the whole interval.
    complete: bool,
    /// Milliseconds covered by readings.
    covered_ms: u64,
    /// Whether a counter reset fell into it.
    counter_reset: bool,
    /// `counters` (differences of the meter's totals) or `power` (power integrated over time).
    source: &'static str,
}

impl IntervalRow {
    fn of(t: &peerwatt_meter::IntervalTotals) -> IntervalRow {
        IntervalRow {
            interval: t.interval.0,
            start: t.start.0,
            imported: t.imported.0,
            exported: t.exported.0,
            complete: t.complete,
            covered_ms: t.covered_ms,
            counter_reset: t.counter_reset,
            source: match t.source {
                peerwatt_meter::Source::Counters => "counters",
                peerwatt_meter::Source::Power => "power",
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peerwatt_core::{EntryKind, ManualClock, NodeKey, Timestamp};
    use peerwatt_ledger::MemoryStore;

    /// A ledger of three entries in memory, and its store (to tamper with).
    fn ledger() -> (Arc<MemoryStore>, Arc<dyn LedgerAccess>) {
        let store = Arc::new(MemoryStore::new());
        let clock: Arc<dyn peerwatt_core::Clock> = Arc::new(ManualClock::new(Timestamp(1_000)));
        let ledger = Ledger::open(store.clone(), NodeKey::from_seed(&[7; 32]), clock).unwrap();
        for i in 0..3u8 {
            ledger.append(EntryKind::ConfigChange, vec![i]).unwrap();
        }
        (store, Arc::new(ledger))
    }

    #[tokio::test]
    async fn a_ledger_is_verified_and_a_tampered_one_is_not_and_says_where() {
        let (store, access) = ledger();
        let good = verify_up_to(access.clone(), 3).await.unwrap();
        assert!(good.verified && good.entries == 3 && good.problem.is_none(), "{good:?}");
        store.tamper_entry(1, Some(vec![0xAB; 40])).unwrap();
        let bad = verify_up_to(access, 3).await.unwrap();
        assert!(!bad.verified, "{bad:?}");
        assert!(bad.problem.as_deref().is_some_and(|p| p.contains("entry 1")), "{bad:?}");
    }

    #[tokio::test]
    async fn a_ledger_that_cannot_be_read_is_an_error_not_a_verdict() {
        let (store, access) = ledger();
        store.tamper_entry(1, None).unwrap();
        let answer = verify_up_to(access, 3).await;
        assert!(answer.as_ref().is_err_and(|e| e.starts_with("cannot read the ledger")), "{answer:?}");
    }
}
