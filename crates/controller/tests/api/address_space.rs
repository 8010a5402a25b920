//! Tenant address space: a network's range must lie in a tenant pool and
//! touch no special range, floating-IP pool, or address or route a host
//! reported; every refusal is a 400 `address_not_allowed` naming the rule,
//! and creates nothing.

use super::*;

const ADDRESS: Want = (StatusCode::BAD_REQUEST, "address_not_allowed");

/// Registers host `h1` on the LAN 10.99.0.2/24 with a route to 10.100.0.0/16,
/// as an agent reports them.
async fn register_host_on_a_lan(cloud: &Cloud) {
    let mut body = host_body();
    body["addressing"] = json!({
        "addresses": [{"ip": "10.99.0.2", "prefix_len": 24, "device": "eth0"}],
        "routes": [
            {"destination": "0.0.0.0/0", "device": "eth0"},
            {"destination": "10.99.0.0/24", "device": "eth0"},
            {"destination": "10.100.0.0/16", "device": "eth0"},
        ],
    });
    // Joining registers the host with what its agent reports.
    let (_, client) = cloud.join(&body).await;
    *cloud.agent.lock().unwrap() = Some(client);
}

#[tokio::test]
async fn networks_outside_the_address_space_are_refused_naming_the_rule() {
    let cloud = Cloud::start().await;
    let admin = cloud.admin("admin").await;
    let alice = cloud.user("alice").await;
    register_host_on_a_lan(&cloud).await;
    let pool = json!({"name": "public", "first": "10.120.0.10", "last": "10.120.0.20"});
    // A floating-IP pool inside the tenant pool is refused too...
    let resp = cloud
        .post(Some(&admin), "/v1/floating-ip-pools", &pool)
        .await;
    assert_error(
        "floating pool in the tenant pool",
        resp,
        ADDRESS,
        "10.120.0.10-10.120.0.20 overlaps the tenant pool 10.64.0.0/10",
    )
    .await;
    assert_eq!(
        cloud.get_ok(&admin, "/v1/floating-ip-pools").await,
        json!([])
    );
    // ...one outside it is made.
    let pool = json!({"name": "public", "first": "203.0.113.10", "last": "203.0.113.20"});
    let resp = cloud
        .post(Some(&admin), "/v1/floating-ip-pools", &pool)
        .await;
    ok_json(resp, StatusCode::CREATED).await;

    let net = |cidr: &str| json!({"name": "lan", "cidr": cidr});
    let outside = "is outside the tenant address pools (10.64.0.0/10)";
    #[rustfmt::skip]
    let cases = [
        case("loopback", net("127.0.0.0/24"), ADDRESS, "127.0.0.0/24 overlaps the loopback range 127.0.0.0/8"),
        case("metadata range", net("169.254.169.0/24"), ADDRESS, "169.254.169.0/24 overlaps the link-local range (with the metadata address 169.254.169.254) 169.254.0.0/16"),
        case("multicast", net("224.0.0.0/24"), ADDRESS, "224.0.0.0/24 overlaps the multicast range 224.0.0.0/4"),
        case("unspecified", net("0.0.0.0/24"), ADDRESS, "0.0.0.0/24 overlaps the unspecified range 0.0.0.0/8"),
        case("reserved", net("240.0.0.0/24"), ADDRESS, "240.0.0.0/24 overlaps the reserved range"),
        case("broadcast", net("255.255.255.0/24"), ADDRESS, "broadcast address 255.255.255.255"),
        case("public", net("8.8.8.0/24"), ADDRESS, outside),
        case("private outside the pool", net("192.168.1.0/24"), ADDRESS, outside),
        case("straddling the pool", net("10.63.0.0/16"), ADDRESS, outside),
        case("floating pool", net("203.0.113.0/24"), ADDRESS, "203.0.113.0/24"),
        case("host's LAN", net("10.99.0.0/24"), ADDRESS, "10.99.0.0/24 overlaps the address 10.99.0.2/24 of host h1"),
        case("host's route", net("10.100.3.0/24"), ADDRESS, "10.100.3.0/24 overlaps the route 10.100.0.0/16 of host h1"),
    ];
    cloud.refuse_all(&alice, "/v1/networks", &cases).await;

    // Positive control: a free range of the pool; the default network too.
    let resp = cloud
        .post(Some(&alice), "/v1/networks", &net("10.77.0.0/24"))
        .await;
    let lan = ok_json(resp, StatusCode::CREATED).await;
    assert_eq!(lan["cidr"], "10.77.0.0/24");
    let all = cloud.get_ok(&alice, "/v1/networks").await;
    assert_eq!(all[0]["name"], "default");
    assert_eq!(all[0]["cidr"], "10.64.0.0/24");
    // A floating-IP pool on a network's range: refused (the tenant pool
    // holding the network is named first).
    let pool = json!({"name": "lan", "first": "10.77.0.100", "last": "10.77.0.110"});
    let resp = cloud
        .post(Some(&admin), "/v1/floating-ip-pools", &pool)
        .await;
    assert_error(
        "floating pool on a network",
        resp,
        ADDRESS,
        "overlaps the tenant pool",
    )
    .await;
}

