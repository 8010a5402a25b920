//! Request bounds: an upload that stops sending fails cleanly after the idle
//! timeout (and the image can be uploaded again); ordinary requests and the
//! agents' long poll still work under a short request timeout.

use super::*;
use nubis_controller::http::timeouts::Timeouts;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Short bounds, so the test waits little.
const SHORT: Timeouts = Timeouts {
    request: Duration::from_secs(2),
    upload_idle: Duration::from_secs(1),
    long_poll: Duration::from_secs(3),
};

async fn cloud_with_short_timeouts() -> Cloud {
    Cloud::start_with_settings(
        Duration::from_secs(3600),
        Settings {
            timeouts: SHORT,
            ..Default::default()
        },
    )
    .await
}

/// Sends the head of an upload announcing `announced` bytes and `sent` of
/// them, then stalls; returns the status and the body of the answer.
async fn stalled_upload(
    cloud: &Cloud,
    token: &str,
    image: &str,
    announced: usize,
    sent: usize,
) -> (u16, Value) {
    let addr = cloud.base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT /v1/images/{image}/file HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {announced}\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&vec![0u8; sent]).await.unwrap();
    conn.flush().await.unwrap();
    // Keep the connection open and silent; the server must answer and close.
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), conn.read_to_end(&mut answer))
        .await
        .expect("the server answers a stalled upload within the bound")
        .unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    // The body may be chunked: take the JSON object inside.
    let json = body
        .find('{')
        .zip(body.rfind('}'))
        .and_then(|(a, b)| serde_json::from_str(&body[a..=b]).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

#[tokio::test]
async fn an_upload_that_stops_sending_fails_and_can_be_retried() {
    let cloud = cloud_with_short_timeouts().await;
    let alice = cloud.user("alice").await;
    let image = cloud.create_image(&alice, image_record("r", "raw")).await;
    let image = id(&image);

    let (status, body) = stalled_upload(&cloud, &alice, image, 2 * MIB, MIB).await;
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("no bytes received") && message.contains("still queued"),
        "{message}"
    );
    // Nothing half-written is left, and the image waits for its file.
    assert_eq!(files_in(&cloud.images_dir()), BTreeSet::new());
    assert_eq!(cloud.image(&alice, image).await["status"], "queued");

    // Positive control: the same upload sent in full succeeds.
    let resp = cloud.upload(&alice, image, vec![0u8; 2 * MIB]).await;
    let done = ok_json(resp, StatusCode::OK).await;
    assert_eq!(done["status"], "active", "{done}");
    assert_eq!(
        files_in(&cloud.images_dir()),
        BTreeSet::from([image.to_owned()])
    );
}

#[tokio::test]
async fn ordinary_requests_and_long_polls_work_under_a_short_request_timeout() {
    let cloud = cloud_with_short_timeouts().await;
    let alice = cloud.user("alice").await;
    let flavors = cloud.get_ok(&alice, "/v1/flavors").await;
    assert!(
        flavors.as_array().is_some_and(|f| !f.is_empty()),
        "{flavors}"
    );

    // A long poll waits for a change longer than the request timeout
    // allows an ordinary request, and still answers 200 with the state.
    let host = cloud.register_host().await;
    let desired = |after: Option<u64>| {
        let path = match after {
            Some(r) => format!("/v1/agent/hosts/{}/desired?after={r}", id(&host)),
            None => format!("/v1/agent/hosts/{}/desired", id(&host)),
        };
        cloud.agent_req(Method::GET, &path).send()
    };
    let first = ok_json(desired(None).await.unwrap(), StatusCode::OK).await;
    let revision = first["revision"].as_u64().expect("a revision");
    let started = std::time::Instant::now();
    let polled = ok_json(desired(Some(revision)).await.unwrap(), StatusCode::OK).await;
    assert_eq!(polled["revision"].as_u64(), Some(revision), "{polled}");
    // It really waited (nothing changed), beyond the ordinary bound.
    assert!(
        started.elapsed() >= SHORT.long_poll,
        "the long poll answered before its wait was over"
    );
}
