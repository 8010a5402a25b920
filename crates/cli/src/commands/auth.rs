//! `nubis register`, `nubis login`, `nubis logout`.

use crate::client::{failure_status, token_file, ApiClient};
use anyhow::Context;
use nubis_api::users::{TokenResponse, User};
use serde_json::json;
use std::io::BufRead;

/// The password from `--password`, `NUBIS_PASSWORD`, or a line of standard input.
pub fn read_password(given: Option<String>) -> anyhow::Result<String> {
    if let Some(p) = given.or_else(|| std::env::var("NUBIS_PASSWORD").ok()) {
        return Ok(p);
    }
    eprint!("Password: ");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

pub async fn register(
    client: &ApiClient,
    name: &str,
    password: Option<String>,
) -> anyhow::Result<()> {
    let password = read_password(password)?;
    let user: User = client
        .anonymous()
        .post("/v1/users", &json!({"name": name, "password": password}))
        .await?;
    println!(
        "Registered '{}'{}. Log in with: nubis login {}",
        user.name,
        if user.admin { " (admin)" } else { "" },
        user.name
    );
    Ok(())
}

pub async fn login(client: &ApiClient, name: &str, password: Option<String>) -> anyhow::Result<()> {
    let password = read_password(password)?;
    let resp: TokenResponse = client
        .anonymous()
        .post("/v1/tokens", &json!({"name": name, "password": password}))
        .await?;
    let path = token_file();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_private(&path, &resp.token)?;
    println!(
        "Logged in as '{}' until {}.",
        resp.user.name,
        crate::output::time_text(&resp.expires_at)
    );
    Ok(())
}

/// Writes a file only its owner can read.
fn write_private(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("saving the token to {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

/// `nubis logout`: revokes the saved token and forgets it. Logging out
/// when not logged in (again, or after the token expired) is no error.
pub async fn logout(client: &ApiClient) -> anyhow::Result<()> {
    if !client.has_token() {
        println!("You are not logged in.");
        return Ok(());
    }
    match client.delete("/v1/tokens/current").await {
        Ok(()) => {
            forget_token()?;
            println!("Logged out.");
            Ok(())
        }
        Err(e) if failure_status(&e) == Some(reqwest::StatusCode::UNAUTHORIZED) => {
            forget_token()?;
            println!("You were not logged in (the saved login had expired or was revoked).");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Removes the saved token; one that is already gone is fine.
fn forget_token() -> anyhow::Result<()> {
    let path = token_file();
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}
