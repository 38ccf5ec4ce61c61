//! The local HTTP API: JSON over HTTP/1.1 on a loopback address, for local systems that can call
//! an API (a case management system, an electronic health record).
//!
//! Every operation is a thin proxy to the gateway's control socket; the API adds what the socket
//! does not need: a bearer token (the socket is protected by file permissions, a TCP port is
//! not), field-level validation, and HTTP status codes. The contract — every endpoint, schema,
//! the authentication and the error shape — is `adapters/openapi.yaml`.
//!
//! # Safety rails
//! - It listens on a loopback address only ([`bind`] refuses anything else): the API is for
//!   programs on the gateway's own machine. Programs elsewhere go through their own gateway.
//! - Every request, including one to an unknown path, needs `Authorization: Bearer <token>`; the
//!   token comes from a file of mode 0600 ([`read_token_file`] refuses a file others can read)
//!   and is compared in constant time.
//! - Errors are JSON `{"error": "...", "field": "..."}`, `field` naming the request field at
//!   fault when there is one. 400 bad input, 401 no or wrong token, 404 unknown id, 409 conflict
//!   with recorded consent or a `client_ref` reused for another document, 413 body too large,
//!   415 a POST body that is not declared `application/json`, 422 refused by consent or policy, 501 the gateway
//!   does not support the operation yet, 502 the gateway is unreachable, 503 the gateway could
//!   not store it now.
//!
//! # Endpoints
//! | method | path | control op |
//! |---|---|---|
//! | POST | `/v1/documents` | `send` → 202 with the outbox entry |
//! | GET | `/v1/outbox`, `/v1/outbox/{id}` | `outbox_list` (`?case=…&limit=N`), `outbox_show` |
//! | GET | `/v1/inbox`, `/v1/inbox/{id}` | `inbox_list` (`?case=…&limit=N`), `inbox_show` (disclosed fields + notice) |
//! | GET | `/v1/inbox/{id}/bundle` | `inbox_bundle` (`application/cbor`) |
//! | POST | `/v1/consents`, `/v1/consents/{id}/withdraw` | `consent_record`, `consent_withdraw` |
//! | POST | `/v1/residence-changes` | `residence_change` |
//! | GET | `/v1/cases/{case}/audit` | `audit_subject` |

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use tsunagi_protocol::DocType;

use crate::client::{CallError, ErrorKind, GatewayClient, SendContent};
use crate::validate::{self, FieldError};

/// Largest request body: a bundle at the gateway's 8 MiB envelope limit, as hex, with room.
pub const MAX_BODY_BYTES: usize = 18 * 1024 * 1024;

/// An error answer: status and `{"error", "field"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// One line for the caller.
    pub error: String,
    /// The request field at fault, if one is.
    pub field: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>, field: Option<&str>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            field: field.map(str::to_owned),
        }
    }

    fn bad(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, error, None)
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            error: e.to_string(),
            field: Some(e.field),
        }
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        let status = match e.kind {
            ErrorKind::Unreachable => StatusCode::BAD_GATEWAY,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            ErrorKind::Refused => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
        };
        let error = if e.kind == ErrorKind::Unsupported {
            format!(
                "the gateway does not support this operation yet (update it): {}",
                e.message
            )
        } else {
            e.message
        };
        ApiError {
            status,
            error,
            field: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.error});
        if let Some(f) = self.field {
            body["field"] = f.into();
        }
        let mut r = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

type Answer = Result<Response, ApiError>;

struct Api {
    client: GatewayClient,
    /// SHA-256 of the token (compared digest to digest, so the length leaks nothing either).
    token_digest: [u8; 32],
    has_token: bool,
}

