//! `nubis image ...`: the catalog, and uploads with a progress bar.

use crate::client::{segment, ApiClient};
use crate::output::{opt, print_list, print_one};
use anyhow::Context;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use nubis_api::images::{Image, ImageFormat};
use serde_json::json;
use std::path::Path;

pub async fn list(client: &ApiClient, json: bool) -> anyhow::Result<()> {
    let images: Vec<Image> = client.get("/v1/images").await?;
    print_list(
        json,
        &images,
        &["name", "os", "version", "format", "status", "size", "id"],
        |i| {
            vec![
                i.name.clone(),
                i.os.clone(),
                i.version.clone(),
                i.format.as_str().into(),
                format!("{:?}", i.status).to_lowercase(),
                opt(&i.size),
                i.id.to_string(),
            ]
        },
    );
    Ok(())
}

pub async fn show(client: &ApiClient, image: &str, json: bool) -> anyhow::Result<()> {
    let image: Image = client
        .get(&format!("/v1/images/{}", segment(image)))
        .await?;
    print_one(json, &image);
    Ok(())
}

/// Deletes an image; the controller refuses while a server uses it.
pub async fn delete(client: &ApiClient, image: &str) -> anyhow::Result<()> {
    client
        .delete(&format!("/v1/images/{}", segment(image)))
        .await?;
    println!("Image '{image}' deleted.");
    Ok(())
}

/// What `nubis image create` asks for.
pub struct NewImage<'a> {
    pub name: &'a str,
    pub os: &'a str,
    pub version: &'a str,
    pub format: ImageFormat,
    pub file: &'a Path,
    pub kernel: Option<&'a str>,
    pub initrd: Option<&'a str>,
    pub cmdline: Option<&'a str>,
    pub public: bool,
    /// `config-2` or `nocloud`.
    pub config_format: &'a str,
}

/// Creates the record, then uploads the file.
pub async fn create(client: &ApiClient, new: NewImage<'_>) -> anyhow::Result<()> {
    // Fail on a missing file before creating anything.
    let len = tokio::fs::metadata(new.file)
        .await
        .with_context(|| format!("reading {}", new.file.display()))?
        .len();
    let image: Image = client
        .post(
            "/v1/images",
            &json!({
                "name": new.name, "os": new.os, "version": new.version,
                "format": new.format, "kernel": new.kernel, "initrd": new.initrd,
                "cmdline": new.cmdline,
                "visibility": if new.public { "public" } else { "private" },
                "config_format": new.config_format,
            }),
        )
        .await?;
    let image = upload(client, &image, new.file, len).await?;
    println!(
        "Image '{}' ({}) is {:?}.",
        image.name, image.id, image.status
    );
    Ok(())
}

async fn upload(client: &ApiClient, image: &Image, file: &Path, len: u64) -> anyhow::Result<Image> {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(format!("uploading {}", image.name));
    let f = tokio::fs::File::open(file).await?;
    let progress = bar.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(f, 1 << 20).inspect(move |chunk| {
        if let Ok(c) = chunk {
            progress.inc(c.len() as u64);
        }
    });
    let req = client
        .request(
            reqwest::Method::PUT,
            &format!("/v1/images/{}/file", image.id),
        )
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .header(reqwest::header::CONTENT_LENGTH, len)
        .body(reqwest::Body::wrap_stream(stream));
    let result = client.send(req).await;
    bar.finish_and_clear();
    Ok(result?.json().await?)
}
