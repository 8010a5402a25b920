//! Fault injection: rounds of random create/stop/start/reboot/delete bursts
//! through the API while `nubis up` (or, split, the controller or the agent)
//! is killed with SIGKILL at a random moment of the burst and restarted.
//! Every few rounds, and at the end, the cloud must converge within a bound:
//! each server's status matches what was last asked of it (or is `error`
//! with a fault), none is stuck in a transitional status, and the host holds
//! no orphan and misses nothing (`support::orphans`).
//!
//! The random sequence comes from a seed printed at the start; set
//! `NUBIS_FAULT_SEED` to replay it (timing still varies). `NUBIS_FAULT_ROUNDS`
//! sets the number of rounds (30 by default; `make soak` runs 300).

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::chaos::{env_u64, in_netns, postgres_database, s, Daemon, Deployment, Rng};
use support::cloud::upload_tiny_image_to;
use support::orphans::{self, Expected};
use support::workload::{perform, Api, Model, Op, Outcome, Want, API, CALL_TIMEOUT, CLUSTER};
use support::Reaper;

/// How long the cloud may take to converge after a round.
const CONVERGENCE_BOUND: Duration = Duration::from_secs(240);
/// Convergence is checked after every this many rounds (and after the last).
const CHECK_EVERY: u32 = 3;

/// Everything a convergence check needs.
struct Checker {
    api: Api,
    agent_dir: PathBuf,
    netns: String,
    /// The agent protocol as the host (its certificate from its data dir).
    agent_http: reqwest::Client,
    host: String,
    /// Servers in `error` at the last check: `id: fault`.
    errors: Mutex<Vec<String>>,
}

impl Checker {
    /// The problems left now (empty = converged); updates the model with
    /// what the lists resolve (lost creates, lost deletes).
    async fn problems(&self, model: &Mutex<Model>) -> Vec<String> {
        let Outcome::Answered(StatusCode::OK, list) =
            self.api.call(Method::GET, "/v1/servers", None).await
        else {
            return vec!["GET /v1/servers did not answer 200".into()];
        };
        let mut problems = Vec::new();
        let mut statuses = BTreeMap::new();
        let mut errors = Vec::new();
        {
            let mut m = model.lock().unwrap();
            let listed: BTreeMap<String, &Value> = list
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| (s["id"].as_str().unwrap_or_default().to_owned(), s))
                .collect();
            m.servers.retain(|id, want| {
                listed.contains_key(id) || !matches!(want, Want::Gone | Want::GoneOrAny)
            });
            for (id, server) in &listed {
                let status = server["status"].as_str().unwrap_or_default().to_owned();
                statuses.insert(id.clone(), status.clone());
                let want = *m
                    .servers
                    .entry(id.clone())
                    .or_insert(Want::RunningOrStopped);
                let fault = server["fault"].as_str().unwrap_or_default();
                if status == "error" {
                    errors.push(format!("{id}: {fault}"));
                }
                let ok = match (want, status.as_str()) {
                    (_, "error") => !fault.is_empty(),
                    (Want::Running, "running") | (Want::Stopped, "stopped") => true,
                    (Want::RunningOrStopped | Want::GoneOrAny, "running" | "stopped") => true,
                    _ => false,
                };
                if !ok {
                    problems.push(format!(
                        "server {id} is {status} (fault {fault:?}), wanted {want:?}"
                    ));
                }
            }
            for (id, want) in &m.servers {
                if !listed.contains_key(id) && *want != Want::Gone {
                    problems.push(format!("server {id} vanished (wanted {want:?})"));
                }
            }
        }
        let desired = self
            .agent_http
            .get(format!("{CLUSTER}/v1/agent/hosts/{}/desired", self.host))
            .timeout(CALL_TIMEOUT)
            .send()
            .await;
        let desired: Value = match desired {
            Ok(r) if r.status().is_success() => r.json().await.unwrap_or(Value::Null),
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                return vec![format!("the host's desired state: {status} {body}")];
            }
            Err(e) => return vec![format!("the host's desired state: {e}")],
        };
        *self.errors.lock().unwrap() = errors;
        let expected = Expected::new(&desired, &statuses);
        for id in statuses.keys() {
            if !expected.servers.contains_key(id) {
                problems.push(format!("server {id} is not in its host's desired state"));
            }
        }
        let findings = orphans::check(&self.agent_dir, &self.netns, &expected);
        problems.extend(findings.problems);
        problems
    }
}

