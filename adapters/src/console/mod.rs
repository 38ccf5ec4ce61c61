//! The staff console: a Japanese web console beside the gateway, for the staff of an agency who
//! have no case-management system of their own.
//!
//! It is served by `tsunagi-adapter console serve` and, like every adapter, is a client of the
//! gateway's control socket: it signs nothing and decides nothing about consent or redaction.
//! It owns who may do what here — staff accounts ([`accounts`]), sessions and CSRF tokens
//! ([`session`]), kept with the staff's drafts across restarts in its data directory, sealed
//! ([`store`]) — and passes the staff member's account id with every control request, so the
//! gateway's audit chain records who asked for each operation. Pages are server-rendered with
//! maud ([`views`], [`pages`]) without JavaScript; forms are checked on the server ([`forms`]).
//!
//! It listens on loopback by default; on any other address it requires TLS ([`tls`]) and
//! refuses to start without a certificate and key.
//!
//! | role | may |
//! |---|---|
//! | viewer | read cases (pseudonyms), inbox and outbox lists and states |
//! | clerk | also read received documents, record consents, send documents (personal data) — meeting records and extensions of the support period among them — cancel an envelope not sent yet, export a case as FHIR |
//! | approver | also record a withdrawal; release a Form 7 waiting for consent (by recording the consent version that covers it) or stop it — while one waits, a clerk can do neither for its case |
//! | admin | also the operations page and the statistics export |

pub mod accounts;
pub mod assessment;
pub mod extension;
pub mod fhir;
pub mod forms;
pub mod meeting;
pub mod opinion;
pub mod pages;
pub mod plan;
mod private;
pub mod relocation;
pub mod session;
pub mod store;
pub mod support_end;
pub mod tls;
pub mod views;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use tsunagi_protocol::OrgId;

use crate::client::GatewayClient;
use accounts::{AccountBook, LoginFailure, Role};
use forms::Typed;
use session::{Session, Sessions, Staff};

/// Default idle time after which a console session ends.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(15 * 60);
/// Largest form body accepted.
const MAX_FORM: usize = 256 * 1024;
/// Password checks at once (each an argon2id hash of about 19 MiB).
const MAX_LOGINS_AT_ONCE: usize = 4;
/// How long a login waits for its turn before it is told to try again.
const LOGIN_WAIT: Duration = Duration::from_secs(10);

/// How to run a console.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen (loopback unless `tls` is given).
    pub listen: SocketAddr,
    /// The gateway's control socket.
    pub socket: PathBuf,
    /// The account file.
    pub users: PathBuf,
    /// TLS certificate chain and key (PEM), required off loopback.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Idle time after which a session ends.
    pub idle: Duration,
    /// The federation's members: org id → name (from the directory), in directory order.
    pub members: Vec<(OrgId, String)>,
    /// Where sessions and drafts are kept across restarts ([`store`]); in memory only when
    /// `None`.
    pub data_dir: Option<PathBuf>,
}