fn sha256(b: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl Api {
    fn token_matches(&self, presented: &str) -> bool {
        let got = sha256(presented.as_bytes());
        let diff = got
            .iter()
            .zip(self.token_digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        self.has_token && diff == 0
    }
}

/// The local HTTP API.
pub struct HttpApi;

type Shared = Arc<Api>;

impl HttpApi {
    /// The routes, each with its method: one table, so [`HttpApi::routes`] lists exactly what
    /// [`HttpApi::router`] serves.
    fn table() -> Vec<(Method, &'static str, MethodRouter<Shared>)> {
        vec![
            (Method::POST, "/v1/documents", post(post_document)),
            (Method::GET, "/v1/outbox", get(outbox_list)),
            (Method::GET, "/v1/outbox/{id}", get(outbox_show)),
            (Method::GET, "/v1/inbox", get(inbox_list)),
            (Method::GET, "/v1/inbox/{id}", get(inbox_show)),
            (Method::GET, "/v1/inbox/{id}/bundle", get(inbox_bundle)),
            (Method::POST, "/v1/consents", post(consent_record)),
            (
                Method::POST,
                "/v1/consents/{id}/withdraw",
                post(consent_withdraw),
            ),
            (
                Method::POST,
                "/v1/residence-changes",
                post(residence_change),
            ),
            (Method::GET, "/v1/cases/{case}/audit", get(audit)),
            (Method::GET, "/health", get(health)),
        ]
    }

    /// Every (method, path) the router serves, in the router's path syntax (`{id}`), which is
    /// also OpenAPI's.
    pub fn routes() -> Vec<(Method, &'static str)> {
        Self::table().into_iter().map(|(m, p, _)| (m, p)).collect()
    }

    /// The API as an axum router over the gateway whose control socket is `socket_path`,
    /// accepting `token` as the bearer token. (An empty token accepts nobody.)
    pub fn router(socket_path: impl Into<PathBuf>, token: impl AsRef<str>) -> Router {
        let token = token.as_ref().trim();
        let api = Arc::new(Api {
            client: GatewayClient::new(socket_path),
            token_digest: sha256(token.as_bytes()),
            has_token: !token.is_empty(),
        });
        let mut router = Router::new();
        for (_, path, route) in Self::table() {
            router = router.route(path, route);
        }
        router
            .route_layer(middleware::from_fn(require_json))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .layer(middleware::from_fn_with_state(api.clone(), authenticate))
            .with_state(api)
    }
}

/// `GET /health`: whether the API runs and reaches its gateway. Answers without a token (a load
/// balancer or a monitor has none) and says nothing but that.
async fn health(State(api): State<Shared>) -> Response {
    match api.client.call(serde_json::json!({"op": "status"})).await {
        Ok(_) => (StatusCode::OK, Json(serde_json::json!({"status": "ok"}))).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "unavailable", "error": "the gateway does not answer on its control socket", "kind": format!("{:?}", e.kind)})),
        )
            .into_response(),
    }
}

async fn authenticate(State(api): State<Shared>, req: Request, next: Next) -> Response {
    if req.method() == Method::GET && req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().ok().and_then(|s| s.strip_prefix("Bearer ")));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = match presented {
        Some(Some(t)) if api.token_matches(t.trim()) => next.run(req).await,
        Some(None) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the Authorization header must read `Bearer <token>`, with the token from the adapter's token file",
            Some("Authorization"),
        )
        .into_response(),
        Some(Some(_)) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the bearer token is wrong; use the token from the adapter's token file",
            Some("Authorization"),
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "authentication required: send `Authorization: Bearer <token>` with the token from the adapter's token file",
            Some("Authorization"),
        )
        .into_response(),
    };
    // Paths carry message ids and case pseudonyms only, never personal data.
    tracing::info!(%method, path, status = response.status().as_u16(), "request");
    response
}

/// A POST with a body must say it is JSON (`Content-Type: application/json`, parameters such as
/// `charset` allowed): 415 otherwise. (A form post or `text/plain` is what a browser may send to
/// a local port without asking; no such body is read.) Only a withdrawal, which takes no body,
/// may come without one.
async fn require_json(req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)").trim().to_owned());
    let is_json = content_type.as_deref().is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    let no_body = !req.headers().contains_key(header::TRANSFER_ENCODING)
        && req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0");
    if is_json || (no_body && req.uri().path().ends_with("/withdraw")) {
        return next.run(req).await;
    }
    let found = match &content_type {
        None => "no Content-Type".to_owned(),
        Some(ct) => format!("Content-Type {:?}", ct.chars().take(60).collect::<String>()),
    };
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "POST {} takes a JSON body, but the request has {found}; send the body as JSON with `Content-Type: application/json`",
            req.uri().path()
        ),
        Some("Content-Type"),
    )
    .into_response()
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no endpoint {method} {}; the endpoints are described in openapi.yaml",
            uri.path()
        ),
        None,
    )
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} does not take {method}; the endpoints are described in openapi.yaml",
            uri.path()
        ),
        None,
    )
}

