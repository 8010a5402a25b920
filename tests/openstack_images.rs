//! Image v2 (Glance) through the real clients, unmodified: Debian's
//! `openstack` and PyPI's newest python-openstackclient + openstacksdk
//! (scripts/openstack-venv.sh), each with a `clouds.yaml` pointing at a
//! `nubis up` in a network namespace. Creates and uploads (qcow2, the
//! kernel/initrd pair and a disk booting them), lists with filters, shows,
//! deletes; bad uploads are refused as on `/v1` and never leave an active
//! image; another tenant sees none of it. No VM is booted.
//!
//! Without the clients the test skips with a note; under CI it fails.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::cloud::{admin_create_user, Cloud};
use support::netns::run_in_netns;
use support::openstack::{clients, missing, write_clouds_yaml, Session};

const ADMIN: (&str, &str) = ("root", "admin-secret-1");
const MEMBER: (&str, &str) = ("alice", "alice-secret-1");
const OTHER: (&str, &str) = ("bob", "bob-secret-12");

/// Names in an `image list -f json`.
fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|i| i["Name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn qemu_img(args: &[&str]) {
    let out = Command::new("qemu-img").args(args).output().unwrap();
    assert!(out.status.success(), "qemu-img {args:?}: {out:?}");
}

/// The files uploaded: a real qcow2, one with a backing file, bytes that
/// are no qcow2, and stand-ins for a kernel and an initrd (opaque to
/// Nubis, as to QEMU's -kernel/-initrd until boot).
struct Files {
    disk: PathBuf,
    backed: PathBuf,
    garbage: PathBuf,
    kernel: PathBuf,
    initrd: PathBuf,
}

fn make_files(dir: &Path) -> Files {
    let disk = dir.join("disk.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", disk.to_str().unwrap(), "64M"]);
    let backed = dir.join("backed.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        disk.to_str().unwrap(),
        "-F",
        "qcow2",
        backed.to_str().unwrap(),
    ]);
    let garbage = dir.join("garbage.qcow2");
    std::fs::write(&garbage, b"this is not a qcow2 image at all\n".repeat(64)).unwrap();
    let kernel = dir.join("vmlinuz");
    std::fs::write(&kernel, b"\x7fkernel".repeat(512)).unwrap();
    let initrd = dir.join("initrd.img");
    std::fs::write(&initrd, b"initrd".repeat(512)).unwrap();
    Files {
        disk,
        backed,
        garbage,
        kernel,
        initrd,
    }
}

