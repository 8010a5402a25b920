//! The graphical console end to end: `nubis up` in a network namespace boots
//! the tiny guest; `POST /v1/servers/{id}/console` gives a single-use link;
//! the websocket speaks RFB (VNC) from QEMU's unix socket and shows a screen
//! that is not blank; a token used twice, from another origin, or expired is
//! refused; another project's server is not found; stopping the server
//! closes an open session; no token reaches the log.

mod support;

use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use support::cloud::Cloud;
use support::netns::run_in_netns;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

const BOOT: Duration = Duration::from_secs(180);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the console websocket with `token` as a browser would, from `origin`.
/// Err: the HTTP status of a refused handshake.
async fn open(cloud: &Cloud, token: &str, origin: Option<&str>) -> Result<Socket, StatusCode> {
    let ws_url = cloud.url.replacen("http://", "ws://", 1) + "/v1/console/websocket";
    let mut req = ws_url.into_client_request().unwrap();
    let h = req.headers_mut();
    if let Some(o) = origin {
        h.insert("origin", o.parse().unwrap());
    }
    h.insert(
        "sec-websocket-protocol",
        format!("binary, nubis-console.{token}").parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(req).await {
        Ok((socket, resp)) => {
            assert_eq!(
                resp.headers()
                    .get("sec-websocket-protocol")
                    .map(|v| v.to_str().unwrap()),
                Some("binary"),
                "the token is never echoed back"
            );
            Ok(socket)
        }
        Err(tungstenite::Error::Http(resp)) => {
            Err(StatusCode::from_u16(resp.status().as_u16()).unwrap())
        }
        Err(e) => panic!("websocket: {e}"),
    }
}

/// Asks for a console link; returns (token, whole answer).
async fn console_token(cloud: &Cloud, id: &str) -> (String, serde_json::Value) {
    let (s, b) = cloud
        .call(Method::POST, &format!("/v1/servers/{id}/console"), None)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    (b["token"].as_str().expect("token").to_owned(), b)
}

/// RFB bytes over websocket frames.
struct Rfb {
    socket: Socket,
    buf: Vec<u8>,
}

impl Rfb {
    async fn read(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            let msg = tokio::time::timeout(Duration::from_secs(30), self.socket.next())
                .await
                .expect("RFB data in time")
                .expect("socket open")
                .expect("frame");
            match msg {
                Message::Binary(b) => self.buf.extend_from_slice(&b),
                Message::Close(_) => panic!("closed during RFB"),
                _ => {}
            }
        }
        self.buf.drain(..n).collect()
    }

    async fn send(&mut self, bytes: Vec<u8>) {
        self.socket
            .send(Message::Binary(bytes.into()))
            .await
            .unwrap();
    }

    fn u16(b: &[u8]) -> usize {
        u16::from_be_bytes([b[0], b[1]]) as usize
    }

    fn u32(b: &[u8]) -> usize {
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
    }

    /// Version, security None, ClientInit; returns (width, height, bytes per pixel).
    async fn handshake(&mut self) -> (usize, usize, usize) {
        assert_eq!(self.read(12).await, b"RFB 003.008\n");
        self.send(b"RFB 003.008\n".to_vec()).await;
        let n = self.read(1).await[0] as usize;
        assert!(n > 0, "security types offered");
        let types = self.read(n).await;
        assert!(types.contains(&1), "security type None: {types:?}");
        self.send(vec![1]).await;
        assert_eq!(Self::u32(&self.read(4).await), 0, "security result OK");
        self.send(vec![1]).await; // ClientInit, shared
        let init = self.read(24).await;
        let (w, h) = (Self::u16(&init[0..]), Self::u16(&init[2..]));
        let bpp = init[4] as usize / 8;
        let name_len = Self::u32(&init[20..]);
        self.read(name_len).await;
        // Raw encoding only.
        self.send(vec![2, 0, 0, 1, 0, 0, 0, 0]).await;
        (w, h, bpp)
    }

    /// A full (non-incremental) framebuffer update; the pixels of its rectangles.
    async fn screen(&mut self, w: usize, h: usize, bpp: usize) -> Vec<Vec<u8>> {
        let mut req = vec![3, 0, 0, 0, 0, 0];
        req.extend((w as u16).to_be_bytes());
        req.extend((h as u16).to_be_bytes());
        self.send(req).await;
        loop {
            let kind = self.read(1).await[0];
            match kind {
                0 => break,
                2 => continue, // Bell
                other => panic!("unexpected RFB server message {other}"),
            }
        }
        let head = self.read(3).await;
        let rects = Self::u16(&head[1..]);
        let mut out = Vec::new();
        for _ in 0..rects {
            let r = self.read(12).await;
            let (rw, rh) = (Self::u16(&r[4..]), Self::u16(&r[6..]));
            let encoding = i32::from_be_bytes([r[8], r[9], r[10], r[11]]);
            if encoding != 0 {
                // Pseudo-encodings carry no pixels we asked for.
                assert!(encoding < 0, "raw only, got {encoding}");
                continue;
            }
            out.push(self.read(rw * rh * bpp).await);
        }
        out
    }
}

fn non_uniform(rects: &[Vec<u8>], bpp: usize) -> bool {
    let mut pixels = rects.iter().flat_map(|r| r.chunks(bpp));
    let Some(first) = pixels.next() else {
        return false;
    };
    pixels.any(|p| p != first)
}

