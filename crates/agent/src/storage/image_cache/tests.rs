//! A stalled image download times out, releases the image's lock and is
//! resumed (or restarted) by the next attempt, against a fake controller on
//! loopback that stalls halfway through its first answer.

use super::*;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode as HttpStatus};
use axum::response::Response;
use nubis_api::images::ImageFormat;
use std::sync::Mutex as StdMutex;

/// The fake controller: the file, whether it honours `Range`, and the
/// `Range` header of each request it got.
#[derive(Clone)]
struct Fake {
    file: Arc<Vec<u8>>,
    serves_ranges: bool,
    ranges: Arc<StdMutex<Vec<Option<String>>>>,
}

async fn image_file(State(fake): State<Fake>, headers: HeaderMap) -> Response {
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let first = {
        let mut ranges = fake.ranges.lock().unwrap();
        ranges.push(range.clone());
        ranges.len() == 1
    };
    let len = fake.file.len();
    if first {
        // Half the file, then silence: a stalled peer.
        let half = bytes::Bytes::copy_from_slice(&fake.file[..len / 2]);
        let body = futures_util::stream::once(async move { Ok::<_, std::io::Error>(half) })
            .chain(futures_util::stream::pending());
        return Response::builder()
            .header(header::CONTENT_LENGTH, len)
            .body(Body::from_stream(body))
            .unwrap();
    }
    let from = range.filter(|_| fake.serves_ranges).and_then(|r| {
        r.strip_prefix("bytes=")?
            .strip_suffix('-')?
            .parse::<usize>()
            .ok()
    });
    match from {
        Some(from) => Response::builder()
            .status(HttpStatus::PARTIAL_CONTENT)
            .header(
                header::CONTENT_RANGE,
                format!("bytes {from}-{}/{len}", len - 1),
            )
            .body(Body::from(fake.file[from..].to_vec()))
            .unwrap(),
        None => Response::builder()
            .body(Body::from(fake.file.to_vec()))
            .unwrap(),
    }
}

/// Starts the fake controller on loopback; returns its state and a cache
/// (with a short idle limit) that downloads from it into `dir`.
async fn setup(serves_ranges: bool, dir: &Path) -> (Fake, ImageCache, ImageRef) {
    let file: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let image = ImageRef {
        id: ImageId::new(),
        format: ImageFormat::Raw,
        checksum: hex::encode(Sha256::digest(&file)),
        size: file.len() as u64,
    };
    let fake = Fake {
        file: Arc::new(file),
        serves_ranges,
        ranges: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/v1/agent/images/{id}/file", axum::routing::get(image_file))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client =
        ControllerClient::with_http(&format!("http://{addr}"), reqwest::Client::new()).unwrap();
    let cache =
        ImageCache::new(dir.to_owned(), client).with_idle_timeout(Duration::from_millis(500));
    (fake, cache, image)
}

/// Runs the stall-then-retry sequence; returns the `Range` headers sent.
async fn stall_then_retry(serves_ranges: bool) -> Vec<Option<String>> {
    let dir = tempfile::tempdir().unwrap();
    let (fake, cache, image) = setup(serves_ranges, dir.path()).await;
    let err = cache
        .ensure(&image)
        .await
        .expect_err("the first attempt stalls");
    assert!(format!("{err:#}").contains("stalled"), "{err:#}");
    // The partial file stays for the next attempt.
    let partial = std::fs::metadata(cache.partial_path(&image)).unwrap().len();
    assert_eq!(partial, image.size / 2);
    // The lock was released: the next attempt does not wait on the first.
    let path = tokio::time::timeout(Duration::from_secs(60), cache.ensure(&image))
        .await
        .expect("the lock was released")
        .expect("the second attempt completes");
    assert_eq!(std::fs::read(&path).unwrap(), *fake.file);
    assert!(!cache.partial_path(&image).exists());
    let ranges = fake.ranges.lock().unwrap().clone();
    ranges
}

#[tokio::test]
async fn a_stalled_download_times_out_and_resumes_from_where_it_stopped() {
    let ranges = stall_then_retry(true).await;
    assert_eq!(ranges, vec![None, Some("bytes=150000-".to_owned())]);
}

#[tokio::test]
async fn without_range_support_the_download_restarts_from_zero() {
    // Asked for the rest, the controller sends all: the file is replaced,
    // not appended to (the checksum check in `ensure` would catch that).
    let ranges = stall_then_retry(false).await;
    assert_eq!(ranges, vec![None, Some("bytes=150000-".to_owned())]);
}
