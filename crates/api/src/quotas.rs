//! Project quotas: how much a project may hold at once
//! (`GET/PUT /v1/projects/{id}/quotas`).

use serde::{Deserialize, Serialize};

/// The largest limit accepted for any resource.
pub const MAX_LIMIT: u64 = 1 << 40;

/// Limits of one project. Every field is a maximum of what the project may
/// hold at the same time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QuotaLimits {
    pub servers: u64,
    pub vcpus: u64,
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub floating_ips: u64,
    pub networks: u64,
    /// Images the project owns (queued ones included).
    #[serde(default = "defaults::images")]
    pub images: u64,
    /// Total size of the project's uploaded image files, in GiB (checked
    /// against the exact bytes; as usage, rounded up to whole GiB).
    #[serde(default = "defaults::image_gib")]
    pub image_gib: u64,
    /// Security groups other than the project's `default` one.
    #[serde(default = "defaults::security_groups")]
    pub security_groups: u64,
    /// Rules in all of the project's security groups (`default`'s included).
    #[serde(default = "defaults::security_group_rules")]
    pub security_group_rules: u64,
    /// Server groups (affinity / anti-affinity).
    #[serde(default = "defaults::server_groups")]
    pub server_groups: u64,
}

/// Defaults of the limits added after the first ones (for serde, too).
mod defaults {
    pub fn images() -> u64 {
        20
    }
    pub fn image_gib() -> u64 {
        100
    }
    pub fn security_groups() -> u64 {
        10
    }
    pub fn security_group_rules() -> u64 {
        100
    }
    /// Nova's default `server_groups` quota.
    pub fn server_groups() -> u64 {
        10
    }
}

/// Bytes in a GiB.
pub const GIB: u64 = 1 << 30;

impl Default for QuotaLimits {
    /// OpenStack's defaults (Nova, Neutron: 10 security groups, 100 rules);
    /// Glance has no default image quota, so ours is 20 images, 100 GiB.
    fn default() -> Self {
        Self {
            servers: 10,
            vcpus: 20,
            memory_mib: 51_200,
            disk_gib: 1_000,
            floating_ips: 10,
            networks: 10,
            images: defaults::images(),
            image_gib: defaults::image_gib(),
            security_groups: defaults::security_groups(),
            security_group_rules: defaults::security_group_rules(),
            server_groups: defaults::server_groups(),
        }
    }
}

/// What a project holds now, in the same units.
pub type QuotaUsage = QuotaLimits;

impl QuotaLimits {
    /// All zero (a usage with nothing in it).
    pub fn default_zero() -> Self {
        Self {
            servers: 0,
            vcpus: 0,
            memory_mib: 0,
            disk_gib: 0,
            floating_ips: 0,
            networks: 0,
            images: 0,
            image_gib: 0,
            security_groups: 0,
            security_group_rules: 0,
            server_groups: 0,
        }
    }

