//! Sizes a user asks for (vCPUs, memory, disk), each range-checked when parsed.

use serde::{Deserialize, Serialize};

macro_rules! bounded {
    ($(#[$doc:meta])* $name:ident, $what:literal, $unit:literal, $min:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "crate::whole::Whole", into = "u64")]
        pub struct $name(u64);

        /// An integer from `MIN` to `MAX`: the very constants the parser checks.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                crate::schema::integer(
                    Self::MIN,
                    Self::MAX,
                    &format!(concat!($what, " from {} to {}", $unit), Self::MIN, Self::MAX),
                )
                .into()
            }
        }

        impl utoipa::ToSchema for $name {}

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

        impl TryFrom<crate::whole::Whole> for $name {
            type Error = String;
            fn try_from(v: crate::whole::Whole) -> Result<Self, String> {
                Self::try_from(v.0)
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
    use utoipa::openapi::schema::Schema;
    use utoipa::openapi::RefOr;

    /// (minimum, maximum) of a type's OpenAPI schema.
    fn schema_bounds<T: utoipa::PartialSchema>() -> (f64, f64) {
        let RefOr::T(Schema::Object(o)) = T::schema() else {
            panic!("not an object schema")
        };
        let json = serde_json::to_value(&o).unwrap();
        (
            json["minimum"].as_f64().unwrap(),
            json["maximum"].as_f64().unwrap(),
        )
    }

    #[test]
    fn schemas_state_the_parsers_bounds() {
        for (bounds, min, max, ok) in [
            (schema_bounds::<Vcpus>(), Vcpus::MIN, Vcpus::MAX, |v| {
                Vcpus::try_from(v).is_ok()
            }),
            (
                schema_bounds::<MemoryMib>(),
                MemoryMib::MIN,
                MemoryMib::MAX,
                |v| MemoryMib::try_from(v).is_ok(),
            ),
            (
                schema_bounds::<DiskGib>(),
                DiskGib::MIN,
                DiskGib::MAX,
                |v| DiskGib::try_from(v).is_ok(),
            ),
        ] as [(_, u64, u64, fn(i64) -> bool); 3]
        {
            assert_eq!(bounds, (min as f64, max as f64));
            // The bounds are the parser's: inside accepted, outside refused.
            assert!(ok(min as i64) && ok(max as i64));
            assert!(!ok(min as i64 - 1) && !ok(max as i64 + 1));
        }
    }

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
        // JSON Schema's integers include 3.0.
        assert_eq!(serde_json::from_str::<DiskGib>("3.0").unwrap().get(), 3);
        assert_eq!(
            serde_json::to_string(&DiskGib::try_from(3i64).unwrap()).unwrap(),
            "3"
        );
    }
}
