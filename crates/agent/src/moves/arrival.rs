//! The target's side of a move: the instance's disk appears before the
//! instance may start. By copy, it is pulled from the source agent over
//! mutual TLS (this host's certificate; the source serves it only to the
//! target its departure names), written to a temporary file while hashed,
//! and renamed into place only when the SHA-256 the source sent matches:
//! a copy cut short leaves no disk, and the next attempt starts over. From
//! a shared store it is already there; an evacuation that lost the disk
//! makes a fresh one from the image. Once the disk is in place the actor
//! reports `arrived` for the move's generation.

use super::departure::SHA256_HEADER;
use crate::instance::{create_disk, jail_dirs, InstanceContext};
use crate::jail::safe_fs;
use crate::layout::InstanceFiles;
use anyhow::{bail, Context};
use futures_util::StreamExt;
use nubis_api::agent::{Arrival, InstanceSpec, MoveProgress, MoveReport, MoveRole, PeerHost};
use nubis_api::images::ImageFormat;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// Makes the missing disk of `spec`'s instance, the way its arrival says.
pub async fn make_disk(
    ctx: &InstanceContext,
    files: &InstanceFiles,
    spec: &InstanceSpec,
) -> anyhow::Result<()> {
    match &spec.arrival {
        None | Some(Arrival::Rebuild) => create_disk(ctx, files, spec).await,
        Some(Arrival::Copy { source }) => {
            let result = copy_from(ctx, files, spec, source).await;
            if let Err(e) = &result {
                ctx.reports.set_move(report(
                    spec,
                    MoveProgress::Working,
                    0,
                    Some(format!("{e:#}")),
                ));
            }
            result
        }
        Some(Arrival::Shared) => bail!(
            "the shared instance store has no disk for this instance at {}",
            files.disk().display()
        ),
        Some(Arrival::Live { .. }) => {
            bail!("this agent cannot receive a live migration")
        }
    }
}

/// Tells the controller the disk is in place (for the move of the spec's
/// generation); forgets the move once the spec has no arrival any more.
pub fn note_arrived(ctx: &InstanceContext, files: &InstanceFiles, spec: &InstanceSpec) {
    match &spec.arrival {
        // A live arrival is the live migration's to report.
        Some(Arrival::Live { .. }) => {}
        Some(_) if files.disk().exists() => {
            ctx.reports
                .set_move(report(spec, MoveProgress::Arrived, 0, None));
        }
        Some(_) => {}
        None => ctx.reports.remove_moves(spec.id),
    }
}

fn report(
    spec: &InstanceSpec,
    progress: MoveProgress,
    bytes: u64,
    error: Option<String>,
) -> MoveReport {
    MoveReport {
        id: spec.id,
        generation: spec.generation,
        role: MoveRole::Arrival,
        progress,
        bytes,
        error,
        ..MoveReport::default()
    }
}

/// Pulls the disk from `source`, checks it and puts it in place.
async fn copy_from(
    ctx: &InstanceContext,
    files: &InstanceFiles,
    spec: &InstanceSpec,
    source: &PeerHost,
) -> anyhow::Result<()> {
    // The overlay's backing image comes from the controller, as for a new
    // server, unless this host's cache has it.
    if spec.disk_image.format != ImageFormat::Iso {
        ctx.images.ensure(&spec.disk_image).await?;
    }
    let record = jail_dirs(ctx, spec.id, files)?;
    let url = format!(
        "{}/v1/instances/{}/disk",
        source.url.trim_end_matches('/'),
        spec.id
    );
    let response = ctx
        .moves
        .peer_client(source.id)?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("fetching the disk from {url}"))?;
    if !response.status().is_success() {
        bail!(
            "the source host answered {} for the disk",
            response.status()
        );
    }
    let expected = response
        .headers()
        .get(SHA256_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .context("the source sent no checksum")?;
    // Root's directory; moved into `vm/` once verified.
    let temp = files.dir.join("disk.qcow2.incoming");
    let mut out = tokio::fs::File::create(&temp)
        .await
        .with_context(|| format!("creating {}", temp.display()))?;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut body = response.bytes_stream();
    let copied = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.context("receiving the disk")?;
            hasher.update(&chunk);
            out.write_all(&chunk).await.context("writing the disk")?;
            bytes += chunk.len() as u64;
        }
        out.sync_all().await.context("syncing the disk")?;
        anyhow::Ok(())
    }
    .await;
    let actual = hex::encode(hasher.finalize());
    if let Err(e) = copied {
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(e);
    }
    if actual != expected {
        let _ = tokio::fs::remove_file(&temp).await;
        bail!(
            "the disk copied from host {} does not match its checksum",
            source.id
        );
    }
    safe_fs::place(&temp, &files.disk(), &record, 0o600).context("placing the copied disk")?;
    tracing::info!(instance = %spec.id, source = %source.id, bytes, "disk copied from the source host");
    ctx.reports
        .set_move(report(spec, MoveProgress::Arrived, bytes, None));
    Ok(())
}
