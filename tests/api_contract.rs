//! The API against its own OpenAPI document, property-based: schemathesis
//! (from PyPI, pinned, in a venv under target/: scripts/schemathesis.sh)
//! generates requests for every operation of `/v1/openapi.json` and checks
//! that the real `nubis up` (in a network namespace) answers no 5xx, only
//! documented statuses, content types and bodies, and never refuses a
//! schema-valid request as malformed. Authenticated as an admin made by
//! `nubis admin create-user --admin`, so admin-only operations are
//! exercised too.
//!
//! Needs python3 with venv and pip (Debian: python3-venv, python3-pip, which
//! `make test` installs) and PyPI the first time; without them the test
//! skips with a note, and under CI it fails.

mod support;

use reqwest::Method;
use std::process::Command;
use support::cloud::Cloud;
use support::netns::run_in_netns;

/// The script that installs and runs schemathesis.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/schemathesis.sh");

/// Exit status of scripts/schemathesis.sh when the venv cannot be set up.
const SETUP_FAILED: i32 = 69;

/// Operations the script leaves out (see its comments): logout.
const EXCLUDED_OPERATIONS: usize = 1;

/// Whether python3 can make a venv with pip; under CI it must.
fn python_venv_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 with venv and pip is required in CI (scripts/install-deps.sh installs \
             python3-venv and python3-pip)"
        );
        eprintln!("note: python3 venv/ensurepip missing; skipping the schemathesis run");
    }
    ok
}

/// The number in `text` after `label` (e.g. "Tested: 55").
fn figure_after(text: &str, label: &str) -> Option<usize> {
    let rest = &text[text.find(label)? + label.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Sets up schemathesis' venv here, in the root namespace: the test's
/// namespace has no route to PyPI. Whether it is ready; under CI it must be.
fn schemathesis_installed(script: &str) -> bool {
    let out = Command::new(script)
        .arg("--install")
        .output()
        .expect("running scripts/schemathesis.sh --install");
    if out.status.success() {
        return true;
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        std::env::var_os("CI").is_none(),
        "schemathesis could not be installed (required in CI): {stderr}"
    );
    eprintln!("note: schemathesis could not be installed; skipping: {stderr}");
    false
}

#[test]
fn the_api_keeps_its_openapi_contract() {
    if !python_venv_available() || !schemathesis_installed(SCRIPT) {
        return;
    }
    run_in_netns("contract", || async {
        let mut cloud = Cloud::start().await;
        cloud
            .create_admin_and_login("contract", "contract-password")
            .await;
        let (status, doc) = cloud.call(Method::GET, "/v1/openapi.json", None).await;
        assert!(status.is_success(), "openapi.json: {status}");
        let operations: usize = doc["paths"]
            .as_object()
            .expect("paths")
            .values()
            .map(|item| {
                let item = item.as_object().expect("path item");
                ["get", "put", "post", "delete", "patch"]
                    .iter()
                    .filter(|m| item.contains_key(**m))
                    .count()
            })
            .sum();

        let out = Command::new(SCRIPT)
            .arg(&cloud.url)
            .env("NUBIS_TOKEN", cloud.token.as_deref().expect("token"))
            .output()
            .expect("running scripts/schemathesis.sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() == Some(SETUP_FAILED) {
            assert!(
                std::env::var_os("CI").is_none(),
                "schemathesis could not be installed (required in CI): {stderr}"
            );
            eprintln!("note: schemathesis could not be installed; skipping: {stderr}");
            return;
        }
        println!("{stdout}");
        assert!(
            out.status.success(),
            "schemathesis found the API breaking its contract:\n{stdout}\n{stderr}\n\
             nubis up log:\n{}",
            cloud.log()
        );
        // Positive control: the run really exercised every operation.
        let tested = figure_after(&stdout, "Tested:").expect("tested operations in the summary");
        assert_eq!(tested, operations - EXCLUDED_OPERATIONS, "{stdout}");
        let generated =
            figure_after(&stdout, "Test cases:").expect("generated test cases in the summary");
        assert!(generated >= 10 * tested, "only {generated} cases: {stdout}");
        assert!(
            !cloud.log().contains("internal error"),
            "the controller logged an internal error:\n{}",
            cloud.log()
        );
    });
}
