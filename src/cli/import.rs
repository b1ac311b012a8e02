//! `pii-vault import FILE`: a portability export into an empty vault.

use std::path::Path;

use crate::actor::Actor;
use crate::clock::Clock;
use crate::config::Settings;
use crate::requests::erasure::Ctx;
use crate::requests::export::{Package, import_package};

/// Reads the package, opens the vault and imports it as the command line's
/// operator ([`Actor::cli`]); `customer.import` is recorded.
pub async fn import(settings: &Settings, clock: &dyn Clock, file: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    // serde's message may quote a value: report only where and what kind.
    let pkg: Package = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{} is not an export package ({:?} error at line {}, column {}; see /v1/schemas/export.json)",
            file.display(),
            e.classify(),
            e.line(),
            e.column()
        )
    })?;
    let opened = crate::open(settings, clock, false, true).await?;
    super::warn_dev_key(&opened.origin);
    let ctx = Ctx::direct(
        opened.store.as_ref(),
        &opened.policy,
        &opened.keys,
        clock,
        super::tombstone_log(settings, &opened).await?,
    );
    let actor = Actor::cli();
    let done = import_package(&ctx, &pkg, &actor)
        .await
        .map_err(|e| anyhow::anyhow!("import refused: {e}"))?;
    println!(
        "imported customer {} ({} value(s), {} consent event(s))",
        done.customer_id, done.values, done.consents
    );
    Ok(())
}
