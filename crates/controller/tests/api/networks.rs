//! Networks and key pairs, and what servers ask of them (NICs, keys, user
//! data).

use super::*;

#[tokio::test]
async fn networks_reject_bad_input_and_create_nothing() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    let bob = cloud.user("bob").await;
    let networks = cloud.get_ok(&alice, "/v1/networks").await;
    assert_eq!(
        networks[0]["name"], "default",
        "made on first use: {networks}"
    );
    let default_cidr = networks[0]["cidr"].as_str().unwrap().to_owned();
    let bobs = json!({"name": "bobnet", "cidr": "10.90.0.0/24"});
    ok_json(
        cloud.post(Some(&bob), "/v1/networks", &bobs).await,
        StatusCode::CREATED,
    )
    .await;

    let valid = json!({"name": "net1", "cidr": "10.91.0.0/24"});
    let v = |k: &str, x: Value| with(&valid, k, x);
    let cidr = |c: &str| v("cidr", json!(c));
    let gateway = |g: &str| v("gateway", json!(g));
    let not_host = "is not a host address of 10.91.0.0/24";
    let overlaps = "overlaps an existing network";
    let zone = "is not a DNS zone";
    let mut cases = bad_name_cases(&valid, "name");
    #[rustfmt::skip]
    let more = [
        case("host bits set", cidr("10.91.0.1/24"), INVALID, "has host bits set; did you mean 10.91.0.0/24?"),
        case("a /8", cidr("10.0.0.0/8"), INVALID, "between /16 and /29"),
        case("a /30", cidr("10.91.0.0/30"), INVALID, "between /16 and /29"),
        case("a /32", cidr("10.91.0.1/32"), INVALID, "between /16 and /29"),
        case("no prefix", cidr("10.91.0.0"), INVALID, "is not a CIDR like 10.0.0.0/24"),
        case("IPv6", cidr("fd00::/64"), INVALID, "IPv4"),
        case("octet 300", cidr("10.300.0.0/24"), INVALID, "IPv4"),
        case("prefix 99", cidr("10.91.0.0/99"), INVALID, "over 32"),
        case("prefix -1", cidr("10.91.0.0/-1"), INVALID, "no valid prefix length"),
        case("empty cidr", cidr(""), INVALID, "is not a CIDR"),
        case("cidr 5", v("cidr", json!(5)), INVALID, "cidr"),
        case("no cidr", v("cidr", Value::Null), INVALID, "missing field `cidr`"),
        case("gateway outside", gateway("10.91.1.1"), BAD, not_host),
        case("gateway = network", gateway("10.91.0.0"), BAD, not_host),
        case("gateway = broadcast", gateway("10.91.0.255"), BAD, not_host),
        case("gateway not an ip", gateway("router"), INVALID, "gateway"),
        case("gateway IPv6", gateway("fd00::1"), INVALID, "gateway"),
        case("zone with space", v("dns_zone", json!("bad zone")), INVALID, zone),
        case("zone with -label", v("dns_zone", json!("-x.example")), INVALID, zone),
        case("zone empty", v("dns_zone", json!("")), INVALID, zone),
        case("zone a..b", v("dns_zone", json!("a..b")), INVALID, zone),
        case("unknown field", v("vlan", json!(7)), INVALID, "unknown field `vlan`"),
        case("overlaps default", cidr(&default_cidr), CONFLICT, overlaps),
        case("contains default", cidr("10.64.0.0/16"), CONFLICT, overlaps),
        case("inside bob's", cidr("10.90.0.128/25"), CONFLICT, overlaps),
        case("duplicate name", v("name", json!("default")), CONFLICT, "'default' already exists"),
    ];
    cases.extend(more);
    cloud.refuse_all(&alice, "/v1/networks", &cases).await;
    assert_eq!(cloud.get_ok(&alice, "/v1/networks").await, networks);

    // Positive control, with the gateway at the top of the range.
    let body = gateway("10.91.0.254");
    let resp = cloud.post(Some(&alice), "/v1/networks", &body).await;
    let net1 = ok_json(resp, StatusCode::CREATED).await;
    assert_eq!(net1["gateway"], "10.91.0.254");
    // Another project's network is not found, by id or by name.
    for path in [
        format!("/v1/networks/{}", id(&net1)),
        "/v1/networks/net1".into(),
    ] {
        let resp = cloud.get(&bob, &path).await;
        assert_error(
            &format!("bob GET {path}"),
            resp,
            NOT_FOUND,
            "network not found",
        )
        .await;
    }
    let path = format!("/v1/networks/{}", id(&net1));
    let resp = cloud.send(Method::DELETE, &path, Some(&bob)).await;
    assert_error("bob deletes alice's network", resp, NOT_FOUND, "not found").await;
    let resp = cloud
        .send(Method::DELETE, "/v1/networks/net1", Some(&alice))
        .await;
    assert_error("delete by name, not id", resp, NOT_FOUND, "not found").await;
    let listed = cloud.get_ok(&alice, "/v1/networks").await;
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
}