/// Waits until the socket ends (close frame, end or error).
async fn closes(socket: &mut Socket, limit: Duration) -> bool {
    tokio::time::timeout(limit, async {
        loop {
            match socket.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[test]
fn vnc_console_single_use_same_origin_and_closed_on_stop() {
    run_in_netns("console", || async {
        let offset = tempfile::NamedTempFile::new().unwrap();
        let offset_path = offset.path().to_str().unwrap().to_owned();
        std::fs::write(&offset_path, "0").unwrap();
        let mut cloud = Cloud::start_with(&["--clock-offset-file", &offset_path]).await;
        cloud.register_and_login("alice", "alice-password").await;
        cloud.upload_tiny_image();
        let (id, _) = cloud
            .create_server(json!({"name": "vm1", "image": "tiny", "flavor": "tiny"}))
            .await;
        cloud.wait_status(&id, "running", BOOT).await;
        cloud.wait_console(&id, "nubis-tiny: ready", BOOT).await;
        let origin = cloud.url.clone();
        let mut tokens = Vec::new();

        // The link: the page with the token in the fragment.
        let (token, access) = console_token(&cloud, &id).await;
        tokens.push(token.clone());
        let url = access["url"].as_str().unwrap();
        assert_eq!(url, format!("{}/console/{id}#token={token}", cloud.url));
        assert!(access["expires_at"].is_string());

        // The page and noVNC are served, with a strict policy.
        let page = reqwest::get(format!("{}/console/{id}", cloud.url))
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let csp = page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(page
            .text()
            .await
            .unwrap()
            .contains("/static/console/console.js"));
        for asset in ["/static/console/console.js", "/static/novnc/core/rfb.js"] {
            let resp = reqwest::get(format!("{}{asset}", cloud.url)).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{asset}");
        }

        // RFB from QEMU, and the screen is not blank.
        let socket = open(&cloud, &token, Some(&origin))
            .await
            .expect("the console opens");
        let mut rfb = Rfb {
            socket,
            buf: Vec::new(),
        };
        let (w, h, bpp) = rfb.handshake().await;
        assert!(w >= 320 && h >= 200 && bpp > 0, "{w}x{h}x{bpp}");
        let mut shown = false;
        for _ in 0..20 {
            let rects = rfb.screen(w, h, bpp).await;
            if non_uniform(&rects, bpp) {
                shown = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(shown, "the screen shows something");

        // The same token again: refused.
        assert_eq!(
            open(&cloud, &token, Some(&origin)).await.err(),
            Some(StatusCode::UNAUTHORIZED)
        );
        // Another origin, or none: refused before the token is even looked at.
        let (fresh, _) = console_token(&cloud, &id).await;
        tokens.push(fresh.clone());
        assert_eq!(
            open(&cloud, &fresh, Some("http://evil.example"))
                .await
                .err(),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            open(&cloud, &fresh, None).await.err(),
            Some(StatusCode::FORBIDDEN)
        );
        // An unknown token: refused.
        assert_eq!(
            open(&cloud, "nbc_0000", Some(&origin)).await.err(),
            Some(StatusCode::UNAUTHORIZED)
        );
        // An expired one: refused (the clock moves two minutes on).
        std::fs::write(&offset_path, "120").unwrap();
        assert_eq!(
            open(&cloud, &fresh, Some(&origin)).await.err(),
            Some(StatusCode::UNAUTHORIZED)
        );
        std::fs::write(&offset_path, "0").unwrap();

        // The CLI prints a link.
        let out = cloud.cli(&["server", "console", "vm1"]);
        let printed = String::from_utf8(out.stdout).unwrap();
        let printed = printed.trim();
        assert!(
            printed.starts_with(&format!("{}/console/{id}#token=nbc_", cloud.url)),
            "{printed}"
        );
        tokens.push(printed.rsplit('=').next().unwrap().to_owned());

        // Another project's server does not exist for bob.
        let alice = cloud.token.clone();
        cloud.register_and_login("bob", "bob-password").await;
        let (s, b) = cloud
            .call(Method::POST, &format!("/v1/servers/{id}/console"), None)
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
        cloud.token = alice;

        // Stopping the server closes an open session.
        let (live, _) = console_token(&cloud, &id).await;
        tokens.push(live.clone());
        let socket = open(&cloud, &live, Some(&origin)).await.expect("opens");
        let mut rfb = Rfb {
            socket,
            buf: Vec::new(),
        };
        rfb.handshake().await;
        let (s, _) = cloud
            .call(Method::POST, &format!("/v1/servers/{id}/stop"), None)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
        assert!(
            closes(&mut rfb.socket, Duration::from_secs(30)).await,
            "the session closes when the server stops"
        );
        cloud.wait_status(&id, "stopped", BOOT).await;
        // A stopped server has no console.
        let (s, b) = cloud
            .call(Method::POST, &format!("/v1/servers/{id}/console"), None)
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{b}");

        // No token ever reaches the log.
        let log = cloud.log();
        assert!(log.contains("console session opened"), "{log}");
        for t in &tokens {
            assert!(!log.contains(t.as_str()), "a console token is in the log");
        }
    });
}
