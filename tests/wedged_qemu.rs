//! A wedged QEMU (SIGSTOPped: alive, but answering nothing) must not wedge
//! Nubis: the agent's QMP calls time out, the server turns `error` with a
//! fault that says so, the API keeps answering, and the server can still be
//! deleted (the agent SIGKILLs the QEMU and removes its files) or stopped
//! (power-down times out, so the agent SIGKILLs it).

mod support;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;
use support::cloud::Cloud;
use support::netns::run_in_netns;
use support::qemu_pids;

/// Generous: guests boot in seconds under TCG, but CI machines are shared.
const BOOT: Duration = Duration::from_secs(180);

/// The agent's QMP command limit is 20 s and it re-checks a running guest
/// at least every 30 s; this bound covers both several times over.
const WEDGE_NOTICED: Duration = Duration::from_secs(180);

/// How long one API call may take while the QEMU is wedged: the API never
/// waits on an agent, so anything near this would mean something is stuck.
const API_CALL: Duration = Duration::from_secs(10);

/// GET `path` with a time limit; the status and JSON body.
async fn get_bounded(cloud: &Cloud, path: &str) -> (StatusCode, Value) {
    let resp = cloud
        .request(Method::GET, path)
        .timeout(API_CALL)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path} did not answer within {API_CALL:?}: {e}"));
    let status = resp.status();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[test]
fn a_wedged_qemu_is_an_error_fault_and_can_still_be_deleted() {
    run_in_netns("wedged", || async {
        let mut cloud = Cloud::start().await;
        cloud.register_and_login("wanda", "wanda-password").await;
        cloud.upload_tiny_image();

        let (id, _) = cloud
            .create_server(json!({"name": "stuck", "image": "tiny", "flavor": "tiny"}))
            .await;
        cloud.wait_status(&id, "running", BOOT).await;
        let pids = qemu_pids(&id);
        assert_eq!(pids.len(), 1, "one QEMU for the server");
        let pid = Pid::from_raw(pids[0]);

        // Wedge it, then ask for something that needs QMP.
        kill(pid, Signal::SIGSTOP).expect("SIGSTOP the QEMU");
        let (s, b) = cloud
            .call(Method::POST, &format!("/v1/servers/{id}/reboot"), None)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");

        // The server turns `error` with a fault naming the timeout, while
        // the API (the list as well as the server) answers throughout.
        let list_answers = std::cell::Cell::new(0);
        let server = support::wait_for("the server to be error", WEDGE_NOTICED, || async {
            let (s, list) = get_bounded(&cloud, "/v1/servers").await;
            assert_eq!(s, StatusCode::OK, "{list}");
            assert!(
                list.as_array()
                    .is_some_and(|l| l.iter().any(|x| x["id"] == id.as_str())),
                "{list}"
            );
            list_answers.set(list_answers.get() + 1);
            let (s, server) = get_bounded(&cloud, &format!("/v1/servers/{id}")).await;
            assert_eq!(s, StatusCode::OK, "{server}");
            (server["status"] == "error").then_some(server)
        })
        .await;
        assert!(list_answers.get() >= 1);
        let fault = server["fault"].as_str().unwrap_or_default();
        assert!(
            fault.contains("timed out") && fault.contains("QMP"),
            "the fault names the QMP timeout: {server}\n{}",
            cloud.log()
        );
        // Still there (stopped, not dead): the agent does not kill a guest
        // only because it answers slowly.
        assert_eq!(qemu_pids(&id), pids, "the wedged QEMU is left alone");

        // Delete: the agent SIGKILLs it (no QMP needed) and removes its files.
        let (s, b) = cloud
            .call(Method::DELETE, &format!("/v1/servers/{id}"), None)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        support::wait_for("the server to disappear", BOOT, || async {
            let (s, _) = get_bounded(&cloud, &format!("/v1/servers/{id}")).await;
            (s == StatusCode::NOT_FOUND).then_some(())
        })
        .await;
        let dir = cloud.data_path().join("agent/instances").join(&id);
        support::wait_for("its QEMU and files to go", BOOT, || async {
            (qemu_pids(&id).is_empty() && !dir.exists()).then_some(())
        })
        .await;
        let (s, list) = get_bounded(&cloud, "/v1/servers").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(list, json!([]), "no server left");

        // Stopping a wedged QEMU ends too: ACPI power-down cannot be sent,
        // so the agent goes straight to SIGKILL.
        let (id, _) = cloud
            .create_server(json!({"name": "stuck2", "image": "tiny", "flavor": "tiny"}))
            .await;
        cloud.wait_status(&id, "running", BOOT).await;
        let pids = qemu_pids(&id);
        assert_eq!(pids.len(), 1, "one QEMU for the server");
        kill(Pid::from_raw(pids[0]), Signal::SIGSTOP).expect("SIGSTOP the QEMU");
        let (s, b) = cloud
            .call(Method::POST, &format!("/v1/servers/{id}/stop"), None)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        // (It may pass through `error` if a periodic check hit the wedge first.)
        support::wait_for("the wedged server to be stopped", WEDGE_NOTICED, || async {
            let (s, server) = get_bounded(&cloud, &format!("/v1/servers/{id}")).await;
            assert_eq!(s, StatusCode::OK, "{server}");
            (server["status"] == "stopped").then_some(())
        })
        .await;
        assert!(qemu_pids(&id).is_empty(), "the wedged QEMU was killed");
        assert!(
            cloud.log().contains("QEMU does not answer QMP; killing it"),
            "stopped by SIGKILL after the QMP timeout:\n{}",
            cloud.log()
        );
    });
}
