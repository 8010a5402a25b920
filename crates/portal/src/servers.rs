//! Instances: the list (kept current by polling), the launch form, the
//! detail page with its actions, console log, traffic chart and events.

use crate::layout::{self, alert, csrf_field, notice, page, status, text, time};
use crate::{Fields, Portal, Session};
use axum::extract::{Form, Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use base64::Engine;
use maud::{html, Markup};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

pub async fn home(session: Result<Session, Response>) -> Response {
    match session {
        Ok(_) => Redirect::to("/servers").into_response(),
        Err(_) => Redirect::to("/login").into_response(),
    }
}

fn first_ip(s: &Value) -> String {
    s["addresses"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["ip"].as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "—".into())
}

/// One row of the instances table; `portal.js` builds the same from JSON.
pub fn row(s: &Value, project: bool) -> Markup {
    let id = s["id"].as_str().unwrap_or("");
    let st = s["status"].as_str().unwrap_or("");
    html! {
        tr data-id=(id) {
            td data-label="Name" { a href={ "/servers/" (id) } { (s["name"].as_str().unwrap_or(id)) } }
            @if project { td data-label="Project" { code { (text(&s["project"])) } } }
            td data-label="Status" data-field="status" { (status(st)) }
            td data-label="Address" data-field="address" { (first_ip(s)) }
            td data-label="DNS name" data-field="dns" { (text(&s["dns_name"])) }
            td data-label="Size" { (s["vcpus"]) " vCPU · " (s["memory_mib"]) " MiB · " (s["disk_gib"]) " GiB" }
        }
    }
}

pub async fn list(
    State(portal): State<Portal>,
    session: Session,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let r = session.get(&portal, "/v1/servers").await;
    let servers = r.list();
    let info = match q.get("done").map(String::as_str) {
        Some("deleted") => Some("The instance is being deleted."),
        _ => None,
    };
    let body = html! {
        (notice(info))
        @if !r.ok() { (alert(Some(&r.message()))) }
        div.actions { a.button.primary href="/servers/new" { "Launch an instance" } }
        @if servers.is_empty() {
            p.empty { "No instances yet. " a href="/servers/new" { "Launch your first one" } "." }
        }
        div.table-wrap {
            table #servers data-poll="/servers/poll" hidden[servers.is_empty()] {
                caption.sr { "Your instances; updated automatically" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Status" } th scope="col" { "Address" } th scope="col" { "DNS name" } th scope="col" { "Size" } } }
                tbody aria-live="polite" {
                    @for s in &servers { (row(s, false)) }
                }
            }
        }
    };
    page("Instances", Some(&session), "/servers", body).into_response()
}

/// The project's servers as JSON, for the list's polling script.
pub async fn poll(State(portal): State<Portal>, session: Session) -> Response {
    let r = session.get(&portal, "/v1/servers").await;
    (r.status, Json(r.body)).into_response()
}

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

/// Inline SVG bars of daily traffic (in and out), no library needed.
fn usage_chart(usage: &Value) -> Markup {
    let series = usage["series"].as_array().cloned().unwrap_or_default();
    let max = series
        .iter()
        .map(|p| {
            p["inbound_bytes"]
                .as_u64()
                .unwrap_or(0)
                .max(p["outbound_bytes"].as_u64().unwrap_or(0))
        })
        .max()
        .unwrap_or(0)
        .max(1);
    // A slot per day of a month, so a few days do not make giant bars.
    let n = series.len().max(31) as f64;
    let (w, h) = (600.0, 140.0);
    let slot = w / n;
    let bar = (slot / 2.0 - 1.0).max(1.0);
    html! {
        @if series.is_empty() {
            p.muted { "No traffic recorded this month yet." }
        } @else {
            svg.chart viewBox={ "0 0 " (w) " " (h + 16.0) } role="img" aria-labelledby="chart-t" preserveAspectRatio="none" {
                title #chart-t { "Daily traffic this month: inbound and outbound" }
                @for (i, p) in series.iter().enumerate() {
                    @let inb = p["inbound_bytes"].as_u64().unwrap_or(0);
                    @let out = p["outbound_bytes"].as_u64().unwrap_or(0);
                    @let hi = (inb as f64 / max as f64) * h;
                    @let ho = (out as f64 / max as f64) * h;
                    @let x = i as f64 * slot;
                    rect.in x=(format!("{x:.1}")) y=(format!("{:.1}", h - hi)) width=(format!("{bar:.1}")) height=(format!("{hi:.1}")) {
                        title { (p["start"].as_str().unwrap_or("").get(..10).unwrap_or("")) ": in " (layout::bytes(inb)) }
                    }
                    rect.out x=(format!("{:.1}", x + bar + 1.0)) y=(format!("{:.1}", h - ho)) width=(format!("{bar:.1}")) height=(format!("{ho:.1}")) {
                        title { (p["start"].as_str().unwrap_or("").get(..10).unwrap_or("")) ": out " (layout::bytes(out)) }
                    }
                }
                line x1="0" y1=(h) x2=(w) y2=(h) stroke="currentColor" stroke-opacity="0.3";
            }
            p.legend { span.key.in {} "Inbound " span.key.out {} "Outbound" }
        }
    }
}

pub async fn detail(
    State(portal): State<Portal>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    detail_page(&portal, &session, &id, &q, None).await
}

async fn detail_page(
    portal: &Portal,
    session: &Session,
    id: &str,
    q: &HashMap<String, String>,
    error: Option<&str>,
) -> Response {
    let id = id.trim();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return layout::error_page(
            StatusCode::NOT_FOUND,
            Some(session),
            "Not found",
            "There is no such instance.",
        );
    }
    let r = session.get(portal, &format!("/v1/servers/{id}")).await;
    if !r.ok() {
        return layout::error_page(
            if r.status == StatusCode::NOT_FOUND {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::BAD_GATEWAY
            },
            Some(session),
            "Not found",
            &r.message(),
        );
    }
    let s = r.body;
    let usage = session
        .get(portal, &format!("/v1/servers/{id}/usage"))
        .await;
    let events = session
        .get(portal, &format!("/v1/servers/{id}/events"))
        .await;
    let log = session
        .get(portal, &format!("/v1/servers/{id}/console-log"))
        .await;
    let log_tail: String = {
        let lines: Vec<&str> = log.text.lines().collect();
        lines[lines.len().saturating_sub(200)..].join("\n")
    };
    let st = s["status"].as_str().unwrap_or("");
    let done = match q.get("done").map(String::as_str) {
        Some("start") => Some("Starting the instance."),
        Some("stop") => Some("Stopping the instance."),
        Some("reboot") => Some("Rebooting the instance."),
        Some("eject") => Some("The ISO was ejected: the next boot is from the disk."),
        _ => None,
    };
    let name = s["name"].as_str().unwrap_or(id).to_owned();
    let action = |a: &str, label: &str, class: &str, enabled: bool| {
        html! {
            form.inline method="post" action={ "/servers/" (id) "/action" } {
                (csrf_field(&session.csrf))
                input type="hidden" name="action" value=(a);
                button class=(class) type="submit" disabled[!enabled] { (label) }
            }
        }
    };
    let body = html! {
        (notice(done))
        (alert(error))
        div.toolbar data-server=(id) data-status=(st) {
            (status(st))
            (action("start", "Start", "secondary", st == "stopped" || st == "error"))
            (action("stop", "Stop", "secondary", st == "running"))
            (action("reboot", "Reboot", "secondary", st == "running"))
            @if s["cdrom_attached"].as_bool() == Some(true) {
                (action("eject", "Eject ISO", "secondary", st != "deleting"))
            }
            form.inline method="post" action={ "/servers/" (id) "/console" } {
                (csrf_field(&session.csrf))
                button.secondary #console-button type="submit" disabled[st != "running"] { "Console" }
            }
            (action("delete", "Delete", "danger", st != "deleting"))
        }
        @if let Some(fault) = s["fault"].as_str() {
            div.alert.error role="alert" { "Fault: " (fault) }
        }
        div.grid {
            section.card aria-labelledby="overview-h" {
                h2 #overview-h { "Overview" }
                dl.props {
                    dt { "ID" } dd { code { (id) } }
                    dt { "Address" } dd #address { (first_ip(&s)) }
                    dt { "DNS name" } dd #dns { (text(&s["dns_name"])) }
                    dt { "Size" } dd { (s["vcpus"]) " vCPU · " (s["memory_mib"]) " MiB · " (s["disk_gib"]) " GiB" }
                    dt { "Key pair" } dd { (text(&s["key_name"])) }
                    dt { "Bandwidth" } dd {
                        "in " (s["bandwidth"]["inbound"]["average_mbit"].as_u64().map(|m| format!("{m} Mbit/s")).unwrap_or_else(|| "unlimited".into()))
                        ", out " (s["bandwidth"]["outbound"]["average_mbit"].as_u64().map(|m| format!("{m} Mbit/s")).unwrap_or_else(|| "unlimited".into()))
                    }
                    dt { "Created" } dd { (time(&s["created_at"])) }
                    dt { "Launched" } dd { (time(&s["launched_at"])) }
                }
            }
            section.card aria-labelledby="traffic-h" {
                h2 #traffic-h { "Traffic this month" }
                @if usage.ok() {
                    p {
                        "In " strong { (layout::bytes(usage.body["inbound_bytes"].as_u64().unwrap_or(0))) }
                        " · out " strong { (layout::bytes(usage.body["outbound_bytes"].as_u64().unwrap_or(0))) }
                        @if let Some(gib) = usage.body["quota"]["monthly_gib"].as_f64() {
                            " · quota " (gib) " GiB (" (text(&usage.body["quota"]["policy"])) ")"
                        }
                        " · state " (text(&usage.body["traffic_state"]))
                    }
                    (usage_chart(&usage.body))
                } @else {
                    p.muted { (usage.message()) }
                }
            }
        }
        section.card aria-labelledby="events-h" {
            h2 #events-h { "Events" }
            @let evs = events.list();
            @if evs.is_empty() { p.muted { "No events." } } @else {
                div.table-wrap {
                    table {
                        thead { tr { th scope="col" { "Time" } th scope="col" { "Event" } th scope="col" { "Message" } } }
                        tbody {
                            @for e in evs.iter().rev() {
                                tr { td { (time(&e["time"])) } td { (text(&e["kind"])) } td { (text(&e["message"])) } }
                            }
                        }
                    }
                }
            }
        }
        section.card aria-labelledby="log-h" {
            h2 #log-h { "Console log" }
            @if log.ok() {
                @if log_tail.is_empty() { p.muted { "Nothing yet." } } @else {
                    pre.log tabindex="0" aria-label="Console log, last 200 lines" { (log_tail) }
                }
            } @else {
                p.muted { (log.message()) }
            }
        }
    };
    page(&name, Some(session), "/servers", body).into_response()
}