#[tokio::test]
async fn a_custom_tenant_pool_replaces_the_default() {
    let cloud = Cloud::start_with_settings(
        Duration::from_secs(3600),
        Settings {
            tenant_pools: nubis_controller::address_space::TenantPools::new(vec!["172.16.0.0/12"
                .parse()
                .unwrap()])
            .unwrap(),
            ..Default::default()
        },
    )
    .await;
    let alice = cloud.user("alice").await;
    let all = cloud.get_ok(&alice, "/v1/networks").await;
    assert_eq!(
        all[0]["cidr"], "172.16.0.0/24",
        "the default network: {all}"
    );
    let cases = [case(
        "the default pool's range",
        json!({"name": "lan", "cidr": "10.77.0.0/24"}),
        ADDRESS,
        "10.77.0.0/24 is outside the tenant address pools (172.16.0.0/12)",
    )];
    cloud.refuse_all(&alice, "/v1/networks", &cases).await;
    let resp = cloud
        .post(
            Some(&alice),
            "/v1/networks",
            &json!({"name": "lan", "cidr": "172.20.5.0/24"}),
        )
        .await;
    ok_json(resp, StatusCode::CREATED).await;
}

#[tokio::test]
async fn reports_refresh_a_hosts_ranges() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    let host = cloud.register_host().await;
    let lan = json!({"name": "lan", "cidr": "10.88.0.0/24"});
    // A report names a new route of the host's: the range is taken.
    let report = json!({
        "instances": [],
        "addressing": {"addresses": [], "routes": [{"destination": "10.88.0.0/16", "device": "eth1"}]},
    });
    let resp = cloud
        .agent_req(
            Method::PUT,
            &format!("/v1/agent/hosts/{}/report", id(&host)),
        )
        .json(&report)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let cases = [case(
        "the host's new route",
        lan.clone(),
        ADDRESS,
        "10.88.0.0/24 overlaps the route 10.88.0.0/16 of host h1",
    )];
    cloud.refuse_all(&alice, "/v1/networks", &cases).await;
    // A report without the field (an older agent) changes nothing; one with
    // the route gone frees the range.
    for (report, want) in [
        (json!({"instances": []}), StatusCode::BAD_REQUEST),
        (
            json!({"instances": [], "addressing": {"addresses": [], "routes": []}}),
            StatusCode::CREATED,
        ),
    ] {
        let resp = cloud
            .agent_req(
                Method::PUT,
                &format!("/v1/agent/hosts/{}/report", id(&host)),
            )
            .json(&report)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        let resp = cloud.post(Some(&alice), "/v1/networks", &lan).await;
        assert_eq!(resp.status(), want);
    }
}