/// Why the console did not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// Off loopback without TLS.
    #[error("refusing to serve the console on {0} without TLS: give --tls-cert and --tls-key, or listen on 127.0.0.1")]
    NeedsTls(SocketAddr),
    /// The accounts could not be loaded.
    #[error(transparent)]
    Accounts(#[from] accounts::AccountError),
    /// The TLS certificate or key.
    #[error("{0}")]
    Tls(String),
    /// The data directory.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// Binding or serving failed.
    #[error("{addr}: {source}")]
    Io {
        /// The listen address.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// The state every handler shares.
pub(crate) struct Console {
    pub(crate) client: GatewayClient,
    pub(crate) accounts: AccountBook,
    pub(crate) sessions: Sessions,
    /// Password checks running at once (each takes an argon2 hash's memory): a flood of
    /// logins waits its turn instead of exhausting the host's memory.
    pub(crate) logins: tokio::sync::Semaphore,
    pub(crate) secure: bool,
    pub(crate) members: Vec<(OrgId, String)>,
    pub(crate) org: OnceLock<OrgId>,
    pub(crate) drafts: store::Drafts,
}

pub(crate) type Shared = Arc<Console>;

impl Console {
    /// The name of `org` from the directory, or its id.
    pub(crate) fn name(&self, org: &str) -> String {
        self.members
            .iter()
            .find(|(o, _)| o.as_str() == org)
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| org.to_owned())
    }

    /// This gateway's org (asked once).
    pub(crate) async fn org(&self) -> Result<OrgId, String> {
        if let Some(o) = self.org.get() {
            return Ok(o.clone());
        }
        let v = self
            .client
            .call(serde_json::json!({"op": "status"}))
            .await
            .map_err(|e| e.message)?;
        let org: OrgId = v["org"]
            .as_str()
            .unwrap_or("")
            .parse()
            .map_err(|e| format!("the gateway's status names no org: {e}"))?;
        Ok(self.org.get_or_init(|| org).clone())
    }

    /// Calls the gateway for `staff` (their id goes with the request into the audit chain).
    pub(crate) async fn call_as(
        &self,
        staff: &Staff,
        mut request: Value,
    ) -> Result<Value, crate::CallError> {
        request["staff"] = staff.id.clone().into();
        self.client.call(request).await
    }

    fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let cookie = headers.get(header::COOKIE)?.to_str().ok()?;
        let accounts = self.accounts.current();
        self.sessions
            .get(session::cookie_token(cookie)?, SystemTime::now(), &|id| {
                accounts.stamp_of(id)
            })
    }
}

/// Builds the console's router.
pub(crate) fn router(console: Shared) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/", get(|| async { Redirect::to("/cases") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/cases", get(pages::cases))
        .route("/cases/{case}", get(pages::case))
        .route("/cases/{case}/disclosure", get(pages::disclosure))
        .route("/cases/{case}/fhir.json", get(pages::fhir_export))
        .route("/inbox", get(pages::inbox))
        .route("/inbox/{id}", get(pages::inbox_show))
        .route("/outbox", get(pages::outbox))
        .route("/outbox/cancel", post(pages::outbox_cancel))
        .route(
            "/consents/new",
            get(pages::consent_form).post(pages::consent_submit),
        )
        .route("/consents/withdraw", post(pages::consent_withdraw))
        .route("/plans/new", get(plan::plan_form).post(plan::plan_submit))
        .route(
            "/opinions/new",
            get(opinion::opinion_form).post(opinion::opinion_submit),
        )
        .route(
            "/support-ends/new",
            get(support_end::support_end_form).post(support_end::support_end_submit),
        )
        .route(
            "/meetings/new",
            get(meeting::meeting_form).post(meeting::meeting_submit),
        )
        .route(
            "/extensions/new",
            get(extension::extension_form).post(extension::extension_submit),
        )
        .route(
            "/relocations/new",
            get(relocation::relocation_form).post(relocation::relocation_submit),
        )
        .route(
            "/assessments/new",
            get(assessment::assessment_form).post(assessment::assessment_submit),
        )
        .route("/ops", get(pages::ops))
        .route("/stats.csv", get(pages::stats_csv))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                views::page(
                    "ページが見つかりません",
                    None,
                    maud::html! { h1 { "ページが見つかりません" } p { a href="/cases" { "事例一覧へ戻る" } } },
                ),
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn_with_state(console.clone(), loopback_host))
        .with_state(console)
}

/// Without TLS the console serves loopback only, so a request must name a loopback host: a
/// web page whose own name was re-pointed at 127.0.0.1 (DNS rebinding) sends its own name in
/// `Host`, and is refused before it can read a page or try a login. (Under TLS the browser
/// checks the name against the certificate.)
async fn loopback_host(
    State(console): State<Shared>,
    req: axum::extract::Request,
    next: Next,
) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !console.secure && !tsunagi_control::loopback::is_loopback_host(host) {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "this console answers only to 127.0.0.1, [::1] or localhost\n",
        )
            .into_response();
    }
    next.run(req).await
}

