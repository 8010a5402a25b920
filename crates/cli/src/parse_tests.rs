//! Parsing of the client commands: flags, value checks, help lines.

use super::*;
use clap::Parser;

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    opts: ClientOptions,
    #[command(subcommand)]
    command: ClientCommand,
}

#[test]
fn every_subcommand_and_argument_has_help() {
    use clap::CommandFactory;
    let missing = missing_help(&Cli::command());
    assert!(missing.is_empty(), "without a help line: {missing:#?}");
    // The walk sees what it must: a command without help is reported.
    let bare = clap::Command::new("x")
        .subcommand(clap::Command::new("y").arg(clap::Arg::new("z").long("z")));
    assert_eq!(missing_help(&bare), ["x y", "x y --z"]);
}

#[test]
fn bad_sizes_are_refused_at_parse_time_naming_the_flag() {
    let err = parse(&["server", "create", "x", "--image", "i", "--memory-mib", "0"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "invalid value '0' for '--memory-mib <MIB>': must be between 64 and 262144 MiB"
        ),
        "{err}"
    );
    assert!(
        !err.contains("memory_mib") && !err.contains("at line"),
        "{err}"
    );
    for (flag, value) in [
        ("--vcpus", "0"),
        ("--disk-gib", "0"),
        ("--inbound-mbit", "0"),
        ("--traffic-quota-gib", "0"),
        ("--lease", "5"),
    ] {
        let err = parse(&["server", "create", "x", "--image", "i", flag, value])
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("for '{flag} <")), "{flag}: {err}");
        assert!(err.contains("must be between"), "{flag}: {err}");
    }
    let sized = [
        "server",
        "create",
        "x",
        "--image",
        "i",
        "--vcpus",
        "1",
        "--disk-gib",
        "1",
    ];
    assert!(parse(&[&sized[..], &["--memory-mib", "128"]].concat()).is_ok());
    // A flavor or all three sizes, in the CLI's words.
    let err = parse(&[
        "server", "create", "x", "--image", "i", "--flavor", "f", "--vcpus", "1",
    ])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("'--flavor <FLAVOR>' cannot be used with '--vcpus <N>'"),
        "{err}"
    );
    let err = parse(&["server", "create", "x", "--image", "i", "--vcpus", "1"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--memory-mib <MIB>") && err.contains("--disk-gib <GIB>"),
        "{err}"
    );
    assert!(parse(&["server", "create", "x", "--image", "i"]).is_err());
    let err = parse(&[
        "flavor",
        "create",
        "f",
        "--vcpus",
        "1",
        "--memory-mib",
        "1",
        "--disk-gib",
        "1",
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("'--memory-mib <MIB>'"), "{err}");
}

#[test]
fn floating_ip_and_security_group_commands_parse() {
    assert!(matches!(
        parse(&["floating-ip", "create", "--pool", "public"]).unwrap(),
        ClientCommand::FloatingIp(floating_ips::FloatingIpCommand::Create { pool: Some(_) })
    ));
    assert!(parse(&["floating-ip", "associate", "203.0.113.10", "web"]).is_ok());
    assert!(parse(&[
        "floating-ip",
        "pool",
        "create",
        "p",
        "--first",
        "203.0.113.10",
        "--last",
        "203.0.113.20"
    ])
    .is_ok());
    assert!(parse(&[
        "floating-ip",
        "pool",
        "create",
        "p",
        "--first",
        "x",
        "--last",
        "y"
    ])
    .is_err());
    let cmd = parse(&[
        "security-group",
        "rule",
        "add",
        "web",
        "--protocol",
        "tcp",
        "--port",
        "22",
        "--remote-cidr",
        "10.0.0.0/8",
    ])
    .unwrap();
    let ClientCommand::SecurityGroup(security_groups::SecurityGroupCommand::Rule(
        security_groups::RuleCommand::Add { port, .. },
    )) = cmd
    else {
        panic!("{cmd:?}");
    };
    assert_eq!(port, Some((22, 22)));
    assert!(parse(&[
        "security-group",
        "rule",
        "add",
        "web",
        "--protocol",
        "tcp",
        "--port",
        "0"
    ])
    .is_err());
}

fn parse(args: &[&str]) -> Result<ClientCommand, clap::Error> {
    Cli::try_parse_from(std::iter::once("nubis").chain(args.iter().copied())).map(|c| c.command)
}

#[test]
fn server_create_takes_nics_keys_user_data() {
    let cmd = parse(&[
        "server",
        "create",
        "web",
        "--image",
        "tiny",
        "--flavor",
        "tiny",
        "--network",
        "lan,fixed-ip=10.0.0.5",
        "--network",
        "default",
        "--key-name",
        "k",
        "--user-data-file",
        "cc.yaml",
        "--config-drive",
    ])
    .unwrap();
    let ClientCommand::Server(ServerCommand::Create {
        networks,
        key_name,
        user_data_file,
        config_drive,
        ..
    }) = cmd
    else {
        panic!("{cmd:?}");
    };
    assert_eq!(networks.len(), 2);
    assert_eq!(networks[0].network, "lan");
    assert_eq!(networks[0].fixed_ip, Some([10, 0, 0, 5].into()));
    assert_eq!(
        (networks[1].network.as_str(), networks[1].fixed_ip),
        ("default", None)
    );
    assert_eq!(key_name.as_deref(), Some("k"));
    assert_eq!(user_data_file, Some(PathBuf::from("cc.yaml")));
    assert!(config_drive);

    let err = parse(&[
        "server",
        "create",
        "web",
        "--image",
        "tiny",
        "--network",
        "lan,bogus=1",
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown option 'bogus'"), "{err}");
}

#[test]
fn quota_commands_parse() {
    let cmd = parse(&[
        "quota",
        "set",
        "p1",
        "--servers",
        "3",
        "--memory-mib",
        "4096",
    ])
    .unwrap();
    let ClientCommand::Quota(quotas::QuotaCommand::Set {
        project,
        servers,
        memory_mib,
        vcpus,
        ..
    }) = cmd
    else {
        panic!("{cmd:?}");
    };
    assert_eq!(
        (project.as_str(), servers, memory_mib, vcpus),
        ("p1", Some(3), Some(4096), None)
    );
    assert!(parse(&["quota", "set", "p1", "--servers", "-1"]).is_err());
    assert!(matches!(
        parse(&["quota", "show"]).unwrap(),
        ClientCommand::Quota(quotas::QuotaCommand::Show { project: None })
    ));
}

#[test]
fn ssh_passes_what_follows_the_double_dash() {
    let cmd = parse(&["server", "ssh", "web", "-i", "k.pem", "--", "-v", "uptime"]).unwrap();
    let ClientCommand::Server(ServerCommand::Ssh {
        server,
        identity,
        user,
        args,
    }) = cmd
    else {
        panic!("{cmd:?}");
    };
    assert_eq!(server, "web");
    assert_eq!(identity, Some(PathBuf::from("k.pem")));
    assert_eq!(user, "root");
    assert_eq!(args, ["-v", "uptime"]);
}

#[test]
fn network_and_keypair_options() {
    let cmd = parse(&[
        "network",
        "create",
        "lan",
        "--cidr",
        "10.0.0.0/24",
        "--gateway",
        "10.0.0.254",
    ]);
    assert!(cmd.is_ok(), "{cmd:?}");
    let err = parse(&["network", "create", "lan", "--cidr", "10.0.0.1/24"]).unwrap_err();
    assert!(err.to_string().contains("host bits"), "{err}");
    let err = parse(&[
        "keypair",
        "create",
        "k",
        "--public-key-file",
        "k.pub",
        "--private-key-file",
        "k.pem",
    ])
    .unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
}

#[test]
fn host_drain_takes_a_reason_and_wait() {
    let cmd = parse(&["host", "drain", "h1", "--reason", "new RAM", "--wait"]).unwrap();
    let ClientCommand::Host(hosts::HostCommand::Drain { host, reason, wait }) = cmd else {
        panic!("{cmd:?}");
    };
    assert_eq!(
        (host.as_str(), reason.as_deref(), wait),
        ("h1", Some("new RAM"), true)
    );
    let cmd = parse(&["host", "drain", "h1"]).unwrap();
    assert!(matches!(
        cmd,
        ClientCommand::Host(hosts::HostCommand::Drain {
            reason: None,
            wait: false,
            ..
        })
    ));
    assert!(parse(&["host", "drain"]).is_err());
}
