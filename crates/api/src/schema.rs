//! OpenAPI schemas built from the same constants the validated types check,
//! so the document's limits and patterns cannot drift from what the API
//! accepts.

use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};

/// An integer from `min` to `max` (both included).
pub fn integer(min: u64, max: u64, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(min))
        .maximum(Some(max))
        .description(Some(description))
}

/// A string of `min_length` to `max_length` characters matching `pattern`.
pub fn string(
    pattern: Option<&str>,
    min_length: usize,
    max_length: Option<usize>,
    description: &str,
) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(pattern)
        .min_length(Some(min_length))
        .max_length(max_length)
        .description(Some(description))
}

/// A dotted-quad IPv4 address (`192.0.2.1`).
pub fn ipv4() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Ipv4)))
        .pattern(Some(IPV4_PATTERN))
}

/// `schema` that also accepts `null` (an optional field a client may send
/// as null).
pub fn nullable(schema: ObjectBuilder) -> ObjectBuilder {
    let object = schema.build();
    let mut types = match object.schema_type.clone() {
        utoipa::openapi::schema::SchemaType::Type(t) => vec![t],
        utoipa::openapi::schema::SchemaType::Array(ts) => ts,
        utoipa::openapi::schema::SchemaType::AnyValue => vec![],
    };
    types.push(Type::Null);
    ObjectBuilder::from(object).schema_type(utoipa::openapi::schema::SchemaType::from_iter(types))
}

/// Text without control characters (Unicode Cc), as `char::is_control` says.
pub const NO_CONTROL_PATTERN: &str = r"^[^\u0000-\u001f\u007f-\u009f]*$";

/// A number from `min` to `max` (both included).
pub fn number(min: f64, max: f64, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Number)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Double)))
        .minimum(Some(min))
        .maximum(Some(max))
        .description(Some(description))
}

/// An IPv4 address or `null` (an optional field).
pub fn optional_ipv4() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::String,
            Type::Null,
        ]))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Ipv4)))
        .pattern(Some(IPV4_PATTERN))
}

/// One decimal octet, 0 to 255, without leading zeros (as Rust's `Ipv4Addr`
/// parser wants it).
pub const OCTET_PATTERN: &str = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";

/// A dotted-quad IPv4 address, anchored.
pub const IPV4_PATTERN: &str = concat!(
    "^(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])",
    "(?:\\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$"
);

/// A regex alternation of the numbers `0, step, 2*step, ...` below 256.
pub fn multiples_below_256(step: u32) -> String {
    let values: Vec<String> = (0..256)
        .step_by(step as usize)
        .map(|v| v.to_string())
        .collect();
    format!("(?:{})", values.join("|"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ipv4_pattern_agrees_with_the_parser() {
        let re = regex::Regex::new(IPV4_PATTERN).unwrap();
        let octet = regex::Regex::new(&format!("^{OCTET_PATTERN}$")).unwrap();
        for n in 0..1000 {
            let s = n.to_string();
            assert_eq!(octet.is_match(&s), s.parse::<u8>().is_ok(), "{s}");
        }
        for s in [
            "0.0.0.0",
            "192.0.2.1",
            "255.255.255.255",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            " 1.2.3.4",
            "1.2.3.4\n",
            "a.b.c.d",
        ] {
            assert_eq!(
                re.is_match(s),
                s.parse::<std::net::Ipv4Addr>().is_ok(),
                "{s:?}"
            );
        }
    }
}
