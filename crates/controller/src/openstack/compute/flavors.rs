//! Flavors: `GET /flavors`, `/flavors/detail`, `/flavors/{id}` and, for
//! admins, `POST /flavors`. Nubis flavors are all public, have no swap or
//! ephemeral disk and an RX/TX factor of 1; a create asking otherwise is
//! refused rather than half done.

use super::{links, parse_body, ComputeResult};
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::openstack::auth::OsCaller;
use crate::openstack::catalog::public_base;
use crate::openstack::errors::ComputeError;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use nubis_api::flavors::{CreateFlavor, Flavor};
use serde::Deserialize;
use serde_json::{json, Value};

/// Query parameters of the flavor lists.
#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default, rename = "minRam")]
    min_ram: Option<String>,
    #[serde(default, rename = "minDisk")]
    min_disk: Option<String>,
    #[serde(default)]
    is_public: Option<String>,
    #[serde(default)]
    limit: Option<String>,
    #[serde(default)]
    marker: Option<String>,
}

fn number(name: &str, raw: &Option<String>) -> ComputeResult<Option<u64>> {
    raw.as_deref()
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                ComputeError(ApiError::bad_request(format!(
                    "Invalid {name} value: {v}; it must be a non-negative integer"
                )))
            })
        })
        .transpose()
}

/// The flavors a list query selects, in the store's order, one page of them.
async fn select(state: &AppState, q: &ListQuery) -> ComputeResult<Vec<Flavor>> {
    let min_ram = number("minRam", &q.min_ram)?.unwrap_or(0);
    let min_disk = number("minDisk", &q.min_disk)?.unwrap_or(0);
    let limit = number("limit", &q.limit)?;
    // Every Nubis flavor is public: asking for private ones finds none.
    let public_wanted = match q
        .is_public
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("none") | Some("true") | Some("1") | Some("yes") => true,
        Some("false") | Some("0") | Some("no") => false,
        Some(other) => {
            return Err(ComputeError(ApiError::bad_request(format!(
                "Invalid is_public filter [{other}]"
            ))))
        }
    };
    let mut flavors: Vec<Flavor> = state
        .store
        .list_flavors()
        .await?
        .into_iter()
        .filter(|f| public_wanted && f.memory_mib >= min_ram && f.disk_gib >= min_disk)
        .collect();
    if let Some(marker) = &q.marker {
        let at = flavors
            .iter()
            .position(|f| f.id.to_string() == *marker)
            .ok_or_else(|| {
                ComputeError(ApiError::bad_request(format!(
                    "marker [{marker}] not found"
                )))
            })?;
        flavors.drain(..=at);
    }
    if let Some(limit) = limit {
        flavors.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    Ok(flavors)
}

/// A flavor as Nova shows it in detail (microversion 2.1).
pub fn detail(base: &str, f: &Flavor) -> Value {
    let id = f.id.to_string();
    json!({
        "id": id,
        "name": f.name,
        "ram": f.memory_mib,
        "vcpus": f.vcpus,
        "disk": f.disk_gib,
        "swap": "",
        "OS-FLV-EXT-DATA:ephemeral": 0,
        "OS-FLV-DISABLED:disabled": false,
        "os-flavor-access:is_public": true,
        "rxtx_factor": 1.0,
        "links": links(base, "flavors", &id),
    })
}

