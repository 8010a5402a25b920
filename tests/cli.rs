//! The `nubis` CLI as a new user meets it, running the real binary against
//! `nubis up` in a network namespace: messages name the CLI's own flags and
//! carry no parser positions; one login hint; logging out twice is fine;
//! floating IPs and security groups round trip; `server show` is readable;
//! `--wait` ends with the final state; a log written to a file has no
//! colour codes.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::cloud::{nubis_bin, Cloud};
use support::netns::run_in_netns;

/// The CLI with its own config dir (saved token), as a user at a shell.
struct User {
    url: String,
    config: PathBuf,
}

/// What one CLI run said.
struct Run {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(out: Output) -> Self {
        Self {
            ok: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl User {
    fn new(url: &str, config: &Path) -> Self {
        std::fs::create_dir_all(config).expect("config dir");
        Self {
            url: url.to_owned(),
            config: config.to_owned(),
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        let out = Command::new(nubis_bin())
            .args(args)
            .env("NUBIS_URL", &self.url)
            .env("NUBIS_CONFIG_DIR", &self.config)
            .env_remove("NUBIS_TOKEN")
            .env_remove("NUBIS_PASSWORD")
            .output()
            .expect("running the nubis CLI");
        Run::from(out)
    }

    /// Runs a command that must succeed.
    fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert!(run.ok, "nubis {args:?} failed:\n{run}");
        run
    }

    /// Runs a command that must fail.
    fn fails(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert!(!run.ok, "nubis {args:?} should have failed:\n{run}");
        run
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let run = self.ok(&all);
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{run}"))
    }
}

/// Times with a fraction of a second (`12:00:00.123`) in `text`.
fn fractional_times(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    (0..b.len().saturating_sub(9))
        .filter(|&i| {
            let d = |j: usize| b[i + j].is_ascii_digit();
            d(0) && d(1)
                && b[i + 2] == b':'
                && d(3)
                && d(4)
                && b[i + 5] == b':'
                && d(6)
                && d(7)
                && b[i + 8] == b'.'
                && d(9)
        })
        .map(|i| text[i..(i + 15).min(text.len())].to_owned())
        .collect()
}

#[test]
fn fractional_times_are_found() {
    assert_eq!(
        fractional_times("at 2026-11-29T16:09:12.123Z"),
        ["16:09:12.123Z"]
    );
    assert!(fractional_times("at 2026-11-29T16:09:12Z, 10.5 GiB").is_empty());
}

#[test]
fn cli_speaks_to_a_new_user() {
    run_in_netns("cli", || async {
        let cloud = Cloud::start().await;
        let user = User::new(&cloud.url, &cloud.data_path().join("cli"));

        // A bad size is refused before any request, naming the flag. The
        // API address leads nowhere: a request would fail differently, as
        // the positive control shows.
        let offline = User::new("http://127.0.0.1:9", &cloud.data_path().join("offline"));
        let create = |memory_mib: &'static str| {
            let sized = [
                "--vcpus",
                "1",
                "--disk-gib",
                "1",
                "--memory-mib",
                memory_mib,
            ];
            [&["server", "create", "x", "--image", "i"][..], &sized[..]].concat()
        };
        let bad = offline.fails(&create("0"));
        assert_eq!(bad.code, Some(2), "a usage error:\n{bad}");
        assert!(
            bad.stderr.contains(
                "invalid value '0' for '--memory-mib <MIB>': must be between 64 and 262144 MiB"
            ),
            "{bad}"
        );
        assert!(
            !bad.stderr.contains("memory_mib") && !bad.stderr.contains("cannot reach"),
            "{bad}"
        );
        let sent = offline.fails(&create("128"));
        assert!(sent.stderr.contains("cannot reach the Nubis API"), "{sent}");

        // Register: a short password gets the reason, without parser positions.
        let short = user.fails(&["register", "alice", "--password", "short"]);
        assert!(short.stderr.contains("at least 8 characters"), "{short}");
        assert!(!short.stderr.contains("at line"), "{short}");
        user.ok(&["register", "alice", "--password", "alice-password"]);

        // A wrong password: the reason, and at most one hint.
        let wrong = user.fails(&["login", "alice", "--password", "not-her-password"]);
        assert!(
            wrong.stderr.contains("wrong user name or password"),
            "{wrong}"
        );
        // The user was just logging in: no "log in with ..." hint to repeat.
        assert!(!wrong.stderr.contains("log in with"), "{wrong}");
        assert!(!wrong.stderr.contains("Authorization"), "{wrong}");

        // Not logged in yet: says so, with the hint once.
        let anonymous = user.fails(&["server", "list"]);
        assert!(
            anonymous.stderr.contains("you are not logged in"),
            "{anonymous}"
        );
        assert_eq!(
            anonymous.stderr.matches("nubis login").count(),
            1,
            "{anonymous}"
        );
        assert!(!anonymous.stderr.contains("Authorization"), "{anonymous}");

        let login = user.ok(&["login", "alice", "--password", "alice-password"]);
        assert!(
            login.stdout.contains("Logged in as 'alice' until "),
            "{login}"
        );
        assert!(fractional_times(&login.stdout).is_empty(), "{login}");

        // A server with terms, through the CLI; --wait ends with the state.
        cloud.upload_tiny_image();
        let created = user.ok(&[
            "server",
            "create",
            "web",
            "--image",
            "tiny",
            "--flavor",
            "tiny",
            "--inbound-mbit",
            "10",
            "--outbound-mbit",
            "10",
            "--traffic-quota-gib",
            "50",
            "--lease",
            "3d",
            "--wait",
        ]);
        assert!(created.stderr.contains("web: running (after "), "{created}");
        assert!(
            !created.stderr.contains('\u{1b}'),
            "no spinner off a terminal:\n{created}"
        );

        // `server show`: names, readable terms, times to the second.
        let server = user.json(&["server", "show", "web"]);
        let image_id = server["image"].as_str().expect("image id").to_owned();
        let flavor_id = server["flavor"].as_str().expect("flavor id").to_owned();
        assert!(fractional_times(&server.to_string()).is_empty(), "{server}");
        let show = user.ok(&["server", "show", "web"]);
        let row = |field: &str| -> String {
            show.stdout
                .lines()
                .find(|l| {
                    let first = l.trim_start_matches('│').split('┆').next();
                    first.map(str::trim) == Some(field)
                })
                .unwrap_or_else(|| panic!("no {field} row:\n{show}"))
                .to_owned()
        };
        assert!(row("image").contains("tiny"), "{show}");
        assert!(row("flavor").contains("tiny"), "{show}");
        assert!(
            !show.stdout.contains(&image_id) && !show.stdout.contains(&flavor_id),
            "{show}"
        );
        assert!(
            row("bandwidth").contains("10 Mbit/s in, 10 Mbit/s out"),
            "{show}"
        );
        assert!(
            row("traffic_quota").contains("50 GiB/month, throttle"),
            "{show}"
        );
        assert!(
            row("lease").contains("expires ") && row("lease").contains(" UTC (in 2 days)"),
            "{show}"
        );
        assert!(
            !show.stdout.contains('{') && !show.stdout.contains('"'),
            "raw JSON:\n{show}"
        );
        assert!(fractional_times(&show.stdout).is_empty(), "{show}");
        assert!(row("created_at").contains('T'), "{show}");

        // Security groups round trip.
        user.ok(&[
            "security-group",
            "create",
            "web-sg",
            "--description",
            "web servers",
        ]);
        let added = user.ok(&[
            "security-group",
            "rule",
            "add",
            "web-sg",
            "--protocol",
            "tcp",
            "--port",
            "22",
            "--remote-cidr",
            "10.0.0.0/8",
        ]);
        assert!(
            added.stdout.contains("ingress tcp 22 from 10.0.0.0/8"),
            "{added}"
        );
        let sg_show = user.ok(&["security-group", "show", "web-sg"]);
        assert!(
            sg_show.stdout.contains("ingress tcp 22 from 10.0.0.0/8"),
            "{sg_show}"
        );
        assert!(sg_show.stdout.contains("web servers"), "{sg_show}");
        let group = user.json(&["security-group", "show", "web-sg"]);
        let rule_id = group["rules"][0]["id"]
            .as_str()
            .expect("rule id")
            .to_owned();
        let listed = user.ok(&["security-group", "list"]);
        assert!(
            listed.stdout.contains("web-sg") && listed.stdout.contains("default"),
            "{listed}"
        );
        user.ok(&["security-group", "rule", "delete", "web-sg", &rule_id]);
        let group = user.json(&["security-group", "show", "web-sg"]);
        assert_eq!(group["rules"], serde_json::json!([]), "{group}");
        user.ok(&["security-group", "delete", "web-sg"]);
        let gone = user.fails(&["security-group", "show", "web-sg"]);
        assert!(
            gone.stderr.contains("web-sg") || gone.stderr.contains("not found"),
            "{gone}"
        );

        // Floating IPs round trip. The pool is made by an admin, whom the
        // operator creates on the controller's machine (registering never
        // makes one): `nubis admin create-user` finds `nubis up`'s store
        // by its --data-dir.
        let data_dir = cloud.data_path().to_string_lossy().into_owned();
        support::cloud::admin_create_user(
            &["--data-dir", &data_dir],
            "root",
            "root-password",
            true,
        );
        let operator = User::new(&cloud.url, &cloud.data_path().join("operator-cli"));
        operator.ok(&["login", "root", "--password", "root-password"]);
        let refused = user.fails(&[
            "floating-ip",
            "pool",
            "create",
            "public",
            "--first",
            "203.0.113.10",
            "--last",
            "203.0.113.12",
        ]);
        assert!(refused.stderr.contains("admin"), "{refused}");
        operator.ok(&[
            "floating-ip",
            "pool",
            "create",
            "public",
            "--first",
            "203.0.113.10",
            "--last",
            "203.0.113.12",
        ]);
        let pools = user.ok(&["floating-ip", "pool", "list"]);
        assert!(
            pools.stdout.contains("public") && pools.stdout.contains("203.0.113.12"),
            "{pools}"
        );
        let allocated = user.ok(&["floating-ip", "create", "--pool", "public"]);
        assert!(allocated.stdout.contains("203.0.113.10"), "{allocated}");
        user.ok(&["floating-ip", "associate", "203.0.113.10", "web"]);
        let ips = user.ok(&["floating-ip", "list"]);
        let line = ips
            .stdout
            .lines()
            .find(|l| l.contains("203.0.113.10"))
            .unwrap_or_default();
        assert!(line.contains("web") && line.contains("public"), "{ips}");
        assert!(fractional_times(&ips.stdout).is_empty(), "{ips}");
        user.ok(&["floating-ip", "disassociate", "203.0.113.10"]);
        let ips = user.json(&["floating-ip", "list"]);
        assert_eq!(ips[0]["server"], Value::Null, "{ips}");
        user.ok(&["floating-ip", "delete", "203.0.113.10"]);
        assert_eq!(user.json(&["floating-ip", "list"]), serde_json::json!([]));

        // `stop --wait` off a terminal: plain progress lines, then the
        // final state (after the agent's ACPI-then-hard-stop escalation).
        let stopped = user.ok(&["server", "stop", "web", "--wait"]);
        assert!(stopped.stdout.contains("web: stopped (after "), "{stopped}");
        assert!(
            stopped.stderr.contains("web: "),
            "progress lines:\n{stopped}"
        );
        assert!(
            !stopped.stderr.contains('\u{1b}'),
            "no spinner off a terminal:\n{stopped}"
        );

        // Logging out twice, and with a token the API no longer knows.
        let out = user.ok(&["logout"]);
        assert!(out.stdout.contains("Logged out."), "{out}");
        let again = user.ok(&["logout"]);
        assert!(again.stdout.contains("not logged in"), "{again}");
        assert!(!again.stderr.contains("Authorization"), "{again}");
        let after = user.fails(&["server", "list"]);
        assert!(after.stderr.contains("you are not logged in"), "{after}");
        std::fs::write(user.config.join("token"), "revoked-or-made-up").expect("token");
        let stale = user.ok(&["logout"]);
        assert!(stale.stdout.contains("not logged in"), "{stale}");
        assert!(
            !user.config.join("token").exists(),
            "the stale token is forgotten"
        );

        // `nubis up` logged to a file: text, but no colour codes.
        let log = std::fs::read(cloud.data_path().join("up.log")).expect("up.log");
        let text = String::from_utf8_lossy(&log);
        assert!(text.contains("INFO"), "the log has lines:\n{text}");
        assert!(
            !log.contains(&0x1b),
            "ESC bytes in a log written to a file:\n{text}"
        );
    });
}
