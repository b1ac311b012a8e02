//! The keyring (KEK versions), signing keys, data-key rewraps and
//! `vault_meta`: the reads' statements and the writes.

pub(in crate::store) const KEKS: &str =
    "SELECT version, wrapped, active, created_at, retired_at FROM keyring ORDER BY version";
pub(in crate::store) const SIGNING_KEYS: &str = "SELECT kid, kek_version, sealed, public_key, \
     active, created_at FROM signing_keys ORDER BY created_at";
pub(in crate::store) const KEK_STATES: &str = "SELECT version, wrapped IS NOT NULL AS has_material, \
     active, created_at, deactivated_at, retired_at, rewrap_total FROM keyring ORDER BY version";
pub(in crate::store) const SIGNING_KEY_STATES: &str = "SELECT kid, kek_version, sealed, \
     public_key, active, created_at, retired_at, tokens_revoked FROM signing_keys \
     ORDER BY created_at, kid";
pub(in crate::store) const TOKEN_KEY_STATES: &str = "SELECT kid, kek_version, sealed, \
     public_key, active, created_at, retired_at, tokens_revoked FROM token_signing_keys \
     ORDER BY created_at, kid";
pub(in crate::store) const KEK_USAGE: &str = "SELECT kek_version, COUNT(*) AS data_keys \
     FROM customers WHERE wrapped_dek IS NOT NULL AND kek_version IS NOT NULL \
     GROUP BY kek_version ORDER BY kek_version";
pub(in crate::store) const DEK_BATCH: &str = "SELECT id AS customer_id, wrapped_dek \
     FROM customers WHERE kek_version = $1 AND wrapped_dek IS NOT NULL AND id > $2 \
     ORDER BY id LIMIT $3";
pub(in crate::store) const CUSTOMER_KEY: &str = "SELECT kek_version, \
     wrapped_dek IS NOT NULL AS has_data_key FROM customers WHERE id = $1";

