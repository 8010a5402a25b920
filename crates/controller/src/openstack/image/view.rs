//! A Nubis image in Glance v2's JSON: Nubis's fields under Glance's names,
//! the kernel boot fields as Glance's well-known properties (`kernel_id`,
//! `ramdisk_id`, `os_command_line`, `os_distro`, `os_version`).

use chrono::{DateTime, SecondsFormat, Utc};
use nubis_api::images::{ConfigFormat, Image, ImageFormat, ImageStatus, Visibility};
use serde_json::{json, Value};

/// The property naming how an image reads its first-boot configuration
/// (`config-2` or `nocloud`), Nubis's own.
pub const CONFIG_FORMAT_PROPERTY: &str = "nubis_config_format";

/// The hash algorithm of `os_hash_value`: Nubis keeps the SHA-256 of the
/// uploaded bytes (Glance's `hashing_algorithm` may be any hashlib name).
pub const HASH_ALGO: &str = "sha256";

/// Glance's time format (seconds, `Z`).
pub fn glance_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Glance's status of an image: queued until its file is accepted,
/// `saving` while an upload of it is in progress, then active. (An upload
/// refused leaves it queued, as Glance restores a failed upload's image.)
pub fn status(image: &Image, uploading: bool) -> &'static str {
    match image.status {
        ImageStatus::Active => "active",
        ImageStatus::Queued if uploading => "saving",
        ImageStatus::Queued => "queued",
    }
}

/// Glance's name of a visibility.
pub fn visibility(v: Visibility) -> &'static str {
    match v {
        Visibility::Private => "private",
        Visibility::Public => "public",
    }
}

/// Nubis's formats under Glance's `disk_format` names (the same words).
pub fn disk_format(f: ImageFormat) -> &'static str {
    f.as_str()
}

/// The image as Glance shows it.
pub fn image(image: &Image, uploading: bool) -> Value {
    let id = image.id.to_string();
    let time = glance_time(image.created_at);
    let mut v = json!({
        "id": id,
        "name": image.name,
        "status": status(image, uploading),
        "visibility": visibility(image.visibility),
        "protected": false,
        "os_hidden": false,
        "owner": image.project.to_string(),
        "disk_format": disk_format(image.format),
        "container_format": "bare",
        "min_disk": 0,
        "min_ram": 0,
        "size": image.size,
        "virtual_size": image.virtual_size,
        // Glance's `checksum` is an MD5, which Nubis does not compute.
        "checksum": null,
        "os_hash_algo": image.checksum.as_ref().map(|_| HASH_ALGO),
        "os_hash_value": image.checksum,
        "created_at": time,
        // Nubis keeps no update time; records change only by their upload.
        "updated_at": time,
        "tags": [],
        "self": format!("/v2/images/{id}"),
        "file": format!("/v2/images/{id}/file"),
        "schema": "/v2/schemas/image",
        "os_distro": image.os,
        "os_version": image.version,
        CONFIG_FORMAT_PROPERTY: image.config_format.as_str(),
    });
    let extra = v.as_object_mut().expect("an object");
    if let Some(k) = image.kernel {
        extra.insert("kernel_id".into(), json!(k.to_string()));
    }
    if let Some(r) = image.initrd {
        extra.insert("ramdisk_id".into(), json!(r.to_string()));
    }
    if let Some(c) = &image.cmdline {
        extra.insert("os_command_line".into(), json!(c));
    }
    v
}

/// `nocloud` or `config-2` as a [`ConfigFormat`].
pub fn parse_config_format(s: &str) -> Option<ConfigFormat> {
    match s {
        "config-2" => Some(ConfigFormat::ConfigDrive),
        "nocloud" => Some(ConfigFormat::Nocloud),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued() -> Image {
        Image {
            id: nubis_api::ImageId::new(),
            name: "deb".into(),
            os: "debian".into(),
            version: "12".into(),
            format: ImageFormat::Qcow2,
            status: ImageStatus::Queued,
            visibility: Visibility::Private,
            project: nubis_api::ProjectId::new(),
            kernel: None,
            initrd: None,
            cmdline: Some("console=ttyS0".into()),
            config_format: ConfigFormat::ConfigDrive,
            size: None,
            virtual_size: None,
            checksum: None,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn statuses_follow_the_upload() {
        let mut i = queued();
        assert_eq!(image(&i, false)["status"], "queued");
        assert_eq!(image(&i, true)["status"], "saving");
        i.status = ImageStatus::Active;
        i.checksum = Some("ab".repeat(32));
        let v = image(&i, false);
        assert_eq!(v["status"], "active");
        assert_eq!(v["os_hash_algo"], "sha256");
        assert_eq!(v["os_hash_value"], "ab".repeat(32));
        // Never an MD5 that is not one.
        assert!(v["checksum"].is_null());
        assert_eq!(v["os_command_line"], "console=ttyS0");
        assert_eq!(v["owner"], i.project.to_string());
        assert!(v.get("kernel_id").is_none());
    }

    #[test]
    fn no_hash_algorithm_without_a_hash() {
        let v = image(&queued(), false);
        assert!(v["os_hash_algo"].is_null() && v["os_hash_value"].is_null());
    }
}