/// `GET /flavors`: ids, names and links.
pub async fn list(
    State(state): State<AppState>,
    _caller: OsCaller,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> ComputeResult<Json<Value>> {
    let base = public_base(&state, &headers);
    let flavors: Vec<Value> = select(&state, &q)
        .await?
        .iter()
        .map(|f| {
            let id = f.id.to_string();
            json!({"id": id, "name": f.name, "links": links(&base, "flavors", &id)})
        })
        .collect();
    Ok(Json(json!({ "flavors": flavors })))
}

/// `GET /flavors/detail`.
pub async fn list_detail(
    State(state): State<AppState>,
    _caller: OsCaller,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> ComputeResult<Json<Value>> {
    let base = public_base(&state, &headers);
    let flavors: Vec<Value> = select(&state, &q)
        .await?
        .iter()
        .map(|f| detail(&base, f))
        .collect();
    Ok(Json(json!({ "flavors": flavors })))
}

/// `GET /flavors/{id}`: by id only, as Nova (clients look names up in the list).
pub async fn show(
    State(state): State<AppState>,
    _caller: OsCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ComputeResult<Json<Value>> {
    let flavor = by_id(&state, &id).await?;
    let base = public_base(&state, &headers);
    Ok(Json(json!({ "flavor": detail(&base, &flavor) })))
}

/// A flavor by id only (the store also matches names).
async fn by_id(state: &AppState, id: &str) -> ComputeResult<Flavor> {
    match state.store.flavor(id).await {
        Ok(f) if f.id.to_string() == id => Ok(f),
        Ok(_) | Err(crate::store::StoreError::NotFound) => {
            Err(ComputeError(ApiError::not_found(&format!("Flavor {id}"))))
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /flavors/{id}/os-extra_specs`: Nubis flavors have none (clients
/// read them for every flavor they list).
pub async fn extra_specs(
    State(state): State<AppState>,
    _caller: OsCaller,
    Path(id): Path<String>,
) -> ComputeResult<Json<Value>> {
    by_id(&state, &id).await?;
    Ok(Json(json!({"extra_specs": {}})))
}

#[derive(Deserialize)]
struct CreateRequest {
    flavor: NovaFlavor,
}

/// Nova's flavor create body; what Nubis cannot honour is refused.
#[derive(Deserialize)]
struct NovaFlavor {
    name: String,
    ram: Value,
    vcpus: Value,
    disk: Value,
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    swap: Option<Value>,
    #[serde(default, rename = "OS-FLV-EXT-DATA:ephemeral")]
    ephemeral: Option<Value>,
    #[serde(default)]
    rxtx_factor: Option<Value>,
    #[serde(default, rename = "os-flavor-access:is_public")]
    is_public: Option<Value>,
    #[serde(default)]
    description: Option<Value>,
}

/// A number Nova accepts: an integer, or a string of one.
fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn is_zero_or_absent(v: &Option<Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) if s.is_empty() => true,
        Some(v) => integer(v) == Some(0),
    }
}

/// Turns Nova's create body into Nubis's, or says what Nubis cannot do.
fn to_create(f: NovaFlavor) -> Result<CreateFlavor, String> {
    match &f.id {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "auto" => {}
        Some(_) => return Err("Nubis chooses flavor ids; leave 'id' out (or 'auto')".into()),
    }
    if !is_zero_or_absent(&f.swap) {
        return Err("Nubis flavors have no swap disk; swap must be 0".into());
    }
    if !is_zero_or_absent(&f.ephemeral) {
        return Err(
            "Nubis flavors have no ephemeral disk; OS-FLV-EXT-DATA:ephemeral must be 0".into(),
        );
    }
    match &f.rxtx_factor {
        None | Some(Value::Null) => {}
        Some(v) if v.as_f64() == Some(1.0) => {}
        Some(_) => {
            return Err("rxtx_factor must be 1.0 (bandwidth is set with /v1 flavors)".into())
        }
    }
    match &f.is_public {
        None | Some(Value::Null) | Some(Value::Bool(true)) => {}
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => {}
        Some(_) => return Err("Nubis flavors are all public".into()),
    }
    if f.description.as_ref().is_some_and(|d| !d.is_null()) {
        return Err("flavor descriptions need microversion 2.55; Nubis serves 2.1".into());
    }
    let field = |name: &str, v: &Value| {
        integer(v).ok_or_else(|| format!("{name} must be an integer, got {v}"))
    };
    // Nubis's own validation (names, ranges) gives the message.
    let body = json!({
        "name": f.name,
        "vcpus": field("vcpus", &f.vcpus)?,
        "memory_mib": field("ram", &f.ram)?,
        "disk_gib": field("disk", &f.disk)?,
    });
    serde_json::from_value(body).map_err(|e| e.to_string())
}

/// `POST /flavors` (admins only).
pub async fn create(
    State(state): State<AppState>,
    OsCaller(caller): OsCaller,
    headers: HeaderMap,
    body: Bytes,
) -> ComputeResult<Json<Value>> {
    if !caller.user.admin {
        return Err(ComputeError(ApiError::forbidden(
            "Policy doesn't allow os_compute_api:os-flavor-manage:create to be performed.",
        )));
    }
    let req: CreateRequest = parse_body(&body)?;
    let create = to_create(req.flavor).map_err(|m| ComputeError(ApiError::bad_request(m)))?;
    let flavor = state.store.create_flavor(&create).await?;
    let base = public_base(&state, &headers);
    Ok(Json(json!({ "flavor": detail(&base, &flavor) })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nova(body: Value) -> Result<CreateFlavor, String> {
        to_create(serde_json::from_value(body).unwrap())
    }

    #[test]
    fn a_plain_flavor_is_taken_and_what_nubis_lacks_is_refused() {
        let ok = nova(json!({"name": "m1", "ram": 512, "vcpus": "2", "disk": 1,
            "id": null, "swap": 0, "OS-FLV-EXT-DATA:ephemeral": 0, "rxtx_factor": 1.0,
            "os-flavor-access:is_public": true}))
        .unwrap();
        assert_eq!(ok.memory_mib.get(), 512);
        assert_eq!(ok.vcpus.get(), 2);
        for bad in [
            json!({"name": "m1", "ram": 512, "vcpus": 1, "disk": 1, "swap": 512}),
            json!({"name": "m1", "ram": 512, "vcpus": 1, "disk": 1, "id": "42"}),
            json!({"name": "m1", "ram": 512, "vcpus": 1, "disk": 1, "os-flavor-access:is_public": false}),
            json!({"name": "m1", "ram": "lots", "vcpus": 1, "disk": 1}),
            json!({"name": "m1", "ram": 0, "vcpus": 1, "disk": 1}),
        ] {
            assert!(nova(bad.clone()).is_err(), "{bad}");
        }
    }
}
