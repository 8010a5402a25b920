//! Security headers on every response the portal's router gives (pages,
//! errors, redirects, assets, and the API and console it wraps): a
//! Content-Security-Policy that allows only the portal's own script and
//! style files (no inline code), no framing, no MIME sniffing, no
//! `Referer`. A response that sets its own (the console page's stricter
//! CSP) keeps it.

use axum::http::header::{
    CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;

/// The portal's policy: scripts, styles and fetches from its own origin
/// only, images also as `data:`, forms post only to it, no plugins, no
/// `<base>`, never framed.
pub const PORTAL_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

/// The headers every response carries (unless it set its own).
pub const SECURITY_HEADERS: [(HeaderName, &str); 4] = [
    (CONTENT_SECURITY_POLICY, PORTAL_CSP),
    (X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (X_FRAME_OPTIONS, "DENY"),
    (REFERRER_POLICY, "no-referrer"),
];

/// Adds the security headers a response does not set itself.
pub async fn add_security_headers(mut resp: Response) -> Response {
    let headers = resp.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    #[tokio::test]
    async fn adds_missing_headers_and_keeps_a_stricter_csp() {
        let plain = add_security_headers("hi".into_response()).await;
        for (name, value) in SECURITY_HEADERS {
            assert_eq!(plain.headers()[&name], value, "{name}");
        }
        assert!(PORTAL_CSP.contains("frame-ancestors 'none'"));
        assert!(!PORTAL_CSP.contains("unsafe-inline"));
        let own = ([(CONTENT_SECURITY_POLICY, "default-src 'none'")], "x").into_response();
        let own = add_security_headers(own).await;
        assert_eq!(own.headers()[CONTENT_SECURITY_POLICY], "default-src 'none'");
        assert_eq!(own.headers()[X_FRAME_OPTIONS], "DENY");
    }
}
