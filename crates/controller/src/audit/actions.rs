//! Which calls are recorded, and under which action and object: derived
//! from the method and the `/v1` path alone, so every route (also routes
//! added later) is named without a table to keep in step with the router.
//!
//! `POST /v1/servers` is `server.create`, `DELETE /v1/servers/{id}` is
//! `server.delete` of that server, `POST /v1/servers/{id}/stop` is
//! `server.stop`; a few routes have names of their own (log in and out,
//! registration, agents, security group rules, quotas, image uploads).

use axum::http::Method;

/// Longest object id or path kept: these come from the client's URL.
const MAX_ID: usize = 128;
const MAX_PATH: usize = 512;

/// What a call is, for the trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified {
    pub action: String,
    pub object_type: Option<String>,
    /// The object named by the path; `None` for creates (the recorder
    /// takes the new object's id from the response).
    pub object_id: Option<String>,
    /// Record only refusals and failures: calls agents make all the time
    /// (status reports), which would bury everything else.
    pub only_failures: bool,
}

/// Whether a method changes state (GET, HEAD and OPTIONS are not recorded).
pub fn changes_state(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// The path as kept in a record: no query, bounded length.
pub fn recorded_path(path: &str) -> String {
    bounded(path, MAX_PATH)
}

/// Classifies a call; `None` for calls that are not recorded (reads, paths
/// outside `/v1`).
pub fn classify(method: &Method, path: &str) -> Option<Classified> {
    if !changes_state(method) {
        return None;
    }
    if let Some(twin) = openstack_twin(method, path) {
        return classify(method, &twin);
    }
    let rest = path.strip_prefix("/v1/")?;
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let first = *segs.first()?;
    if first == "agent" {
        return Some(agent_call(method, &segs[1..]));
    }
    let kind = object_type(first);
    let id = segs.get(1).map(|s| bounded(s, MAX_ID));
    let named = |action: &str, object_type: &str, object_id: Option<String>| Classified {
        action: action.to_owned(),
        object_type: Some(object_type.to_owned()),
        object_id,
        only_failures: false,
    };
    Some(match (method.as_str(), &segs[..]) {
        ("POST", ["tokens"]) => named("token.create", "token", None),
        ("DELETE", ["tokens", _]) => named("token.delete", "token", None),
        ("POST", ["security-groups", _, "rules"]) => {
            named("security_group_rule.create", "security_group_rule", None)
        }
        ("DELETE", ["security-groups", _, "rules", rule]) => named(
            "security_group_rule.delete",
            "security_group_rule",
            Some(bounded(rule, MAX_ID)),
        ),
        ("PUT", ["projects", _, "quotas"]) => named("quota.update", "project", id),
        ("PUT", ["images", _, "file"]) => named("image.upload", "image", id),
        ("POST", [_]) => named(&format!("{kind}.create"), &kind, None),
        ("DELETE", [_, _]) => named(&format!("{kind}.delete"), &kind, id),
        ("PUT" | "PATCH" | "POST", [_, _]) => named(&format!("{kind}.update"), &kind, id),
        (m, [_, _, verb, more @ ..]) => {
            let mut action = format!("{kind}.{}", verb.replace('-', "_"));
            for s in more.iter().filter(|s| !looks_like_id(s)) {
                action.push('.');
                action.push_str(&s.replace('-', "_"));
            }
            if m != "POST" {
                action.push('.');
                action.push_str(&m.to_ascii_lowercase());
            }
            named(&bounded(&action, MAX_ID), &kind, id)
        }
        (m, _) => named(&format!("{kind}.{}", m.to_ascii_lowercase()), &kind, None),
    })
}

/// An OpenStack call's `/v1` twin, so it is recorded under the same action:
/// Keystone's token create and revoke are `token.create`/`token.delete`;
/// `/compute/v2.1/os-keypairs/k` is `/v1/keypairs/k`; other Keystone and
/// Nova collections keep their names (without `os-`).
fn openstack_twin(method: &Method, path: &str) -> Option<String> {
    if let Some(rest) = path.strip_prefix("/identity/v3/") {
        let rest = rest.trim_end_matches('/');
        return Some(match (method.as_str(), rest) {
            ("POST", "auth/tokens") => "/v1/tokens".to_owned(),
            (_, "auth/tokens") => "/v1/tokens/current".to_owned(),
            _ => format!("/v1/{rest}"),
        });
    }
    if let Some(rest) = path.strip_prefix("/image/v2/") {
        return Some(format!("/v1/{rest}"));
    }
    if let Some(rest) = path.strip_prefix("/network/v2.0/") {
        // Neutron's collections are /v1's, but for floating IPs' spelling.
        let rest = match rest.strip_prefix("floatingips") {
            Some(tail) => format!("floating-ips{tail}"),
            None => rest.to_owned(),
        };
        return Some(format!("/v1/{rest}"));
    }
    let rest = path.strip_prefix("/compute/v2.1/")?;
    let rest = rest.strip_prefix("os-").unwrap_or(rest);
    if let Some(project) = rest.strip_prefix("quota-sets/") {
        let project = project.split('/').next().unwrap_or_default();
        return Some(format!("/v1/projects/{project}/quotas"));
    }
    Some(format!("/v1/{rest}"))
}

/// The agent protocol: registration, and (only when refused) reports;
/// anything else an agent changes is `agent.<path>`.
fn agent_call(method: &Method, segs: &[&str]) -> Classified {
    let host = |action: &str, id: Option<&&str>, only_failures: bool| Classified {
        action: action.to_owned(),
        object_type: Some("host".to_owned()),
        object_id: id.map(|s| bounded(s, MAX_ID)),
        only_failures,
    };
    match (method.as_str(), segs) {
        ("POST", ["hosts"]) => host("host.register", None, false),
        ("PUT", ["hosts", id, "report"]) => host("host.report", Some(id), true),
        (_, ["hosts", id, ..]) => host(
            &format!("host.{}", method.as_str().to_ascii_lowercase()),
            Some(id),
            false,
        ),
        _ => {
            let words: Vec<String> = segs
                .iter()
                .filter(|s| !looks_like_id(s))
                .map(|s| s.replace('-', "_"))
                .collect();
            let action = if words.is_empty() {
                format!("agent.{}", method.as_str().to_ascii_lowercase())
            } else {
                format!("agent.{}", words.join("."))
            };
            Classified {
                action: bounded(&action, MAX_ID),
                object_type: Some("host".to_owned()),
                object_id: None,
                only_failures: false,
            }
        }
    }
}

/// `servers` -> `server`, `floating-ips` -> `floating_ip`.
fn object_type(collection: &str) -> String {
    let singular = match collection {
        "keypairs" => "keypair",
        "floating-ip-pools" => "floating_ip_pool",
        other => other.strip_suffix('s').unwrap_or(other),
    };
    bounded(&singular.replace('-', "_"), 64)
}

/// A UUID (or any segment with a digit): a path parameter, not a word.
fn looks_like_id(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_digit())
}