/// Headers on every answer: no script at all, no framing, nothing cached, no referrer.
async fn security_headers(req: axum::extract::Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// What a handler that needs a logged-in member of staff gets, or the answer to send instead.
pub(crate) fn need(
    c: &Console,
    headers: &HeaderMap,
    role: Role,
) -> Result<(Session, Staff), Box<Response>> {
    let Some(s) = c.session(headers) else {
        return Err(Box::new(Redirect::to("/login").into_response()));
    };
    let Some(staff) = s.staff.clone() else {
        return Err(Box::new(Redirect::to("/login").into_response()));
    };
    if staff.role < role {
        return Err(Box::new(forbidden(&s, role)));
    }
    Ok((s, staff))
}

/// As [`need`], for a form post: the CSRF token in the form must be the session's.
pub(crate) fn need_post(
    c: &Console,
    headers: &HeaderMap,
    typed: &Typed,
    role: Role,
) -> Result<(Session, Staff), Box<Response>> {
    let Some(s) = c.session(headers) else {
        return Err(Box::new(csrf_refused(None)));
    };
    if !session::same_token(typed.get("csrf"), &s.csrf) {
        return Err(Box::new(csrf_refused(Some(&s))));
    }
    need(c, headers, role)
}

pub(crate) fn forbidden(s: &Session, role: Role) -> Response {
    (
        StatusCode::FORBIDDEN,
        views::page(
            "権限がありません",
            Some(s),
            maud::html! {
                h1 { "権限がありません" }
                p { "この操作には「" (role.label()) "」以上の権限が必要です。管理者に相談してください。" }
            },
        ),
    )
        .into_response()
}

fn csrf_refused(s: Option<&Session>) -> Response {
    tracing::warn!("console form refused: missing or wrong CSRF token");
    (
        StatusCode::FORBIDDEN,
        views::page(
            "送信を受け付けられません",
            s,
            maud::html! {
                h1 { "送信を受け付けられません" }
                p { "フォームの有効期限が切れたか、このコンソール以外から送信されました。ページを開き直してから、もう一度操作してください。" }
                p { a href="/login" { "ログイン画面へ" } }
            },
        ),
    )
        .into_response()
}

fn with_cookie(mut res: Response, token: &str, secure: bool) -> Response {
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(token, secure)) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

async fn login_page(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let s = match c.session(&headers) {
        Some(s) if s.staff.is_some() => return Redirect::to("/cases").into_response(),
        Some(s) => s,
        None => c.sessions.start(None, SystemTime::now()),
    };
    let res = pages::login(&s, None, "").into_response();
    with_cookie(res, &s.token, c.secure)
}

async fn login(State(c): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let typed = Typed::parse(&body);
    let Some(s) = c.session(&headers) else {
        return csrf_refused(None);
    };
    if !session::same_token(typed.get("csrf"), &s.csrf) {
        return csrf_refused(None);
    }
    let id = typed.get("id").to_owned();
    let password = typed
        .0
        .get("password")
        .and_then(|v| v.first())
        .cloned()
        .unwrap_or_default();
    // Hashing takes a while and an argon2 hash's memory: off the async workers, and a few at
    // a time (a login that waited LOGIN_WAIT for its turn is told to try again).
    let Ok(Ok(_turn)) = tokio::time::timeout(LOGIN_WAIT, c.logins.acquire()).await else {
        tracing::warn!("console login refused: too many logins being checked at once");
        let msg = "ログインが混み合っています。少し待ってから、もう一度ログインしてください。";
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, HeaderValue::from_static("5"))],
            pages::login(&s, Some(msg), &id),
        )
            .into_response();
    };
    let accounts = c.accounts.current();
    let result = {
        let (accounts, id) = (accounts.clone(), id.clone());
        tokio::task::spawn_blocking(move || accounts.login(&id, &password, Instant::now()))
            .await
            .unwrap_or(Err(LoginFailure::BadCredentials))
    };
    match result {
        Ok(account) => {
            // A new session (and CSRF token) on login: a token seen before it is worth nothing.
            c.sessions.end(&s.token);
            let staff = Staff {
                id: account.id.clone(),
                role: account.role,
                stamp: accounts.stamp_of(&account.id).unwrap_or_default(),
            };
            let new = c.sessions.start(Some(staff), SystemTime::now());
            tracing::info!(staff = %account.id, "console login");
            with_cookie(Redirect::to("/cases").into_response(), &new.token, c.secure)
        }
        Err(f) => {
            let msg = match f {
                LoginFailure::BadCredentials => "職員IDまたはパスワードが違います。",
                LoginFailure::Locked => "ログインの失敗が続いたため、このアカウントは一時的にロックされています。15分後にもう一度試すか、管理者に連絡してください。",
            };
            tracing::warn!("console login failed");
            (StatusCode::UNAUTHORIZED, pages::login(&s, Some(msg), &id)).into_response()
        }
    }
}

