//! What the reconciler wants of each instance: nothing is removed unless
//! the controller released it.

use super::desires;
use crate::instance::Desire;
use nubis_api::agent::{Departure, DesiredState, InstanceSpec, PeerHost, Released};
use nubis_api::{HostId, ServerId};

fn spec(id: ServerId) -> InstanceSpec {
    InstanceSpec {
        id,
        generation: 3,
        ..crate::fixtures::instance_spec("s")
    }
}

fn desired(
    instances: Vec<InstanceSpec>,
    departures: Vec<Departure>,
    released: Vec<Released>,
) -> DesiredState {
    DesiredState {
        revision: 1,
        instances,
        networks: Vec::new(),
        floating_ips: Vec::new(),
        security_groups: Vec::new(),
        departures,
        released,
    }
}

#[test]
fn an_instance_not_desired_is_held_not_removed() {
    let (kept, gone) = (ServerId::new(), ServerId::new());
    let wants = desires(
        &desired(vec![spec(kept)], vec![], vec![]),
        &[kept, gone],
        [],
    );
    assert_eq!(wants[&kept], Desire::Run(Box::new(spec(kept))));
    assert_eq!(wants[&gone], Desire::Hold, "no release: held");
    // Positive control: once released, it goes.
    let release = vec![Released {
        id: gone,
        keep_disk: true,
    }];
    let wants = desires(&desired(vec![], vec![], release), &[gone], []);
    assert_eq!(wants[&gone], Desire::Remove { keep_disk: true });
}

#[test]
fn a_departing_instance_keeps_its_files_and_desired_wins() {
    let id = ServerId::new();
    let departure = Departure {
        id,
        generation: 4,
        target: PeerHost {
            id: HostId::new(),
            url: "https://10.0.0.3:8790".into(),
        },
        live: None,
    };
    let wants = desires(&desired(vec![], vec![departure.clone()], vec![]), &[id], []);
    assert_eq!(wants[&id], Desire::Depart(departure.clone()));
    // Desired here again (a failed move came back): it runs.
    let wants = desires(&desired(vec![spec(id)], vec![departure], vec![]), &[id], []);
    assert_eq!(wants[&id], Desire::Run(Box::new(spec(id))));
}

#[test]
fn releases_and_departures_of_unknown_instances_are_ignored() {
    let id = ServerId::new();
    let release = vec![Released {
        id,
        keep_disk: false,
    }];
    assert!(desires(&desired(vec![], vec![], release), &[], []).is_empty());
    // An actor still running (files not listed yet) counts as present.
    let release = vec![Released {
        id,
        keep_disk: false,
    }];
    let wants = desires(&desired(vec![], vec![], release), &[], [id]);
    assert_eq!(wants[&id], Desire::Remove { keep_disk: false });
}