/// `s` cut to at most `max` bytes on a character boundary.
fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(method: Method, path: &str) -> Option<(String, Option<String>, Option<String>)> {
        classify(&method, path).map(|c| (c.action, c.object_type, c.object_id))
    }

    fn a(
        action: &str,
        kind: &str,
        id: Option<&str>,
    ) -> Option<(String, Option<String>, Option<String>)> {
        Some((action.into(), Some(kind.into()), id.map(Into::into)))
    }

    #[test]
    fn resources_get_action_and_object() {
        let id = "0193c0de-0000-7000-8000-000000000001";
        assert_eq!(
            action(Method::POST, "/v1/servers"),
            a("server.create", "server", None)
        );
        assert_eq!(
            action(Method::DELETE, &format!("/v1/servers/{id}")),
            a("server.delete", "server", Some(id))
        );
        assert_eq!(
            action(Method::PATCH, &format!("/v1/servers/{id}")),
            a("server.update", "server", Some(id))
        );
        assert_eq!(
            action(Method::POST, &format!("/v1/servers/{id}/stop")),
            a("server.stop", "server", Some(id))
        );
        assert_eq!(
            action(Method::POST, "/v1/floating-ip-pools"),
            a("floating_ip_pool.create", "floating_ip_pool", None)
        );
        assert_eq!(
            action(Method::PATCH, &format!("/v1/floating-ips/{id}")),
            a("floating_ip.update", "floating_ip", Some(id))
        );
        assert_eq!(
            action(Method::POST, "/v1/keypairs"),
            a("keypair.create", "keypair", None)
        );
        assert_eq!(
            action(Method::PUT, &format!("/v1/images/{id}/file")),
            a("image.upload", "image", Some(id))
        );
        assert_eq!(
            action(Method::PUT, "/v1/projects/current/quotas"),
            a("quota.update", "project", Some("current"))
        );
        assert_eq!(
            action(Method::POST, &format!("/v1/security-groups/{id}/rules")),
            a("security_group_rule.create", "security_group_rule", None)
        );
        assert_eq!(
            action(
                Method::DELETE,
                &format!("/v1/security-groups/{id}/rules/r1")
            ),
            a(
                "security_group_rule.delete",
                "security_group_rule",
                Some("r1")
            )
        );
    }

    #[test]
    fn openstack_calls_are_named_as_their_v1_twins() {
        assert_eq!(
            action(Method::POST, "/identity/v3/auth/tokens"),
            a("token.create", "token", None)
        );
        assert_eq!(
            action(Method::DELETE, "/identity/v3/auth/tokens"),
            a("token.delete", "token", None)
        );
        assert_eq!(action(Method::GET, "/identity/v3/auth/tokens"), None);
        assert_eq!(
            action(Method::POST, "/compute/v2.1/flavors"),
            a("flavor.create", "flavor", None)
        );
        assert_eq!(
            action(Method::DELETE, "/compute/v2.1/os-keypairs/k1"),
            a("keypair.delete", "keypair", Some("k1"))
        );
        assert_eq!(action(Method::GET, "/compute/v2.1/os-keypairs"), None);
        assert_eq!(
            action(Method::PUT, "/compute/v2.1/os-quota-sets/p1"),
            a("quota.update", "project", Some("p1"))
        );
        // Glance's image calls are /v1's image actions.
        assert_eq!(
            action(Method::POST, "/image/v2/images"),
            a("image.create", "image", None)
        );
        assert_eq!(
            action(Method::PUT, "/image/v2/images/i1/file"),
            a("image.upload", "image", Some("i1"))
        );
        assert_eq!(
            action(Method::DELETE, "/image/v2/images/i1"),
            a("image.delete", "image", Some("i1"))
        );
        assert_eq!(
            action(Method::POST, "/network/v2.0/networks"),
            a("network.create", "network", None)
        );
        assert_eq!(
            action(Method::PUT, "/network/v2.0/floatingips/f1"),
            a("floating_ip.update", "floating_ip", Some("f1"))
        );
        assert_eq!(action(Method::GET, "/network/v2.0/ports"), None);
    }

    #[test]
    fn sessions_registration_and_agents_have_their_own_names() {
        assert_eq!(
            action(Method::POST, "/v1/tokens"),
            a("token.create", "token", None)
        );
        assert_eq!(
            action(Method::DELETE, "/v1/tokens/current"),
            a("token.delete", "token", None)
        );
        assert_eq!(
            action(Method::POST, "/v1/users"),
            a("user.create", "user", None)
        );
        assert_eq!(
            action(Method::POST, "/v1/agent/hosts"),
            a("host.register", "host", None)
        );
        let report = classify(&Method::PUT, "/v1/agent/hosts/h1/report").unwrap();
        assert_eq!(report.action, "host.report");
        assert!(report.only_failures);
        assert_eq!(
            action(Method::POST, "/v1/agent/join"),
            a("agent.join", "host", None)
        );
    }

    #[test]
    fn reads_and_other_paths_are_not_recorded() {
        assert_eq!(action(Method::GET, "/v1/servers"), None);
        assert_eq!(action(Method::HEAD, "/v1/servers"), None);
        assert_eq!(action(Method::POST, "/login"), None);
        assert_eq!(action(Method::POST, "/v1/"), None);
        let long = format!("/v1/servers/{}", "x".repeat(1000));
        let c = classify(&Method::DELETE, &long).unwrap();
        assert_eq!(c.object_id.unwrap().len(), MAX_ID);
        assert_eq!(recorded_path(&long).len(), MAX_PATH);
    }
}
