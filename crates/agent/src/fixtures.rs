//! Test fixtures shared by the agent's unit tests and the simulated hosts'
//! (`crates/sim`): compiled for tests, or with the `test-fixtures` feature
//! (never in `nubis` itself).

use nubis_api::agent::{GuestConfig, ImageRef, InstanceSpec, PowerState};
use nubis_api::images::ImageFormat;
use nubis_api::{ImageId, ProjectId, ServerId};

/// A valid spec of a new instance `name` (also its hostname), with a new
/// id: 1 vCPU, 128 MiB, a 1 GiB disk over a qcow2 image that exists
/// nowhere, no NICs, no keys, desired running, first placement. The image
/// and the project are the same (nil ids) in every spec, so two specs of
/// one id are equal. Tests change what they test.
pub fn instance_spec(name: &str) -> InstanceSpec {
    InstanceSpec {
        id: ServerId::new(),
        name: name.into(),
        vcpus: 1,
        memory_mib: 128,
        disk_gib: 1,
        disk_image: ImageRef {
            id: ImageId(uuid::Uuid::nil()),
            format: ImageFormat::Qcow2,
            checksum: "0".repeat(64),
            size: 1 << 20,
        },
        kernel: None,
        initrd: None,
        cmdline: None,
        power: PowerState::Running,
        reboot_generation: 0,
        nics: Vec::new(),
        guest: GuestConfig {
            hostname: name.into(),
            project: ProjectId(uuid::Uuid::nil()),
            keys: Vec::new(),
            user_data: None,
            config_drive: false,
            config_format: Default::default(),
        },
        security_groups: Vec::new(),
        network_limits: Default::default(),
        cdrom: None,
        generation: 1,
        arrival: None,
    }
}
