//! The launch form and the create request it makes.

use crate::layout::{alert, csrf_field, page, text};
use crate::{Fields, Portal, Session};
use axum::extract::{Form, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use maud::{html, Markup};
use serde_json::{json, Map, Value};

/// What the launch form needs from the API.
struct Choices {
    images: Vec<Value>,
    flavors: Vec<Value>,
    keypairs: Vec<Value>,
    networks: Vec<Value>,
    quotas: Value,
}

async fn choices(portal: &Portal, session: &Session) -> Choices {
    let quotas_path = format!("/v1/projects/{}/quotas", session.project());
    let (images, flavors, keypairs, networks, quotas) = tokio_join(
        session.get(portal, "/v1/images"),
        session.get(portal, "/v1/flavors"),
        session.get(portal, "/v1/keypairs"),
        session.get(portal, "/v1/networks"),
        session.get(portal, &quotas_path),
    )
    .await;
    let bootable = |i: &&Value| {
        matches!(i["format"].as_str(), Some("qcow2" | "raw" | "iso"))
            && i["status"].as_str() == Some("active")
    };
    Choices {
        images: images.list().iter().filter(bootable).cloned().collect(),
        flavors: flavors.list(),
        keypairs: keypairs.list(),
        networks: networks.list(),
        quotas: if quotas.ok() {
            quotas.body
        } else {
            Value::Null
        },
    }
}

/// Five API calls at once (they are in process; this only overlaps waits).
async fn tokio_join<A, B, C, D, E>(
    a: impl std::future::Future<Output = A>,
    b: impl std::future::Future<Output = B>,
    c: impl std::future::Future<Output = C>,
    d: impl std::future::Future<Output = D>,
    e: impl std::future::Future<Output = E>,
) -> (A, B, C, D, E) {
    (a.await, b.await, c.await, d.await, e.await)
}

fn launch_form(session: &Session, c: &Choices, f: &Fields, error: Option<&str>) -> Markup {
    let v = |k: &str| f.get(k).to_owned();
    let flavor = if f.0.is_empty() {
        c.flavors
            .first()
            .and_then(|x| x["name"].as_str())
            .unwrap_or("custom")
            .to_owned()
    } else {
        v("flavor")
    };
    let limits = &c.quotas["limits"];
    let used = &c.quotas["in_use"];
    let room = |k: &str| {
        let l = limits[k].as_u64()?;
        let u = used[k].as_u64().unwrap_or(0);
        Some(l.saturating_sub(u))
    };
    let max_vcpus = room("vcpus").map(|r| r.clamp(1, 64));
    let max_mem = room("memory_mib").map(|r| r.max(64));
    let max_disk = room("disk_gib").map(|r| r.max(1));
    html! {
        @if c.quotas.is_object() {
            section.card.quota aria-labelledby="quota-h" {
                h2 #quota-h { "Your project's limits" }
                dl.quota-grid {
                    @for (k, label) in [("servers", "Instances"), ("vcpus", "vCPUs"), ("memory_mib", "Memory (MiB)"), ("disk_gib", "Disk (GiB)"), ("networks", "Networks"), ("floating_ips", "Floating IPs")] {
                        div {
                            dt { (label) }
                            dd { (text(&used[k])) " of " (text(&limits[k])) " used" }
                        }
                    }
                }
            }
        }
        (alert(error))
        form.card #launch method="post" action="/servers" {
            (csrf_field(&session.csrf))
            fieldset {
                legend { "Instance" }
                div.field {
                    label for="name" { "Name" }
                    input #name type="text" name="name" value=(v("name")) required maxlength="63"
                        placeholder="web-1" autocomplete="off";
                }
                div.field {
                    label for="image" { "Image (OS and version)" }
                    select #image name="image" required {
                        @if c.images.is_empty() { option value="" { "No images yet — upload one first" } }
                        @for i in &c.images {
                            @let id = i["id"].as_str().unwrap_or("");
                            option value=(id) selected[f.get("image") == id] {
                                (text(&i["os"])) " " (text(&i["version"])) " — " (text(&i["name"])) " (" (text(&i["format"])) ")"
                            }
                        }
                    }
                }
            }
            fieldset {
                legend { "Size" }
                div.field {
                    label for="flavor" { "Flavor" }
                    select #flavor name="flavor" {
                        @for fl in &c.flavors {
                            @let n = fl["name"].as_str().unwrap_or("");
                            option value=(n) selected[flavor == n] {
                                (n) " — " (fl["vcpus"]) " vCPU, " (fl["memory_mib"]) " MiB, " (fl["disk_gib"]) " GiB"
                            }
                        }
                        option value="custom" selected[flavor == "custom"] { "Custom size…" }
                    }
                }
                div.row #custom-size {
                    div.field {
                        label for="vcpus" { "vCPUs" }
                        input #vcpus type="number" name="vcpus" value=(v("vcpus")) min="1" max=[max_vcpus] step="1" inputmode="numeric";
                    }
                    div.field {
                        label for="memory_mib" { "Memory (MiB)" }
                        input #memory_mib type="number" name="memory_mib" value=(v("memory_mib")) min="64" max=[max_mem] step="1";
                    }
                    div.field {
                        label for="disk_gib" { "Disk (GiB)" }
                        input #disk_gib type="number" name="disk_gib" value=(v("disk_gib")) min="1" max=[max_disk] step="1";
                    }
                }
                p.hint { "With a custom size, give all three. Maximums shown are what your project has left." }
            }
            fieldset {
                legend { "Network" }
                div.row {
                    div.field {
                        label for="network" { "Network" }
                        select #network name="network" {
                            option value="" { "Default network" }
                            @for n in &c.networks {
                                @let id = n["id"].as_str().unwrap_or("");
                                option value=(id) selected[f.get("network") == id] { (text(&n["name"])) " (" (text(&n["cidr"])) ")" }
                            }
                        }
                    }
                    div.field {
                        label for="fixed_ip" { "Fixed IP (optional)" }
                        input #fixed_ip type="text" name="fixed_ip" value=(v("fixed_ip")) inputmode="decimal"
                            pattern="((25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])"
                            title="an IPv4 address such as 10.0.0.10" placeholder="10.0.0.10";
                    }
                }
                div.row {
                    div.field {
                        label for="bw_in" { "Bandwidth in (Mbit/s)" }
                        input #bw_in type="number" name="bw_in" value=(v("bw_in")) min="1" max="100000" placeholder="flavor default";
                    }
                    div.field {
                        label for="bw_out" { "Bandwidth out (Mbit/s)" }
                        input #bw_out type="number" name="bw_out" value=(v("bw_out")) min="1" max="100000" placeholder="flavor default";
                    }
                }
                div.row {
                    div.field {
                        label for="quota_gib" { "Monthly traffic quota (GiB)" }
                        input #quota_gib type="number" name="quota_gib" value=(v("quota_gib")) min="0.001" max="1048576" step="any" placeholder="none";
                    }
                    div.field {
                        label for="quota_policy" { "When the quota is used up" }
                        select #quota_policy name="quota_policy" {
                            option value="throttle" selected[f.get("quota_policy") != "suspend"] { "Throttle bandwidth" }
                            option value="suspend" selected[f.get("quota_policy") == "suspend"] { "Suspend networking" }
                        }
                    }
                }
            }
            fieldset {
                legend { "Access" }
                div.field {
                    label for="key_name" { "Key pair" }
                    select #key_name name="key_name" {
                        option value="" { "None" }
                        @for k in &c.keypairs {
                            @let n = k["name"].as_str().unwrap_or("");
                            option value=(n) selected[f.get("key_name") == n] { (n) }
                        }
                    }
                }
                div.field {
                    label for="user_data" { "User data (cloud-init, optional)" }
                    textarea #user_data name="user_data" rows="5" maxlength="65535" spellcheck="false" { (f.raw("user_data")) }
                }
                div.check {
                    input #config_drive type="checkbox" name="config_drive" value="on" checked[f.get("config_drive") == "on"];
                    label for="config_drive" { "Attach a config drive" }
                }
            }
            button.primary type="submit" { "Launch instance" }
        }
    }
}

