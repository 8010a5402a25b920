//! Joining hosts in tests: join tokens made with `nubis admin join-token`,
//! as an operator does on the controller's machine.

use super::cloud::nubis_bin;
use std::process::Command;

/// A fresh join token for the controller with this data dir (and database,
/// when it is not the data dir's SQLite).
pub fn join_token(data_dir: &str, database_url: Option<&str>) -> String {
    let mut args = vec!["admin", "join-token", "--data-dir", data_dir];
    if let Some(url) = database_url {
        args.extend(["--database-url", url]);
    }
    let out = Command::new(nubis_bin())
        .args(&args)
        .output()
        .expect("nubis admin join-token");
    assert!(
        out.status.success(),
        "nubis admin join-token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("nubis-join."), "{token}");
    token
}
