//! The identity of a shared instance store: a `store-id` file (a UUID)
//! created once in the store's directory. Hosts that read the same id see
//! the same files; the controller lets them move servers without a copy.

use anyhow::Context;
use std::path::Path;

/// The store's id, creating it (atomically: the first host wins) if absent.
pub fn store_id(path: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(path.join("instances"))
        .with_context(|| format!("creating {}", path.join("instances").display()))?;
    let file = path.join("store-id");
    if let Ok(id) = std::fs::read_to_string(&file) {
        return Ok(id.trim().to_owned());
    }
    let temp = path.join(format!("store-id.{}", std::process::id()));
    std::fs::write(&temp, uuid::Uuid::new_v4().to_string())
        .with_context(|| format!("writing {}", temp.display()))?;
    // A hard link fails if another host made the file first: keep theirs.
    let _ = std::fs::hard_link(&temp, &file);
    let _ = std::fs::remove_file(&temp);
    Ok(std::fs::read_to_string(&file)
        .with_context(|| format!("reading {}", file.display()))?
        .trim()
        .to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_host_reads_the_id_the_first_made() {
        let dir = tempfile::tempdir().unwrap();
        let first = super::store_id(dir.path()).unwrap();
        assert_eq!(first.len(), 36, "a UUID: {first}");
        assert_eq!(super::store_id(dir.path()).unwrap(), first);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(super::store_id(other.path()).unwrap(), first);
    }
}