    /// (name, limit, used) for each resource, in a fixed order.
    pub fn pairs(&self, used: &QuotaUsage) -> [(&'static str, u64, u64); 11] {
        [
            ("servers", self.servers, used.servers),
            ("vcpus", self.vcpus, used.vcpus),
            ("memory_mib", self.memory_mib, used.memory_mib),
            ("disk_gib", self.disk_gib, used.disk_gib),
            ("floating_ips", self.floating_ips, used.floating_ips),
            ("networks", self.networks, used.networks),
            ("images", self.images, used.images),
            ("image_gib", self.image_gib, used.image_gib),
            (
                "security_groups",
                self.security_groups,
                used.security_groups,
            ),
            (
                "security_group_rules",
                self.security_group_rules,
                used.security_group_rules,
            ),
            ("server_groups", self.server_groups, used.server_groups),
        ]
    }

    /// The first resource where `used + extra` would exceed the limit.
    pub fn exceeded_by(&self, used: &QuotaUsage, extra: &QuotaUsage) -> Option<String> {
        let extras = [
            extra.servers,
            extra.vcpus,
            extra.memory_mib,
            extra.disk_gib,
            extra.floating_ips,
            extra.networks,
            extra.images,
            extra.image_gib,
            extra.security_groups,
            extra.security_group_rules,
            extra.server_groups,
        ];
        self.pairs(used)
            .into_iter()
            .zip(extras)
            .find(|((_, limit, used), extra)| *extra > 0 && used + extra > *limit)
            .map(|((name, limit, used), extra)| {
                format!(
                    "quota exceeded for {name}: limit {limit}, in use {used}, requested {extra}"
                )
            })
    }
}

/// `PUT /v1/projects/{id}/quotas` (admin): the limits to change; others stay.
/// A field may be left out, but not `null`.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateQuotas {
    #[serde(default, deserialize_with = "limit")]
    #[schema(schema_with = limit_schema)]
    pub servers: Option<u64>,
    #[serde(default, deserialize_with = "limit")]
    #[schema(schema_with = limit_schema)]
    pub vcpus: Option<u64>,
    #[serde(default, deserialize_with = "limit")]
    #[schema(schema_with = limit_schema)]
    pub memory_mib: Option<u64>,
    #[serde(default, deserialize_with = "limit")]
    #[schema(schema_with = limit_schema)]
    pub disk_gib: Option<u64>,
    #[serde(default, deserialize_with = "limit")]
    #[schema(schema_with = limit_schema)]
    pub floating_ips: Option<u64>,
    #[serde(default, deserialize_with = "limit")]
    #[schema(schema_with = limit_schema)]
    pub networks: Option<u64>,
    #[serde(default, deserialize_with = "limit")]
    #[schema(schema_with = limit_schema)]
    pub images: Option<u64>,
    #[serde(default, deserialize_with = "limit")]
    #[schema(schema_with = limit_schema)]
    pub image_gib: Option<u64>,
    #[serde(default, deserialize_with = "limit")]
    #[schema(schema_with = limit_schema)]
    pub security_groups: Option<u64>,
    #[serde(default, deserialize_with = "limit")]
    #[schema(schema_with = limit_schema)]
    pub security_group_rules: Option<u64>,
    #[serde(default, deserialize_with = "limit")]
    #[schema(schema_with = limit_schema)]
    pub server_groups: Option<u64>,
}

/// A limit as `limit` accepts it: 0 to `MAX_LIMIT`, never null.
fn limit_schema() -> utoipa::openapi::schema::Object {
    crate::schema::integer(0, MAX_LIMIT, &format!("0 to {MAX_LIMIT}")).build()
}

fn limit<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = crate::whole::Whole::deserialize(d)?.0;
    if v < 0 || v as u64 > MAX_LIMIT {
        return Err(serde::de::Error::custom(format!(
            "quota limits must be between 0 and {MAX_LIMIT}, got {v}"
        )));
    }
    Ok(Some(v as u64))
}

impl UpdateQuotas {
    /// `current` with this update's fields replaced.
    pub fn apply(&self, current: QuotaLimits) -> QuotaLimits {
        QuotaLimits {
            servers: self.servers.unwrap_or(current.servers),
            vcpus: self.vcpus.unwrap_or(current.vcpus),
            memory_mib: self.memory_mib.unwrap_or(current.memory_mib),
            disk_gib: self.disk_gib.unwrap_or(current.disk_gib),
            floating_ips: self.floating_ips.unwrap_or(current.floating_ips),
            networks: self.networks.unwrap_or(current.networks),
            images: self.images.unwrap_or(current.images),
            image_gib: self.image_gib.unwrap_or(current.image_gib),
            security_groups: self.security_groups.unwrap_or(current.security_groups),
            security_group_rules: self
                .security_group_rules
                .unwrap_or(current.security_group_rules),
            server_groups: self.server_groups.unwrap_or(current.server_groups),
        }
    }

