//! The API's OpenAPI 3.1 description, generated from the handlers' annotations and the
//! answers' types (utoipa), served at `/api/v1/openapi.json` and kept in
//! `docs/api/openapi.json` (a test fails when the two differ).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

/// The description of every endpoint.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "peerwatt node API",
        description = "A peerwatt node's local HTTP interface (docs/interfaces.md). Requests from \
loopback need no token unless `trust_loopback = false`; any other needs a bearer token \
(`peerwatt token new`) whose scope (read or control) covers the request. Energy is in whole Wh, \
prices in micro-currency per kWh, money in micro-currency, times in ms since the Unix epoch."
    ),
    paths(
        super::health,
        super::state,
        super::trades,
        super::intervals,
        super::statement,
        super::ledger_head,
        super::ledger_export,
        super::ledger_proof,
        super::ledger_verify,
        super::limits,
        super::set_limits,
        super::metrics,
        super::openapi_document,
    ),
    modifiers(&Refusals),
    security(("bearer" = [])),
    tags(
        (name = "node", description = "The node and its state"),
        (name = "market", description = "Trades and the homeowner's limits"),
        (name = "meter", description = "What the meter measured"),
        (name = "settlement", description = "Statements from the node's settlements"),
        (name = "ledger", description = "The tamper-evident ledger"),
        (name = "metrics", description = "Prometheus"),
    )
)]
pub struct ApiDoc;

/// Adds the bearer scheme, and the refusals every authenticated endpoint may answer (one
/// place, as the middleware that gives them is one place).
struct Refusals;

impl Modify for Refusals {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        let refusals = [
            ("401", "No token, or not one of this node's (not from a trusted loopback address)"),
            ("403", "The token's scope does not cover this request"),
            ("503", "The node is starting or stopping, or the request took too long"),
        ];
        for (path, item) in doc.paths.paths.iter_mut() {
            if path == "/api/v1/openapi.json" {
                continue;
            }
            let operations = [&mut item.get, &mut item.put].into_iter().flatten();
            for operation in operations {
                for (code, why) in refusals {
                    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
                    let response = ResponseBuilder::new().description(why).content("application/json", content).build();
                    operation.responses.responses.entry(code.to_owned()).or_insert_with(|| response.into());
                }
            }
        }
    }
}

/// The document as served and kept in `docs/api/openapi.json`: pretty JSON, keys in order,
/// ending in a newline.
pub fn document() -> String {
    let doc = ApiDoc::openapi();
    let mut text = doc.to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}
