//! Migrations, whichever backend applies them: each is embedded SQL with a version, and what a
//! database records of those applied is checked the same way — an applied migration whose SQL
//! has since changed, one left half-applied, or one this binary does not know (a newer
//! jitgate's) stops the open.

use sha2::{Digest, Sha384};

use super::StoreError;

/// One migration: `migrations/{backend}/{version:04}_{description with _ for spaces}.sql`.
#[derive(Debug)]
pub(super) struct Migration {
    pub(super) version: i64,
    pub(super) description: &'static str,
    pub(super) sql: &'static str,
}

/// `Migration { .. }` for `migrations/$backend/$file`.
macro_rules! migration {
    ($backend:literal, $version:literal, $description:literal, $file:literal) => {
        $crate::store::migration::Migration {
            version: $version,
            description: $description,
            sql: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/migrations/",
                $backend,
                "/",
                $file
            )),
        }
    };
}
pub(super) use migration;

impl Migration {
    /// SHA-384 of the SQL, as sqlx recorded it.
    pub(super) fn checksum(&self) -> Vec<u8> {
        Sha384::digest(self.sql.as_bytes()).to_vec()
    }
}

/// The versions of `migrations` a database has applied, given what it `recorded` (version,
/// checksum, success) in order.
pub(super) fn applied_versions(
    recorded: impl IntoIterator<Item = (i64, Vec<u8>, bool)>,
    migrations: &[Migration],
) -> Result<Vec<i64>, StoreError> {
    let mut applied = Vec::new();
    for (version, checksum, success) in recorded {
        if !success {
            return Err(StoreError::Migrate(format!(
                "migration {version} was left half-applied; restore the database from a backup"
            )));
        }
        let Some(migration) = migrations.iter().find(|m| m.version == version) else {
            return Err(StoreError::Migrate(format!(
                "the database has migration {version}, which this jitgate does not know: it \
                 was written by a newer jitgate"
            )));
        };
        if migration.checksum() != checksum {
            return Err(StoreError::Migrate(format!(
                "migration {version} was applied from SQL that differs from this jitgate's"
            )));
        }
        applied.push(version);
    }
    Ok(applied)
}
