//! `pii-vault migrate` and `pii-vault sweep`: maintenance that runs beside
//! (or instead of) a serving vault and exits.

use super::warn_dev_key;
use crate::clock::{Clock, parse_rfc3339, rfc3339};
use crate::config::Settings;
use crate::requests::erasure::{self, Ctx};
use crate::retention;

/// Creates or upgrades the schema and the keyring, then finishes interrupted
/// erasures and erases again the customers the tombstone file lists.
pub async fn migrate(settings: &Settings, clock: &dyn Clock) -> anyhow::Result<()> {
    let opened = crate::open(settings, clock, false, true).await?;
    warn_dev_key(&opened.origin);
    println!(
        "database schema and keyring are up to date ({})",
        opened.store.backend()
    );
    erasure::recover_command(&opened, settings, clock).await
}

/// One retention sweep as of `as_of` (RFC 3339; default now), printing the
/// progress after each batch and the totals.
pub async fn sweep(
    settings: &Settings,
    clock: &dyn Clock,
    as_of: Option<&str>,
) -> anyhow::Result<()> {
    let now = match as_of {
        Some(t) => parse_rfc3339(t).ok_or_else(|| {
            anyhow::anyhow!("--as-of must be an RFC 3339 time such as 2031-01-01T00:00:00Z")
        })?,
        None => clock.now_micros(),
    };
    let opened = crate::open(settings, clock, false, false).await?;
    let mut ctx = Ctx::direct(
        opened.store.as_ref(),
        &opened.policy,
        &opened.keys,
        clock,
        super::tombstone_log(settings, &opened).await?,
    );
    ctx.as_of = Some(now);
    ctx.idempotency_ttl = crate::requests::erasure::idempotency_ttl(settings);
    println!("retention sweep as of {}", rfc3339(now));
    let r = retention::sweep(&ctx, now, |r| {
        println!(
            "  {} customer(s) checked: {} value(s) deleted, {} purpose(s) removed, {} erasure(s) re-evaluated",
            r.customers, r.values_deleted, r.purposes_removed, r.erasures_settled
        );
    })
    .await
    .map_err(|e| anyhow::anyhow!("the sweep stopped: {e}"))?;
    println!(
        "done: {} customer(s), {} value(s) deleted, {} purpose(s) removed, {} erasure(s) re-evaluated, {} value(s) kept by a legal hold",
        r.customers, r.values_deleted, r.purposes_removed, r.erasures_settled, r.held
    );
    Ok(())
}