pub async fn action(
    State(portal): State<Portal>,
    session: Session,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let f = Fields(fields);
    if let Err(r) = session.check(&f) {
        return r;
    }
    let a = f.get("action");
    let (method, path) = match a {
        "start" | "stop" | "reboot" | "eject" => (Method::POST, format!("/v1/servers/{id}/{a}")),
        "delete" => (Method::DELETE, format!("/v1/servers/{id}")),
        _ => {
            return layout::error_page(
                StatusCode::BAD_REQUEST,
                Some(&session),
                "Unknown action",
                "That action does not exist.",
            )
        }
    };
    if id.contains('/') || id.contains('?') {
        return StatusCode::NOT_FOUND.into_response();
    }
    let r = session.call(&portal, method, &path, None).await;
    if r.ok() {
        return if a == "delete" {
            Redirect::to("/servers?done=deleted").into_response()
        } else {
            Redirect::to(&format!("/servers/{id}?done={a}")).into_response()
        };
    }
    let msg = format!("Could not {a} the instance: {}", r.message());
    let mut resp = detail_page(&portal, &session, &id, &HashMap::new(), Some(&msg)).await;
    if resp.status().is_success() {
        *resp.status_mut() = if r.status.is_client_error() {
            r.status
        } else {
            StatusCode::BAD_GATEWAY
        };
    }
    resp
}

