//! The body of a Keystone v3 token (`{"token": {...}}`), as issued and as
//! validated: the user, the project it is scoped to, the roles, the times,
//! the methods and the catalog.
//!
//! Nubis users live in one domain, Keystone's `default`; each user has one
//! project (its own, named after it); the roles are `admin` (Nubis admins,
//! with the `member` and `reader` it implies, as Keystone lists implied
//! roles) or `member` and `reader`.

use super::catalog;
use chrono::{DateTime, SecondsFormat, Utc};
use nubis_api::users::User;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The id of Keystone's default domain, the only one.
pub const DOMAIN_ID: &str = "default";
/// Its name.
pub const DOMAIN_NAME: &str = "Default";

/// The domain object of users and projects.
pub fn domain() -> Value {
    json!({"id": DOMAIN_ID, "name": DOMAIN_NAME})
}

/// Whether a domain reference (`{"id": ...}` or `{"name": ...}`) names the
/// default domain.
pub fn is_default_domain(id: Option<&str>, name: Option<&str>) -> bool {
    match (id, name) {
        (Some(id), _) => id == DOMAIN_ID,
        (None, Some(name)) => name.eq_ignore_ascii_case(DOMAIN_NAME),
        (None, None) => false,
    }
}

/// The role names a user has on its project.
pub fn role_names(user: &User) -> &'static [&'static str] {
    if user.admin {
        &["admin", "member", "reader"]
    } else {
        &["member", "reader"]
    }
}

/// A role's id: stable, derived from its name.
fn role_id(name: &str) -> String {
    hex::encode(&Sha256::digest(format!("role:{name}").as_bytes())[..16])
}

/// Keystone's time format: ISO 8601 with microseconds, UTC.
pub fn keystone_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// What a token body says.
pub struct TokenView<'a> {
    pub user: &'a User,
    /// The project's name, when the token is scoped to it.
    pub project_name: Option<&'a str>,
    pub methods: &'a [&'a str],
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// A stable id of the token for audit logs (not the token, not its hash).
    pub audit_id: String,
    /// The public URL the catalog's endpoints are under; `None`: no catalog.
    pub catalog_base: Option<&'a str>,
}

/// A token's audit id: derived from its stored hash, so it is the same
/// whenever the token is shown, and tells nothing about the token.
pub fn audit_id(token_hash: &str) -> String {
    let digest = Sha256::digest(format!("audit:{token_hash}").as_bytes());
    hex::encode(&digest[..11])
}

impl TokenView<'_> {
    /// `{"token": {...}}`.
    pub fn render(&self) -> Value {
        let user = self.user;
        let mut token = json!({
            "methods": self.methods,
            "user": {
                "id": user.id.to_string(),
                "name": user.name,
                "domain": domain(),
                "password_expires_at": null,
            },
            "audit_ids": [self.audit_id],
            "issued_at": keystone_time(self.issued_at),
            "expires_at": keystone_time(self.expires_at),
        });
        if let Some(project_name) = self.project_name {
            token["project"] = json!({
                "id": user.project.to_string(),
                "name": project_name,
                "domain": domain(),
            });
            token["is_domain"] = json!(false);
            token["roles"] = role_names(user)
                .iter()
                .map(|name| json!({"id": role_id(name), "name": name}))
                .collect();
            if let Some(base) = self.catalog_base {
                token["catalog"] = catalog::catalog(base);
            }
        }
        json!({ "token": token })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(admin: bool) -> User {
        User {
            id: nubis_api::UserId::new(),
            name: "alice".into(),
            admin,
            project: nubis_api::ProjectId::new(),
            created_at: Utc::now(),
        }
    }

    fn view<'a>(user: &'a User, project: Option<&'a str>) -> TokenView<'a> {
        TokenView {
            user,
            project_name: project,
            methods: &["password"],
            issued_at: Utc::now(),
            expires_at: Utc::now(),
            audit_id: audit_id("h"),
            catalog_base: Some("http://c:8780"),
        }
    }

    #[test]
    fn a_scoped_token_has_project_roles_and_catalog() {
        let u = user(false);
        let t = view(&u, Some("alice")).render();
        assert_eq!(t["token"]["project"]["id"], u.project.to_string());
        assert_eq!(t["token"]["project"]["domain"]["id"], "default");
        let roles: Vec<_> = t["token"]["roles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["member", "reader"]);
        assert!(t["token"]["catalog"].is_array());
        assert!(t["token"]["expires_at"].as_str().unwrap().ends_with('Z'));
        let admin = user(true);
        let t = view(&admin, Some("root")).render();
        assert_eq!(t["token"]["roles"][0]["name"], "admin");
    }

    #[test]
    fn an_unscoped_token_has_neither_project_nor_catalog() {
        let u = user(true);
        let t = view(&u, None).render();
        assert!(t["token"].get("project").is_none());
        assert!(t["token"].get("catalog").is_none());
        assert!(t["token"].get("roles").is_none());
        assert_eq!(t["token"]["user"]["name"], "alice");
    }

    #[test]
    fn the_default_domain_is_named_by_id_or_name() {
        assert!(is_default_domain(Some("default"), None));
        assert!(is_default_domain(None, Some("Default")));
        assert!(is_default_domain(None, Some("default")));
        assert!(!is_default_domain(Some("other"), Some("Default")));
        assert!(!is_default_domain(None, None));
    }
}
