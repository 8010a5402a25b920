//! Network v2.0 (Neutron) through the real clients, unmodified: Debian's
//! `openstack` and the newest python-openstackclient + openstacksdk from
//! PyPI (as in tests/openstack_cli.rs), each with a `clouds.yaml` pointing
//! at a `nubis up` in a network namespace: networks and their one subnet,
//! security groups and rules, floating IPs from a pool, another tenant's
//! 404s. No VM is booted (ports of servers and floating-IP association are
//! covered over HTTP in crates/controller/tests/api/neutron.rs).
//!
//! Without the clients the test skips with a note; under CI it fails.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::cloud::Cloud;
use support::netns::run_in_netns;
use support::openstack::{admin_with_public_pool, clients, write_clouds_yaml, Session};

const ADMIN: (&str, &str) = ("root", "admin-secret-1");
const MEMBER: (&str, &str) = ("alice", "alice-secret-1");

/// The rows of a `-f json` list whose `key` is `value`.
fn rows_with<'a>(list: &'a Value, key: &str, value: &str) -> Vec<&'a Value> {
    list.as_array()
        .map(|rows| rows.iter().filter(|r| r[key] == value).collect())
        .unwrap_or_default()
}

#[test]
fn openstack_clients_manage_networks_groups_and_floating_ips() {
    let Some(clients) = clients() else {
        return;
    };
    run_in_netns("osnet", move || async move {
        let mut cloud = Cloud::start().await;
        cloud.register_and_login(MEMBER.0, MEMBER.1).await;
        admin_with_public_pool(&mut cloud, ADMIN).await;
        let clouds = write_clouds_yaml(cloud.data_path(), &cloud.url, &[ADMIN, MEMBER]);
        let home = cloud.data_path().join("home");
        std::fs::create_dir_all(&home).unwrap();

        for (i, client) in clients.iter().enumerate() {
            let label = client.label;
            let os = Session {
                client,
                clouds: clouds.clone(),
                home: home.clone(),
            };
            let net = format!("net-{label}");
            let sub = format!("sub-{label}");
            let range = format!("10.100.{}.0/24", 10 + i);

            // The catalog names the network service.
            let catalog = os.json("alice", &["catalog", "list"]);
            let url = format!("{}/network", cloud.url);
            assert!(catalog.to_string().contains(&url), "[{label}] {catalog}");

            // network create, then its one subnet.
            let created = os.json("alice", &["network", "create", &net]);
            assert_eq!(created["name"], net.as_str(), "[{label}] {created}");
            let net_id = created["id"].as_str().expect("network id").to_owned();
            let subnet = os.json(
                "alice",
                &[
                    "subnet",
                    "create",
                    "--network",
                    &net,
                    "--subnet-range",
                    &range,
                    &sub,
                ],
            );
            assert_eq!(subnet["cidr"], range.as_str(), "[{label}] {subnet}");
            assert_eq!(subnet["network_id"], net_id.as_str(), "[{label}] {subnet}");
            assert_eq!(subnet["ip_version"], 4, "[{label}] {subnet}");
            let (s, v1) = cloud
                .call(Method::GET, &format!("/v1/networks/{net_id}"), None)
                .await;
            assert_eq!(
                s,
                StatusCode::NOT_FOUND,
                "[{label}] the admin's /v1 does not see alice's: {v1}"
            );
            let stderr = os.fails(
                "alice",
                &[
                    "subnet",
                    "create",
                    "--network",
                    &net,
                    "--subnet-range",
                    "10.100.99.0/24",
                    "second",
                ],
            );
            assert!(stderr.contains("one subnet"), "[{label}] {stderr}");

            let list = os.json("alice", &["network", "list"]);
            assert_eq!(rows_with(&list, "Name", &net).len(), 1, "[{label}] {list}");
            assert_eq!(
                rows_with(&list, "Name", "public").len(),
                1,
                "[{label}] the pool: {list}"
            );
            let shown = os.json("alice", &["network", "show", &net]);
            assert_eq!(shown["id"], net_id.as_str(), "[{label}] {shown}");
            let subnets = os.json("alice", &["subnet", "list"]);
            let row = rows_with(&subnets, "Name", &sub);
            assert_eq!(row.len(), 1, "[{label}] {subnets}");
            assert_eq!(row[0]["Subnet"], range.as_str(), "[{label}] {subnets}");
            let shown = os.json("alice", &["subnet", "show", &sub]);
            assert_eq!(
                shown["gateway_ip"],
                format!("10.100.{}.1", 10 + i),
                "[{label}] {shown}"
            );

            // A security group with an SSH rule.
            let group = format!("ssh-{label}");
            let g = os.json("alice", &["security", "group", "create", &group]);
            assert_eq!(g["name"], group.as_str(), "[{label}] {g}");
            let r = os.json(
                "alice",
                &[
                    "security",
                    "group",
                    "rule",
                    "create",
                    "--protocol",
                    "tcp",
                    "--dst-port",
                    "22",
                    &group,
                ],
            );
            assert_eq!(r["port_range_min"], 22, "[{label}] {r}");
            assert_eq!(r["protocol"], "tcp", "[{label}] {r}");
            let rules = os.json("alice", &["security", "group", "rule", "list", &group]);
            assert_eq!(rules.as_array().map(Vec::len), Some(1), "[{label}] {rules}");
            let (_, v1) = cloud_as_member(&cloud).await;
            assert!(v1.contains(&group), "[{label}] /v1 sees the group: {v1}");

            // A floating IP from the pool.
            let fip = os.json("alice", &["floating", "ip", "create", "public"]);
            let address = fip["floating_ip_address"]
                .as_str()
                .expect("address")
                .to_owned();
            assert!(address.starts_with("203.0.113."), "[{label}] {fip}");
            let fips = os.json("alice", &["floating", "ip", "list"]);
            assert_eq!(
                rows_with(&fips, "Floating IP Address", &address).len(),
                1,
                "[{label}] {fips}"
            );

            // Another tenant sees none of it.
            let stderr = os.fails("root", &["network", "show", &net_id]);
            assert!(
                stderr.contains("404") || stderr.contains("No Network found"),
                "[{label}] {stderr}"
            );
            let stderr = os.fails("root", &["network", "delete", &net_id]);
            assert!(!stderr.is_empty(), "[{label}] {stderr}");
            let stderr = os.fails(
                "root",
                &["security", "group", "show", g["id"].as_str().unwrap()],
            );
            assert!(!stderr.is_empty(), "[{label}] {stderr}");
            let theirs = os.json("root", &["network", "list"]);
            assert!(
                rows_with(&theirs, "Name", &net).is_empty(),
                "[{label}] {theirs}"
            );

            // A bad request changes nothing.
            let before = os.json("alice", &["network", "list"]);
            let stderr = os.fails(
                "alice",
                &[
                    "subnet",
                    "create",
                    "--network",
                    &net,
                    "--subnet-range",
                    "10.100.50.1/24",
                    "bad",
                ],
            );
            assert!(
                stderr.contains("400") || stderr.contains("host bits"),
                "[{label}] {stderr}"
            );
            assert_eq!(os.json("alice", &["network", "list"]), before, "[{label}]");

            // Deleting: the floating IP, the group, the network.
            let out = os.try_openstack("alice", &["floating", "ip", "delete", &address]);
            assert!(out.status.success(), "[{label}] {out:?}");
            let out = os.try_openstack("alice", &["security", "group", "delete", &group]);
            assert!(out.status.success(), "[{label}] {out:?}");
            let out = os.try_openstack("alice", &["network", "delete", &net]);
            assert!(out.status.success(), "[{label}] {out:?}");
            let list = os.json("alice", &["network", "list"]);
            assert!(
                rows_with(&list, "Name", &net).is_empty(),
                "[{label}] {list}"
            );

            // openstacksdk: create_network, create_subnet, networks().
            let sdk_net = format!("sdk-{label}");
            let snippet = format!(
                "import json, openstack\n\
                 conn = openstack.connect(cloud='alice')\n\
                 n = conn.network.create_network(name='{sdk_net}')\n\
                 s = conn.network.create_subnet(network_id=n.id, ip_version=4, cidr='10.100.{}.0/24', name='{sdk_net}-v4')\n\
                 names = [x.name for x in conn.network.networks()]\n\
                 print(json.dumps({{'id': n.id, 'subnet': s.id, 'cidr': s.cidr, 'names': names}}))\n",
                30 + i
            );
            let out = os.sdk(&snippet);
            assert_eq!(out["subnet"], out["id"], "[{label}] {out}");
            assert_eq!(
                out["cidr"],
                format!("10.100.{}.0/24", 30 + i),
                "[{label}] {out}"
            );
            assert!(
                out["names"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|n| n == sdk_net.as_str()),
                "[{label}] {out}"
            );
        }
    });
}

/// The member's security groups through /v1, as text.
async fn cloud_as_member(cloud: &Cloud) -> (StatusCode, String) {
    let r = cloud
        .http()
        .post(format!("{}/v1/tokens", cloud.url))
        .json(&json!({"name": MEMBER.0, "password": MEMBER.1}))
        .send()
        .await
        .unwrap();
    let token: Value = r.json().await.unwrap();
    let r = cloud
        .http()
        .get(format!("{}/v1/security-groups", cloud.url))
        .bearer_auth(token["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}