/// OpenSSH public keys that must be refused: a 1024-bit RSA key and a DSA
/// key, both made by `ssh-keygen`.
const RSA_1024: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDDvPqqBVju8aV0mL5u1J8Ushi3XiT0HihK4NfQzYkpmLav5il5w+LGr7udjYRheFv+dSUFaui7h6dD5a3KvWjrmKyG0KTOn6HS7CVtIQK0c48ngr3Pz8AeLlGextWHSzIDHX45cqM5Ftbt2HnHarNUN9iUg84/yEGfBzy3k8nC+Q== test";
const DSA: &str = "ssh-dss AAAAB3NzaC1kc3MAAACBAN0TD8rSfhiA+N+Lwl7t91uU01c3yg72hg1E/SMp5ziePws18LtBRrxgKq03kmzWBuLCT8nvmtVfQEO5jqW6qdVyvSbg/dQXxJso7tLtwhHI2JBhQbPa6m/F1t17WZ3lAH4Mn0GiDHdHqpzTrtv7OkmWqn8c2mdi5mlZeR85qQpbAAAAFQDc5n6eXL0YZXgMDPxSOAiHEvpUTwAAAIEAjasSXuicP+a7s8ykwJWPgi8IAXoq/vTUCvHd/yj2L2hJvJKpeFh1PXqTd9L/zAN7EZP5C3Ys8DKZ3nvGPBDNbaD/zdMjL3Hk3NYQ+aqtRXkItn1wUOX+K0PQsjGao6RnHCGQqr0VdByFMXANCBYS5aY0iN4w+bGaZyejmKJFRMwAAACBANepJ7yv5R6mIOhlUGOKsXXg0036HthPuPC/CGHnkH+yRVyyE2yVhsRH9Hszxy1o/1u2+jg9NgoPGcKKb8VuSiIHj6uSIYXBtGR4a1OcmxlsgS3cbCQETLxLIhx+FgtDYGz7elqW/NoMrjqQqvvZQq2sYaqQsyj/PKaEom5Sy01p test";
/// Keys that must be accepted.
const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@example";
const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBLHTEmjS1hsJonp4W8MljAoeYDHxdkssUOjs1YEb9sJXqTsXJg92X+1YuFiN8Gjq/3V20dPSUZfvw/j1T9B9q1s= test";