#[test]
fn openstack_clients_manage_images_through_glance() {
    let Some(clients) = clients() else {
        return;
    };
    run_in_netns("osimg", move || async move {
        let mut cloud = Cloud::start().await;
        cloud.register_and_login(OTHER.0, OTHER.1).await;
        cloud.register_and_login(MEMBER.0, MEMBER.1).await;
        let (_, alice) = cloud.call(Method::GET, "/v1/users/me", None).await;
        let data_dir = cloud.data_path().to_string_lossy().into_owned();
        admin_create_user(&["--data-dir", &data_dir], ADMIN.0, ADMIN.1, true);
        let clouds = write_clouds_yaml(cloud.data_path(), &cloud.url, &[ADMIN, MEMBER, OTHER]);
        let home = cloud.data_path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let files = make_files(cloud.data_path());
        let disk_sha = sha256_of(&files.disk);
        let disk_size = std::fs::metadata(&files.disk).unwrap().len();
        let p = |f: &PathBuf| f.to_string_lossy().into_owned();

        for client in &clients {
            let os = Session {
                client,
                clouds: clouds.clone(),
                home: home.clone(),
            };
            let label = client.label;
            let name = |what: &str| format!("{label}-{what}");

            // The catalog names Glance under the API's URL.
            let catalog = os.json("alice", &["catalog", "list"]).to_string();
            assert!(
                catalog.contains(&format!("{}/image", cloud.url)) && catalog.contains("glance"),
                "[{label}] no image endpoint in {catalog}"
            );

            // A qcow2 upload: active at once, Nubis's SHA-256 where Glance
            // allows another algorithm, no MD5 pretended.
            let img = os.json(
                "alice",
                &[
                    "image",
                    "create",
                    "--disk-format",
                    "qcow2",
                    "--container-format",
                    "bare",
                    "--file",
                    &p(&files.disk),
                    &name("disk"),
                ],
            );
            // Debian's 6.0 prints the record as created, before its upload
            // (so "queued"); the newer client shows it again after. Both
            // must see it active now, with no wait.
            let img = os.json("alice", &["image", "show", img["id"].as_str().unwrap()]);
            assert_eq!(img["status"], "active", "[{label}] {img}");
            assert_eq!(img["disk_format"], "qcow2", "[{label}] {img}");
            assert_eq!(img["size"], disk_size, "[{label}] {img}");
            assert_eq!(img["virtual_size"], 64 << 20, "[{label}] {img}");
            assert_eq!(img["owner"], alice["project"], "[{label}] {img}");
            assert_eq!(img["visibility"], "private", "[{label}] {img}");
            let text = img.to_string();
            assert!(text.contains(&disk_sha), "[{label}] sha256 in {text}");
            assert!(text.contains("sha256"), "[{label}] os_hash_algo in {text}");
            assert!(img["checksum"].is_null(), "[{label}] no md5: {img}");
            let disk_id = img["id"].as_str().unwrap().to_owned();
            // The same image through /v1.
            let (st, v1) = cloud
                .call(Method::GET, &format!("/v1/images/{disk_id}"), None)
                .await;
            assert_eq!(st, StatusCode::OK);
            assert_eq!(v1["status"], "active");
            assert_eq!(v1["checksum"], disk_sha.as_str());

            // The kernel/initrd pair, then a disk booting them.
            let k = os.json(
                "alice",
                &[
                    "image",
                    "create",
                    "--disk-format",
                    "aki",
                    "--container-format",
                    "bare",
                    "--file",
                    &p(&files.kernel),
                    &name("k"),
                ],
            );
            let k = os.json("alice", &["image", "show", k["id"].as_str().unwrap()]);
            assert_eq!(k["status"], "active", "[{label}] {k}");
            let r = os.json(
                "alice",
                &[
                    "image",
                    "create",
                    "--disk-format",
                    "ari",
                    "--container-format",
                    "bare",
                    "--file",
                    &p(&files.initrd),
                    &name("r"),
                ],
            );
            let r = os.json("alice", &["image", "show", r["id"].as_str().unwrap()]);
            assert_eq!(r["status"], "active", "[{label}] {r}");
            let (k_id, r_id) = (k["id"].as_str().unwrap(), r["id"].as_str().unwrap());
            let kd = os.json(
                "alice",
                &[
                    "image",
                    "create",
                    "--disk-format",
                    "qcow2",
                    "--container-format",
                    "bare",
                    "--file",
                    &p(&files.disk),
                    "--property",
                    &format!("kernel_id={k_id}"),
                    "--property",
                    &format!("ramdisk_id={r_id}"),
                    "--property",
                    "os_command_line=console=ttyS0 quiet",
                    "--property",
                    "os_distro=debian",
                    "--property",
                    "os_version=12",
                    &name("kdisk"),
                ],
            );
            let kd = os.json("alice", &["image", "show", kd["id"].as_str().unwrap()]);
            assert_eq!(kd["status"], "active", "[{label}] {kd}");
            let kd_id = kd["id"].as_str().unwrap().to_owned();
            let (_, v1) = cloud
                .call(Method::GET, &format!("/v1/images/{kd_id}"), None)
                .await;
            assert_eq!(v1["kernel"], k_id, "[{label}] {v1}");
            assert_eq!(v1["initrd"], r_id, "[{label}] {v1}");
            assert_eq!(v1["cmdline"], "console=ttyS0 quiet", "[{label}] {v1}");
            assert_eq!(v1["os"], "debian", "[{label}] {v1}");
            assert_eq!(v1["version"], "12", "[{label}] {v1}");
            let shown = os.json("alice", &["image", "show", &kd_id]).to_string();
            assert!(
                shown.contains(k_id) && shown.contains(r_id),
                "[{label}] {shown}"
            );
            // A kernel reference that is not an aki image: refused, nothing made.
            let err = os.fails(
                "alice",
                &[
                    "image",
                    "create",
                    "--disk-format",
                    "qcow2",
                    "--file",
                    &p(&files.disk),
                    "--property",
                    &format!("kernel_id={r_id}"),
                    &name("wrong-kernel"),
                ],
            );
            assert!(
                err.contains("must be an active aki image"),
                "[{label}] {err}"
            );

            // Lists: by name, private and public.
            let shown = os.json("alice", &["image", "show", &name("disk")]);
            assert_eq!(
                shown["id"],
                disk_id.as_str(),
                "[{label}] show by name: {shown}"
            );
            let by_name = os.json("alice", &["image", "list", "--name", &name("disk")]);
            assert_eq!(names(&by_name), [name("disk")], "[{label}] {by_name}");
            let private = names(&os.json("alice", &["image", "list", "--private"]));
            for n in ["disk", "k", "r", "kdisk"] {
                assert!(private.contains(&name(n)), "[{label}] {private:?}");
            }
            assert!(
                !private.contains(&name("wrong-kernel")),
                "[{label}] {private:?}"
            );
            // Publishing is for admins; a public image is seen by all.
            let err = os.fails(
                "alice",
                &[
                    "image",
                    "create",
                    "--disk-format",
                    "qcow2",
                    "--public",
                    &name("mine-public"),
                ],
            );
            assert!(err.contains("admin"), "[{label}] {err}");
            let public = os.json(
                "root",
                &[
                    "image",
                    "create",
                    "--disk-format",
                    "qcow2",
                    "--container-format",
                    "bare",
                    "--public",
                    "--file",
                    &p(&files.disk),
                    &name("public"),
                ],
            );
            assert_eq!(public["visibility"], "public", "[{label}] {public}");
            let listed = names(&os.json("alice", &["image", "list", "--public"]));
            assert!(listed.contains(&name("public")), "[{label}] {listed:?}");
            assert!(!listed.contains(&name("disk")), "[{label}] {listed:?}");
            let all = names(&os.json("bob", &["image", "list"]));
            assert!(all.contains(&name("public")), "[{label}] {all:?}");

            // Another tenant neither sees nor deletes alice's image.
            assert!(!all.contains(&name("disk")), "[{label}] {all:?}");
            let err = os.fails("bob", &["image", "show", &disk_id]);
            assert!(
                err.to_lowercase().contains("no image")
                    || err.contains("404")
                    || err.contains("not found")
                    || err.contains("Could not find"),
                "[{label}] {err}"
            );
            os.fails("bob", &["image", "delete", &disk_id]);
            let (st, _) = cloud
                .call(Method::GET, &format!("/v1/images/{disk_id}"), None)
                .await;
            assert_eq!(st, StatusCode::OK, "[{label}] still there");

            // Bad uploads are refused as on /v1; the client removes the
            // image, which never becomes active.
            for (what, file) in [("garbage", &files.garbage), ("backed", &files.backed)] {
                let err = os.fails(
                    "alice",
                    &[
                        "image",
                        "create",
                        "--disk-format",
                        "qcow2",
                        "--container-format",
                        "bare",
                        "--file",
                        &p(file),
                        &name(what),
                    ],
                );
                assert!(err.contains("image rejected"), "[{label}] {what}: {err}");
                let (_, v1) = cloud.call(Method::GET, "/v1/images", None).await;
                let left: Vec<&Value> = v1
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|i| i["name"] == name(what).as_str())
                    .collect();
                assert!(
                    left.iter().all(|i| i["status"] != "active"),
                    "[{label}] {what} active: {left:?}"
                );
            }

            // openstacksdk: create with a file, wait, list.
            let snippet = format!(
                "import json, openstack\n\
                 conn = openstack.connect(cloud='alice')\n\
                 img = conn.image.create_image({n:?}, filename={f:?}, disk_format='qcow2', \
                 container_format='bare', wait=True)\n\
                 img = conn.image.get_image(img.id)\n\
                 names = [i.name for i in conn.image.images()]\n\
                 print(json.dumps({{'id': img.id, 'status': img.status, 'hash': img.hash_value, \
                 'algo': img.hash_algo, 'names': names}}))\n",
                n = name("sdk"),
                f = p(&files.disk),
            );
            let out = os.sdk(&snippet);
            assert_eq!(out["status"], "active", "[{label}] {out}");
            assert_eq!(out["hash"], disk_sha.as_str(), "[{label}] {out}");
            assert_eq!(out["algo"], "sha256", "[{label}] {out}");
            let listed: Vec<&str> = out["names"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert!(
                listed.contains(&name("sdk").as_str()) && listed.contains(&name("public").as_str()),
                "[{label}] {out}"
            );

            // Deletes: the kernel is in use by kdisk (409 as on /v1); then
            // in order; a deleted image is gone.
            let err = os.fails("alice", &["image", "delete", k_id]);
            assert!(
                err.contains("409")
                    || err.to_lowercase().contains("in use")
                    || err.contains("boot"),
                "[{label}] {err}"
            );
            os.ok("alice", &["image", "delete", &kd_id]);
            os.ok(
                "alice",
                &[
                    "image",
                    "delete",
                    k_id,
                    r_id,
                    &disk_id,
                    out["id"].as_str().unwrap(),
                ],
            );
            os.fails("alice", &["image", "show", &disk_id]);
            let (st, _) = cloud
                .call(Method::GET, &format!("/v1/images/{disk_id}"), None)
                .await;
            assert_eq!(st, StatusCode::NOT_FOUND, "[{label}] deleted");
        }
    });
}