impl Checker {
    /// The positive control: the checker reports a planted orphan directory
    /// and TAP, and a running server without its QEMU and disk.
    fn positive_control(&self) {
        let fake = "00000000-0000-4000-8000-00000000dead";
        let dir = self.agent_dir.join("instances").join(fake);
        std::fs::create_dir_all(&dir).unwrap();
        let tap = "ntap-0000dead";
        let ip = |args: &[&str]| {
            let ok = Command::new("ip")
                .args(["-n", &self.netns])
                .args(args)
                .status()
                .unwrap()
                .success();
            assert!(ok, "ip {args:?}");
        };
        ip(&["tuntap", "add", "dev", tap, "mode", "tap"]);
        let missing = "11111111-0000-4000-8000-00000000beef";
        let mut expected = Expected::default();
        expected.servers.insert(
            missing.into(),
            orphans::ExpectedServer {
                id: missing.into(),
                status: "running".into(),
                nics: Vec::new(),
            },
        );
        let found = orphans::check(&self.agent_dir, &self.netns, &expected).problems;
        ip(&["link", "del", tap]);
        std::fs::remove_dir(&dir).unwrap();
        for needle in [
            format!("orphan instance directory instances/{fake}"),
            format!("orphan TAP {tap}"),
            format!("server {missing} is running without a QEMU"),
            format!("server {missing} (running) has no disk"),
        ] {
            assert!(
                found.contains(&needle),
                "the orphan checker missed: {needle}\nit found: {found:#?}"
            );
        }
    }
}

/// The test's figures.
#[derive(Default)]
struct Figures {
    rounds: u32,
    kills: BTreeMap<&'static str, u32>,
    checks: u32,
    max_convergence: Duration,
    /// Problems seen while converging (gone by the end of the check).
    transient_problems: usize,
    orphans_found: usize,
    /// Servers found in `error` (with a fault) when a check converged.
    errors: usize,
}

/// Makes a user (as the operator: `nubis admin create-user --admin` on the
/// controller's store, `--data-dir work` and `database` if any; an admin,
/// to list hosts) and uploads the tiny guest (kernel, initrd, disk) as
/// image `tiny`; returns the API client.
async fn prepare(work: &Path, database: Option<&str>) -> Api {
    let http = reqwest::Client::new();
    support::wait_for_api(&http, API, Duration::from_secs(60)).await;
    let work_dir = work.to_string_lossy().into_owned();
    let mut store = vec!["--data-dir", work_dir.as_str()];
    if let Some(url) = database {
        store.extend(["--database-url", url]);
    }
    support::cloud::admin_create_user(&store, "chaos", "chaos-password", true);
    let creds = json!({"name": "chaos", "password": "chaos-password"});
    let t: Value = http
        .post(format!("{API}/v1/tokens"))
        .json(&creds)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = t["token"].as_str().expect("token").to_owned();
    let config = work.join("cli");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("token"), &token).unwrap();
    upload_tiny_image_to(API, &config);
    Api { http, token }
}

/// The id of the (only) host, once its agent registered.
async fn host_id(api: &Api) -> String {
    support::wait_for("the host to register", Duration::from_secs(60), || async {
        match api.call(Method::GET, "/v1/hosts", None).await {
            Outcome::Answered(StatusCode::OK, hosts) => hosts[0]["id"].as_str().map(str::to_owned),
            _ => None,
        }
    })
    .await
}

