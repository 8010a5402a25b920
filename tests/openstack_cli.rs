//! The OpenStack APIs through the real clients, unmodified: Debian's
//! `openstack` (python3-openstackclient, scripts/install-deps.sh) and the
//! newest python-openstackclient + openstacksdk from PyPI (a venv made by
//! scripts/openstack-venv.sh), each with a `clouds.yaml` pointing at a
//! `nubis up` in a network namespace. Identity and the compute basics
//! (flavors, key pairs, limits, quotas); no VM is booted.
//!
//! Without the clients the test skips with a note; under CI it fails.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::process::Command;
use support::cloud::{admin_create_user, Cloud};
use support::netns::run_in_netns;
use support::openstack::{clients, field, write_clouds_yaml, Session};

const ADMIN: (&str, &str) = ("root", "admin-secret-1");
const MEMBER: (&str, &str) = ("alice", "alice-secret-1");

#[test]
fn openstack_clients_use_identity_and_compute_basics() {
    let Some(clients) = clients() else {
        return;
    };
    run_in_netns("oscli", move || async move {
        let mut cloud = Cloud::start().await;
        // The member registers as users do; the admin is made by the operator.
        cloud.register_and_login(MEMBER.0, MEMBER.1).await;
        let (_, member) = cloud.call(Method::GET, "/v1/users/me", None).await;
        let data_dir = cloud.data_path().to_string_lossy().into_owned();
        admin_create_user(&["--data-dir", &data_dir], ADMIN.0, ADMIN.1, true);
        cloud.login(ADMIN.0, ADMIN.1).await;
        let (_, admin) = cloud.call(Method::GET, "/v1/users/me", None).await;
        // The admin gives the member's project a quota of its own, which
        // the member's limits must show (the admin's stay the defaults).
        let (s, b) = cloud
            .call(
                Method::PUT,
                &format!(
                    "/v1/projects/{}/quotas",
                    member["project"].as_str().unwrap()
                ),
                Some(json!({"servers": 7, "vcpus": 9})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let clouds = write_clouds_yaml(cloud.data_path(), &cloud.url, &[ADMIN, MEMBER]);
        let home = cloud.data_path().join("home");
        std::fs::create_dir_all(&home).unwrap();

        for client in &clients {
            let label = client.label;
            let os = Session {
                client,
                clouds: clouds.clone(),
                home: home.clone(),
            };

            // Identity: a token, which is a Nubis token (works on /v1 too).
            let token = os.json("root", &["token", "issue"]);
            assert_eq!(token["project_id"], admin["project"], "[{label}] {token}");
            assert_eq!(token["user_id"], admin["id"], "[{label}] {token}");
            let id = token["id"].as_str().expect("token id");
            let me = cloud
                .http()
                .get(format!("{}/v1/users/me", cloud.url))
                .bearer_auth(id)
                .send()
                .await
                .unwrap();
            assert_eq!(me.status(), StatusCode::OK, "[{label}] the token on /v1");
            let stderr = os.fails(
                "alice",
                &["--os-password", "not-the-password", "token", "issue"],
            );
            assert!(stderr.contains("401"), "[{label}] wrong password: {stderr}");
            // Revoked through Keystone, it is gone from /v1 too.
            let theirs = os.json("alice", &["token", "issue"]);
            let theirs = theirs["id"].as_str().expect("token id").to_owned();
            let me = |t: String| {
                let req = cloud
                    .http()
                    .get(format!("{}/v1/users/me", cloud.url))
                    .bearer_auth(t);
                async move { req.send().await.unwrap().status() }
            };
            assert_eq!(me(theirs.clone()).await, StatusCode::OK, "[{label}]");
            let out = os.try_openstack("alice", &["token", "revoke", &theirs]);
            assert!(out.status.success(), "[{label}] token revoke: {out:?}");
            assert_eq!(
                me(theirs).await,
                StatusCode::UNAUTHORIZED,
                "[{label}] revoked"
            );

            // The catalog: identity and compute, under the API's URL.
            let catalog = os.json("root", &["catalog", "list"]);
            let text = catalog.to_string();
            for (kind, url) in [
                ("identity", format!("{}/identity", cloud.url)),
                ("compute", format!("{}/compute/v2.1", cloud.url)),
            ] {
                assert!(
                    catalog
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|e| e["Type"] == kind),
                    "[{label}] no {kind} in {text}"
                );
                assert!(text.contains(&url), "[{label}] no {url} in {text}");
            }
            assert!(
                !text.contains("\"volume"),
                "[{label}] lists only what exists: {text}"
            );

            // Flavors: the defaults, an admin's create, a member's 403.
            let flavors = os.json("alice", &["flavor", "list"]);
            let tiny = flavors
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["Name"] == "tiny")
                .unwrap_or_else(|| panic!("[{label}] no tiny flavor: {flavors}"));
            assert_eq!(tiny["RAM"], 128, "[{label}] {tiny}");
            let name = format!("osc-{label}");
            let created = os.json(
                "root",
                &[
                    "flavor", "create", "--ram", "256", "--vcpus", "1", "--disk", "2", &name,
                ],
            );
            assert_eq!(created["name"], name.as_str(), "[{label}] {created}");
            assert_eq!(created["ram"], 256, "[{label}] {created}");
            let (_, v1_flavors) = cloud.call(Method::GET, "/v1/flavors", None).await;
            assert!(
                v1_flavors
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|f| f["name"] == name.as_str()
                        && f["memory_mib"] == 256
                        && f["id"] == created["id"]),
                "[{label}] the flavor is in the same store: {v1_flavors}"
            );
            let stderr = os.fails(
                "alice",
                &[
                    "flavor", "create", "--ram", "256", "--vcpus", "1", "--disk", "1", "nope",
                ],
            );
            assert!(
                stderr.contains("403"),
                "[{label}] member flavor create: {stderr}"
            );

            // Key pairs: imported, listed, and only in their own project.
            let key_dir = tempfile::tempdir().unwrap();
            let key = key_dir.path().join("id");
            let keygen = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&key)
                .status()
                .expect("ssh-keygen");
            assert!(keygen.success());
            let public = key.with_extension("pub");
            let keyname = format!("key-{label}");
            let kp = os.json(
                "alice",
                &[
                    "keypair",
                    "create",
                    "--public-key",
                    public.to_str().unwrap(),
                    &keyname,
                ],
            );
            assert_eq!(kp["name"], keyname.as_str(), "[{label}] {kp}");
            let theirs = os.json("alice", &["keypair", "list"]);
            assert!(
                theirs
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["Name"] == keyname.as_str()),
                "[{label}] the member's list: {theirs}"
            );
            let admins = os.json("root", &["keypair", "list"]);
            assert!(
                !admins
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["Name"] == keyname.as_str()),
                "[{label}] another project's key pair is not listed: {admins}"
            );
            os.fails("root", &["keypair", "show", &keyname]);

            // Limits and quotas: the project's own, from its Nubis quota.
            let limits = os.json("alice", &["limits", "show", "--absolute"]);
            let max = |v: &Value| {
                let a = field(v, "maxTotalInstances", "Name", "Value");
                if a.is_null() {
                    field(v, "max_total_instances", "Name", "Value")
                } else {
                    a
                }
            };
            assert_eq!(max(&limits), 7, "[{label}] member limits: {limits}");
            let admin_limits = os.json("root", &["limits", "show", "--absolute"]);
            assert_eq!(
                max(&admin_limits),
                10,
                "[{label}] admin limits: {admin_limits}"
            );
            let quota = os.json("alice", &["quota", "show"]);
            assert_eq!(
                field(&quota, "instances", "Resource", "Limit"),
                7,
                "[{label}] {quota}"
            );
            assert_eq!(
                field(&quota, "cores", "Resource", "Limit"),
                9,
                "[{label}] {quota}"
            );

            // Projects: admins see every one (and any project's quota),
            // members their own.
            let names = |v: Value| -> Vec<String> {
                let mut n: Vec<String> = v
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["Name"].as_str().unwrap().to_owned())
                    .collect();
                n.sort();
                n
            };
            assert_eq!(
                names(os.json("root", &["project", "list"])),
                ["alice", "root"]
            );
            assert_eq!(names(os.json("alice", &["project", "list"])), ["alice"]);
            let shown = os.json("alice", &["project", "show", "alice"]);
            assert_eq!(shown["id"], member["project"], "[{label}] {shown}");
            let quota = os.json("root", &["quota", "show", "alice"]);
            assert_eq!(
                field(&quota, "instances", "Resource", "Limit"),
                7,
                "[{label}] {quota}"
            );
            os.fails("alice", &["project", "show", "root"]);
            // Admins set quotas (by project name); members may not.
            os.fails("alice", &["quota", "set", "--instances", "99", "alice"]);
            let set = os.try_openstack("root", &["quota", "set", "--instances", "8", "alice"]);
            assert!(set.status.success(), "[{label}] quota set: {set:?}");
            let (_, q) = cloud
                .call(
                    Method::GET,
                    &format!(
                        "/v1/projects/{}/quotas",
                        member["project"].as_str().unwrap()
                    ),
                    None,
                )
                .await;
            assert_eq!(q["limits"]["servers"], 8, "[{label}] {q}");
            let set = os.try_openstack("root", &["quota", "set", "--instances", "7", "alice"]);
            assert!(set.status.success(), "[{label}] quota set back: {set:?}");

            // openstacksdk, as a script uses it.
            let names = os.sdk(
                "import json, openstack\n\
                 conn = openstack.connect(cloud='alice')\n\
                 print(json.dumps(sorted(f.name for f in conn.compute.flavors())))",
            );
            assert!(
                names.as_array().unwrap().iter().any(|n| n == "tiny"),
                "[{label}] sdk flavors: {names}"
            );
        }
    });
}
