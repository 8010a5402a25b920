//! Register, log in, log out.

use crate::layout::{alert, csrf_field, notice, page};
use crate::{cookie, random_hex, same, Fields, Portal, CSRF_COOKIE, CSRF_FIELD, SESSION_COOKIE};
use axum::extract::{Form, Query, State};
use axum::http::header::{RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde_json::json;
use std::collections::HashMap;

/// The pre-login CSRF token: the cookie's, or a new one to set.
fn anon_csrf(headers: &HeaderMap) -> (String, Option<String>) {
    match cookie(headers, CSRF_COOKIE) {
        Some(t) if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) => (t, None),
        _ => {
            let t = random_hex();
            let set = format!("{CSRF_COOKIE}={t}; Path=/; HttpOnly; SameSite=Strict");
            (t, Some(set))
        }
    }
}

fn anon_ok(headers: &HeaderMap, fields: &Fields) -> bool {
    cookie(headers, CSRF_COOKIE).is_some_and(|c| same(&c, fields.get(CSRF_FIELD)))
}

/// Which form: the login or the registration.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Login,
    Register,
}

/// Whether the API takes registrations (`GET /v1/registration`); when it
/// cannot say, the form is shown and the API decides.
async fn registration_open(portal: &Portal) -> bool {
    let r = portal
        .call(None, Method::GET, "/v1/registration", None)
        .await;
    r.body["registration"].as_str() != Some("closed")
}

/// What the login or registration page shows around its form.
struct FormPage<'a> {
    status: StatusCode,
    name: &'a str,
    error: Option<&'a str>,
    info: Option<&'a str>,
    /// Registration is closed: no form to register, no link to it.
    closed: bool,
}

const CLOSED: &str = "Registration is closed on this cloud: its operator creates the accounts. \
                      Ask them for one.";

fn form(headers: &HeaderMap, kind: Kind, p: FormPage) -> Response {
    let FormPage {
        status,
        name,
        error,
        info,
        closed,
    } = p;
    if kind == Kind::Register && closed {
        let body = html! {
            div.narrow {
                (alert(error))
                div.alert.error role="alert" { (CLOSED) }
                p.muted { "Already have an account? " a href="/login" { "Log in" } }
            }
        };
        return (status, page("Create an account", None, "", body)).into_response();
    }
    let (token, set) = anon_csrf(headers);
    let (title, action, button) = match kind {
        Kind::Login => ("Log in", "/login", "Log in"),
        Kind::Register => ("Create an account", "/register", "Create account"),
    };
    let body = html! {
        div.narrow {
            (notice(info))
            (alert(error))
            form.card method="post" action=(action) {
                (csrf_field(&token))
                div.field {
                    label for="name" { "User name" }
                    input #name type="text" name="name" value=(name) required
                        autocomplete="username" autofocus maxlength="63";
                }
                div.field {
                    label for="password" { "Password" }
                    input #password type="password" name="password" required
                        minlength=[(kind == Kind::Register).then_some(8)]
                        autocomplete=(if kind == Kind::Login { "current-password" } else { "new-password" });
                }
                button.primary type="submit" { (button) }
            }
            p.muted {
                @if kind == Kind::Login && closed {
                    "No account? Ask this cloud's operator for one."
                } @else if kind == Kind::Login {
                    "New here? " a href="/register" { "Create an account" }
                } @else {
                    "Already have an account? " a href="/login" { "Log in" }
                }
            }
        }
    };
    let mut resp = (status, page(title, None, "", body)).into_response();
    if let Some(set) = set {
        resp.headers_mut()
            .insert(SET_COOKIE, set.parse().expect("cookie header"));
    }
    resp
}

pub async fn login_page(
    State(portal): State<Portal>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let info = q
        .contains_key("registered")
        .then_some("Your account is ready. Log in to continue.");
    let out = q.contains_key("out").then_some("You have logged out.");
    let page = FormPage {
        status: StatusCode::OK,
        name: q.get("name").map(String::as_str).unwrap_or(""),
        error: None,
        info: info.or(out),
        closed: !registration_open(&portal).await,
    };
    form(&headers, Kind::Login, page)
}

pub async fn register_page(State(portal): State<Portal>, headers: HeaderMap) -> Response {
    let page = FormPage {
        status: StatusCode::OK,
        name: "",
        error: None,
        info: None,
        closed: !registration_open(&portal).await,
    };
    form(&headers, Kind::Register, page)
}

fn refused(headers: &HeaderMap, kind: Kind, name: &str) -> Response {
    let page = FormPage {
        status: StatusCode::FORBIDDEN,
        name,
        error: Some("This form was not sent from a current portal page. Please try again."),
        info: None,
        closed: false,
    };
    form(headers, kind, page)
}

pub async fn login(
    State(portal): State<Portal>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let fields = Fields(fields);
    let name = fields.get("name");
    if !anon_ok(&headers, &fields) {
        return refused(&headers, Kind::Login, name);
    }
    let creds = json!({"name": name, "password": fields.raw("password")});
    let r = portal
        .call(None, Method::POST, "/v1/tokens", Some(creds))
        .await;
    let Some(token) = r.body["token"].as_str().filter(|_| r.ok()) else {
        let page = FormPage {
            status: r.status,
            name,
            error: Some(&r.message()),
            info: None,
            closed: false,
        };
        let mut resp = form(&headers, Kind::Login, page);
        // Throttled (429) or busy (503): say when to try again.
        if let Some(after) = r.retry_after {
            resp.headers_mut().insert(RETRY_AFTER, after);
        }
        return resp;
    };
    let set = format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
    ([(SET_COOKIE, set)], Redirect::to("/servers")).into_response()
}

pub async fn register(
    State(portal): State<Portal>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let fields = Fields(fields);
    let name = fields.get("name");
    if !anon_ok(&headers, &fields) {
        return refused(&headers, Kind::Register, name);
    }
    let creds = json!({"name": name, "password": fields.raw("password")});
    let r = portal
        .call(None, Method::POST, "/v1/users", Some(creds))
        .await;
    if !r.ok() {
        let closed = r.body["error"]["code"].as_str() == Some("registration_closed");
        let message = (!closed).then(|| r.message());
        let page = FormPage {
            status: r.status,
            name,
            // The closed page says it all.
            error: message.as_deref(),
            info: None,
            closed,
        };
        return form(&headers, Kind::Register, page);
    }
    let to = format!(
        "/login?registered=1&name={}",
        r.body["name"].as_str().unwrap_or("")
    );
    Redirect::to(&to).into_response()
}

pub async fn logout(
    State(portal): State<Portal>,
    session: crate::Session,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = session.check(&Fields(fields)) {
        return r;
    }
    session
        .call(&portal, Method::DELETE, "/v1/tokens/current", None)
        .await;
    let clear = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(SET_COOKIE, clear)], Redirect::to("/login?out=1")).into_response()
}
