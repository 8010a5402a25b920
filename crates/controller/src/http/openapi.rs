//! `GET /v1/openapi.json`: the OpenAPI description of the whole API.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The OpenAPI document, assembled from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(title = "Nubis API", description = "Rent virtual machines: users, images, flavors, servers."),
    paths(
        super::users::register, super::users::login, super::users::logout, super::users::me,
        super::flavors::list, super::flavors::create,
        super::images::create, super::images::list, super::images::show, super::images::upload,
        super::servers::create, super::servers::list, super::servers::show, super::servers::start,
        super::servers::stop, super::servers::reboot, super::servers::eject, super::servers::delete, super::servers::console_log,
        super::console::create, super::console::websocket,
        super::agents::register, super::agents::desired, super::agents::report, super::agents::image_file,
        super::agents::list_hosts,
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
    ),
    modifiers(&BearerAuth)
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

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