/// Runs the rounds against `deployment`; `agent_dir` holds `instances/`.
async fn run_rounds(
    mode: &str,
    mut deployment: Deployment,
    work: &Path,
    agent_dir: PathBuf,
    netns: String,
    database: Option<String>,
) {
    let seed = env_u64("NUBIS_FAULT_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let rounds = env_u64("NUBIS_FAULT_ROUNDS").unwrap_or(30) as u32;
    println!("fault injection ({mode}): seed {seed} (replay with NUBIS_FAULT_SEED={seed}), {rounds} rounds");
    let mut rng = Rng(seed);
    let api = prepare(work, database.as_deref()).await;
    let host = host_id(&api).await;
    let credentials = nubis_pki::HostCredentials::load(&agent_dir)
        .expect("the host's credentials")
        .expect("the host joined");
    let checker = Checker {
        api: api.clone(),
        agent_http: credentials
            .controller_client(reqwest::Client::builder())
            .expect("an agent protocol client"),
        agent_dir,
        netns,
        host,
        errors: Mutex::default(),
    };
    let model = Arc::new(Mutex::new(Model::default()));
    let mut figures = Figures::default();
    for round in 1..=rounds {
        // A burst: a few operations with random gaps, and a kill at a random
        // moment within it, while the operations are in flight.
        let ops: Vec<(u64, Op, u64)> = (0..2 + rng.below(4))
            .map(|_| {
                let op = match rng.below(100) {
                    0..=29 => Op::Create,
                    30..=49 => Op::Stop,
                    50..=64 => Op::Start,
                    65..=79 => Op::Reboot,
                    _ => Op::Delete,
                };
                (rng.below(700), op, rng.next())
            })
            .collect();
        let burst_ms: u64 = ops.iter().map(|(gap, ..)| gap).sum::<u64>() + 300;
        let kill_at = Duration::from_millis(rng.below(burst_ms));
        let victim_pick = rng.next();
        let second_kill = (rng.below(4) == 0).then(|| Duration::from_millis(rng.below(1500)));
        let burst = tokio::spawn({
            let api = api.clone();
            let model = model.clone();
            async move {
                for (gap, op, pick) in ops {
                    tokio::time::sleep(Duration::from_millis(gap)).await;
                    perform(&api, &model, op, pick).await;
                }
            }
        });
        tokio::time::sleep(kill_at).await;
        let killed = deployment.kill_and_restart(victim_pick);
        *figures.kills.entry(killed).or_default() += 1;
        if let Some(delay) = second_kill {
            // Sometimes again while it is starting up and adopting.
            tokio::time::sleep(delay).await;
            let killed = deployment.kill_and_restart(victim_pick >> 1);
            *figures.kills.entry(killed).or_default() += 1;
        }
        burst.await.expect("burst");
        figures.rounds = round;
        {
            let m = model.lock().unwrap();
            assert!(
                m.server_errors.is_empty(),
                "seed {seed}, round {round}: 5xx answers: {:?}\n{}",
                m.server_errors,
                deployment.log_tails()
            );
        }
        if round % CHECK_EVERY != 0 && round != rounds {
            continue;
        }
        // Convergence: poll until nothing is left to fix, within the bound.
        let started = Instant::now();
        let mut last = Vec::new();
        // Each problem seen while converging: when it was first and last seen.
        let mut seen: BTreeMap<String, (Duration, Duration)> = BTreeMap::new();
        while started.elapsed() < CONVERGENCE_BOUND {
            last = checker.problems(&model).await;
            if last.is_empty() {
                break;
            }
            figures.transient_problems += last.len();
            let now = started.elapsed();
            for p in &last {
                seen.entry(p.clone()).or_insert((now, now)).1 = now;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let took = started.elapsed();
        let errors_now = checker.errors.lock().unwrap().clone();
        if !last.is_empty() {
            figures.orphans_found += last.len();
            panic!(
                "seed {seed}, round {round} ({mode}): not converged after {took:?}:\n  {}\n{}",
                last.join("\n  "),
                deployment.log_tails()
            );
        }
        figures.checks += 1;
        figures.errors += errors_now.len();
        for e in &errors_now {
            println!("  in error at convergence: {e}");
        }
        figures.max_convergence = figures.max_convergence.max(took);
        let m = model.lock().unwrap();
        println!(
            "round {round}: converged in {:.1} s with {} servers ({:?})",
            took.as_secs_f64(),
            m.servers.len(),
            m.servers.values().collect::<Vec<_>>()
        );
        for (p, (first, last)) in &seen {
            println!(
                "  (seen from {:.1} s to {:.1} s, then healed) {p}",
                first.as_secs_f64(),
                last.as_secs_f64()
            );
        }
    }
    checker.positive_control();
    let m = model.lock().unwrap();
    let kills: u32 = figures.kills.values().sum();
    println!(
        "fault injection ({mode}) figures: seed {seed}, rounds {}, kills {kills} {:?}, \
         convergence checks {}, max convergence time {:.1} s, operations accepted {} / \
         refused {} / not sent {} / lost {}, problems seen while converging {}, \
         servers in error at convergence {}, orphans found {}",
        figures.rounds,
        figures.kills,
        figures.checks,
        figures.max_convergence.as_secs_f64(),
        m.accepted,
        m.refused,
        m.not_sent,
        m.lost,
        figures.transient_problems,
        figures.errors,
        figures.orphans_found
    );
    // The positive control that the checks did something: work was done
    // and killed in the middle of.
    assert_eq!(figures.rounds, rounds);
    assert!(kills >= rounds, "a kill per round");
    assert!(m.accepted > 0, "some operations were carried out");
    assert_eq!(figures.orphans_found, 0);
}

#[test]
fn random_kills_of_nubis_up_leave_nothing_stuck_or_orphaned() {
    in_netns("faults", |netns| async move {
        let work = tempfile::Builder::new()
            .prefix("nubis-faults-")
            .tempdir()
            .unwrap();
        let dir = work.path().to_string_lossy().into_owned();
        let _reaper = Reaper(dir.clone());
        let up = Daemon::new(
            "up",
            vec![
                s("up"),
                s("--data-dir"),
                dir.clone(),
                s("--accel"),
                s("tcg"),
                s("--stop-timeout"),
                s("5"),
            ],
            work.path().join("up.log"),
        );
        let agent_dir = work.path().join("agent");
        run_rounds(
            "nubis up",
            Deployment::Up(up),
            work.path(),
            agent_dir,
            netns,
            None,
        )
        .await;
    });
}

#[test]
fn random_kills_of_the_controller_or_the_agent_leave_nothing_stuck_or_orphaned() {
    let database = postgres_database();
    if database.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "under CI the split fault test runs on PostgreSQL (scripts/with-postgres.sh)"
        );
        println!("no NUBIS_TEST_DATABASE_URL: the controller uses SQLite");
    }
    in_netns("faultsplit", move |netns| async move {
        let work = tempfile::Builder::new()
            .prefix("nubis-faults-")
            .tempdir()
            .unwrap();
        let agent_work = tempfile::Builder::new()
            .prefix("nubis-faults-agent-")
            .tempdir()
            .unwrap();
        let dir = work.path().to_string_lossy().into_owned();
        let agent_dir = agent_work.path().to_string_lossy().into_owned();
        let _reaper = Reaper(agent_dir.clone());
        let mut args = vec![s("controller"), s("--data-dir"), dir.clone()];
        if let Some(url) = &database {
            args.extend([s("--database-url"), url.clone()]);
        }
        let controller = Daemon::new("controller", args, work.path().join("controller.log"));
        let join_token = support::join::join_token(&dir, database.as_deref());
        let agent = Daemon::new(
            "agent",
            vec![
                s("agent"),
                s("--controller-url"),
                s(CLUSTER),
                s("--data-dir"),
                agent_dir.clone(),
                s("--join-token"),
                join_token,
                s("--accel"),
                s("tcg"),
                s("--host-name"),
                s("host-a"),
                s("--stop-timeout"),
                s("5"),
            ],
            agent_work.path().join("agent.log"),
        );
        run_rounds(
            "split",
            Deployment::Split { controller, agent },
            work.path(),
            agent_work.path().join("agent"),
            netns,
            database.clone(),
        )
        .await;
    });
}