/// Generates the key writes of a backend (see `impl_store!`):
/// `apply_keys`, `rotate_kek`, `retire_kek`, `rotate_signing_key`,
/// `rewrap_deks`.
macro_rules! key_writes {
    ($store:ty, $db:ty) => {
        /// KEK versions, signing keys, data-key rewraps and `vault_meta`.
        async fn apply_keys(
            tx: &mut sqlx::Transaction<'static, $db>,
            m: &$crate::store::Mutation,
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::{Mutation as M, StoreError};
            match m {
                M::SetMeta { name, value } => {
                    sqlx::query("INSERT INTO vault_meta (name, value) VALUES ($1, $2)")
                        .bind(name)
                        .bind(value)
                        .execute(&mut **tx)
                        .await?;
                }
                M::ReplaceMeta { name, expected: Some(expected), value } => {
                    let r = sqlx::query(
                        "UPDATE vault_meta SET value = $3 WHERE name = $1 AND value = $2",
                    )
                    .bind(name)
                    .bind(expected)
                    .bind(value)
                    .execute(&mut **tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::Conflict("meta_changed".into()));
                    }
                }
                M::ReplaceMeta { name, expected: None, value } => {
                    sqlx::query(
                        "INSERT INTO vault_meta (name, value) VALUES ($1, $2) \
                         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    )
                    .bind(name)
                    .bind(value)
                    .execute(&mut **tx)
                    .await?;
                }
                M::InsertKek { version, wrapped, active, at } => {
                    sqlx::query(
                        "INSERT INTO keyring (version, wrapped, active, created_at) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(version)
                    .bind(wrapped)
                    .bind(active)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                }
                M::RotateKek { .. } => rotate_kek(tx, m).await?,
                M::RewrapKek { version, expected, wrapped } => {
                    let r = sqlx::query(
                        "UPDATE keyring SET wrapped = $3 WHERE version = $1 AND wrapped = $2",
                    )
                    .bind(version)
                    .bind(expected)
                    .bind(wrapped)
                    .execute(&mut **tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::Conflict("kek_changed".into()));
                    }
                }
                M::ExpectKekCount { count } => {
                    let n: i64 =
                        sqlx::query_scalar("SELECT COUNT(*) FROM keyring WHERE wrapped IS NOT NULL")
                            .fetch_one(&mut **tx)
                            .await?;
                    if n != *count {
                        return Err(StoreError::Conflict("keyring_changed".into()));
                    }
                }
                M::RetireKek { version, at } => retire_kek(tx, *version, *at).await?,
                M::RewrapDek { .. } => rewrap_deks(tx, &[m]).await?,
                M::InsertSigningKey(k) => {
                    insert_signing_key(tx, $crate::store::KeyUse::Checkpoint, k, k.active).await?
                }
                M::InsertTokenKey(k) => {
                    insert_signing_key(tx, $crate::store::KeyUse::Token, k, k.active).await?
                }
                M::RewrapSigningKey { key_use, kid, from_version, kek_version, sealed } => {
                    sqlx::query(match key_use {
                        $crate::store::KeyUse::Checkpoint => {
                            "UPDATE signing_keys SET kek_version = $3, sealed = $4 \
                             WHERE kid = $1 AND kek_version = $2"
                        }
                        $crate::store::KeyUse::Token => {
                            "UPDATE token_signing_keys SET kek_version = $3, sealed = $4 \
                             WHERE kid = $1 AND kek_version = $2"
                        }
                    })
                    .bind(kid)
                    .bind(from_version)
                    .bind(kek_version)
                    .bind(sealed)
                    .execute(&mut **tx)
                    .await?;
                }
                M::RotateSigningKey { .. } => rotate_signing_key(tx, m).await?,
                _ => return Err($crate::store::sql::misrouted("keys")),
            }
            Ok(())
        }

        /// `Mutation::RotateKek`.
        async fn rotate_kek(
            tx: &mut sqlx::Transaction<'static, $db>,
            m: &$crate::store::Mutation,
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::StoreError;
            let $crate::store::Mutation::RotateKek { version, wrapped, previous, root_fingerprint, at } =
                m
            else {
                return Err($crate::store::sql::misrouted("rotate_kek"));
            };
            let same_root: Option<String> =
                sqlx::query_scalar("SELECT name FROM vault_meta WHERE name = $1 AND value = $2")
                    .bind("root_fingerprint")
                    .bind(root_fingerprint)
                    .fetch_optional(&mut **tx)
                    .await?;
            if same_root.is_none() {
                return Err(StoreError::Conflict("root_key_changed".into()));
            }
            let r = sqlx::query(
                "UPDATE keyring SET active = $2, deactivated_at = $3, rewrap_total = \
                 (SELECT COUNT(*) FROM customers WHERE kek_version = $1 AND wrapped_dek IS NOT NULL) \
                 WHERE version = $1 AND active",
            )
            .bind(previous)
            .bind(false)
            .bind(at)
            .execute(&mut **tx)
            .await?;
            if r.rows_affected() == 0 {
                return Err(StoreError::Conflict("kek_not_active".into()));
            }
            sqlx::query(
                "INSERT INTO keyring (version, wrapped, active, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(version)
            .bind(wrapped)
            .bind(true)
            .bind(at)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        /// `Mutation::RetireKek`.
        async fn retire_kek(
            tx: &mut sqlx::Transaction<'static, $db>,
            version: i64,
            at: i64,
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::StoreError;
            let row: Option<$crate::store::sql::keys::KekMaterial> =
                sqlx::query_as("SELECT active, wrapped IS NOT NULL AS has_material FROM keyring WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&mut **tx)
                    .await?;
            match row {
                None => return Err(StoreError::NotFound),
                Some(k) if k.active => return Err(StoreError::Conflict("kek_active".into())),
                Some(k) if !k.has_material => {
                    return Err(StoreError::Conflict("kek_retired".into()));
                }
                Some(_) => {}
            }
            let r = sqlx::query(
                "UPDATE keyring SET wrapped = NULL, retired_at = $2 \
                 WHERE version = $1 AND NOT active AND wrapped IS NOT NULL \
                 AND NOT EXISTS (SELECT 1 FROM customers \
                     WHERE kek_version = $1 AND wrapped_dek IS NOT NULL) \
                 AND NOT EXISTS (SELECT 1 FROM signing_keys \
                     WHERE kek_version = $1 AND length(sealed) > 0) \
                 AND NOT EXISTS (SELECT 1 FROM token_signing_keys \
                     WHERE kek_version = $1 AND length(sealed) > 0)",
            )
            .bind(version)
            .bind(at)
            .execute(&mut **tx)
            .await?;
            if r.rows_affected() == 0 {
                return Err(StoreError::Conflict("kek_in_use".into()));
            }
            Ok(())
        }

        async fn insert_signing_key(
            tx: &mut sqlx::Transaction<'static, $db>,
            key_use: $crate::store::KeyUse,
            k: &$crate::store::SigningKeyRow,
            active: bool,
        ) -> Result<(), $crate::store::StoreError> {
            sqlx::query(match key_use {
                $crate::store::KeyUse::Checkpoint => {
                    "INSERT INTO signing_keys \
                     (kid, kek_version, sealed, public_key, active, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)"
                }
                $crate::store::KeyUse::Token => {
                    "INSERT INTO token_signing_keys \
                     (kid, kek_version, sealed, public_key, active, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)"
                }
            })
            .bind(&k.kid)
            .bind(k.kek_version)
            .bind(&k.sealed)
            .bind(&k.public_key)
            .bind(active)
            .bind(k.created_at)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        /// `Mutation::RotateSigningKey`.
        async fn rotate_signing_key(
            tx: &mut sqlx::Transaction<'static, $db>,
            m: &$crate::store::Mutation,
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::StoreError;
            let $crate::store::Mutation::RotateSigningKey {
                key_use,
                key,
                previous_kid,
                revoke_previous,
                at,
            } = m
            else {
                return Err($crate::store::sql::misrouted("rotate_signing_key"));
            };
            let live: Option<i64> = sqlx::query_scalar(
                "SELECT version FROM keyring WHERE version = $1 AND wrapped IS NOT NULL",
            )
            .bind(key.kek_version)
            .fetch_optional(&mut **tx)
            .await?;
            if live.is_none() {
                return Err(StoreError::Conflict("kek_retired".into()));
            }
            let r = sqlx::query(match key_use {
                $crate::store::KeyUse::Checkpoint => {
                    "UPDATE signing_keys SET active = $2, retired_at = $3, sealed = $4, \
                     tokens_revoked = $5 WHERE kid = $1 AND active"
                }
                $crate::store::KeyUse::Token => {
                    "UPDATE token_signing_keys SET active = $2, retired_at = $3, sealed = $4, \
                     tokens_revoked = $5 WHERE kid = $1 AND active"
                }
            })
            .bind(previous_kid)
            .bind(false)
            .bind(at)
            .bind(Vec::<u8>::new())
            .bind(revoke_previous)
            .execute(&mut **tx)
            .await?;
            if r.rows_affected() == 0 {
                return Err(StoreError::Conflict("signing_key_not_active".into()));
            }
            insert_signing_key(tx, *key_use, key, true).await
        }

        /// Stores rewrapped data keys, in one statement.
        async fn rewrap_deks(
            tx: &mut sqlx::Transaction<'static, $db>,
            rewraps: &[&$crate::store::Mutation],
        ) -> Result<(), $crate::store::StoreError> {
            sqlx::query(<$store>::SQL.rewraps)
                .bind($crate::store::sql::encode::rewrap_rows(rewraps)?)
                .execute(&mut **tx)
                .await?;
            Ok(())
        }
    };
}

pub(in crate::store) use key_writes;

/// Whether a KEK version is active and still has key material.
#[derive(sqlx::FromRow)]
pub(in crate::store) struct KekMaterial {
    pub active: bool,
    pub has_material: bool,
}