pub async fn new(State(portal): State<Portal>, session: Session) -> Response {
    let c = choices(&portal, &session).await;
    let body = launch_form(&session, &c, &Fields(Vec::new()), None);
    page("Launch an instance", Some(&session), "/servers/new", body).into_response()
}

/// A number from a form as JSON: a number when it parses, else the text
/// (so the API names the mistake).
fn number(s: &str) -> Value {
    if let Ok(n) = s.parse::<i64>() {
        json!(n)
    } else if let Ok(x) = s.parse::<f64>() {
        json!(x)
    } else {
        json!(s)
    }
}

/// The API request a launch form asks for.
fn create_request(f: &Fields) -> Value {
    let mut req = Map::new();
    req.insert("name".into(), json!(f.get("name")));
    req.insert("image".into(), json!(f.get("image")));
    if f.get("flavor").is_empty() || f.get("flavor") == "custom" {
        for k in ["vcpus", "memory_mib", "disk_gib"] {
            if !f.get(k).is_empty() {
                req.insert(k.into(), number(f.get(k)));
            }
        }
    } else {
        req.insert("flavor".into(), json!(f.get("flavor")));
    }
    if !f.get("network").is_empty() || !f.get("fixed_ip").is_empty() {
        let network = match f.get("network") {
            "" => "default",
            n => n,
        };
        let mut nic = json!({"network": network});
        if !f.get("fixed_ip").is_empty() {
            nic["fixed_ip"] = json!(f.get("fixed_ip"));
        }
        req.insert("networks".into(), json!([nic]));
    }
    let mut bw = Map::new();
    for (field, dir) in [("bw_in", "inbound"), ("bw_out", "outbound")] {
        if !f.get(field).is_empty() {
            bw.insert(dir.into(), json!({"average_mbit": number(f.get(field))}));
        }
    }
    if !bw.is_empty() {
        req.insert("bandwidth".into(), Value::Object(bw));
    }
    if !f.get("quota_gib").is_empty() {
        req.insert(
            "traffic_quota".into(),
            json!({"monthly_gib": number(f.get("quota_gib")), "policy": f.get("quota_policy")}),
        );
    }
    if !f.get("key_name").is_empty() {
        req.insert("key_name".into(), json!(f.get("key_name")));
    }
    if !f.raw("user_data").trim().is_empty() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(f.raw("user_data"));
        req.insert("user_data".into(), json!(b64));
    }
    if f.get("config_drive") == "on" {
        req.insert("config_drive".into(), json!(true));
    }
    Value::Object(req)
}

pub async fn create(
    State(portal): State<Portal>,
    session: Session,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let f = Fields(fields);
    if let Err(r) = session.check(&f) {
        return r;
    }
    let r = session
        .call(
            &portal,
            Method::POST,
            "/v1/servers",
            Some(create_request(&f)),
        )
        .await;
    if let (true, Some(id)) = (r.ok(), r.body["id"].as_str()) {
        return Redirect::to(&format!("/servers/{id}")).into_response();
    }
    let c = choices(&portal, &session).await;
    let status = if r.status.is_client_error() {
        r.status
    } else {
        StatusCode::BAD_GATEWAY
    };
    let message = format!("The instance was not launched: {}", r.message());
    let body = launch_form(&session, &c, &f, Some(&message));
    (
        status,
        page("Launch an instance", Some(&session), "/servers/new", body),
    )
        .into_response()
}