#[tokio::test]
async fn keypairs_reject_bad_keys_and_create_nothing() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    let bob = cloud.user("bob").await;
    let valid = json!({"name": "k1", "public_key": ED25519});
    let v = |k: &str, x: Value| with(&valid, k, x);
    let key = |k: &str| v("public_key", json!(k));
    let invalid_key = "public_key is not a valid OpenSSH public key";
    let one_line = "public_key must be a single OpenSSH public key line";
    let base64 = ED25519.split(' ').nth(1).unwrap();
    let mut cases = bad_name_cases(&valid, "name");
    #[rustfmt::skip]
    let more = [
        case("empty key", key(""), BAD, invalid_key),
        case("type only", key("ssh-ed25519"), BAD, invalid_key),
        case("bad base64", key("ssh-ed25519 notbase64!"), BAD, invalid_key),
        case("prose", key("hello world"), BAD, invalid_key),
        case("wrong type name", key(&format!("ssh-rsa {base64}")), BAD, invalid_key),
        case("truncated", key(&ED25519[..60]), BAD, invalid_key),
        case("a private key", key("-----BEGIN OPENSSH PRIVATE KEY-----"), BAD, invalid_key),
        case("two lines", key(&format!("{ED25519}\n{ED25519}")), BAD, one_line),
        case("carriage return", key(&format!("{ED25519}\rx")), BAD, one_line),
        case("over 8 KiB", key(&format!("{ED25519} {}", "c".repeat(8192))), BAD, one_line),
        case("RSA 1024", key(RSA_1024), BAD, "RSA keys must have at least 2048 bits"),
        case("DSA", key(DSA), BAD, "not accepted"),
        case("key 5", v("public_key", json!(5)), INVALID, "public_key"),
        case("private_key given", v("private_key", json!("x")), INVALID, "unknown field `private_key`"),
    ];
    cases.extend(more);
    cloud.refuse_all(&alice, "/v1/keypairs", &cases).await;
    assert_eq!(cloud.get_ok(&alice, "/v1/keypairs").await, json!([]));

    // Positive controls: import an ed25519 key, also with surrounding white
    // space; generate one.
    let resp = cloud.post(Some(&alice), "/v1/keypairs", &valid).await;
    let k1 = ok_json(resp, StatusCode::CREATED).await;
    assert!(
        k1["fingerprint"].as_str().unwrap().starts_with("SHA256:"),
        "{k1}"
    );
    assert_eq!(k1["private_key"], Value::Null);
    let body = json!({"name": "k2", "public_key": format!(" {ED25519}\r\n")});
    ok_json(
        cloud.post(Some(&alice), "/v1/keypairs", &body).await,
        StatusCode::CREATED,
    )
    .await;
    let body = json!({"name": "k3"});
    let k3 = ok_json(
        cloud.post(Some(&alice), "/v1/keypairs", &body).await,
        StatusCode::CREATED,
    )
    .await;
    assert!(k3["private_key"]
        .as_str()
        .unwrap()
        .contains("OPENSSH PRIVATE KEY"));
    // A duplicate name is refused, imported or generated.
    let exists = "a key pair named 'k1' already exists in this project";
    let duplicates = [
        case("duplicate import", valid.clone(), CONFLICT, exists),
        case(
            "duplicate generate",
            json!({"name": "k1"}),
            CONFLICT,
            exists,
        ),
    ];
    cloud.refuse_all(&alice, "/v1/keypairs", &duplicates).await;
    // Another project may reuse the name; it cannot see alice's key pairs.
    ok_json(
        cloud.post(Some(&bob), "/v1/keypairs", &valid).await,
        StatusCode::CREATED,
    )
    .await;
    for path in [
        format!("/v1/keypairs/{}", id(&k1)),
        "/v1/keypairs/k2".into(),
    ] {
        let resp = cloud.get(&bob, &path).await;
        assert_error(
            &format!("bob GET {path}"),
            resp,
            NOT_FOUND,
            "key pair not found",
        )
        .await;
    }
    let path = format!("/v1/keypairs/{}", id(&k1));
    let resp = cloud.send(Method::DELETE, &path, Some(&bob)).await;
    assert_error("bob deletes alice's key pair", resp, NOT_FOUND, "not found").await;
    let listed = cloud.get_ok(&alice, "/v1/keypairs").await;
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
}

/// The handler accepts ECDSA keys (as OpenSSH does by default), so the key
/// parser must be able to read them.
#[tokio::test]
async fn ecdsa_public_keys_are_accepted() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    let body = json!({"name": "k", "public_key": ECDSA});
    let resp = cloud.post(Some(&alice), "/v1/keypairs", &body).await;
    let key = ok_json(resp, StatusCode::CREATED).await;
    assert!(key["public_key"]
        .as_str()
        .unwrap()
        .starts_with("ecdsa-sha2-nistp256 AAAA"));
}

