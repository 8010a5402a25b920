//! `nubis keypair ...`: SSH key pairs, imported or generated.

use crate::client::{segment, ApiClient};
use crate::output::{print_list, print_one};
use anyhow::Context;
use clap::Subcommand;
use nubis_api::keypairs::{CreatedKeypair, Keypair};
use serde_json::json;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `nubis keypair` subcommands.
#[derive(Subcommand, Debug)]
pub enum KeypairCommand {
    /// List the project's key pairs.
    List,
    /// Show a key pair (by name or id).
    Show {
        /// The key pair: name or id.
        keypair: String,
    },
    /// Import a public key, or have an ed25519 key pair generated.
    Create {
        /// The key pair's name.
        name: String,
        /// Import this OpenSSH public key (e.g. ~/.ssh/id_ed25519.pub).
        #[arg(long, value_name = "PATH")]
        public_key_file: Option<PathBuf>,
        /// Where to save a generated private key (mode 0600, never
        /// overwritten). Default: ./NAME.pem.
        #[arg(long, value_name = "PATH", conflicts_with = "public_key_file")]
        private_key_file: Option<PathBuf>,
    },
    /// Delete a key pair (by name or id); servers keep the key they got.
    Delete {
        /// The key pair: name or id.
        keypair: String,
    },
}

/// Runs one `nubis keypair` subcommand.
pub async fn run(client: &ApiClient, cmd: KeypairCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        KeypairCommand::List => list(client, json).await,
        KeypairCommand::Show { keypair } => {
            print_one(json, &find(client, &keypair).await?);
            Ok(())
        }
        KeypairCommand::Create {
            name,
            public_key_file: Some(public),
            ..
        } => import(client, &name, &public, json).await,
        KeypairCommand::Create {
            name,
            private_key_file,
            ..
        } => {
            let path = private_key_file.unwrap_or_else(|| default_private_key_file(&name));
            generate(client, &name, &path, json).await
        }
        KeypairCommand::Delete { keypair } => delete(client, &keypair).await,
    }
}

/// `./NAME.pem`: where a generated private key goes unless told otherwise.
pub fn default_private_key_file(name: &str) -> PathBuf {
    Path::new(".").join(format!("{name}.pem"))
}

async fn list(client: &ApiClient, json: bool) -> anyhow::Result<()> {
    let keypairs: Vec<Keypair> = client.get("/v1/keypairs").await?;
    print_list(
        json,
        &keypairs,
        &["name", "type", "fingerprint", "id"],
        |k| {
            vec![
                k.name.clone(),
                k.public_key
                    .split_whitespace()
                    .next()
                    .unwrap_or("-")
                    .to_owned(),
                k.fingerprint.clone(),
                k.id.to_string(),
            ]
        },
    );
    Ok(())
}

/// Looks a key pair up by name or id (the API accepts either).
pub async fn find(client: &ApiClient, reference: &str) -> anyhow::Result<Keypair> {
    client
        .get(&format!("/v1/keypairs/{}", segment(reference)))
        .await
}

async fn import(client: &ApiClient, name: &str, file: &Path, json: bool) -> anyhow::Result<()> {
    let public_key = std::fs::read_to_string(file)
        .with_context(|| format!("reading the public key {}", file.display()))?;
    let created: CreatedKeypair = client
        .post(
            "/v1/keypairs",
            &json!({"name": name, "public_key": public_key.trim()}),
        )
        .await?;
    let k = created.keypair;
    if json {
        print_one(json, &k);
    } else {
        println!("Imported key pair '{}' ({}).", k.name, k.fingerprint);
    }
    Ok(())
}

/// Has the API generate a key pair and saves its private key to `path`.
///
/// The file is created (exclusively, mode 0600) before asking the API, so an
/// existing file is never overwritten and no key is generated that could not
/// be saved.
async fn generate(client: &ApiClient, name: &str, path: &Path, json: bool) -> anyhow::Result<()> {
    let mut file = create_private_file(path)?;
    let created: CreatedKeypair = match client.post("/v1/keypairs", &json!({"name": name})).await {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
    };
    let k = &created.keypair;
    let saved = match &created.private_key {
        Some(key) => file
            .write_all(with_final_newline(key).as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("saving the private key to {}", path.display())),
        None => Err(anyhow::anyhow!("the API returned no private key")),
    };
    if let Err(e) = saved {
        // The private key is lost: do not leave a key pair nobody can use.
        let _ = std::fs::remove_file(path);
        let _ = client.delete(&format!("/v1/keypairs/{}", k.id)).await;
        return Err(e.context(format!("key pair '{name}' was deleted again")));
    }
    if json {
        print_one(json, k);
    } else {
        println!(
            "Created key pair '{}' ({}).\nPrivate key saved to {} (mode 0600); it is not kept anywhere else.",
            k.name,
            k.fingerprint,
            path.display()
        );
    }
    Ok(())
}

/// Creates a new file only its owner can read; refuses to replace anything.
fn create_private_file(path: &Path) -> anyhow::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
                "{} already exists; remove it or choose another --private-key-file",
                path.display()
            ),
            _ => anyhow::Error::new(e).context(format!("creating {}", path.display())),
        })
}

/// OpenSSH refuses private keys without a final newline.
fn with_final_newline(key: &str) -> String {
    if key.ends_with('\n') {
        key.to_owned()
    } else {
        format!("{key}\n")
    }
}

async fn delete(client: &ApiClient, reference: &str) -> anyhow::Result<()> {
    // DELETE takes only the id.
    let k = find(client, reference).await?;
    client.delete(&format!("/v1/keypairs/{}", k.id)).await?;
    println!("Deleted key pair '{}'.", k.name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_files_are_0600_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        create_private_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let err = create_private_file(&path).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
        // A symlink is not followed either.
        let link = dir.path().join("link.pem");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
        assert!(create_private_file(&link).is_err());
        assert!(!dir.path().join("elsewhere").exists());
    }

    #[test]
    fn default_file_and_newline() {
        assert_eq!(default_private_key_file("k"), Path::new("./k.pem"));
        assert_eq!(with_final_newline("a"), "a\n");
        assert_eq!(with_final_newline("a\n"), "a\n");
    }
}
