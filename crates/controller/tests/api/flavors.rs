//! Flavors: only administrators make them, with valid sizes.

use super::*;

#[tokio::test]
async fn flavors_need_an_admin_and_valid_sizes() {
    let cloud = Cloud::start().await;
    let admin = cloud.admin("alice").await;
    let user = cloud.user("bob").await;
    let defaults = cloud.get_ok(&user, "/v1/flavors").await;
    assert_eq!(defaults.as_array().unwrap().len(), 4, "{defaults}");
    let valid = json!({"name": "custom", "vcpus": 2, "memory_mib": 2048, "disk_gib": 20});
    let v = |k: &str, x: Value| with(&valid, k, x);

    let forbidden = [case("non-admin", valid.clone(), FORBIDDEN, "admin")];
    cloud.refuse_all(&user, "/v1/flavors", &forbidden).await;

    let vcpus = "vcpus must be between 1 and 64";
    let memory = "memory_mib must be between 64 and 262144 MiB";
    let disk = "disk_gib must be between 1 and 16384 GiB";
    #[rustfmt::skip]
    let mut cases = vec![
        case("vcpus 0", v("vcpus", json!(0)), INVALID, vcpus),
        case("vcpus -1", v("vcpus", json!(-1)), INVALID, vcpus),
        case("vcpus 65", v("vcpus", json!(65)), INVALID, vcpus),
        case("vcpus 1000", v("vcpus", json!(1000)), INVALID, vcpus),
        case("vcpus 1.5", v("vcpus", json!(1.5)), INVALID, "vcpus"),
        case("vcpus 1e9", v("vcpus", json!(1e9)), INVALID, "vcpus"),
        case("vcpus \"2\"", v("vcpus", json!("2")), INVALID, "vcpus"),
        case("vcpus u64::MAX", v("vcpus", json!(u64::MAX)), INVALID, "vcpus"),
        case("no vcpus", v("vcpus", Value::Null), INVALID, "missing field `vcpus`"),
        case("memory 0", v("memory_mib", json!(0)), INVALID, memory),
        case("memory 63", v("memory_mib", json!(63)), INVALID, memory),
        case("memory 1 TiB", v("memory_mib", json!(1 << 20)), INVALID, memory),
        case("disk 0", v("disk_gib", json!(0)), INVALID, disk),
        case("disk -1", v("disk_gib", json!(-1)), INVALID, disk),
        case("disk 16385", v("disk_gib", json!(16385)), INVALID, disk),
        case("disk 2.5", v("disk_gib", json!(2.5)), INVALID, "disk_gib"),
        case("unknown field", v("gpus", json!(1)), INVALID, "unknown field `gpus`"),
        case("duplicate name", v("name", json!("small")), CONFLICT, "'small' already exists"),
    ];
    cases.extend(bad_name_cases(&valid, "name"));
    cloud.refuse_all(&admin, "/v1/flavors", &cases).await;
    assert_eq!(cloud.get_ok(&admin, "/v1/flavors").await, defaults);

    // Positive control: the valid body is accepted from an admin.
    let resp = cloud.post(Some(&admin), "/v1/flavors", &valid).await;
    let created = ok_json(resp, StatusCode::CREATED).await;
    assert_eq!(created["vcpus"], 2);
    let after = cloud.get_ok(&user, "/v1/flavors").await;
    assert_eq!(after.as_array().unwrap().len(), 5);
}