#[tokio::test]
async fn server_networks_keys_and_user_data_are_validated() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    let bob = cloud.user("bob").await;
    cloud.register_host().await;
    cloud
        .active_image(&alice, "disk", "raw", vec![0; 4096])
        .await;
    // A /29: gateway .1, hosts .2 to .6.
    let net = json!({"name": "small", "cidr": "10.92.0.0/29"});
    let net = ok_json(
        cloud.post(Some(&alice), "/v1/networks", &net).await,
        StatusCode::CREATED,
    )
    .await;
    let body = json!({"name": "k1", "public_key": ED25519});
    ok_json(
        cloud.post(Some(&alice), "/v1/keypairs", &body).await,
        StatusCode::CREATED,
    )
    .await;
    let body = json!({"name": "bobnet", "cidr": "10.93.0.0/24"});
    ok_json(
        cloud.post(Some(&bob), "/v1/networks", &body).await,
        StatusCode::CREATED,
    )
    .await;
    let body = json!({"name": "bobkey", "public_key": ED25519});
    ok_json(
        cloud.post(Some(&bob), "/v1/keypairs", &body).await,
        StatusCode::CREATED,
    )
    .await;

    let valid = json!({"name": "s", "image": "disk", "flavor": "tiny"});
    let v = |k: &str, x: Value| with(&valid, k, x);
    let nics = |n: Value| v("networks", n);
    let fixed = |ip: &str| nics(json!([{"network": "small", "fixed_ip": ip}]));
    const ADDRESS: Want = (StatusCode::BAD_REQUEST, "address_not_allowed");
    let count = "networks must list 1 to 8 networks";
    let nine: Vec<Value> = (0..9).map(|_| json!({"network": "small"})).collect();
    let too_much = base64_encode(&vec![b'x'; 65_536]);
    #[rustfmt::skip]
    let cases = [
        case("no networks", nics(json!([])), BAD, count),
        case("nine networks", nics(json!(nine)), BAD, count),
        case("networks null-ish", nics(json!({})), INVALID, "networks"),
        case("network as a string", nics(json!(["small"])), INVALID, "networks"),
        case("unknown network", nics(json!([{"network": "nope"}])), BAD, "network 'nope' not found"),
        case("bob's network", nics(json!([{"network": "bobnet"}])), BAD, "network 'bobnet' not found"),
        case("nic unknown field", nics(json!([{"network": "small", "mac": "x"}])), INVALID, "unknown field `mac`"),
        case("fixed_ip outside", fixed("10.92.1.2"), ADDRESS, "network small: fixed IP 10.92.1.2 is outside the network of 10.92.0.0/29"),
        case("fixed_ip = gateway", fixed("10.92.0.1"), ADDRESS, "network small: fixed IP 10.92.0.1 is the gateway of 10.92.0.0/29"),
        case("fixed_ip = network", fixed("10.92.0.0"), ADDRESS, "network small: fixed IP 10.92.0.0 is the network address of 10.92.0.0/29"),
        case("fixed_ip = broadcast", fixed("10.92.0.7"), ADDRESS, "network small: fixed IP 10.92.0.7 is the broadcast address of 10.92.0.0/29"),
        case("fixed_ip not an ip", fixed("ten"), INVALID, "fixed_ip"),
        case("fixed_ip IPv6", fixed("fd00::2"), INVALID, "fixed_ip"),
        case("fixed_ip twice", nics(json!([{"network": "small", "fixed_ip": "10.92.0.3"}, {"network": "small", "fixed_ip": "10.92.0.3"}])), CONFLICT, "address 10.92.0.3 is already in use on network 'small'"),
        case("unknown key", v("key_name", json!("nope")), BAD, "key pair 'nope' not found"),
        case("bob's key", v("key_name", json!("bobkey")), BAD, "key pair 'bobkey' not found"),
        case("user_data not base64", v("user_data", json!("#cloud-config!")), INVALID, "user_data must be base64"),
        case("user_data 64 KiB", v("user_data", json!(too_much)), INVALID, "at most 65535 are accepted"),
        case("user_data 5", v("user_data", json!(5)), INVALID, "user_data"),
        case("config_drive \"yes\"", v("config_drive", json!("yes")), INVALID, "config_drive"),
    ];
    cloud.refuse_all(&alice, "/v1/servers", &cases).await;

    // An address in use is a 409, and the failed request frees whatever it
    // had allocated: the first NIC's .3 is still free afterwards.
    let resp = cloud
        .post(
            Some(&alice),
            "/v1/servers",
            &with(&fixed("10.92.0.2"), "name", json!("s2")),
        )
        .await;
    let s2 = ok_json(resp, StatusCode::ACCEPTED).await;
    assert_eq!(s2["addresses"][0]["ip"], "10.92.0.2", "{s2}");
    let taken = "address 10.92.0.2 is already in use on network 'small'";
    let second_nic = nics(json!([
        {"network": "small", "fixed_ip": "10.92.0.3"},
        {"network": "small", "fixed_ip": "10.92.0.2"},
    ]));
    let conflicts = [
        case("address taken", fixed("10.92.0.2"), CONFLICT, taken),
        case("second NIC's address taken", second_nic, CONFLICT, taken),
    ];
    cloud.refuse_all(&alice, "/v1/servers", &conflicts).await;
    let body = with(&fixed("10.92.0.3"), "name", json!("s3"));
    let s3 = ok_json(
        cloud.post(Some(&alice), "/v1/servers", &body).await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(s3["addresses"][0]["ip"], "10.92.0.3", "{s3}");
    // Fill the network (.4 to .6), then it is full.
    for name in ["s4", "s5", "s6"] {
        let body = with(&nics(json!([{"network": "small"}])), "name", json!(name));
        ok_json(
            cloud.post(Some(&alice), "/v1/servers", &body).await,
            StatusCode::ACCEPTED,
        )
        .await;
    }
    let full = [case(
        "network full",
        nics(json!([{"network": "small"}])),
        CONFLICT,
        "network 'small' has no free address left",
    )];
    cloud.refuse_all(&alice, "/v1/servers", &full).await;
    // A network in use cannot be deleted.
    let before = cloud.snapshot(&alice).await;
    let resp = cloud
        .send(
            Method::DELETE,
            &format!("/v1/networks/{}", id(&net)),
            Some(&alice),
        )
        .await;
    assert_error(
        "delete a network in use",
        resp,
        CONFLICT,
        "still has 5 server port(s)",
    )
    .await;
    assert_eq!(cloud.snapshot(&alice).await, before);
}