// ---------------------------------------------------------------------------------------------
// Request helpers

fn json_object(body: Result<Bytes, BytesRejection>) -> Result<Map<String, Value>, ApiError> {
    let bytes = body.map_err(|e| {
        let status = e.status();
        let msg = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("the request body is over the limit of {MAX_BODY_BYTES} bytes")
        } else {
            format!("the request body could not be read: {}", e.body_text())
        };
        ApiError::new(status, msg, None)
    })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(ApiError::bad(format!(
            "the request body must be a JSON object, found {}",
            kind_of(&other)
        ))),
        Err(e) => Err(ApiError::bad(format!("the request body is not JSON: {e}"))),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn only_fields(m: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(FieldError::new(
            k.as_str(),
            format!("unknown field; expected {}", allowed.join(", ")),
        )
        .into()),
        None => Ok(()),
    }
}

fn string_field<'a>(m: &'a Map<String, Value>, f: &str) -> Result<Option<&'a str>, ApiError> {
    match m.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => {
            Err(FieldError::new(f, format!("expected a string, found {}", kind_of(other))).into())
        }
    }
}

fn required<'a>(m: &'a Map<String, Value>, f: &str) -> Result<&'a str, ApiError> {
    string_field(m, f)?.ok_or_else(|| FieldError::new(f, "missing").into())
}

fn ok(status: StatusCode, v: Value) -> Answer {
    Ok((status, Json(v)).into_response())
}

/// A gateway refusal of a send, with the request field it is about when the wording says so.
fn send_error(e: CallError, to: &str, content_field: &str) -> ApiError {
    let field = if e.kind != ErrorKind::Invalid {
        None
    } else if e.message.contains(&format!("{to} is")) {
        Some("to".to_owned())
    } else if e.message.starts_with("form: the author is") {
        Some("form.author".to_owned())
    } else if e.message.starts_with("form") || e.message.starts_with("document") {
        Some(content_field.to_owned())
    } else {
        None
    };
    ApiError {
        field,
        ..ApiError::from(e)
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers

async fn post_document(State(api): State<Shared>, body: Result<Bytes, BytesRejection>) -> Answer {
    let m = json_object(body)?;
    only_fields(
        &m,
        &[
            "to",
            "purpose",
            "form",
            "bundle_base64",
            "bundle_hex",
            "client_ref",
        ],
    )?;
    let to_s = required(&m, "to")?;
    let to = validate::org("to", to_s)?;
    let purpose = validate::purpose("purpose", required(&m, "purpose")?)?;
    let present: Vec<&str> = ["form", "bundle_base64", "bundle_hex"]
        .into_iter()
        .filter(|f| m.get(*f).is_some_and(|v| !v.is_null()))
        .collect();
    let (field, content) = match present.as_slice() {
        ["form"] => {
            let form = &m["form"];
            if !form.is_object() {
                return Err(FieldError::new(
                    "form",
                    format!("expected a JSON object, found {}", kind_of(form)),
                )
                .into());
            }
            validate::document("form", form, None)?;
            ("form", SendContent::Form(form.clone()))
        }
        [f] => {
            let s = required(&m, f)?;
            let bytes = if *f == "bundle_hex" {
                validate::unhex(f, s)?
            } else {
                validate::unbase64(f, s)?
            };
            validate::bundle(f, &bytes)?;
            (*f, SendContent::Bundle(bytes))
        }
        [] => {
            return Err(FieldError::new(
                "form",
                "missing: give the document as form (JSON), bundle_base64 or bundle_hex",
            )
            .into())
        }
        [_, second, ..] => {
            return Err(FieldError::new(
                *second,
                "give only one of form, bundle_base64 and bundle_hex",
            )
            .into())
        }
    };
    let client_ref = string_field(&m, "client_ref")?;
    if let Some(r) = client_ref {
        validate::client_ref("client_ref", r)?;
    }
    let entry = api
        .client
        .send(&to, purpose, content, client_ref)
        .await
        .map_err(|e| send_error(e, to_s, field))?;
    ok(
        StatusCode::ACCEPTED,
        serde_json::to_value(entry).unwrap_or_default(),
    )
}

/// The query of a listing: `?case=` for one case's entries, `?limit=` for only the newest.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    case: Option<String>,
    limit: Option<usize>,
}

/// The control request of listing `op` with `query`, checked.
fn list_request(
    op: &str,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Value, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the query is not case=…&limit=N: {}", e.body_text()),
            None,
        )
    })?;
    let mut request = json!({ "op": op });
    if let Some(case) = &q.case {
        request["case"] = validate::case("case", case)?.as_str().into();
    }
    if let Some(limit) = q.limit {
        request["limit"] = limit.into();
    }
    Ok(request)
}