/// Opens the browser console: asks the API for a short-lived console URL
/// and sends the browser there.
pub async fn console(
    State(portal): State<Portal>,
    session: Session,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = session.check(&Fields(fields)) {
        return r;
    }
    if id.contains('/') || id.contains('?') {
        return StatusCode::NOT_FOUND.into_response();
    }
    let r = session
        .call(
            &portal,
            Method::POST,
            &format!("/v1/servers/{id}/console"),
            None,
        )
        .await;
    let url = r.body["url"].as_str().filter(|_| r.ok());
    // Only same-origin paths or http(s) URLs: never an open redirect to
    // something else (javascript:, data:).
    if let Some(url) = url.filter(|u| {
        (u.starts_with('/') && !u.starts_with("//"))
            || u.starts_with("https://")
            || u.starts_with("http://")
    }) {
        return Redirect::to(url).into_response();
    }
    // No console route at all (an older controller): say so plainly.
    let missing = (r.status == StatusCode::NOT_FOUND && r.message() == "no such API path")
        || r.status == StatusCode::METHOD_NOT_ALLOWED;
    let msg = if missing {
        "The browser console is not available on this cloud yet.".to_owned()
    } else {
        format!("Could not open the console: {}", r.message())
    };
    let mut resp = detail_page(&portal, &session, &id, &HashMap::new(), Some(&msg)).await;
    if resp.status().is_success() {
        *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    }
    resp
}
