//! Users, their personal projects, and bearer tokens.

use super::rows::{flag, parse, time};
use super::{found, now_ms, OrConflict, Store, StoreResult};
use nubis_api::users::User;
use nubis_api::{ProjectId, UserId};
use sqlx::any::AnyRow;
use sqlx::Row;

/// A user with the stored password hash, for logging in.
pub struct UserRecord {
    pub user: User,
    pub password_hash: String,
}

/// An unexpired bearer token (never the token itself: only its hash is kept).
pub struct TokenRecord {
    pub user: User,
    pub issued_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// The user columns every user query selects (a macro, so queries stay `'static`).
macro_rules! user_columns {
    () => {
        "u.id, u.name, u.admin, u.project_id, u.created_at, u.password_hash"
    };
}

fn user_from_row(row: &AnyRow) -> StoreResult<UserRecord> {
    Ok(UserRecord {
        user: User {
            id: parse(row, "id")?,
            name: row.try_get("name")?,
            admin: flag(row, "admin")?,
            project: parse(row, "project_id")?,
            created_at: time(row, "created_at")?,
        },
        password_hash: row.try_get("password_hash")?,
    })
}

impl Store {
    /// Creates a user and its personal project in one transaction; an admin
    /// only when `admin` is set (registering never makes one).
    pub async fn create_user(
        &self,
        name: &str,
        password_hash: &str,
        admin: bool,
    ) -> StoreResult<User> {
        let mut tx = self.begin_write().await?;
        let user_id = UserId::new();
        let project_id = ProjectId::new();
        let now = now_ms();
        let result = async {
            sqlx::query("INSERT INTO projects (id, name, created_at) VALUES ($1, $2, $3)")
                .bind(project_id.to_string())
                .bind(name)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO users (id, name, password_hash, admin, project_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(user_id.to_string())
            .bind(name)
            .bind(password_hash)
            .bind(i64::from(admin))
            .bind(project_id.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await
        }
        .await;
        result.or_conflict(|| format!("a user named '{name}' already exists"))?;
        tx.commit().await?;
        self.user(user_id).await
    }

    /// A user by id.
    pub async fn user(&self, id: UserId) -> StoreResult<User> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users u WHERE u.id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(self.pool())
        .await?;
        Ok(user_from_row(&found(row)?)?.user)
    }

    /// A user by id, with the password hash.
    pub async fn user_record(&self, id: UserId) -> StoreResult<UserRecord> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users u WHERE u.id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(self.pool())
        .await?;
        user_from_row(&found(row)?)
    }

    /// A user by name, with the password hash.
    pub async fn user_by_name(&self, name: &str) -> StoreResult<UserRecord> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users u WHERE u.name = $1"
        ))
        .bind(name)
        .fetch_optional(self.pool())
        .await?;
        user_from_row(&found(row)?)
    }

    /// Stores a token's hash.
    pub async fn insert_token(
        &self,
        hash: &str,
        user: UserId,
        expires_at_ms: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO tokens (hash, user_id, expires_at, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(hash)
        .bind(user.to_string())
        .bind(expires_at_ms)
        .bind(now_ms())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// The user owning an unexpired token.
    pub async fn user_by_token(&self, hash: &str) -> StoreResult<User> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.hash = $1 AND t.expires_at > $2"
        ))
        .bind(hash)
        .bind(now_ms())
        .fetch_optional(self.pool())
        .await?;
        Ok(user_from_row(&found(row)?)?.user)
    }

    /// An unexpired token: its user and its times (Keystone's token
    /// validation shows them).
    pub async fn token(&self, hash: &str) -> StoreResult<TokenRecord> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            ", t.expires_at AS token_expires_at, t.created_at AS token_created_at \
             FROM tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.hash = $1 AND t.expires_at > $2"
        ))
        .bind(hash)
        .bind(now_ms())
        .fetch_optional(self.pool())
        .await?;
        let row = found(row)?;
        Ok(TokenRecord {
            user: user_from_row(&row)?.user,
            issued_at: time(&row, "token_created_at")?,
            expires_at: time(&row, "token_expires_at")?,
        })
    }

    /// Revokes a token (and, while at it, drops expired ones).
    pub async fn delete_token(&self, hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM tokens WHERE hash = $1 OR expires_at <= $2")
            .bind(hash)
            .bind(now_ms())
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// Every user, by name (admins' listings).
    pub async fn list_users(&self) -> StoreResult<Vec<User>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users u ORDER BY u.name"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok(user_from_row(r)?.user)).collect()
    }

    /// Every project with its name, by name (admins' listings).
    pub async fn list_projects(&self) -> StoreResult<Vec<(ProjectId, String)>> {
        let rows = sqlx::query("SELECT id, name FROM projects ORDER BY name")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok((parse(r, "id")?, r.try_get("name")?)))
            .collect()
    }

    /// A project's name (the name of the user it belongs to).
    pub async fn project_name(&self, project: ProjectId) -> StoreResult<String> {
        let row = sqlx::query("SELECT name FROM projects WHERE id = $1")
            .bind(project.to_string())
            .fetch_optional(self.pool())
            .await?;
        Ok(found(row)?.try_get("name")?)
    }
}
