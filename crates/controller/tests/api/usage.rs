//! Usage records.

use super::*;

/// Sets a controller clock (through its offset file) to about `to`.
fn set_clock(offset_file: &Path, to: &str) {
    let to = chrono::DateTime::parse_from_rfc3339(to).unwrap();
    let offset = (to.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
    std::fs::write(offset_file, offset.to_string()).unwrap();
}

/// `(kind, name, size, unit)` of each record, and its quantity.
fn usage_rows(report: &Value) -> Vec<((String, String, String, String), f64)> {
    let s = |v: &Value| v.as_str().expect("a string").to_owned();
    report["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
            assert_eq!(
                keys,
                ["kind", "name", "quantity", "resource", "size", "unit"],
                "{r}"
            );
            (
                (s(&r["kind"]), s(&r["name"]), s(&r["size"]), s(&r["unit"])),
                r["quantity"].as_f64().expect("a quantity"),
            )
        })
        .collect()
}

fn assert_usage(report: &Value, want: &[(&str, &str, &str, &str, f64)]) {
    let got = usage_rows(report);
    assert_eq!(got.len(), want.len(), "{report}");
    for (((kind, name, size, unit), q), w) in got.iter().zip(want) {
        assert_eq!(
            (kind.as_str(), name.as_str(), size.as_str(), unit.as_str()),
            (w.0, w.1, w.2, w.3),
            "{report}"
        );
        // The clock moves on in real time while the test runs.
        assert!((q - w.4).abs() < 0.02, "{} {name}: {q} != {}", w.0, w.4);
    }
}

#[tokio::test]
async fn usage_records_as_json_and_csv() {
    let clock_dir = tempfile::tempdir().unwrap();
    let offset = clock_dir.path().join("offset");
    set_clock(&offset, "2026-11-30T20:00:00Z");
    let clock = nubis_controller::clock::Clock::with_offset_file(offset.clone());
    let cloud = Cloud::start_with(Duration::from_secs(3600), clock).await;
    let alice = cloud.admin("alice").await; // an admin: she makes a pool
    let project = cloud.get_ok(&alice, "/v1/users/me").await["project"]
        .as_str()
        .unwrap()
        .to_owned();
    cloud.register_host().await;
    cloud
        .active_image(&alice, "disk", "raw", vec![0; 4096])
        .await;
    let body = json!({"name": "web", "image": "disk", "flavor": "tiny"});
    let resp = cloud.post(Some(&alice), "/v1/servers", &body).await;
    let server = ok_json(resp, StatusCode::ACCEPTED).await;
    let sid = id(&server).to_owned();
    let pool = json!({"name": "public", "first": "203.0.113.1", "last": "203.0.113.9"});
    let resp = cloud
        .post(Some(&alice), "/v1/floating-ip-pools", &pool)
        .await;
    ok_json(resp, StatusCode::CREATED).await;
    let resp = cloud
        .post(Some(&alice), "/v1/floating-ips", &json!({}))
        .await;
    let fip = ok_json(resp, StatusCode::CREATED).await;

    // Two hours later the server stops; two more and the address goes.
    set_clock(&offset, "2026-11-30T22:00:00Z");
    let resp = cloud
        .post(Some(&alice), &format!("/v1/servers/{sid}/stop"), &json!({}))
        .await;
    ok_json(resp, StatusCode::ACCEPTED).await;
    set_clock(&offset, "2026-12-01T00:30:00Z");
    let resp = cloud
        .send(
            Method::DELETE,
            &format!("/v1/floating-ips/{}", id(&fip)),
            Some(&alice),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    // The default is JSON for the current period (December, half an hour in).
    let path = format!("/v1/projects/{project}/usage-records");
    let report = cloud.get_ok(&alice, &path).await;
    assert_eq!(report["project"], project.as_str());
    assert_eq!(
        report["period"],
        json!({"start": "2026-12-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"})
    );
    assert_usage(
        &report,
        &[
            ("disk", "web", "1gib", "GiB-hours", 0.5),
            ("floating_ip", "203.0.113.1", "ipv4", "hours", 0.5),
        ],
    );
    let november = format!("{path}?period=2026-11&format=json");
    let report = cloud.get_ok(&alice, &november).await;
    assert_usage(
        &report,
        &[
            ("instance", "web", "1vcpu-128mib", "hours", 2.0),
            ("disk", "web", "1gib", "GiB-hours", 4.0),
            ("floating_ip", "203.0.113.1", "ipv4", "hours", 4.0),
        ],
    );
    assert_eq!(report["records"][0]["resource"], sid.as_str());
    assert_eq!(report["records"][2]["resource"], id(&fip));
    // `current` names the caller's project.
    let current = cloud
        .get_ok(&alice, "/v1/projects/current/usage-records?period=2026-11")
        .await;
    assert_eq!(usage_rows(&current).len(), 3);

    // CSV: a download with a header line and one line per record.
    let resp = cloud
        .get(&alice, &format!("{path}?period=2026-11&format=csv"))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("content-type"), "text/csv; charset=utf-8");
    assert_eq!(
        header("content-disposition"),
        format!("attachment; filename=\"nubis-usage-{project}-2026-11.csv\"")
    );
    let text = resp.text().await.unwrap();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(
        lines[0],
        "project,period,kind,resource,name,size,quantity,unit"
    );
    let fields: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(
        fields[..6],
        [
            project.as_str(),
            "2026-11",
            "instance",
            &sid,
            "web",
            "1vcpu-128mib"
        ],
        "{text}"
    );
    let hours: f64 = fields[6].parse().unwrap();
    assert!((hours - 2.0).abs() < 0.02, "{text}");
    assert!(lines[1].ends_with(",hours"), "{text}");
    assert!(
        lines[2].contains(",disk,") && lines[2].ends_with(",GiB-hours"),
        "{text}"
    );
    assert!(lines[3].contains(",floating_ip,"), "{text}");
    assert_eq!(lines[4], "", "{text}");
}

