//! The page frame, shared bits of markup, and the static assets.

use crate::{Session, CSRF_FIELD};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

const CSS: &str = include_str!("../assets/portal.css");
const JS: &str = include_str!("../assets/portal.js");

pub async fn css() -> Response {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "no-cache"),
        ],
        CSS,
    )
        .into_response()
}

pub async fn js() -> Response {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, "no-cache"),
        ],
        JS,
    )
        .into_response()
}

/// The main sections, for the navigation bar: (path, label).
const NAV: [(&str, &str); 5] = [
    ("/servers", "Instances"),
    ("/servers/new", "Launch"),
    ("/images", "Images"),
    ("/keypairs", "Key pairs"),
    ("/networks", "Networks"),
];

/// A whole page: header with navigation (when signed in), then `body`.
pub fn page(title: &str, session: Option<&Session>, active: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(s) = session {
                    meta name="csrf-token" content=(s.csrf);
                }
                title { (title) " · Nubis" }
                link rel="stylesheet" href="/assets/portal.css";
                script src="/assets/portal.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" aria-label="Nubis home" { span.logo aria-hidden="true" { "◗" } "Nubis" }
                    @if let Some(s) = session {
                        nav aria-label="Main" {
                            ul {
                                @for (path, label) in NAV {
                                    li { a href=(path) aria-current=[(active == path).then_some("page")] { (label) } }
                                }
                                @if s.admin() {
                                    li { a href="/admin/hosts" aria-current=[active.starts_with("/admin").then_some("page")] { "Admin" } }
                                }
                            }
                        }
                        form.logout method="post" action="/logout" {
                            (csrf_field(&s.csrf))
                            span.who { (s.name()) }
                            button.link type="submit" { "Log out" }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
                footer.bottom { "Nubis cloud · " a href="/v1/openapi.json" { "API" } }
            }
        }
    }
}

/// The hidden CSRF field of a form.
pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(token); }
}

/// An error notice (role=alert, so screen readers announce it).
pub fn alert(message: Option<&str>) -> Markup {
    html! {
        @if let Some(m) = message {
            div.alert.error role="alert" { (m) }
        }
    }
}

/// A success notice.
pub fn notice(message: Option<&str>) -> Markup {
    html! {
        @if let Some(m) = message {
            div.alert.ok role="status" { (m) }
        }
    }
}

/// A page that only says what went wrong.
pub fn error_page(
    status: StatusCode,
    session: Option<&Session>,
    title: &str,
    message: &str,
) -> Response {
    let body = html! {
        div.alert.error role="alert" { (message) }
        p { a href="/" { "Back to the portal" } }
    };
    (status, page(title, session, "", body)).into_response()
}

/// A status badge.
pub fn status(s: &str) -> Markup {
    html! { span class={ "badge s-" (s) } { (s) } }
}

/// Bytes for people: 1.5 GiB.
pub fn bytes(n: u64) -> String {
    nubis_api::traffic::format_bytes(n, 1)
}

/// An RFC 3339 time as "2026-11-02 14:03 UTC".
pub fn time(v: &serde_json::Value) -> String {
    v.as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M UTC")
                .to_string()
        })
        .unwrap_or_else(|| "—".into())
}

/// A JSON string field, or "—".
pub fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) if !s.is_empty() => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        _ => "—".into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_for_people() {
        assert_eq!(super::bytes(12), "12 B");
        assert_eq!(super::bytes(1536), "1.5 KiB");
        assert_eq!(super::bytes(3 << 30), "3.0 GiB");
    }
}
