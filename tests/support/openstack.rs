//! The real OpenStack clients, as users run them: Debian's `openstack`
//! (python3-openstackclient, scripts/install-deps.sh) and the newest
//! python-openstackclient + openstacksdk from PyPI (a venv made by
//! scripts/openstack-venv.sh), each with only a `clouds.yaml` for
//! configuration. Without them a test skips with a note; under CI it fails.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Debian's client.
pub const DEBIAN_OPENSTACK: &str = "/usr/bin/openstack";
/// The script that makes the PyPI venv.
const VENV_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/openstack-venv.sh");

/// One installed client: its `openstack` and the python that has its sdk.
#[derive(Clone, Debug)]
pub struct Client {
    pub label: &'static str,
    pub openstack: PathBuf,
    pub python: PathBuf,
}

/// Skips (notes why) or, under CI, fails.
pub fn missing(what: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} (required in CI: scripts/install-deps.sh and scripts/openstack-venv.sh)"
    );
    eprintln!("note: {what}; skipping");
}

/// Both clients, or `None` (after a note, or a failure under CI).
/// Runs in the root namespace: the venv is made from PyPI.
pub fn clients() -> Option<Vec<Client>> {
    if !Path::new(DEBIAN_OPENSTACK).exists() {
        missing("Debian's python3-openstackclient is not installed");
        return None;
    }
    let out = Command::new(VENV_SCRIPT)
        .output()
        .expect("running scripts/openstack-venv.sh");
    if !out.status.success() {
        missing(&format!(
            "the PyPI OpenStack clients could not be installed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
        return None;
    }
    let openstack = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let python = openstack.with_file_name("python");
    Some(vec![
        Client {
            label: "debian",
            openstack: DEBIAN_OPENSTACK.into(),
            python: "/usr/bin/python3".into(),
        },
        Client {
            label: "pypi",
            openstack,
            python,
        },
    ])
}

/// A `clouds.yaml` in `dir` with a cloud per (user, password), named after
/// the user, as a user writes it.
pub fn write_clouds_yaml(dir: &Path, url: &str, users: &[(&str, &str)]) -> PathBuf {
    let cloud = |(user, password): &(&str, &str)| {
        format!(
            "  {user}:\n    auth:\n      auth_url: {url}/identity\n      username: {user}\n      \
             password: {password}\n      project_name: {user}\n      user_domain_name: Default\n      \
             project_domain_name: Default\n    region_name: RegionOne\n    identity_api_version: 3\n"
        )
    };
    let path = dir.join("clouds.yaml");
    let clouds: String = users.iter().map(cloud).collect();
    std::fs::write(&path, format!("clouds:\n{clouds}")).expect("writing clouds.yaml");
    path
}

/// Runs a client program with only the clouds.yaml for configuration.
pub fn run(program: &Path, args: &[&str], clouds: &Path, home: &Path) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("OS_CLIENT_CONFIG_FILE", clouds)
        .env("HOME", home)
        .env_remove("OS_CLOUD");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OS_") && key != "OS_CLIENT_CONFIG_FILE" {
            cmd.env_remove(key);
        }
    }
    cmd.output().expect("running an OpenStack client")
}

/// One client with one clouds.yaml.
pub struct Session<'a> {
    pub client: &'a Client,
    pub clouds: PathBuf,
    pub home: PathBuf,
}

impl Session<'_> {
    /// `openstack --os-cloud CLOUD ARGS`, whatever its outcome.
    pub fn try_openstack(&self, cloud: &str, args: &[&str]) -> Output {
        let mut all = vec!["--os-cloud", cloud];
        all.extend_from_slice(args);
        run(&self.client.openstack, &all, &self.clouds, &self.home)
    }

    /// `openstack --os-cloud CLOUD ARGS`, which must succeed; its stdout.
    pub fn ok(&self, cloud: &str, args: &[&str]) -> String {
        let out = self.try_openstack(cloud, args);
        assert!(
            out.status.success(),
            "[{}] openstack {args:?} as {cloud} failed: {}{}",
            self.client.label,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `openstack --os-cloud CLOUD ARGS -f json`, which must succeed.
    pub fn json(&self, cloud: &str, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend_from_slice(&["-f", "json"]);
        let out = self.ok(cloud, &all);
        serde_json::from_str(&out).unwrap_or_else(|e| {
            panic!(
                "[{}] openstack {args:?}: not JSON ({e}): {out}",
                self.client.label
            )
        })
    }

    /// `openstack ...` that must fail; its stderr.
    pub fn fails(&self, cloud: &str, args: &[&str]) -> String {
        let out = self.try_openstack(cloud, args);
        assert!(
            !out.status.success(),
            "[{}] openstack {args:?} as {cloud} should fail but printed {}",
            self.client.label,
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// A Python snippet with the client's openstacksdk; its stdout as JSON.
    pub fn sdk(&self, snippet: &str) -> Value {
        let out = run(
            &self.client.python,
            &["-c", snippet],
            &self.clouds,
            &self.home,
        );
        assert!(
            out.status.success(),
            "[{}] openstacksdk snippet failed: {}",
            self.client.label,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("the snippet prints JSON")
    }
}

/// The value of `name` in a `-f json` answer that is either an object or a
/// list of `{key_col: name, value_col: v}` rows (the clients differ).
pub fn field(v: &Value, name: &str, key_col: &str, value_col: &str) -> Value {
    match v {
        Value::Object(m) => m.get(name).cloned().unwrap_or(Value::Null),
        Value::Array(rows) => rows
            .iter()
            .find(|r| r[key_col] == name)
            .map(|r| r[value_col].clone())
            .unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// Makes `admin` an administrator as the operator does (`nubis admin
/// create-user --admin`), logs `cloud` in as it, and gives the cloud the
/// floating-IP pool `public` (Neutron's external network of that name).
pub async fn admin_with_public_pool(cloud: &mut super::cloud::Cloud, admin: (&str, &str)) {
    use reqwest::{Method, StatusCode};
    let data_dir = cloud.data_path().to_string_lossy().into_owned();
    super::cloud::admin_create_user(&["--data-dir", &data_dir], admin.0, admin.1, true);
    cloud.login(admin.0, admin.1).await;
    let (s, pool) = cloud
        .call(
            Method::POST,
            "/v1/floating-ip-pools",
            Some(serde_json::json!({"name": "public", "first": "203.0.113.10", "last": "203.0.113.40"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{pool}");
}
