//! The operations HTTP listener: `GET /metrics`, `/healthz`, `/readyz` (plain text).

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::engine::Gateway;

/// How long one scrape may take (the listings are read from the store) before it answers 503.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn metrics(State(gw): State<Gateway>) -> Response {
    let render = tokio::task::spawn_blocking(move || super::metrics::render(&gw));
    match tokio::time::timeout(SCRAPE_TIMEOUT, render).await {
        Ok(Ok(Ok(body))) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)],
            body,
        )
            .into_response(),
        Ok(Ok(Err(e))) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot read the store: {e}\n"),
        ),
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        Err(_) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the store did not answer within {} s\n",
                SCRAPE_TIMEOUT.as_secs()
            ),
        ),
    }
}

async fn healthz(State(gw): State<Gateway>) -> Response {
    match gw.liveness().await {
        Ok(()) => text(StatusCode::OK, "ok\n".into()),
        Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy: {e}\n")),
    }
}

async fn readyz(State(gw): State<Gateway>) -> Response {
    let reasons = super::readiness(&gw);
    if reasons.is_empty() {
        text(
            StatusCode::OK,
            format!("ready: {} on {}\n", gw.org(), gw.local_addr()),
        )
    } else {
        let mut body = String::from("not ready:\n");
        for r in reasons {
            body.push_str("- ");
            body.push_str(&r);
            body.push('\n');
        }
        text(StatusCode::SERVICE_UNAVAILABLE, body)
    }
}

/// A request to a loopback listener must name a loopback host: a web page whose own name was
/// re-pointed at 127.0.0.1 (DNS rebinding) would otherwise read the counters, which name the
/// peers this gateway exchanges with. A listener the configuration opened off loopback answers
/// whatever name its scraper uses.
async fn loopback_host(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !tsunagi_control::loopback::is_loopback_host(host) {
        return text(
            StatusCode::MISDIRECTED_REQUEST,
            "this listener answers only to 127.0.0.1, [::1] or localhost\n".into(),
        );
    }
    next.run(req).await
}

/// Binds `addr` and serves the probes of `gw` until the process ends; returns the bound
/// address (port 0 picks one). The address is checked by the configuration (loopback unless
/// allowed, [`super::check_metrics_listen`]); on loopback, requests must name a loopback host.
pub async fn serve(gw: Gateway, addr: SocketAddr) -> Result<SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("metrics_listen: cannot listen on {addr}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("metrics_listen: {addr}: {e}"))?;
    let mut app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(gw);
    if bound.ip().is_loopback() {
        app = app.layer(axum::middleware::from_fn(loopback_host));
    }
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("the metrics listener stopped: {e}");
        }
    });
    Ok(bound)
}
