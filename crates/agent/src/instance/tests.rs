//! The instance actor: a delete is not held up by a step that hangs.

use super::*;
use crate::layout::Layout;
use axum::body::Body;
use axum::http::header;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A controller whose image download sends headers, then nothing ever;
/// the flag tells when an agent has started downloading.
async fn stalling_controller() -> (String, Arc<AtomicBool>) {
    let asked = Arc::new(AtomicBool::new(false));
    let flag = asked.clone();
    let app = axum::Router::new().route(
        "/v1/agent/images/{id}/file",
        axum::routing::get(move || {
            flag.store(true, Ordering::SeqCst);
            async {
                let silence =
                    futures_util::stream::pending::<Result<bytes::Bytes, std::io::Error>>();
                axum::response::Response::builder()
                    .header(header::CONTENT_LENGTH, 1 << 20)
                    .body(Body::from_stream(silence))
                    .unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), asked)
}

/// An instance with no NICs: the actor touches no host networking before
/// the disk.
pub(super) fn spec() -> InstanceSpec {
    crate::fixtures::instance_spec("stuck")
}

#[tokio::test]
async fn a_delete_interrupts_a_step_that_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    let (url, asked) = stalling_controller().await;
    let client =
        crate::controller_client::ControllerClient::with_http(&url, reqwest::Client::new())
            .unwrap();
    let ctx = InstanceContext {
        // Far longer than this test waits: the download itself never ends.
        images: ImageCache::new(layout.images(), client)
            .with_idle_timeout(Duration::from_secs(3600)),
        accel: crate::qemu::Accel::Tcg,
        stop_timeout: Duration::from_secs(20),
        reports: Reports::default(),
        networking: HostNetworking::new(layout.networks(), 0),
        metadata_service: true,
        console_log_bytes: crate::serial_log::ROTATE_AT,
        migration_ip: None,
        jails: crate::jail::Jails::default(),
        moves: Default::default(),
    };
    let spec = spec();
    let files = layout.instance(spec.id);
    let handle = spawn(
        spec.id,
        files.clone(),
        ctx.clone(),
        Desire::Run(Box::new(spec.clone())),
    );
    // The actor is now stuck in its first step (fetching the base image).
    let started = tokio::time::timeout(Duration::from_secs(30), async {
        while !asked.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(started.is_ok(), "the actor never asked for the image");
    assert!(files.dir.exists(), "the step has begun on disk");
    assert!(!handle.task.is_finished());

    // No longer this host's: the step is abandoned, but nothing is removed
    // before the controller releases the instance.
    handle.spec.send_replace(Desire::Hold);
    tokio::time::timeout(Duration::from_secs(60), async {
        while ctx
            .reports
            .snapshot()
            .instances
            .iter()
            .any(|i| i.id == spec.id)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the held instance stops reporting");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(files.dir.exists(), "held: its files stay until released");
    assert!(!handle.task.is_finished(), "held: the actor waits");

    handle
        .spec
        .send_replace(Desire::Remove { keep_disk: false });
    tokio::time::timeout(Duration::from_secs(60), handle.task)
        .await
        .expect("the delete waited for the stuck step")
        .expect("the actor ended cleanly");
    assert!(!files.dir.exists(), "the instance's files are gone");
    assert!(
        ctx.reports.snapshot().instances.is_empty(),
        "no report left"
    );
}