/// Standard base64 with padding (for user data).
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn a_network_shows_the_domain_its_server_names_are_in() {
    let cloud = Cloud::start().await;
    let alice = cloud.user("alice").await;
    cloud.register_host().await;
    cloud
        .active_image(&alice, "disk", "raw", vec![0; 4096])
        .await;
    let networks = cloud.get_ok(&alice, "/v1/networks").await;
    let default = &networks[0];
    let zone = default["dns_zone"].as_str().expect("zone");
    let domain = format!("alice.{zone}");
    assert_eq!(default["domain"], domain.as_str(), "{default}");
    let shown = cloud
        .get_ok(&alice, &format!("/v1/networks/{}", id(default)))
        .await;
    assert_eq!(shown["domain"], domain.as_str(), "{shown}");

    // A network with a zone of its own: the project's part of that zone.
    let body = json!({"name": "lab", "cidr": "10.92.0.0/24", "dns_zone": "Lab.Example."});
    let lab = ok_json(
        cloud.post(Some(&alice), "/v1/networks", &body).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(lab["dns_zone"], "lab.example", "{lab}");
    assert_eq!(lab["domain"], "alice.lab.example", "{lab}");

    // The server's name really is in the domain shown.
    let body = json!({"name": "Web 1", "image": "disk", "flavor": "tiny"});
    let resp = cloud.post(Some(&alice), "/v1/servers", &body).await;
    let web = ok_json(resp, StatusCode::ACCEPTED).await;
    assert_eq!(web["dns_name"], format!("web-1.{domain}").as_str(), "{web}");
}
