//! The OpenAPI document is valid and true: every `$ref` resolves, and the
//! limits, patterns and enums are the ones the validated types check (the
//! schemas are built from the same constants, so these pin that link).

use super::*;
use nubis_api::images::ImageFormat;
use nubis_api::resources::{DiskGib, MemoryMib, Vcpus};

/// Every `$ref` in `doc` that does not resolve inside `doc`, with where it is.
fn unresolved_refs(doc: &Value) -> Vec<String> {
    fn walk(doc: &Value, here: &Value, at: &str, bad: &mut Vec<String>, seen: &mut usize) {
        match here {
            Value::Object(map) => {
                for (k, v) in map {
                    if k == "$ref" {
                        *seen += 1;
                        let target = v.as_str().unwrap_or_default();
                        let resolves = target
                            .strip_prefix('#')
                            .and_then(|pointer| doc.pointer(pointer))
                            .is_some();
                        if !resolves {
                            bad.push(format!("{at}: {v}"));
                        }
                    } else {
                        walk(doc, v, &format!("{at}/{k}"), bad, seen);
                    }
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(doc, v, &format!("{at}/{i}"), bad, seen);
                }
            }
            _ => {}
        }
    }
    let (mut bad, mut seen) = (Vec::new(), 0);
    walk(doc, doc, "#", &mut bad, &mut seen);
    assert!(seen > 0, "the document has no $ref at all");
    bad
}

#[test]
fn the_ref_walker_finds_dangling_refs() {
    // Negative control for the walker itself.
    let doc = json!({
        "paths": {"/x": {"get": {"responses": {"200": {"content": {"application/json":
            {"schema": {"$ref": "#/components/schemas/QuotaPolicy"}}}}}}}},
        "components": {"schemas": {"Fine": {"$ref": "#/components/schemas/Fine2"}, "Fine2": {}}}
    });
    let bad = unresolved_refs(&doc);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].contains("QuotaPolicy"), "{bad:?}");
}

async fn document() -> Value {
    let cloud = Cloud::start().await;
    let resp = cloud.send(Method::GET, "/v1/openapi.json", None).await;
    ok_json(resp, StatusCode::OK).await
}

/// The schema `name` of the document's components.
fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let s = &doc["components"]["schemas"][name];
    assert!(s.is_object(), "no schema {name}");
    s
}

#[tokio::test]
async fn every_ref_in_the_openapi_document_resolves() {
    let doc = document().await;
    let bad = unresolved_refs(&doc);
    assert!(bad.is_empty(), "unresolved $refs: {bad:#?}");
    // The one that used to dangle (12 times).
    assert_eq!(
        schema(&doc, "QuotaPolicy")["enum"],
        json!(["throttle", "suspend"])
    );
}

