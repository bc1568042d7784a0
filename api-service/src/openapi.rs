//! The API's OpenAPI 3.1 document, assembled from the `#[utoipa::path]` annotations beside
//! each handler and the `ToSchema` derives on its request and response types, so the
//! contract is written once, with the code (issue #16). Served at `GET /api/openapi.json`,
//! with Swagger UI at `/api/docs` (its files embedded in the binary: it works offline).
//!
//! Each route module lists its own operations (its `openapi()`); this module
//! merges them and adds what every operation shares: the two ways to authenticate, the
//! error body, and the errors any route can answer with (see [`CommonErrors`]).

use std::sync::{Arc, OnceLock};

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::error::ErrorBody;
use crate::state::AppState;

/// Where the document is served; public, as are the docs page and the health checks.
pub const DOCUMENT_PATH: &str = "/api/openapi.json";
/// The human docs page (Swagger UI).
pub const DOCS_PATH: &str = "/api/docs";

/// The name of the bearer scheme in the document (`Authorization: Bearer <token>`: a JWT
/// from `POST /api/auth/login`, or an API token).
pub const BEARER: &str = "bearer";
/// The same credential sent as `X-API-Key`, as the edge gateway's clients do.
pub const API_KEY: &str = "api_key";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "smsgate API",
        description = "Send SMS through the HKT gateway or the SIM cards of the edge gateway, \
            follow their delivery, manage SIM cards, webhooks and users.\n\n\
            Every error is `{\"error\": {\"code\": \"MACHINE_CODE\", \"message\": \"…\"}}`; each \
            operation lists the codes it can answer with. Authenticate with \
            `Authorization: Bearer <token>` (a token from `POST /api/auth/login`, or an API \
            token) or the same token in `X-API-Key`.",
    ),
    paths(serve_document),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "auth", description = "Logging in and API keys"),
        (name = "sms", description = "Sending SMS and following them"),
        (name = "sim-cards", description = "The edge gateway's SIM cards, inbox and outbox"),
        (name = "opt-outs", description = "Numbers never sent to: yours and the global list"),
        (name = "webhooks", description = "Status and received-SMS events pushed to you"),
        (name = "admin", description = "Users and their limits (administrators)"),
        (name = "system", description = "Statistics, audit log, queue, health and metrics"),
    )
)]
struct ApiDoc;

/// The whole document: this module's part, then every route module's operations.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for part in [
        crate::auth::openapi(),
        crate::sms::openapi(),
        crate::sims::openapi(),
        crate::webhooks::openapi(),
        crate::optouts::openapi(),
        crate::admin::openapi(),
        crate::system::openapi(),
        crate::health::openapi(),
        crate::metrics::openapi(),
    ] {
        doc.merge(part);
    }
    // The modifiers ran on this module's part only; the shared errors go on every operation.
    CommonErrors.modify(&mut doc);
    doc
}

/// The document as served, rendered once per process.
fn document_json() -> Arc<str> {
    static JSON: OnceLock<Arc<str>> = OnceLock::new();
    JSON.get_or_init(|| {
        document()
            .to_json()
            .expect("the OpenAPI document serializes")
            .into()
    })
    .clone()
}

/// The document and the docs page. Both are public: the contract is no secret, and a
/// client needs it before it has a token.
pub fn router() -> Router<AppState> {
    let docs: Router<AppState> = SwaggerUi::new(DOCS_PATH)
        .config(Config::from(DOCUMENT_PATH))
        .into();
    Router::new()
        .route(DOCUMENT_PATH, get(serve_document))
        .merge(docs)
}

/// The API's OpenAPI 3.1 document (this document).
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "system",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)),
)]
async fn serve_document() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "application/json")],
        document_json().to_string(),
    )
}

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A JWT from `POST /api/auth/login` (24 h) or an API token from the panel \
                         or `POST /api/admin/users/{id}/tokens`",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            API_KEY,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "The same credentials as the bearer scheme, in the edge gateway's header",
            ))),
        );
    }
}

/// Errors any operation can answer with, added to every operation so each lists all of its
/// statuses: 500 and 503 everywhere (the database can fail under any route, a slow answer
/// is cut off with 503); 401 and 403 wherever a credential is required; 400 and 413 wherever
/// a JSON body is read.
struct CommonErrors;

impl CommonErrors {
    fn apply(operation: &mut Operation) {
        let secured = operation.security.as_ref().is_some_and(|requirements| {
            !requirements.is_empty() && requirements.iter().all(|r| !is_anonymous(r))
        });
        if secured {
            add_codes(
                operation,
                "401",
                "No valid credentials",
                &["UNAUTHORIZED", "INVALID_TOKEN"],
            );
            add_codes(
                operation,
                "403",
                "The account may not use the API",
                &["ACCOUNT_DISABLED", "PASSWORD_CHANGE_REQUIRED"],
            );
        }
        if operation.request_body.is_some() {
            add_codes(
                operation,
                "400",
                "The request is not valid",
                &["INVALID_JSON", "INVALID_CONTENT_TYPE", "VALIDATION_ERROR"],
            );
            add_codes(
                operation,
                "413",
                "The body is over the size limit",
                &["PAYLOAD_TOO_LARGE"],
            );
        }
        add_codes(
            operation,
            "500",
            "An unexpected failure (logged; the cause is not shown)",
            &["INTERNAL_SERVER_ERROR"],
        );
        add_codes(
            operation,
            "503",
            "A dependency is down or the answer took too long; retry after `Retry-After` seconds",
            &["SERVICE_UNAVAILABLE", "BUSY"],
        );
    }
}

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                Self::apply(operation);
            }
        }
    }
}

/// `{}` in a security list: no credential needed.
fn is_anonymous(requirement: &utoipa::openapi::security::SecurityRequirement) -> bool {
    serde_json::to_value(requirement).is_ok_and(|v| v.as_object().is_some_and(|o| o.is_empty()))
}

/// Adds the error `codes` to the operation's `status` answer: a new answer with the error
/// body, or the codes appended to the description of one the route declared itself.
fn add_codes(operation: &mut Operation, status: &str, what: &str, codes: &[&str]) {
    let listed = codes
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match operation.responses.responses.get_mut(status) {
        Some(RefOr::T(response)) => {
            if !codes.iter().all(|c| response.description.contains(c)) {
                response.description = format!("{}; also {listed}", response.description);
            }
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            operation.responses.responses.insert(
                status.to_owned(),
                RefOr::T(error_response(&format!("{what}: {listed}"))),
            );
        }
    }
}

/// An answer with the error body.
pub fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

/// The `Idempotency-Key` header the send routes take.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // read by `IdempotencyHeader`; this type only describes it
pub struct IdempotencyParam {
    /// Makes the send at most once: a retry with the same key and body gets the first
    /// answer again (`Idempotent-Replayed: true`). Printable ASCII without spaces.
    #[serde(rename = "Idempotency-Key")]
    #[param(min_length = 1, max_length = 255, pattern = "^[!-~]+$")]
    idempotency_key: Option<String>,
}