async fn outbox_list(
    State(api): State<Shared>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Answer {
    let request = list_request("outbox_list", query)?;
    ok(StatusCode::OK, api.client.call(request).await?)
}

async fn outbox_show(State(api): State<Shared>, UrlPath(id): UrlPath<String>) -> Answer {
    validate::message_id("id", &id)?;
    ok(
        StatusCode::OK,
        api.client
            .call(json!({"op": "outbox_show", "id": id}))
            .await?,
    )
}

async fn inbox_list(
    State(api): State<Shared>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Answer {
    let request = list_request("inbox_list", query)?;
    ok(StatusCode::OK, api.client.call(request).await?)
}

async fn inbox_show(State(api): State<Shared>, UrlPath(id): UrlPath<String>) -> Answer {
    validate::message_id("id", &id)?;
    ok(
        StatusCode::OK,
        api.client
            .call(json!({"op": "inbox_show", "id": id}))
            .await?,
    )
}

async fn inbox_bundle(State(api): State<Shared>, UrlPath(id): UrlPath<String>) -> Answer {
    validate::message_id("id", &id)?;
    let v = api
        .client
        .call(json!({"op": "inbox_bundle", "id": id}))
        .await?;
    let bytes = hex::decode(v["bundle_hex"].as_str().unwrap_or_default()).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("the gateway answered with a bundle that is not hex: {e}"),
            None,
        )
    })?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/cbor")],
        Body::from(bytes),
    )
        .into_response())
}

async fn consent_record(State(api): State<Shared>, body: Result<Bytes, BytesRejection>) -> Answer {
    let m = json_object(body)?;
    let record = Value::Object(m);
    validate::document("", &record, Some(DocType::Consent))?;
    let queued = api
        .client
        .call(json!({"op": "consent_record", "record": record}))
        .await?;
    ok(
        StatusCode::CREATED,
        json!({"id": record["id"], "version": record["version"], "status": record["status"], "queued": queued}),
    )
}

async fn consent_withdraw(State(api): State<Shared>, UrlPath(id): UrlPath<String>) -> Answer {
    if id.is_empty() || id.len() > 128 || id.chars().any(char::is_control) {
        return Err(FieldError::new("id", "expected a consent id (1 to 128 characters)").into());
    }
    let queued = api
        .client
        .call(json!({"op": "consent_withdraw", "id": id}))
        .await?;
    ok(
        StatusCode::OK,
        json!({"id": id, "status": "withdrawn", "queued": queued}),
    )
}

async fn residence_change(
    State(api): State<Shared>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let m = json_object(body)?;
    let report = Value::Object(m);
    validate::document("", &report, Some(DocType::ResidenceChange))?;
    ok(
        StatusCode::ACCEPTED,
        api.client
            .call(json!({"op": "residence_change", "report": report}))
            .await?,
    )
}