#[tokio::test]
async fn limits_and_patterns_are_the_validators() {
    let doc = document().await;
    for (name, min, max) in [
        ("Vcpus", Vcpus::MIN, Vcpus::MAX),
        ("MemoryMib", MemoryMib::MIN, MemoryMib::MAX),
        ("DiskGib", DiskGib::MIN, DiskGib::MAX),
    ] {
        let s = schema(&doc, name);
        assert_eq!(
            (
                s["type"].as_str(),
                s["minimum"].as_u64(),
                s["maximum"].as_u64()
            ),
            (Some("integer"), Some(min), Some(max)),
            "{name}: {s}"
        );
    }
    // ... and they are the parser's bounds (MemoryMib as the example).
    let parse = |v: u64| serde_json::from_value::<MemoryMib>(json!(v)).is_ok();
    assert!(parse(MemoryMib::MIN) && parse(MemoryMib::MAX));
    assert!(!parse(MemoryMib::MIN - 1) && !parse(MemoryMib::MAX + 1));

    let name = schema(&doc, "Name");
    assert_eq!(name["minLength"], 1);
    assert_eq!(name["maxLength"], nubis_api::names::MAX_NAME_LEN);
    assert_eq!(name["pattern"], nubis_api::names::name_pattern());

    let password = schema(&doc, "Password");
    assert_eq!(password["minLength"], nubis_api::users::MIN_PASSWORD_LEN);
    assert_eq!(password["maxLength"], nubis_api::users::MAX_PASSWORD_LEN);

    let quotas = &schema(&doc, "UpdateQuotas")["properties"];
    for field in [
        "servers",
        "vcpus",
        "memory_mib",
        "disk_gib",
        "floating_ips",
        "networks",
    ] {
        assert_eq!(quotas[field]["minimum"], 0, "{field}");
        assert_eq!(
            quotas[field]["maximum"],
            nubis_api::quotas::MAX_LIMIT,
            "{field}"
        );
        // Left out is fine, null is refused: not nullable.
        assert_eq!(quotas[field]["type"], "integer", "{field}");
    }

    let rate = &schema(&doc, "RateLimit");
    assert_eq!(rate["additionalProperties"], false);
    assert_eq!(
        rate["properties"]["average_mbit"]["maximum"],
        nubis_api::bandwidth::MAX_MBIT
    );
    assert_eq!(
        rate["properties"]["burst_kib"]["maximum"],
        nubis_api::bandwidth::MAX_BURST_KIB
    );

    let gib = &schema(&doc, "TrafficQuota")["properties"]["monthly_gib"];
    assert_eq!(gib["minimum"], nubis_api::traffic::MIN_QUOTA_GIB);
    assert_eq!(gib["maximum"], nubis_api::traffic::MAX_QUOTA_GIB as f64);

    let network = &schema(&doc, "CreateNetwork")["properties"];
    assert_eq!(
        network["cidr"]["pattern"],
        nubis_api::networks::cidr_pattern()
    );
    assert_eq!(network["gateway"]["format"], "ipv4");
    let pool = &schema(&doc, "CreateFloatingIpPool")["properties"];
    assert_eq!(pool["first"]["pattern"], nubis_api::schema::IPV4_PATTERN);
    assert_eq!(pool["last"]["format"], "ipv4");
}

#[tokio::test]
async fn enums_list_exactly_what_parses() {
    let doc = document().await;
    let formats = schema(&doc, "ImageFormat")["enum"]
        .as_array()
        .expect("ImageFormat enum")
        .clone();
    let all = [
        ImageFormat::Qcow2,
        ImageFormat::Raw,
        ImageFormat::Aki,
        ImageFormat::Ari,
        ImageFormat::Iso,
    ];
    assert_eq!(formats.len(), all.len(), "{formats:?}");
    for f in all {
        assert!(formats.contains(&json!(f.as_str())), "{f:?} missing");
    }
    // Every value of every string enum in the document is a value its type
    // serializes to: check the ones with a Rust type here parse back.
    for value in &formats {
        serde_json::from_value::<ImageFormat>(value.clone()).expect("documented format parses");
    }
    for (name, parses) in [
        (
            "QuotaPolicy",
            (|v: &Value| {
                serde_json::from_value::<nubis_api::traffic::QuotaPolicy>(v.clone()).is_ok()
            }) as fn(&Value) -> bool,
        ),
        ("Visibility", |v| {
            serde_json::from_value::<nubis_api::images::Visibility>(v.clone()).is_ok()
        }),
        ("ConfigFormat", |v| {
            serde_json::from_value::<nubis_api::images::ConfigFormat>(v.clone()).is_ok()
        }),
    ] {
        let values = schema(&doc, name)["enum"].as_array().expect("enum").clone();
        assert!(!values.is_empty(), "{name}");
        for v in &values {
            assert!(parses(v), "{name}: documented {v} does not parse");
        }
        assert!(!parses(&json!("surely-not-a-value")), "{name}: control");
    }
}

#[tokio::test]
async fn extractor_errors_are_documented() {
    let doc = document().await;
    let create = &doc["paths"]["/v1/flavors"]["post"]["responses"];
    for status in ["400", "401", "413", "415", "422"] {
        assert!(
            create[status].is_object(),
            "POST /v1/flavors lacks {status}"
        );
    }
    let show = &doc["paths"]["/v1/servers/{id}"]["get"]["responses"];
    assert!(show["404"].is_object() && show["401"].is_object());
    // Unauthenticated operations get no 401.
    assert!(doc["paths"]["/v1/users"]["post"]["responses"]["401"].is_null());
}
