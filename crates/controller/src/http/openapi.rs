//! `GET /v1/openapi.json`: the OpenAPI description of the whole API.

use axum::Json;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

/// The OpenAPI document, assembled from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(title = "Nubis API", description = "Rent virtual machines: users, images, flavors, servers."),
    paths(
        super::users::register, super::users::login, super::users::logout, super::users::me,
        super::users::registration,
        super::flavors::list, super::flavors::create,
        super::images::create, super::images::list, super::images::show, super::images::upload,
        super::images::delete,
        super::servers::create, super::servers::list, super::servers::show, super::servers::start,
        super::servers::stop, super::servers::reboot, super::servers::eject, super::servers::delete, super::servers::console_log,
        super::console::create, super::console::websocket,
        super::hosts::list, super::hosts::show, super::hosts::disable, super::hosts::enable,
        super::hosts::drain,
        super::server_groups::create, super::server_groups::list, super::server_groups::show,
        super::server_groups::delete,
        super::networks::create, super::networks::list, super::networks::show, super::networks::delete,
        super::keypairs::create, super::keypairs::list, super::keypairs::show, super::keypairs::delete,
        super::floating_ips::create_pool, super::floating_ips::list_pools, super::floating_ips::allocate,
        super::floating_ips::list, super::floating_ips::show, super::floating_ips::update,
        super::floating_ips::release,
        super::security_groups::create, super::security_groups::list, super::security_groups::show,
        super::security_groups::delete, super::security_groups::add_rule, super::security_groups::delete_rule,
        super::quotas::show, super::quotas::update,
        super::server_terms::update, super::server_terms::renew_lease, super::server_terms::server_usage,
        super::server_terms::project_usage, super::server_terms::server_events,
        super::server_terms::project_events,
        super::usage_records::list,
        super::audit::list,
        super::moves::migrate, super::moves::live_migrate, super::moves::list,
        super::moves::evacuate,
    ),
    modifiers(&BearerAuth, &CommonErrors)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Documents the errors every operation of a kind can answer, which come
/// from the shared extractors (http/extract.rs) rather than the handler:
/// 401 from `Caller`/`AgentCaller`, 400/413/415/422 from `ApiJson`, 404 from
/// `ApiPath` (an unparsable id). Handlers' own annotations keep theirs.
struct CommonErrors;

/// (status, when) of the extractors' errors.
const AUTH_ERRORS: [(&str, &str); 1] = [(
    "401",
    "`unauthorized`: the bearer (or agent) token is missing, malformed or unknown",
)];
const JSON_BODY_ERRORS: [(&str, &str); 4] = [
    (
        "400",
        "`invalid_request`: malformed JSON, or the request names something that does not exist",
    ),
    ("413", "`payload_too_large`: the body is too large"),
    (
        "415",
        "`unsupported_media_type`: the body is not `application/json`",
    ),
    (
        "422",
        "`invalid_request`: the body does not match its schema (the message names the field)",
    ),
];
const PATH_ERRORS: [(&str, &str); 1] =
    [("404", "`not_found`: no such object (or not the caller's)")];
const QUERY_ERRORS: [(&str, &str); 1] =
    [("400", "`invalid_request`: a query parameter is malformed")];

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let agent_route = path.starts_with("/v1/agent/");
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                let authenticated =
                    agent_route || op.security.as_ref().is_some_and(|s| !s.is_empty());
                if authenticated {
                    add_errors(op, &AUTH_ERRORS);
                }
                let json_body = op.request_body.as_ref().is_some_and(|b| match b {
                    utoipa::openapi::RefOr::T(b) => b.content.contains_key("application/json"),
                    utoipa::openapi::RefOr::Ref(_) => false,
                });
                if json_body {
                    add_errors(op, &JSON_BODY_ERRORS);
                }
                if path.contains('{') {
                    add_errors(op, &PATH_ERRORS);
                }
                let has_query = op.parameters.iter().flatten().any(|p| {
                    matches!(p, utoipa::openapi::RefOr::T(p)
                        if p.parameter_in == utoipa::openapi::path::ParameterIn::Query)
                });
                if has_query {
                    add_errors(op, &QUERY_ERRORS);
                }
            }
        }
    }
}

/// Adds each (status, description) with an `ErrorBody` unless documented.
fn add_errors(op: &mut Operation, errors: &[(&str, &str)]) {
    for (status, description) in errors {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| {
                ResponseBuilder::new()
                    .description(*description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build()
                    .into()
            });
    }
}

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
