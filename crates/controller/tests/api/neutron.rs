//! Network v2.0 (Neutron) over HTTP with `X-Auth-Token`: networks that
//! wait for their one subnet, ports of a server made through `/v1` on a
//! registered host (no VM), floating IPs mapped to a port, another
//! project's objects (404), and bad requests (NeutronError, nothing
//! changes).

use super::*;

/// A request with OpenStack's token header.
async fn os(
    cloud: &Cloud,
    method: Method,
    token: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut r = cloud
        .http
        .request(method, format!("{}/network/v2.0{path}", cloud.base))
        .header("X-Auth-Token", token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The Neutron error of an answer, checked for its shape.
fn neutron_error(what: &str, status: StatusCode, body: &Value, want: StatusCode) -> String {
    assert_eq!(status, want, "{what}: {body}");
    let e = &body["NeutronError"];
    assert!(e["type"].is_string() && e["detail"] == "", "{what}: {body}");
    e["message"].as_str().unwrap_or_default().to_owned()
}

/// Everything a project sees through Neutron, to show nothing changed.
async fn everything(cloud: &Cloud, token: &str) -> Vec<Value> {
    let mut all = Vec::new();
    for path in [
        "/networks",
        "/subnets",
        "/ports",
        "/security-groups",
        "/floatingips",
    ] {
        let (s, b) = os(cloud, Method::GET, token, path, None).await;
        assert_eq!(s, StatusCode::OK, "{path}: {b}");
        all.push(b);
    }
    all
}

#[tokio::test]
async fn neutron_networks_ports_groups_and_floating_ips() {
    networks_ports_groups_and_floating_ips(Cloud::start().await).await;
}

#[tokio::test]
async fn neutron_networks_ports_groups_and_floating_ips_on_postgres() {
    on_postgres(networks_ports_groups_and_floating_ips).await;
}

#[tokio::test]
async fn a_subnet_delete_makes_the_network_pending_again() {
    subnet_delete_makes_the_network_pending_again(Cloud::start().await).await;
}

#[tokio::test]
async fn a_subnet_delete_makes_the_network_pending_again_on_postgres() {
    on_postgres(subnet_delete_makes_the_network_pending_again).await;
}

/// Runs `test` on a cloud on a throwaway PostgreSQL database (skipped
/// without one, a failure under CI: see `placement::postgres`).
async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(Cloud) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some(db) = super::placement::postgres::Database::create().await else {
        return;
    };
    let cloud = Cloud::start_with_settings(
        Duration::from_secs(3600),
        Settings {
            database_url: Some(db.url.clone()),
            ..Default::default()
        },
    )
    .await;
    test(cloud).await;
    db.drop().await;
}

async fn networks_ports_groups_and_floating_ips(cloud: Cloud) {
    let admin = cloud.admin("root").await;
    let alice = cloud.user("alice").await;
    let bob = cloud.user("bob").await;
    let resp = cloud
        .post(
            Some(&admin),
            "/v1/floating-ip-pools",
            &json!({"name": "public", "first": "203.0.113.10", "last": "203.0.113.20"}),
        )
        .await;
    let pool = ok_json(resp, StatusCode::CREATED).await;
    let pool_id = pool["id"].as_str().unwrap();

    // Discovery and extensions.
    let r = cloud
        .http
        .get(format!("{}/network", cloud.base))
        .send()
        .await
        .unwrap();
    let versions: Value = r.json().await.unwrap();
    assert_eq!(versions["versions"][0]["id"], "v2.0", "{versions}");
    let (s, ext) = os(
        &cloud,
        Method::GET,
        &alice,
        "/extensions/security-group",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{ext}");
    let (s, b) = os(&cloud, Method::GET, &alice, "/extensions/router", None).await;
    neutron_error("unknown extension", s, &b, StatusCode::NOT_FOUND);
    let (s, b) = os(&cloud, Method::GET, &alice, "/routers", None).await;
    neutron_error("routers", s, &b, StatusCode::NOT_IMPLEMENTED);

    // A network waits for its subnet, then is a Nubis network (same id).
    let (s, net) = os(
        &cloud,
        Method::POST,
        &alice,
        "/networks",
        Some(json!({"network": {"name": "app", "admin_state_up": true}})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{net}");
    let net_id = net["network"]["id"].as_str().unwrap().to_owned();
    assert_eq!(net["network"]["subnets"], json!([]), "{net}");
    let v1 = cloud.get(&alice, &format!("/v1/networks/{net_id}")).await;
    assert_eq!(
        v1.status(),
        StatusCode::NOT_FOUND,
        "pending: not a Nubis network yet"
    );

    // Bad subnets change nothing.
    let before = everything(&cloud, &alice).await;
    for (what, subnet, want) in [
        (
            "host bits",
            json!({"network_id": net_id, "ip_version": 4, "cidr": "10.100.20.1/24"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "IPv6",
            json!({"network_id": net_id, "ip_version": 6, "cidr": "fd00::/64"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "no DHCP",
            json!({"network_id": net_id, "cidr": "10.100.20.0/24", "enable_dhcp": false}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown attribute",
            json!({"network_id": net_id, "cidr": "10.100.20.0/24", "colour": "red"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "gateway outside",
            json!({"network_id": net_id, "cidr": "10.100.20.0/24", "gateway_ip": "10.100.21.1"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "no network",
            json!({"network_id": pool_id, "cidr": "10.100.20.0/24"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown network",
            json!({"network_id": "00000000-0000-4000-8000-000000000000", "cidr": "10.100.20.0/24"}),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (s, b) = os(
            &cloud,
            Method::POST,
            &alice,
            "/subnets",
            Some(json!({"subnet": subnet})),
        )
        .await;
        neutron_error(what, s, &b, want);
        assert_eq!(
            everything(&cloud, &alice).await,
            before,
            "{what}: something changed"
        );
    }
    for (what, network) in [
        ("shared", json!({"name": "x", "shared": true})),
        ("external", json!({"name": "x", "router:external": true})),
        ("down", json!({"name": "x", "admin_state_up": false})),
        ("no name", json!({})),
    ] {
        let (s, b) = os(
            &cloud,
            Method::POST,
            &alice,
            "/networks",
            Some(json!({"network": network})),
        )
        .await;
        neutron_error(what, s, &b, StatusCode::BAD_REQUEST);
        assert_eq!(
            everything(&cloud, &alice).await,
            before,
            "{what}: something changed"
        );
    }
    let (s, b) = cloud
        .http
        .post(format!("{}/network/v2.0/networks", cloud.base))
        .header("X-Auth-Token", &alice)
        .header(CONTENT_TYPE, "application/json")
        .body("{not json")
        .send()
        .await
        .map(|r| (r.status(), r))
        .unwrap();
    let b: Value = b.json().await.unwrap();
    neutron_error("malformed JSON", s, &b, StatusCode::BAD_REQUEST);

    let (s, sub) = os(
        &cloud,
        Method::POST,
        &alice,
        "/subnets",
        Some(json!({"subnet": {"name": "app-v4", "network_id": net_id, "ip_version": 4, "cidr": "10.100.20.0/24"}})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{sub}");
    assert_eq!(sub["subnet"]["id"], net_id.as_str(), "{sub}");
    assert_eq!(sub["subnet"]["name"], "app-v4");
    assert_eq!(sub["subnet"]["gateway_ip"], "10.100.20.1");
    assert_eq!(
        sub["subnet"]["allocation_pools"],
        json!([{"start": "10.100.20.2", "end": "10.100.20.254"}])
    );
    let v1 = cloud
        .get_ok(&alice, &format!("/v1/networks/{net_id}"))
        .await;
    assert_eq!(v1["cidr"], "10.100.20.0/24", "{v1}");
    let (s, b) = os(
        &cloud,
        Method::POST,
        &alice,
        "/subnets",
        Some(json!({"subnet": {"network_id": net_id, "ip_version": 4, "cidr": "10.100.21.0/24"}})),
    )
    .await;
    let m = neutron_error("second subnet", s, &b, StatusCode::CONFLICT);
    assert!(m.contains("one subnet"), "{m}");
    // The tenant pools' rules of /v1 apply.
    let (s, p2) = os(
        &cloud,
        Method::POST,
        &alice,
        "/networks",
        Some(json!({"network": {"name": "outside"}})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{p2}");
    let p2_id = p2["network"]["id"].as_str().unwrap();
    let (s, b) = os(
        &cloud,
        Method::POST,
        &alice,
        "/subnets",
        Some(json!({"subnet": {"network_id": p2_id, "cidr": "203.0.113.0/24"}})),
    )
    .await;
    neutron_error("a floating pool's range", s, &b, StatusCode::BAD_REQUEST);

    // A security group with an SSH rule; IPv6 is refused.
    let (s, g) = os(
        &cloud,
        Method::POST,
        &alice,
        "/security-groups",
        Some(json!({"security_group": {"name": "ssh", "description": "ssh"}})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    let g_id = g["security_group"]["id"].as_str().unwrap().to_owned();
    let rule = |extra: Value| {
        let mut r = json!({"security_group_id": g_id, "direction": "ingress", "protocol": "tcp",
            "port_range_min": 22, "port_range_max": 22, "ethertype": "IPv4"});
        r.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({ "security_group_rule": r })
    };
    let (s, b) = os(
        &cloud,
        Method::POST,
        &alice,
        "/security-group-rules",
        Some(rule(json!({"ethertype": "IPv6"}))),
    )
    .await;
    neutron_error("IPv6 rule", s, &b, StatusCode::BAD_REQUEST);
    let (s, b) = os(
        &cloud,
        Method::POST,
        &alice,
        "/security-group-rules",
        Some(rule(json!({"protocol": "gre"}))),
    )
    .await;
    neutron_error("gre rule", s, &b, StatusCode::BAD_REQUEST);
    let (s, r) = os(
        &cloud,
        Method::POST,
        &alice,
        "/security-group-rules",
        Some(rule(json!({"remote_ip_prefix": "0.0.0.0/0"}))),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["security_group_rule"]["port_range_min"], 22, "{r}");
    let rule_id = r["security_group_rule"]["id"].as_str().unwrap().to_owned();
    let v1 = cloud
        .get_ok(&alice, &format!("/v1/security-groups/{g_id}"))
        .await;
    assert_eq!(v1["rules"][0]["port_min"], 22, "{v1}");

    // A server on the network (through /v1, on a registered host): its NIC
    // is a port.
    cloud.register_host().await;
    cloud
        .active_image(&alice, "disk", "raw", vec![0; 4096])
        .await;
    let resp = cloud
        .post(
            Some(&alice),
            "/v1/servers",
            &json!({"name": "web", "image": "disk", "flavor": "tiny",
                    "networks": [{"network": net_id, "fixed_ip": "10.100.20.7"}],
                    "security_groups": ["ssh"]}),
        )
        .await;
    let server = ok_json(resp, StatusCode::ACCEPTED).await;
    let server_id = server["id"].as_str().unwrap();
    let (s, ports) = os(
        &cloud,
        Method::GET,
        &alice,
        &format!("/ports?device_id={server_id}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let ports = ports["ports"].as_array().unwrap().clone();
    assert_eq!(ports.len(), 1, "{ports:?}");
    let port = &ports[0];
    assert_eq!(port["device_owner"], "compute:nova");
    assert_eq!(port["network_id"], net_id.as_str());
    assert_eq!(
        port["fixed_ips"],
        json!([{"subnet_id": net_id, "ip_address": "10.100.20.7"}])
    );
    assert_eq!(port["security_groups"], json!([g_id]));
    let port_id = port["id"].as_str().unwrap().to_owned();
    let (_, by_ip) = os(
        &cloud,
        Method::GET,
        &alice,
        "/ports?fixed_ips=ip_address%3D10.100.20.7",
        None,
    )
    .await;
    assert_eq!(by_ip["ports"].as_array().unwrap().len(), 1, "{by_ip}");
    let (_, none) = os(
        &cloud,
        Method::GET,
        &alice,
        "/ports?fixed_ips=ip_address%3D10.100.20.8",
        None,
    )
    .await;
    assert_eq!(none["ports"], json!([]), "{none}");
    let (s, b) = os(
        &cloud,
        Method::POST,
        &alice,
        "/ports",
        Some(json!({"port": {"network_id": net_id}})),
    )
    .await;
    let m = neutron_error("port create", s, &b, StatusCode::NOT_IMPLEMENTED);
    assert!(m.contains("v4-fixed-ip"), "{m}");
    let (s, b) = os(
        &cloud,
        Method::DELETE,
        &alice,
        &format!("/networks/{net_id}"),
        None,
    )
    .await;
    neutron_error("network in use", s, &b, StatusCode::CONFLICT);

    // Floating IPs: the pool is an external network; map to the port.
    let (_, nets) = os(
        &cloud,
        Method::GET,
        &alice,
        "/networks?router:external=True",
        None,
    )
    .await;
    assert_eq!(nets["networks"][0]["id"], pool_id, "{nets}");
    let (s, fip) = os(
        &cloud,
        Method::POST,
        &alice,
        "/floatingips",
        Some(json!({"floatingip": {"floating_network_id": pool_id}})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{fip}");
    assert_eq!(fip["floatingip"]["floating_network_id"], pool_id);
    assert_eq!(fip["floatingip"]["port_id"], Value::Null);
    let fip_id = fip["floatingip"]["id"].as_str().unwrap().to_owned();
    let (s, b) = os(
        &cloud,
        Method::PUT,
        &alice,
        &format!("/floatingips/{fip_id}"),
        Some(json!({"floatingip": {"port_id": "00000000-0000-4000-8000-000000000000"}})),
    )
    .await;
    neutron_error("unknown port", s, &b, StatusCode::NOT_FOUND);
    let (s, fip) = os(
        &cloud,
        Method::PUT,
        &alice,
        &format!("/floatingips/{fip_id}"),
        Some(json!({"floatingip": {"port_id": port_id}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{fip}");
    assert_eq!(fip["floatingip"]["port_id"], port_id.as_str(), "{fip}");
    assert_eq!(fip["floatingip"]["fixed_ip_address"], "10.100.20.7");
    let v1 = cloud
        .get_ok(&alice, &format!("/v1/floating-ips/{fip_id}"))
        .await;
    assert_eq!(v1["server"], server_id, "{v1}");

    // Another project sees none of it and cannot touch it.
    for path in [
        format!("/networks/{net_id}"),
        format!("/subnets/{net_id}"),
        format!("/ports/{port_id}"),
        format!("/security-groups/{g_id}"),
        format!("/security-group-rules/{rule_id}"),
        format!("/floatingips/{fip_id}"),
    ] {
        let (s, b) = os(&cloud, Method::GET, &bob, &path, None).await;
        neutron_error(&path, s, &b, StatusCode::NOT_FOUND);
        let (s, b) = os(&cloud, Method::DELETE, &bob, &path, None).await;
        assert!(
            s == StatusCode::NOT_FOUND || s == StatusCode::NOT_IMPLEMENTED,
            "bob deletes {path}: {s} {b}"
        );
    }
    let (_, b) = os(&cloud, Method::GET, &bob, "/ports", None).await;
    assert_eq!(b["ports"], json!([]), "{b}");
    let (s, b) = os(
        &cloud,
        Method::PUT,
        &bob,
        &format!("/floatingips/{fip_id}"),
        Some(json!({"floatingip": {"port_id": null}})),
    )
    .await;
    neutron_error("bob unmaps", s, &b, StatusCode::NOT_FOUND);
    let (_, still) = os(
        &cloud,
        Method::GET,
        &alice,
        &format!("/floatingips/{fip_id}"),
        None,
    )
    .await;
    assert_eq!(still["floatingip"]["port_id"], port_id.as_str(), "{still}");

    // Unmap, release; the pending network is deleted.
    let (s, fip) = os(
        &cloud,
        Method::PUT,
        &alice,
        &format!("/floatingips/{fip_id}"),
        Some(json!({"floatingip": {"port_id": null}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{fip}");
    assert_eq!(fip["floatingip"]["port_id"], Value::Null);
    // /v1 maps through the same rules, and Neutron sees it.
    let patch = |server: Value| {
        cloud
            .req(
                Method::PATCH,
                &format!("/v1/floating-ips/{fip_id}"),
                Some(&alice),
            )
            .json(&json!({ "server": server }))
            .send()
    };
    let r = patch(json!("nope")).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "unknown server on /v1");
    let r = patch(json!("web")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "/v1 maps");
    let (_, seen) = os(
        &cloud,
        Method::GET,
        &alice,
        &format!("/floatingips/{fip_id}"),
        None,
    )
    .await;
    assert_eq!(seen["floatingip"]["port_id"], port_id.as_str(), "{seen}");
    let (s, _) = os(
        &cloud,
        Method::DELETE,
        &alice,
        &format!("/floatingips/{fip_id}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = os(
        &cloud,
        Method::DELETE,
        &alice,
        &format!("/networks/{p2_id}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = os(
        &cloud,
        Method::GET,
        &alice,
        &format!("/networks/{p2_id}"),
        None,
    )
    .await;
    neutron_error("deleted", s, &b, StatusCode::NOT_FOUND);
    let (s, _) = os(
        &cloud,
        Method::DELETE,
        &alice,
        &format!("/security-group-rules/{rule_id}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

async fn subnet_delete_makes_the_network_pending_again(cloud: Cloud) {
    let alice = cloud.user("alice").await;
    let (_, net) = os(
        &cloud,
        Method::POST,
        &alice,
        "/networks",
        Some(json!({"network": {"name": "n"}})),
    )
    .await;
    let id = net["network"]["id"].as_str().unwrap().to_owned();
    let (s, b) = os(
        &cloud,
        Method::POST,
        &alice,
        "/subnets",
        Some(json!({"subnet": {"network_id": id, "cidr": "10.100.30.0/24"}})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["subnet"]["name"], "n", "no name given: the network's");
    let (s, _) = os(
        &cloud,
        Method::DELETE,
        &alice,
        &format!("/subnets/{id}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, net) = os(
        &cloud,
        Method::GET,
        &alice,
        &format!("/networks/{id}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(net["network"]["subnets"], json!([]), "{net}");
    let v1 = cloud.get(&alice, &format!("/v1/networks/{id}")).await;
    assert_eq!(v1.status(), StatusCode::NOT_FOUND);
    // The range is free again, for the same network.
    let (s, b) = os(
        &cloud,
        Method::POST,
        &alice,
        "/subnets",
        Some(json!({"subnet": {"network_id": id, "cidr": "10.100.30.0/24"}})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
}
