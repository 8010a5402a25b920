//! Decoding the portable column types back into API types.

use super::{StoreError, StoreResult};
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;
use std::str::FromStr;

/// Reads a TEXT column holding a typed id (or anything else `FromStr`).
pub(crate) fn parse<T: FromStr>(row: &AnyRow, col: &str) -> StoreResult<T> {
    let s: String = row.try_get(col)?;
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("column {col}: cannot parse '{s}'")))
}

/// Reads a nullable TEXT column holding a typed id.
pub(crate) fn parse_opt<T: FromStr>(row: &AnyRow, col: &str) -> StoreResult<Option<T>> {
    let s: Option<String> = row.try_get(col)?;
    s.map(|s| {
        s.parse()
            .map_err(|_| StoreError::Corrupt(format!("column {col}: cannot parse '{s}'")))
    })
    .transpose()
}

/// Reads a BIGINT column holding a non-negative count.
pub(crate) fn count(row: &AnyRow, col: &str) -> StoreResult<u64> {
    let v: i64 = row.try_get(col)?;
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("column {col}: negative {v}")))
}

/// Reads a nullable BIGINT count.
pub(crate) fn count_opt(row: &AnyRow, col: &str) -> StoreResult<Option<u64>> {
    let v: Option<i64> = row.try_get(col)?;
    Ok(v.and_then(|v| u64::try_from(v).ok()))
}

/// Reads a BIGINT 0/1 flag.
pub(crate) fn flag(row: &AnyRow, col: &str) -> StoreResult<bool> {
    let v: i64 = row.try_get(col)?;
    Ok(v != 0)
}

/// Reads a BIGINT Unix-milliseconds time.
pub(crate) fn time(row: &AnyRow, col: &str) -> StoreResult<DateTime<Utc>> {
    let ms: i64 = row.try_get(col)?;
    from_ms(ms).ok_or_else(|| StoreError::Corrupt(format!("column {col}: bad time {ms}")))
}

/// Reads a nullable BIGINT Unix-milliseconds time.
pub(crate) fn time_opt(row: &AnyRow, col: &str) -> StoreResult<Option<DateTime<Utc>>> {
    let ms: Option<i64> = row.try_get(col)?;
    Ok(ms.and_then(from_ms))
}

/// Reads a nullable TEXT column holding JSON; NULL is the type's default.
pub(crate) fn json_or_default<T: serde::de::DeserializeOwned + Default>(
    row: &AnyRow,
    col: &str,
) -> StoreResult<T> {
    let s: Option<String> = row.try_get(col)?;
    match s {
        None => Ok(T::default()),
        Some(s) => {
            serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("column {col}: {e}")))
        }
    }
}

/// Encodes a value for a JSON TEXT column.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("our types serialize")
}

pub(crate) fn from_ms(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

/// Converts a count for a BIGINT column (all our counts are far below i64::MAX).
pub(crate) fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
