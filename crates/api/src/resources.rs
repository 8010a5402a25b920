//! Sizes a user asks for (vCPUs, memory, disk), each range-checked when parsed.

use serde::{Deserialize, Serialize};

macro_rules! bounded {
    ($(#[$doc:meta])* $name:ident, $what:literal, $unit:literal, $min:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(try_from = "i64", into = "u64")]
        #[schema(value_type = u64)]
        pub struct $name(u64);

        impl $name {
            pub const MIN: u64 = $min;
            pub const MAX: u64 = $max;
            pub fn get(self) -> u64 {
                self.0
            }
        }

        impl TryFrom<i64> for $name {
            type Error = String;
            fn try_from(v: i64) -> Result<Self, String> {
                if v < $min as i64 || v > $max as i64 {
                    return Err(format!(
                        concat!($what, " must be between {} and {}", $unit, ", got {}"),
                        $min, $max, v
                    ));
                }
                Ok(Self(v as u64))
            }
        }

        impl TryFrom<u64> for $name {
            type Error = String;
            fn try_from(v: u64) -> Result<Self, String> {
                Self::try_from(i64::try_from(v).unwrap_or(i64::MAX))
            }
        }

        impl From<$name> for u64 {
            fn from(v: $name) -> u64 {
                v.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

bounded!(
    /// Virtual CPUs of a server.
    Vcpus, "vcpus", "", 1, 64
);
bounded!(
    /// Memory of a server in MiB.
    MemoryMib, "memory_mib", " MiB", 64, 262_144
);
bounded!(
    /// Disk size of a server in GiB.
    DiskGib, "disk_gib", " GiB", 1, 16_384
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_enforced_with_clear_messages() {
        assert_eq!(Vcpus::try_from(2i64).unwrap().get(), 2);
        let e = Vcpus::try_from(0i64).unwrap_err();
        assert_eq!(e, "vcpus must be between 1 and 64, got 0");
        let e = MemoryMib::try_from(-5i64).unwrap_err();
        assert!(
            e.contains("memory_mib must be between 64 and 262144 MiB"),
            "{e}"
        );
        assert!(DiskGib::try_from(1_000_000i64).is_err());
        assert!(serde_json::from_str::<DiskGib>("-1").is_err());
        assert!(serde_json::from_str::<DiskGib>("1.5").is_err());
        assert_eq!(
            serde_json::to_string(&DiskGib::try_from(3i64).unwrap()).unwrap(),
            "3"
        );
    }
}