/// One Glance call with `token` as `X-Auth-Token`: status, headers, JSON body.
async fn glance(
    cloud: &Cloud,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<reqwest::Body>,
    content_type: &str,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = cloud
        .http()
        .request(method, format!("{}{path}", cloud.url))
        .header("Content-Type", content_type)
        // A refused upload is answered before its body is read, and the
        // server then closes the connection: never reuse one.
        .header("Connection", "close");
    if let Some(t) = token {
        req = req.header("X-Auth-Token", t);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.expect("Glance request");
    let (status, headers) = (resp.status(), resp.headers().clone());
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

const JSON: &str = "application/json";
const OCTETS: &str = "application/octet-stream";

#[test]
fn glance_wire_format_statuses_paging_and_errors() {
    if Command::new("qemu-img").arg("--version").output().is_err() {
        missing("qemu-img (qemu-utils) is not installed");
        return;
    }
    run_in_netns("osimgapi", || async {
        let mut cloud = Cloud::start().await;
        cloud.register_and_login(OTHER.0, OTHER.1).await;
        let bob = cloud.token.clone();
        cloud.register_and_login(MEMBER.0, MEMBER.1).await;
        let alice = cloud.token.clone();
        let (alice, bob) = (alice.as_deref(), bob.as_deref());
        let files = make_files(cloud.data_path());
        let create = |name: &str| {
            serde_json::json!({"name": name, "disk_format": "qcow2", "container_format": "bare"})
                .to_string()
        };

        // Discovery: 300 at the root, 200 at /versions, a CURRENT v2.
        let (s, _, v) = glance(&cloud, None, Method::GET, "/image", None, JSON).await;
        assert_eq!(s, StatusCode::MULTIPLE_CHOICES);
        let text = v.to_string();
        assert!(
            text.contains("CURRENT") && text.contains("/image/v2/"),
            "{text}"
        );
        let (s, _, _) = glance(&cloud, None, Method::GET, "/image/versions", None, JSON).await;
        assert_eq!(s, StatusCode::OK);
        // No token: Keystone's 401.
        let (s, h, v) = glance(&cloud, None, Method::GET, "/image/v2/images", None, JSON).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert!(h.contains_key("www-authenticate"), "{v}");

        // Create: 201, queued, Location.
        let (s, h, img) = glance(
            &cloud,
            alice,
            Method::POST,
            "/image/v2/images",
            Some(create("raw-a").into()),
            JSON,
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{img}");
        assert_eq!(img["status"], "queued");
        assert!(
            img["os_hash_value"].is_null() && img["checksum"].is_null(),
            "{img}"
        );
        let id = img["id"].as_str().unwrap().to_owned();
        assert_eq!(h["location"], format!("/v2/images/{id}").as_str());
        let file = format!("/image/v2/images/{id}/file");
        let one = format!("/image/v2/images/{id}");

        // Not qcow2: 400 in Glance's shape, the image stays queued.
        let garbage = std::fs::read(&files.garbage).unwrap();
        let (s, _, e) = glance(
            &cloud,
            alice,
            Method::PUT,
            &file,
            Some(garbage.into()),
            OCTETS,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
        assert_eq!(e["code"], "400 Bad Request", "{e}");
        assert!(
            e["message"].as_str().unwrap().contains("image rejected"),
            "{e}"
        );
        let backed = std::fs::read(&files.backed).unwrap();
        let (s, _, e) = glance(
            &cloud,
            alice,
            Method::PUT,
            &file,
            Some(backed.into()),
            OCTETS,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
        let (_, _, v) = glance(&cloud, alice, Method::GET, &one, None, JSON).await;
        assert_eq!(v["status"], "queued", "never active: {v}");
        // A JSON body is not image data.
        let (s, _, _) = glance(&cloud, alice, Method::PUT, &file, Some("{}".into()), JSON).await;
        assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);

        // Another tenant: 404 for show, upload and delete.
        let disk = std::fs::read(&files.disk).unwrap();
        for (m, path, body) in [
            (Method::GET, &one, None),
            (Method::PUT, &file, Some(disk.clone())),
            (Method::DELETE, &one, None),
        ] {
            let (s, _, e) =
                glance(&cloud, bob, m.clone(), path, body.map(Into::into), OCTETS).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{m} {path}: {e}");
            assert_eq!(e["code"], "404 Not Found", "{e}");
            if m == Method::GET {
                assert_eq!(
                    e["message"],
                    format!("No image found with ID {id}").as_str()
                );
            }
        }

        // A good upload: 204, active; a second one 409.
        let (s, _, e) = glance(
            &cloud,
            alice,
            Method::PUT,
            &file,
            Some(disk.clone().into()),
            OCTETS,
        )
        .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{e}");
        let (_, _, v) = glance(&cloud, alice, Method::GET, &one, None, JSON).await;
        assert_eq!(v["status"], "active", "{v}");
        assert_eq!(v["os_hash_algo"], "sha256", "{v}");
        assert_eq!(v["os_hash_value"], sha256_of(&files.disk).as_str(), "{v}");
        let (s, _, _) = glance(&cloud, alice, Method::PUT, &file, Some(disk.into()), OCTETS).await;
        assert_eq!(s, StatusCode::CONFLICT);

        // What Nubis cannot keep is refused and makes nothing.
        let bad = r#"{"name": "v", "disk_format": "vmdk", "container_format": "bare"}"#;
        let (s, _, e) = glance(
            &cloud,
            alice,
            Method::POST,
            "/image/v2/images",
            Some(bad.into()),
            JSON,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
        // Paging: names sorted, two a page, `next` until the end.
        for n in ["raw-b", "raw-c"] {
            let (s, _, _) = glance(
                &cloud,
                alice,
                Method::POST,
                "/image/v2/images",
                Some(create(n).into()),
                JSON,
            )
            .await;
            assert_eq!(s, StatusCode::CREATED);
        }
        let mut seen = Vec::new();
        let mut path = "/image/v2/images?limit=2&sort_key=name&sort_dir=asc".to_owned();
        let mut pages = 0;
        loop {
            let (s, _, page) = glance(&cloud, alice, Method::GET, &path, None, JSON).await;
            assert_eq!(s, StatusCode::OK, "{page}");
            pages += 1;
            for i in page["images"].as_array().unwrap() {
                seen.push(i["name"].as_str().unwrap().to_owned());
            }
            match page["next"].as_str() {
                Some(next) => path = format!("/image{next}"),
                None => break,
            }
        }
        assert_eq!(seen, ["raw-a", "raw-b", "raw-c"]);
        assert_eq!(pages, 2);
        let (_, _, v) = glance(
            &cloud,
            alice,
            Method::GET,
            "/image/v2/images?status=queued",
            None,
            JSON,
        )
        .await;
        assert_eq!(v["images"].as_array().unwrap().len(), 2, "{v}");
        let (_, _, v) = glance(&cloud, bob, Method::GET, "/image/v2/images", None, JSON).await;
        assert_eq!(v["images"].as_array().unwrap().len(), 0, "{v}");
        let (s, _, _) = glance(
            &cloud,
            alice,
            Method::GET,
            "/image/v2/images?sort_key=secret",
            None,
            JSON,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);

        // Not served: 501; unknown: 404.
        let (s, _, _) = glance(
            &cloud,
            alice,
            Method::GET,
            "/image/v2/schemas/image",
            None,
            JSON,
        )
        .await;
        assert_eq!(s, StatusCode::NOT_IMPLEMENTED);
        let (s, _, _) = glance(
            &cloud,
            alice,
            Method::PATCH,
            &one,
            Some("[]".into()),
            "application/openstack-images-v2.1-json-patch",
        )
        .await;
        assert_eq!(s, StatusCode::NOT_IMPLEMENTED);
        let (s, _, _) = glance(&cloud, alice, Method::GET, "/image/v2/nothing", None, JSON).await;
        assert_eq!(s, StatusCode::NOT_FOUND);

        // Delete: 204, then 404.
        let (s, _, _) = glance(&cloud, alice, Method::DELETE, &one, None, JSON).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (s, _, _) = glance(&cloud, alice, Method::GET, &one, None, JSON).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    });
}
