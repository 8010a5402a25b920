//! The image catalog.

use crate::{ImageId, Name, ProjectId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What an image's bytes are. Disk formats are checked against the bytes on upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// A qcow2 disk image (self-contained: no backing or data file).
    Qcow2,
    /// A raw disk image.
    Raw,
    /// A Linux kernel for direct kernel boot (EC2's AKI).
    Aki,
    /// An initial ramdisk for direct kernel boot (EC2's ARI).
    Ari,
    /// An ISO 9660 CD image (e.g. an OS installer). A server made from it
    /// gets a blank disk and boots from the ISO in its CD-ROM drive until
    /// the ISO is ejected.
    Iso,
}

impl ImageFormat {
    /// Whether a server's disk can be made from an image of this format.
    pub fn is_disk(self) -> bool {
        matches!(self, Self::Qcow2 | Self::Raw)
    }

    /// Whether a server can be created from an image of this format: a disk
    /// image, or an ISO (blank disk, ISO in the CD-ROM drive).
    pub fn is_bootable(self) -> bool {
        self.is_disk() || self == Self::Iso
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Qcow2 => "qcow2",
            Self::Raw => "raw",
            Self::Aki => "aki",
            Self::Ari => "ari",
            Self::Iso => "iso",
        }
    }
}

impl std::str::FromStr for ImageFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "qcow2" => Ok(Self::Qcow2),
            "raw" => Ok(Self::Raw),
            "aki" => Ok(Self::Aki),
            "ari" => Ok(Self::Ari),
            "iso" => Ok(Self::Iso),
            other => Err(format!(
                "unknown image format '{other}' (expected qcow2, raw, aki, ari or iso)"
            )),
        }
    }
}

/// Where an image is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImageStatus {
    /// Created, waiting for its bytes.
    Queued,
    /// Bytes uploaded and checked; servers can use it.
    Active,
}

impl ImageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Active => "active",
        }
    }
}

/// Who can see an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Only the owning project.
    #[default]
    Private,
    /// Every project (only admins may publish).
    Public,
}

/// How an image wants its first-boot configuration on a disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConfigFormat {
    /// OpenStack's config drive (label `config-2`), attached when asked for.
    #[default]
    #[serde(rename = "config-2")]
    ConfigDrive,
    /// A cloud-init NoCloud seed (label `cidata`), always attached.
    Nocloud,
}

impl ConfigFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConfigDrive => "config-2",
            Self::Nocloud => "nocloud",
        }
    }
}

/// The longest kernel command line accepted.
pub const MAX_CMDLINE_LEN: usize = 2048;

/// `cmdline` as the handler accepts it. The limit is in bytes (the kernel's);
/// printable ASCII, the usual command line, is one byte a character.
fn cmdline_schema() -> utoipa::openapi::schema::Object {
    crate::schema::nullable(crate::schema::string(
        Some(crate::schema::NO_CONTROL_PATTERN),
        0,
        Some(MAX_CMDLINE_LEN),
        &format!("at most {MAX_CMDLINE_LEN} bytes (UTF-8), no control characters"),
    ))
    .build()
}

/// `POST /v1/images`: the record; the bytes follow with `PUT /v1/images/{id}/file`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateImage {
    pub name: Name,
    /// Operating system, e.g. `debian`.
    pub os: Name,
    /// Operating system version, e.g. `12`.
    pub version: Name,
    pub format: ImageFormat,
    /// An `aki` image (id or name) to boot directly.
    #[serde(default)]
    pub kernel: Option<String>,
    /// An `ari` image (id or name) to boot with the kernel.
    #[serde(default)]
    pub initrd: Option<String>,
    /// The kernel command line for direct kernel boot.
    #[serde(default)]
    #[schema(schema_with = cmdline_schema)]
    pub cmdline: Option<String>,
    #[serde(default)]
    pub visibility: Visibility,
    /// How the image reads its first-boot configuration from a disk.
    #[serde(default)]
    pub config_format: ConfigFormat,
}

/// An image in the catalog.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Image {
    pub id: ImageId,
    pub name: String,
    pub os: String,
    pub version: String,
    pub format: ImageFormat,
    pub status: ImageStatus,
    pub visibility: Visibility,
    pub project: ProjectId,
    pub kernel: Option<ImageId>,
    pub initrd: Option<ImageId>,
    pub cmdline: Option<String>,
    pub config_format: ConfigFormat,
    /// Bytes of the uploaded file.
    pub size: Option<u64>,
    /// The disk size the image presents to a guest.
    pub virtual_size: Option<u64>,
    /// Hex SHA-256 of the uploaded file.
    pub checksum: Option<String>,
    pub created_at: DateTime<Utc>,
}
