//! `nubis flavor ...`.

use crate::client::ApiClient;
use crate::output::print_list;
use nubis_api::flavors::Flavor;
use serde_json::json;

pub async fn list(client: &ApiClient, json: bool) -> anyhow::Result<()> {
    let flavors: Vec<Flavor> = client.get("/v1/flavors").await?;
    print_list(
        json,
        &flavors,
        &["name", "vcpus", "memory_mib", "disk_gib"],
        |f| {
            vec![
                f.name.clone(),
                f.vcpus.to_string(),
                f.memory_mib.to_string(),
                f.disk_gib.to_string(),
            ]
        },
    );
    Ok(())
}

pub async fn create(
    client: &ApiClient,
    name: &str,
    vcpus: u64,
    memory_mib: u64,
    disk_gib: u64,
) -> anyhow::Result<()> {
    let f: Flavor = client
        .post(
            "/v1/flavors",
            &json!({"name": name, "vcpus": vcpus, "memory_mib": memory_mib, "disk_gib": disk_gib}),
        )
        .await?;
    println!("Created flavor '{}' ({}).", f.name, f.id);
    Ok(())
}
