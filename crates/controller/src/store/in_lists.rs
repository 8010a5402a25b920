//! Set-based reads: one statement for many ids (`... IN ($1, $2, ...)`),
//! chunked, instead of one statement per id.

use super::StoreResult;
use sqlx::any::AnyRow;

/// At most this many ids are bound in one `IN (...)` list (SQLite's old
/// limit of bound parameters was 999).
pub(super) const IN_CHUNK: usize = 500;

/// `$first, $first+1, ...` for `n` ids.
pub(super) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rows of `sql` for every id of `ids`: `sql` holds `{ids}` where the
/// list goes, after `fixed` values bound first (`$1`..). One statement per
/// [`IN_CHUNK`] ids; none for no ids.
pub(super) async fn fetch_in<'e, E>(
    conn: E,
    sql: &str,
    fixed: &[String],
    ids: &[String],
) -> StoreResult<Vec<AnyRow>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any> + Copy,
{
    let mut rows = Vec::new();
    for chunk in ids.chunks(IN_CHUNK) {
        let sql = sql.replace("{ids}", &placeholders(fixed.len() + 1, chunk.len()));
        // Only placeholders are formatted in; every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for value in fixed.iter().chain(chunk) {
            query = query.bind(value.clone());
        }
        rows.extend(query.fetch_all(conn).await?);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_are_numbered_from_the_first() {
        assert_eq!(placeholders(1, 3), "$1, $2, $3");
        assert_eq!(placeholders(4, 1), "$4");
        assert_eq!(placeholders(1, 0), "");
    }
}