async fn audit(State(api): State<Shared>, UrlPath(case): UrlPath<String>) -> Answer {
    validate::case("case", &case)?;
    ok(
        StatusCode::OK,
        api.client
            .call(json!({"op": "audit_subject", "case": case}))
            .await?,
    )
}

// ---------------------------------------------------------------------------------------------
// Token file and serving

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address is not a loopback address.
    #[error("refusing to listen on {0}: the local API listens on a loopback address only (127.0.0.1 or ::1); programs on other machines talk to their own gateway")]
    NotLoopback(SocketAddr),
    /// The token file is missing, unreadable, too open or too short.
    #[error("{0}")]
    Token(String),
    /// The address could not be bound, or serving failed.
    #[error("{addr}: {source}")]
    Io {
        /// The listen address.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// Reads the bearer token from `path`, which must be a regular file of this account that no other
/// account can read (the rule of every secret, [`tsunagi_certs::local::check_secret`]) holding
/// at least 32 characters.
pub fn read_token_file(path: &Path) -> Result<String, ServeError> {
    let meta = std::fs::metadata(path).map_err(|e| {
        ServeError::Token(format!(
            "cannot read the token file {}: {e}",
            path.display()
        ))
    })?;
    if !meta.is_file() {
        return Err(ServeError::Token(format!(
            "the token file {} is not a regular file",
            path.display()
        )));
    }
    let bytes = tsunagi_certs::local::read_secret(path)
        .map_err(|e| {
            ServeError::Token(format!(
                "cannot read the token file {}: {e}",
                path.display()
            ))
        })?
        .map_err(|e| ServeError::Token(e.to_string()))?;
    let text = String::from_utf8_lossy(&bytes);
    let token = text.trim().to_owned();
    if token.len() < 32 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ServeError::Token(format!(
            "the token file {} must hold one token of at least 32 printable characters; delete it to have a new one made",
            path.display()
        )));
    }
    Ok(token)
}

/// Creates the token file at `path` with a new token (32 random bytes, hex), mode 0600 from the
/// start, and returns the token. Fails if the file exists.
pub fn create_token_file(path: &Path) -> Result<String, ServeError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ServeError::Token("the system random generator failed".into()))?;
    let token = hex::encode(bytes);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(format!("{token}\n").as_bytes())?;
        f.sync_all()
    };
    write().map_err(|e| {
        ServeError::Token(format!(
            "cannot create the token file {}: {e}",
            path.display()
        ))
    })?;
    Ok(token)
}

/// Reads the token file, creating it first when it does not exist.
pub fn load_or_create_token(path: &Path) -> Result<String, ServeError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let t = create_token_file(path)?;
            tracing::info!(file = %path.display(), "created a new API token file (mode 0600)");
            Ok(t)
        }
        _ => read_token_file(path),
    }
}

/// A bound API, ready to serve.
pub struct Server {
    listener: tokio::net::TcpListener,
    router: Router,
    addr: SocketAddr,
}

impl Server {
    /// The address it listens on (with the actual port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until the process ends.
    pub async fn run(self) -> Result<(), ServeError> {
        let addr = self.addr;
        axum::serve(self.listener, self.router)
            .await
            .map_err(|source| ServeError::Io { addr, source })
    }
}

/// Checks the address (loopback only) and the token file (created when missing, refused when
/// others can read it), then binds.
pub async fn bind(
    addr: SocketAddr,
    socket_path: impl Into<PathBuf>,
    token_file: &Path,
) -> Result<Server, ServeError> {
    if !addr.ip().is_loopback() {
        return Err(ServeError::NotLoopback(addr));
    }
    let token = load_or_create_token(token_file)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Io { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServeError::Io { addr, source })?;
    Ok(Server {
        listener,
        router: HttpApi::router(socket_path, token),
        addr,
    })
}

/// Binds (see [`bind`]) and serves until the process ends.
pub async fn serve(
    addr: SocketAddr,
    socket_path: impl Into<PathBuf>,
    token_file: &Path,
) -> Result<(), ServeError> {
    let server = bind(addr, socket_path, token_file).await?;
    tracing::info!(listen = %server.local_addr(), "local HTTP API listening");
    server.run().await
}