    /// Whether this update sets the limit called `name` (as in
    /// [`QuotaLimits::pairs`]).
    pub fn sets(&self, name: &str) -> bool {
        match name {
            "servers" => self.servers.is_some(),
            "vcpus" => self.vcpus.is_some(),
            "memory_mib" => self.memory_mib.is_some(),
            "disk_gib" => self.disk_gib.is_some(),
            "floating_ips" => self.floating_ips.is_some(),
            "networks" => self.networks.is_some(),
            "images" => self.images.is_some(),
            "image_gib" => self.image_gib.is_some(),
            "security_groups" => self.security_groups.is_some(),
            "security_group_rules" => self.security_group_rules.is_some(),
            "server_groups" => self.server_groups.is_some(),
            _ => false,
        }
    }
}

/// `GET /v1/projects/{id}/quotas`: limits beside what is in use.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProjectQuotas {
    pub project: crate::ProjectId,
    pub limits: QuotaLimits,
    pub in_use: QuotaUsage,
    /// The exact bytes of the project's image files (`in_use.image_gib` is
    /// this rounded up to whole GiB).
    #[serde(default)]
    pub image_bytes_in_use: u64,
}

/// Whether `extra` more bytes of image files fit beside `used` under a
/// limit of `limit_gib` GiB; the message names the quota when not.
pub fn image_bytes_exceeded(limit_gib: u64, used: u64, extra: u64) -> Option<String> {
    let limit = limit_gib.saturating_mul(GIB);
    (used.saturating_add(extra) > limit).then(|| {
        format!(
            "quota exceeded for image_gib: limit {limit_gib} GiB ({limit} bytes), \
             in use {used} bytes, requested {extra} bytes"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_are_checked_and_merge() {
        let u: UpdateQuotas = serde_json::from_str(r#"{"servers":3.0,"vcpus":0}"#).unwrap();
        let l = u.apply(QuotaLimits::default());
        assert_eq!((l.servers, l.vcpus, l.networks), (3, 0, 10));
        for bad in [
            r#"{"servers":-1}"#,
            r#"{"servers":1.5}"#,
            r#"{"servers":null}"#,
            r#"{"servers":"many"}"#,
            r#"{"disk_gib":99999999999999999}"#,
            r#"{"cpus":2}"#,
        ] {
            assert!(serde_json::from_str::<UpdateQuotas>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exceeding_names_the_resource() {
        let limits = QuotaLimits {
            servers: 2,
            ..QuotaLimits::default()
        };
        let used = QuotaUsage {
            servers: 2,
            vcpus: 2,
            memory_mib: 256,
            disk_gib: 2,
            floating_ips: 0,
            networks: 1,
            ..QuotaUsage::default_zero()
        };
        let one = QuotaUsage {
            servers: 1,
            vcpus: 1,
            memory_mib: 128,
            disk_gib: 1,
            floating_ips: 0,
            networks: 0,
            ..QuotaUsage::default_zero()
        };
        let e = limits.exceeded_by(&used, &one).unwrap();
        assert!(e.contains("servers: limit 2, in use 2, requested 1"), "{e}");
        // A request that adds nothing of a full resource passes.
        let fip = QuotaUsage {
            floating_ips: 1,
            ..QuotaUsage::default_zero()
        };
        assert!(limits.exceeded_by(&used, &fip).is_none());
    }

    #[test]
    fn image_bytes_are_held_to_the_byte() {
        assert!(image_bytes_exceeded(1, GIB - 10, 10).is_none());
        let e = image_bytes_exceeded(1, GIB - 10, 11).unwrap();
        assert!(e.contains("image_gib: limit 1 GiB"), "{e}");
        assert!(image_bytes_exceeded(0, 0, 1).is_some());
        assert!(image_bytes_exceeded(0, 0, 0).is_none());
    }

    #[test]
    fn older_limits_get_the_new_defaults() {
        let old =
            r#"{"servers":1,"vcpus":2,"memory_mib":3,"disk_gib":4,"floating_ips":5,"networks":6}"#;
        let l: QuotaLimits = serde_json::from_str(old).unwrap();
        assert_eq!((l.images, l.image_gib), (20, 100));
        assert_eq!((l.security_groups, l.security_group_rules), (10, 100));
    }
}
