//! Identity v3 reads of the directory: projects and users, as Keystone
//! shows them. Nubis users are the users and their projects the projects,
//! all in the `default` domain. Admins see everyone; a member sees itself
//! and its project (another's answers 404, as on `/v1`): its lists hold
//! only those (Keystone's default policy would answer 403, which breaks
//! `openstack project show NAME` for members). Nothing here changes
//! anything (creating users and projects is 501).

use super::auth::OsCaller;
use super::catalog::{catalog, public_base};
use super::errors::IdentityError;
use super::token_body::DOMAIN_ID;
use crate::http::error::ApiError;
use crate::http::extract::Caller;
use crate::http::AppState;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use nubis_api::users::User;
use nubis_api::ProjectId;
use serde::Deserialize;
use serde_json::{json, Value};

type IdentityResult<T> = Result<T, IdentityError>;

/// `?name=` and `?domain_id=` filters of the lists.
#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    domain_id: Option<String>,
}

impl ListQuery {
    fn keeps(&self, name: &str) -> bool {
        self.name.as_deref().is_none_or(|n| n == name)
            && self.domain_id.as_deref().is_none_or(|d| d == DOMAIN_ID)
    }
}

fn project_body(base: &str, id: ProjectId, name: &str) -> Value {
    json!({
        "id": id.to_string(),
        "name": name,
        "domain_id": DOMAIN_ID,
        "parent_id": DOMAIN_ID,
        "description": "",
        "enabled": true,
        "is_domain": false,
        "tags": [],
        "options": {},
        "links": {"self": format!("{base}/identity/v3/projects/{id}")},
    })
}

fn user_body(base: &str, user: &User) -> Value {
    json!({
        "id": user.id.to_string(),
        "name": user.name,
        "domain_id": DOMAIN_ID,
        "enabled": true,
        "password_expires_at": null,
        "options": {},
        "links": {"self": format!("{base}/identity/v3/users/{}", user.id)},
    })
}

fn collection(base: &str, path: &str, key: &str, items: Vec<Value>) -> Json<Value> {
    Json(json!({
        key: items,
        "links": {"self": format!("{base}/identity/v3/{path}"), "previous": null, "next": null},
    }))
}

/// Keystone's 404: "Could not find project: NAME."
fn could_not_find(what: &str, raw: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "not_found",
        format!("Could not find {what}: {raw}."),
    )
}

/// The user `raw` names if the caller may see it: itself, or anyone for admins.
async fn visible_user(state: &AppState, caller: &Caller, raw: &str) -> IdentityResult<User> {
    let not_found = || IdentityError(could_not_find("user", raw));
    let id: nubis_api::UserId = raw.parse().map_err(|_| not_found())?;
    if id == caller.user.id {
        return Ok(caller.user.clone());
    }
    if !caller.user.admin {
        return Err(not_found());
    }
    match state.store.user(id).await {
        Ok(u) => Ok(u),
        Err(crate::store::StoreError::NotFound) => Err(not_found()),
        Err(e) => Err(e.into()),
    }
}

/// `GET /v3/auth/projects`: the projects the token may be scoped to.
pub async fn auth_projects(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    headers: HeaderMap,
) -> IdentityResult<Json<Value>> {
    let base = public_base(&state, &headers);
    let project = caller.user.project;
    let name = state.store.project_name(project).await?;
    Ok(collection(
        &base,
        "auth/projects",
        "projects",
        vec![project_body(&base, project, &name)],
    ))
}

/// `GET /v3/auth/catalog`: the token's catalog.
pub async fn auth_catalog(
    State(state): State<AppState>,
    _caller: OsCaller,
    headers: HeaderMap,
) -> Json<Value> {
    let base = public_base(&state, &headers);
    Json(json!({
        "catalog": catalog(&base),
        "links": {"self": format!("{base}/identity/v3/auth/catalog"), "previous": null, "next": null},
    }))
}

/// `GET /v3/projects` (admins).
pub async fn list_projects(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> IdentityResult<Json<Value>> {
    let base = public_base(&state, &headers);
    let projects = if caller.user.admin {
        state.store.list_projects().await?
    } else {
        let own = caller.user.project;
        vec![(own, state.store.project_name(own).await?)]
    };
    let items = projects
        .into_iter()
        .filter(|(_, name)| q.keeps(name))
        .map(|(id, name)| project_body(&base, id, &name))
        .collect();
    Ok(collection(&base, "projects", "projects", items))
}

/// `GET /v3/projects/{id}`: one's own, or any for admins.
pub async fn show_project(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> IdentityResult<Json<Value>> {
    let project = caller.project_in_path(&state, &raw).await.map_err(|_| {
        IdentityError(ApiError::not_found(&format!(
            "Could not find project: {raw}"
        )))
    })?;
    let name = state.store.project_name(project).await?;
    let base = public_base(&state, &headers);
    Ok(Json(
        json!({"project": project_body(&base, project, &name)}),
    ))
}

/// `GET /v3/users` (admins).
pub async fn list_users(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> IdentityResult<Json<Value>> {
    let base = public_base(&state, &headers);
    let users = if caller.user.admin {
        state.store.list_users().await?
    } else {
        vec![caller.user.clone()]
    };
    let items = users
        .iter()
        .filter(|u| q.keeps(&u.name))
        .map(|u| user_body(&base, u))
        .collect();
    Ok(collection(&base, "users", "users", items))
}

/// `GET /v3/users/{id}`: oneself, or anyone for admins.
pub async fn show_user(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> IdentityResult<Json<Value>> {
    let user = visible_user(&state, &caller, &raw).await?;
    let base = public_base(&state, &headers);
    Ok(Json(json!({"user": user_body(&base, &user)})))
}

/// `GET /v3/users/{id}/projects`: that user's one project.
pub async fn user_projects(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> IdentityResult<Json<Value>> {
    let user = visible_user(&state, &caller, &raw).await?;
    let name = state.store.project_name(user.project).await?;
    let base = public_base(&state, &headers);
    let path = format!("users/{}/projects", user.id);
    Ok(collection(
        &base,
        &path,
        "projects",
        vec![project_body(&base, user.project, &name)],
    ))
}
