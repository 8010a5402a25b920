//! Process control for the fault-injection test: `nubis` processes that
//! are SIGKILLed and started again, a seedable random source, and a
//! network namespace whose name the test body gets (the orphan checker
//! looks inside it).

use super::cloud::nubis_bin;
use super::netns::NetNs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// SplitMix64: small, seedable, good enough to pick operations.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
    )
}

/// A `nubis` process the test starts, kills and starts again.
pub struct Daemon {
    what: &'static str,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    pub fn new(what: &'static str, args: Vec<String>, log: PathBuf) -> Self {
        let mut d = Self {
            what,
            args,
            log,
            child: None,
        };
        d.start();
        d
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(nubis_bin())
            .args(&self.args)
            .env("NUBIS_LOG", "info,nubis=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting nubis {}: {e}", self.what));
        self.child = Some(child);
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }

    /// The last lines of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        strip_colours(&lines[lines.len().saturating_sub(80)..].join("\n"))
    }
}

/// Removes ANSI colour sequences (`ESC [ ... m`) from a log.
pub fn strip_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What runs the cloud: one `nubis up`, or a controller and an agent.
pub enum Deployment {
    Up(Daemon),
    Split { controller: Daemon, agent: Daemon },
}

impl Deployment {
    /// SIGKILLs one process (chosen by `pick` in split mode) and starts it
    /// again; returns what was killed.
    pub fn kill_and_restart(&mut self, pick: u64) -> &'static str {
        let victim = match self {
            Deployment::Up(up) => up,
            Deployment::Split { controller, agent } => {
                if pick.is_multiple_of(2) {
                    controller
                } else {
                    agent
                }
            }
        };
        victim.kill9();
        victim.start();
        victim.what
    }

    pub fn log_tails(&self) -> String {
        match self {
            Deployment::Up(up) => format!("--- nubis up log ---\n{}", up.log_tail()),
            Deployment::Split { controller, agent } => format!(
                "--- controller log ---\n{}\n--- agent log ---\n{}",
                controller.log_tail(),
                agent.log_tail()
            ),
        }
    }
}

/// Runs `body` in a fresh network namespace with its own runtime; the
/// namespace's name is passed in (the orphan checker looks inside it).
pub fn in_netns<F, Fut>(test: &str, body: F)
where
    F: FnOnce(String) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let ns = NetNs::new(test);
    let name = ns.name.clone();
    let result = std::thread::spawn(move || {
        let file = std::fs::File::open(format!("/var/run/netns/{name}")).expect("netns");
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(body(name));
    })
    .join();
    drop(ns);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

pub fn s(v: &str) -> String {
    v.to_owned()
}

/// A fresh PostgreSQL database on the test run's server, if there is one.
pub fn postgres_database() -> Option<String> {
    let admin = std::env::var("NUBIS_TEST_DATABASE_URL").ok()?;
    Some(super::postgres::create_database(&admin, "faults").url)
}
