//! `nubis audit` against `nubis up` in a network namespace: a create, a
//! failed login and a refusal show up with user, source address, action and
//! result in the table, `--json` and the `--jsonl` export, filters narrow
//! them, a member sees only their own project's records, and no password
//! or token appears.

mod support;

use serde_json::Value;
use std::process::Output;
use support::cloud::{admin_create_user, nubis_bin, Cloud};
use support::netns::run_in_netns;

const ADMIN_PASSWORD: &str = "admin password 7c2e";
const MEMBER_PASSWORD: &str = "member password 41ab";
const WRONG_PASSWORD: &str = "not the password 93fd";

/// A CLI user: its own config dir (saved login).
struct User {
    url: String,
    config: std::path::PathBuf,
}

impl User {
    /// Runs the CLI, which may fail.
    fn run(&self, args: &[&str]) -> Output {
        std::process::Command::new(nubis_bin())
            .args(args)
            .env("NUBIS_URL", &self.url)
            .env("NUBIS_CONFIG_DIR", &self.config)
            .env_remove("NUBIS_TOKEN")
            .env_remove("NUBIS_PASSWORD")
            .output()
            .expect("running the nubis CLI")
    }

    /// Runs a command that must succeed; returns its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "nubis {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8")
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(&[args, &["--json"]].concat());
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }
}

#[test]
fn nubis_audit_shows_who_did_what_from_where() {
    run_in_netns("audit-cli", || async {
        let cloud = Cloud::start().await;
        let user = |name: &str| User {
            url: cloud.url.clone(),
            config: cloud.data_path().join(format!("cli-{name}")),
        };
        let (admin, member) = (user("root"), user("bob"));
        // Admins are made on the controller's machine, never by registering.
        let data_dir = cloud.data_path().to_string_lossy().into_owned();
        admin_create_user(&["--data-dir", &data_dir], "root", ADMIN_PASSWORD, true);
        admin.ok(&["login", "root", "--password", ADMIN_PASSWORD]);
        member.ok(&["register", "bob", "--password", MEMBER_PASSWORD]);
        member.ok(&["login", "bob", "--password", MEMBER_PASSWORD]);
        let wrong = member.run(&["login", "bob", "--password", WRONG_PASSWORD]);
        assert!(!wrong.status.success());
        let key = cloud.data_path().join("k.pem");
        member.ok(&[
            "keypair",
            "create",
            "k",
            "--private-key-file",
            key.to_str().unwrap(),
        ]);
        // Creating a flavor is for admins: bob is refused.
        let refused = member.run(&[
            "flavor",
            "create",
            "big",
            "--vcpus",
            "2",
            "--memory-mib",
            "256",
            "--disk-gib",
            "2",
        ]);
        assert!(!refused.status.success());

        // The table: who, from where, what, on which object, how it ended.
        let table = admin.ok(&["audit"]);
        for needle in [
            "keypair.create",
            "token.create",
            "401 denied (unauthorized)",
            "403 denied (forbidden)",
            "flavor.create",
            "127.0.0.1",
            "bob",
        ] {
            assert!(table.contains(needle), "no {needle:?} in:\n{table}");
        }

        // JSON, with filters.
        let failed = admin.json(&["audit", "--action", "token.create", "--outcome", "denied"]);
        let events = failed["events"].as_array().expect("events");
        assert_eq!(events.len(), 1, "{failed:#}");
        assert_eq!(events[0]["user_name"], "bob");
        assert_eq!(events[0]["source_address"], "127.0.0.1");
        assert_eq!(events[0]["status"], 401);
        let created = admin.json(&["audit", "--user", "bob", "--action", "keypair.create"]);
        let created = created["events"].as_array().expect("events");
        assert_eq!(created.len(), 1);
        assert_eq!(created[0]["object_type"], "keypair");
        assert!(created[0]["object_id"].is_string(), "{:#}", created[0]);
        let none = admin.json(&["audit", "--since", "2999-01-01T00:00:00Z"]);
        assert_eq!(none["events"], Value::Array(vec![]));

        // The export: every record, one JSON object per line, like --json.
        let all = admin.json(&["audit", "--limit", "1000"]);
        let all = all["events"].as_array().expect("events").clone();
        let export = admin.ok(&["audit", "--jsonl"]);
        let lines: Vec<Value> = export
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        // (`--json` shows times to the second, the export as stored.)
        let ids = |v: &[Value]| -> Vec<String> {
            v.iter()
                .map(|e| e["id"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(ids(&lines), ids(&all));
        assert!(lines.len() >= 7, "{export}");
        assert!(
            lines
                .iter()
                .all(|e| e["time"].as_str().unwrap().contains('.')),
            "{export}"
        );
        let cli_calls = lines.iter().filter(|e| e["action"] == "keypair.create");
        assert!(
            cli_calls.into_iter().all(|e| e["user_agent"]
                .as_str()
                .is_some_and(|a| a.starts_with("nubis-cli/"))),
            "{export}"
        );

        // Pages: --limit, then --marker from the JSON.
        let first = admin.json(&["audit", "--limit", "2"]);
        let marker = first["next_marker"].as_str().expect("a next page");
        let second = admin.json(&["audit", "--limit", "2", "--marker", marker]);
        assert_eq!(second["events"][0], all[2]);

        // A member sees their own project's records only.
        let mine = member.json(&["audit", "--limit", "1000"]);
        let mine = mine["events"].as_array().expect("events");
        let project = mine
            .iter()
            .find(|e| e["action"] == "keypair.create")
            .expect("bob's keypair")["project"]
            .clone();
        assert!(mine.iter().all(|e| e["project"] == project), "{mine:#?}");
        assert!(mine.len() < all.len());
        assert!(!mine.iter().any(|e| e["user_name"] == "root"), "{mine:#?}");

        // No password or token in anything the trail printed.
        let tokens: Vec<String> = ["root", "bob"]
            .iter()
            .map(|n| {
                std::fs::read_to_string(cloud.data_path().join(format!("cli-{n}/token")))
                    .expect("saved token")
                    .trim()
                    .to_owned()
            })
            .collect();
        let printed = format!("{table}{export}{}", serde_json::to_string(&all).unwrap());
        for secret in [ADMIN_PASSWORD, MEMBER_PASSWORD, WRONG_PASSWORD]
            .into_iter()
            .chain(tokens.iter().map(String::as_str))
        {
            assert!(secret.len() >= 16, "a real secret: {secret:?}");
            assert!(!printed.contains(secret), "the trail shows {secret:?}");
        }
    });
}