#[tokio::test]
async fn usage_records_reject_bad_periods_formats_and_other_projects() {
    let cloud = Cloud::start().await;
    let alice = cloud.admin("alice").await;
    let bob = cloud.user("bob").await;
    let me = |token: &str| {
        let token = token.to_owned();
        let cloud = &cloud;
        async move {
            cloud.get_ok(&token, "/v1/users/me").await["project"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let (alices, bobs) = (me(&alice).await, me(&bob).await);
    let path = format!("/v1/projects/{bobs}/usage-records");
    for (query, mention) in [
        ("period=2026-13", "period must be YYYY-MM"),
        ("period=x", "period must be YYYY-MM"),
        ("period=", "period must be YYYY-MM"),
        ("format=xml", "format must be json or csv"),
        ("period=2026-11&format=CSV", "format must be json or csv"),
        ("format=json&format=csv", "duplicate field"),
    ] {
        let resp = cloud.get(&bob, &format!("{path}?{query}")).await;
        assert_error(query, resp, BAD, mention).await;
    }
    // Bob cannot see alice's project, nor anything that is no project.
    let random = uuid::Uuid::new_v4();
    for project in [alices.as_str(), "not-a-uuid", &random.to_string()] {
        let resp = cloud
            .get(&bob, &format!("/v1/projects/{project}/usage-records"))
            .await;
        assert_error(project, resp, NOT_FOUND, "project not found").await;
    }
    // Alice, an admin, sees bob's (empty) report, but no unknown project's.
    let report = cloud
        .get_ok(&alice, &format!("{path}?period=2026-11"))
        .await;
    assert_eq!(report["project"], bobs.as_str());
    assert_eq!(report["records"], json!([]));
    let resp = cloud
        .get(&alice, &format!("/v1/projects/{random}/usage-records"))
        .await;
    assert_error("unknown project", resp, NOT_FOUND, "project not found").await;
    // Without a token: 401.
    let resp = cloud.send(Method::GET, &path, None).await;
    assert_error("no token", resp, UNAUTHORIZED, "Authorization").await;
    // The report's shape is described.
    let resp = cloud.send(Method::GET, "/v1/openapi.json", None).await;
    let spec = ok_json(resp, StatusCode::OK).await;
    for schema in ["UsageReport", "UsageRecord", "UsageKind", "Period"] {
        assert!(
            spec["components"]["schemas"][schema].is_object(),
            "{schema}"
        );
    }
}