async fn logout(State(c): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let typed = Typed::parse(&body);
    let Some(s) = c.session(&headers) else {
        return Redirect::to("/login").into_response();
    };
    if !session::same_token(typed.get("csrf"), &s.csrf) {
        return csrf_refused(Some(&s));
    }
    c.sessions.end(&s.token);
    Redirect::to("/login").into_response()
}

/// A bound console, ready to serve.
pub struct Server {
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    addr: SocketAddr,
}

impl Server {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether it serves TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until the process ends.
    pub async fn run(self) -> Result<(), ConsoleError> {
        let addr = self.addr;
        let io = |source| ConsoleError::Io { addr, source };
        match self.tls {
            None => axum::serve(self.listener, self.router).await.map_err(io),
            Some(cfg) => {
                let l = tls::TlsListener::new(self.listener, cfg).map_err(io)?;
                axum::serve(l, self.router).await.map_err(io)
            }
        }
    }
}

/// Checks the options (TLS off loopback, the account file) and binds.
pub async fn bind(opts: Options) -> Result<Server, ConsoleError> {
    let tls = match &opts.tls {
        Some((cert, key)) => Some(tls::server_config(cert, key).map_err(ConsoleError::Tls)?),
        None if opts.listen.ip().is_loopback() => None,
        None => return Err(ConsoleError::NeedsTls(opts.listen)),
    };
    let accounts = AccountBook::load(&opts.users)?;
    if accounts.current().is_empty() {
        tracing::warn!(
            "the console has no accounts yet: add one with `tsunagi-adapter console user add`"
        );
    }
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|source| ConsoleError::Io {
            addr: opts.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ConsoleError::Io {
        addr: opts.listen,
        source,
    })?;
    let (sessions, drafts) = match &opts.data_dir {
        Some(dir) => {
            let store = Arc::new(store::ConsoleStore::open(dir)?);
            (
                Sessions::with_store(opts.idle, store.clone(), SystemTime::now(), &|id| {
                    accounts.current().stamp_of(id)
                }),
                store::Drafts::with_store(store),
            )
        }
        None => (Sessions::new(opts.idle), store::Drafts::in_memory()),
    };
    let console = Arc::new(Console {
        client: GatewayClient::new(opts.socket),
        accounts,
        sessions,
        logins: tokio::sync::Semaphore::new(MAX_LOGINS_AT_ONCE),
        secure: tls.is_some(),
        members: opts.members,
        org: OnceLock::new(),
        drafts,
    });
    Ok(Server {
        listener,
        tls,
        router: router(console),
        addr,
    })
}

/// The members of a directory as (org, name), for [`Options::members`].
pub fn members_of(directory: &tsunagi_protocol::directory::Directory) -> Vec<(OrgId, String)> {
    directory
        .members
        .iter()
        .map(|m| (m.org.clone(), m.name.clone()))
        .collect()
}

/// The gateway's own org and the members of its verified directory (org, name), asked over the
/// control socket (the `members` request).
pub async fn members_from_gateway(
    socket: &std::path::Path,
) -> Result<(OrgId, Vec<(OrgId, String)>), String> {
    let v = tsunagi_control::call(socket, &serde_json::json!({"op": "members"}))
        .await
        .map_err(|e| e.to_string())?;
    let own = v["org"]
        .as_str()
        .and_then(|o| o.parse().ok())
        .ok_or("the gateway did not name its org")?;
    let members = v["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| {
                    Some((
                        m["org"].as_str()?.parse().ok()?,
                        m["name"].as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok((own, members))
}
