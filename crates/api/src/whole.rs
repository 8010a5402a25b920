//! Whole numbers as JSON may spell them.
//!
//! JSON Schema's `integer` (what the OpenAPI document says these fields are)
//! includes `3.0`: a number without a fractional part. So every integer field
//! of a request accepts `3` and `3.0` alike and refuses `3.5`.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;

/// An integer read from a JSON integer or a float without fraction.
/// Values beyond `i64` saturate, so range checks refuse them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Whole(pub i64);

impl<'de> Deserialize<'de> for Whole {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct WholeVisitor;

        impl Visitor<'_> for WholeVisitor {
            type Value = Whole;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Whole, E> {
                Ok(Whole(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Whole, E> {
                Ok(Whole(i64::try_from(v).unwrap_or(i64::MAX)))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Whole, E> {
                if v.is_finite() && v.fract() == 0.0 {
                    // `as` saturates at the i64 limits.
                    Ok(Whole(v as i64))
                } else {
                    Err(E::invalid_type(de::Unexpected::Float(v), &self))
                }
            }
        }

        d.deserialize_any(WholeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integral_floats_are_whole_numbers_fractions_are_not() {
        let parse = |s: &str| serde_json::from_str::<Whole>(s).map(|w| w.0);
        assert_eq!(parse("3").unwrap(), 3);
        assert_eq!(parse("-3").unwrap(), -3);
        assert_eq!(parse("29.0").unwrap(), 29);
        assert_eq!(parse("1e3").unwrap(), 1000);
        assert_eq!(parse("18446744073709551615").unwrap(), i64::MAX);
        assert_eq!(parse("1e300").unwrap(), i64::MAX);
        for bad in ["1.5", "\"3\"", "null", "true", "[1]"] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("expected an integer"), "{bad}: {e}");
        }
    }
}
