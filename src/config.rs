//! Configuration: defaults, then `pii-vault.toml` (or `--config FILE`), then
//! `PII_VAULT_*` environment variables. Unknown keys are rejected with a
//! message that names them. Secrets may also come from files (`*_FILE`).
//!
//! Secrets are types: the root key is a [`SecretString`] and the database
//! URL a [`SecretUrl`], so `{:?}` of [`Settings`] (a log line, a panic
//! message) shows `[REDACTED]` for the key and `user:***@` for a password.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::store::DatabaseUrl;

pub const DEFAULT_CONFIG_FILE: &str = "pii-vault.toml";

/// The prefix of the settings' environment variables.
pub const ENV_PREFIX: &str = "PII_VAULT_";

/// A URL that may carry a password (`postgres://user:PASSWORD@host/db`):
/// held in a [`SecretString`], shown with the password masked the way
/// [`DatabaseUrl`] shows it.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(SecretString);

impl SecretUrl {
    /// The URL itself, password included: only for opening the connection.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl From<&str> for SecretUrl {
    fn from(url: &str) -> Self {
        SecretUrl(SecretString::from(url))
    }
}

impl From<String> for SecretUrl {
    fn from(url: String) -> Self {
        SecretUrl(SecretString::from(url))
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&DatabaseUrl::new(self.expose_secret()), f)
    }
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtps://`: TLS from the first byte (port 465).
    Tls,
    /// `smtp://`: the session is upgraded with STARTTLS, and a server that
    /// does not offer it is refused (port 587).
    StartTls,
    /// `smtp://…?tls=none`: no TLS at all; only to a loopback host (a relay
    /// on the same machine).
    Plain,
}

/// `outbox_smtp_url`, parsed and checked. Its `Debug` masks the password.
#[derive(Clone)]
pub struct SmtpEndpoint {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub user: Option<String>,
    pub password: Option<SecretString>,
}

impl fmt::Debug for SmtpEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpEndpoint")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl SmtpEndpoint {
    /// Parses `smtps://[user[:password]@]host[:port]` or
    /// `smtp://[user[:password]@]host[:port][?tls=required|none]`. Refused:
    /// other schemes, `tls=opportunistic` (STARTTLS must be required) and
    /// `tls=none` to a host that is not a loopback address. Messages never
    /// repeat the URL (it may hold a password).
    pub fn parse(raw: &str) -> Result<SmtpEndpoint, String> {
        const WHAT: &str = "outbox_smtp_url";
        let url = url::Url::parse(raw).map_err(|_| {
            format!("{WHAT} must be a URL such as smtps://user:password@smtp.example.com:465")
        })?;
        let mut tls: Option<String> = None;
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "tls" if tls.is_none() => tls = Some(value.into_owned()),
                _ => return Err(format!("{WHAT} takes one query parameter only: tls")),
            }
        }
        let security = match (url.scheme(), tls.as_deref()) {
            ("smtps", None) => SmtpSecurity::Tls,
            ("smtp", None | Some("required")) => SmtpSecurity::StartTls,
            ("smtp", Some("none")) => SmtpSecurity::Plain,
            ("smtp", Some("opportunistic")) => {
                return Err(format!(
                    "{WHAT}: STARTTLS must be required (tls=required, the default for smtp://)"
                ));
            }
            ("smtp" | "smtps", Some(_)) => {
                return Err(format!("{WHAT}: tls is required or none (smtp:// only)"));
            }
            _ => return Err(format!("{WHAT} must be an smtps:// or smtp:// URL")),
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err(format!("{WHAT} names no host")),
        };
        if !matches!(url.path(), "" | "/") || url.fragment().is_some() {
            return Err(format!("{WHAT} has no path"));
        }
        if security == SmtpSecurity::Plain && !is_loopback(&host) {
            return Err(format!(
                "{WHAT}: SMTP without TLS (tls=none) is allowed only to a loopback host; \
                 use smtps:// or smtp:// with STARTTLS"
            ));
        }
        let user = Some(url.username())
            .filter(|u| !u.is_empty())
            .map(percent_decode);
        let password = url
            .password()
            .map(|p| SecretString::from(percent_decode(p)));
        Ok(SmtpEndpoint {
            port: url.port().unwrap_or(match security {
                SmtpSecurity::Tls => 465,
                SmtpSecurity::StartTls | SmtpSecurity::Plain => 587,
            }),
            host,
            security,
            user,
            password,
        })
    }
}

/// `%XX` escapes decoded (a URL's user or password); `+` stays `+`.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `localhost`, `127.0.0.0/8` or `::1`.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The settings. Not `Serialize`: nothing writes them out, and secrets must
/// not be serialisable; defaults come from [`Default`] through
/// `#[serde(default)]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address to listen on.
    pub listen: String,
    /// The vault's base URL as callers reach it (`https://vault.example.com`):
    /// the OAuth issuer and the base of the endpoints named in
    /// `/.well-known/oauth-authorization-server`. Default: `http://` and
    /// `listen`.
    pub public_url: Option<String>,
    /// `sqlite://PATH` or `postgres://...` (a password in it never shows in
    /// `Debug`).
    pub database_url: SecretUrl,
    /// A file holding the database URL (keeps a password out of the environment).
    pub database_url_file: Option<PathBuf>,
    /// Directory of policy files.
    pub policy_dir: PathBuf,
    /// The root ("master") key, base64 of 32 bytes.
    pub master_key: Option<SecretString>,
    /// A file holding the root key in base64.
    pub master_key_file: Option<PathBuf>,
    /// The issuer (RFC 8414 `issuer`, the tokens' `iss`): a URL. Default:
    /// derived from `public_url` (see [`Settings::issuer`]); when both are
    /// set they must name the same URL.
    pub token_issuer: Option<String>,
    /// The tokens' `aud`.
    pub token_audience: String,
    /// Lifetime of access tokens, seconds.
    pub token_lifetime_secs: i64,
    /// Request bodies larger than this get 413.
    pub max_body_bytes: usize,
    /// Requests taking longer than this get 503.
    pub request_timeout_secs: u64,
    /// Most units the audit sequencer commits in one transaction.
    pub audit_batch_max: usize,
    /// Sign a checkpoint of the audit chain head after this many new events…
    pub audit_checkpoint_every_events: i64,
    /// …or when this many seconds have passed since the last one (if there
    /// are new events).
    pub audit_checkpoint_every_secs: u64,
    /// Audit events older than this are pruned (at least 365; default 7 years).
    pub audit_retention_days: i64,
    /// Failed logins per name within `login_window_secs` before 429.
    pub login_max_failures: u32,
    pub login_window_secs: u64,
    /// Lifetime of a data subject request's verification code, seconds.
    pub verification_code_ttl_secs: u64,
    /// Optional webhook (`https://` or `http://`) the outbox is POSTed to,
    /// with retries and exponential backoff; the notifier API works either
    /// way. TLS is rustls on ring; the server's certificate must chain to a
    /// root in the system's CA store or in `outbox_webhook_ca_file`.
    pub outbox_webhook_url: Option<String>,
    /// PEM file of extra CA certificates trusted for the webhook's TLS
    /// (beside the system's CA store), e.g. a company's private CA.
    pub outbox_webhook_ca_file: Option<PathBuf>,
    /// The SMTP server the vault sends the customer's email messages
    /// (codes, outcomes, notices) through itself: `smtps://user:pass@host:465`
    /// (TLS), `smtp://user:pass@host:587` (STARTTLS, required), or
    /// `smtp://127.0.0.1:25?tls=none` (no TLS: a loopback host only). The
    /// password never shows in `Debug`.
    pub outbox_smtp_url: Option<SecretUrl>,
    /// A file holding the SMTP password (the URL then names the user only).
    pub outbox_smtp_password_file: Option<PathBuf>,
    /// The sender of those messages, e.g. `Privacy <privacy@example.com>`.
    pub outbox_smtp_from: Option<String>,
    /// `text` or `json` log lines.
    pub log_format: String,
    /// The append-only tombstone file (erased customer ids, kept outside the
    /// database so a restored older backup is erased again). Default: beside
    /// the SQLite database, or `./data/vault.tombstones`.
    pub tombstone_file: Option<PathBuf>,
    /// PostgreSQL: a second database (`postgres://…`) that holds the
    /// tombstone log and the audit witness, shared by every vault process
    /// and not rolled back by a restore of the vault's database. Required by
    /// `serve --production` on PostgreSQL.
    pub tombstone_database_url: Option<SecretUrl>,
    /// The audit witness: every signed checkpoint, appended (fsync'd) outside
    /// the database. Default: beside the SQLite database (`vault.db` →
    /// `vault.witness`); with `tombstone_database_url` it lives there.
    pub audit_witness_file: Option<PathBuf>,
    /// Seconds between two runs of the retention sweeper; 0 turns it off.
    pub sweep_interval_secs: u64,
    /// TEST ONLY: pause after each committed step of an erasure job, so a
    /// test can kill the process in the middle of one. Leave at 0.
    pub test_erasure_pause_ms: u64,
    /// Seconds between keyring polls: a KEK version made active by another
    /// process is used here within this time.
    pub keyring_poll_secs: u64,
    /// Data keys rewrapped per transaction.
    pub rewrap_batch_size: usize,
    /// Pause between rewrap batches, milliseconds (lets traffic through).
    pub rewrap_pause_ms: u64,
    /// Rewrap data keys of older KEK versions in the background while serving.
    pub rewrap_background: bool,
    /// Requests per second each authenticated caller may sustain (token
    /// bucket per principal); past it 429 `rate_limited`. 0 turns it off.
    pub rate_limit_per_sec: u32,
    /// Requests a caller may send at once before the rate applies.
    pub rate_limit_burst: u32,
    /// Verification codes that anonymous intake sends for one identifier
    /// per hour (at most this many at once, refilled evenly over the hour).
    /// Further filings get the same 202 and are recorded, but send no code,
    /// so nobody can flood a customer with codes. Counted per process.
    /// 0 turns the limit off.
    pub intake_codes_per_hour: u32,
    /// Days a request token keeps working after its request closed
    /// (completed, denied or merged); afterwards it is refused with 401.
    pub request_token_ttl_days: u32,
    /// Hours an `Idempotency-Key` replays its first answer; afterwards the
    /// record is deleted (by the retention sweeper) and the key is free.
    pub idempotency_ttl_hours: u32,
    /// Anonymous filings one source address (an IPv6 /64) may make per
    /// hour (at most this many at once, refilled evenly over the hour);
    /// past it 429 `rate_limited`. Counted per process; 0 turns it off.
    pub intake_per_source_per_hour: u32,
    /// Networks (CIDR) of the reverse proxies in front of the vault. Only
    /// when the peer is one of them is the client address read from
    /// `X-Forwarded-For` (else `Forwarded`). Empty: the headers are ignored.
    pub trusted_proxies: Vec<String>,
    /// Browser origins (`https://helpdesk.example.com`) allowed to call the
    /// API from scripts (CORS). Empty: no CORS headers at all.
    pub cors_allowed_origins: Vec<String>,
    /// External OpenID Connect identity providers whose access tokens the
    /// vault accepts beside its own (`[[identity_providers]]`, see
    /// [`IdentityProvider`]). Empty: only the vault's own tokens.
    pub identity_providers: Vec<IdentityProvider>,
}

/// One `[[identity_providers]]` entry: a company's identity provider (Okta,
/// Entra ID, Keycloak, …) whose signed access tokens sign staff in. Checked
/// at load (`auth::oidc::validate_settings`) and against the policy at
/// start-up.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IdentityProvider {
    /// The provider's issuer, exactly as its tokens' `iss` spell it;
    /// discovery is read from `{issuer}/.well-known/openid-configuration`.
    /// `https://`, or `http://` on a loopback address only.
    pub issuer: String,
    /// The `aud` the provider puts in tokens meant for the vault.
    pub audience: String,
    /// Where the provider publishes its keys (JWKS); from discovery when
    /// absent. Same scheme rule as `issuer`.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// The token claim that names the caller's groups or roles: a string or
    /// an array of strings.
    #[serde(default = "default_role_claim")]
    pub role_claim: String,
    /// Claim value → vault role (a role of the policy). The first value in
    /// the token that is listed here gives the role.
    #[serde(default)]
    pub roles: BTreeMap<String, String>,
}

fn default_role_claim() -> String {
    "groups".into()
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            database_url: "sqlite://./data/vault.db".into(),
            database_url_file: None,
            policy_dir: PathBuf::from("./policies"),
            master_key: None,
            master_key_file: None,
            token_issuer: None,
            token_audience: "pii-vault".into(),
            token_lifetime_secs: 900,
            max_body_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            audit_batch_max: 512,
            audit_checkpoint_every_events: 1000,
            audit_checkpoint_every_secs: 60,
            audit_retention_days: 2557,
            login_max_failures: 5,
            login_window_secs: 300,
            verification_code_ttl_secs: 1800,
            outbox_webhook_url: None,
            outbox_webhook_ca_file: None,
            outbox_smtp_url: None,
            outbox_smtp_password_file: None,
            outbox_smtp_from: None,
            log_format: "text".into(),
            tombstone_file: None,
            tombstone_database_url: None,
            audit_witness_file: None,
            sweep_interval_secs: 3600,
            test_erasure_pause_ms: 0,
            keyring_poll_secs: 2,
            rewrap_batch_size: 500,
            rewrap_pause_ms: 5,
            rewrap_background: true,
            rate_limit_per_sec: 2000,
            rate_limit_burst: 4000,
            intake_codes_per_hour: 5,
            request_token_ttl_days: 30,
            idempotency_ttl_hours: 24,
            intake_per_source_per_hour: 20,
            trusted_proxies: Vec::new(),
            cors_allowed_origins: Vec::new(),
            identity_providers: Vec::new(),
        }
    }
}

/// Where the root key comes from.
pub enum RootKeySource {
    Value(SecretString),
    File(PathBuf),
    /// No key configured: a development key file beside the SQLite database.
    DevFile(PathBuf),
    Missing,
}

impl Settings {
    /// Loads settings. `file` is `--config`; without it `pii-vault.toml` in the
    /// working directory is read when present.
    pub fn load(file: Option<&Path>) -> Result<Settings, String> {
        // Keys missing from every source take their value from `Default`
        // (`#[serde(default)]`).
        let mut fig = Figment::new();
        match file {
            Some(f) => {
                if !f.exists() {
                    return Err(format!("configuration file {} does not exist", f.display()));
                }
                fig = fig.merge(Toml::file_exact(f));
            }
            None => {
                if Path::new(DEFAULT_CONFIG_FILE).exists() {
                    fig = fig.merge(Toml::file_exact(DEFAULT_CONFIG_FILE));
                }
            }
        }
        // Unknown environment variables are skipped (the CLI warns about
        // them, see `unknown_env_vars`): a stray variable in a shell or a
        // CI script must not stop every command. Unknown keys in the file
        // stay errors.
        let known = Self::keys();
        fig = fig.merge(
            Env::prefixed(ENV_PREFIX)
                .filter(move |key| known.iter().any(|k| key.as_str().eq_ignore_ascii_case(k))),
        );
        let s: Settings = fig.extract().map_err(|e| {
            // figment names the key and where it came from; values are not shown
            // for unknown-key errors, and keys are not secrets.
            let msgs: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
            format!("invalid configuration: {}", msgs.join("; "))
        })?;
        s.validate()?;
        Ok(s)
    }

    /// Every setting's name, as serde knows them (from the error for a
    /// key that cannot exist).
    pub fn keys() -> &'static [&'static str] {
        use figment::providers::Serialized;
        let probe = Figment::from(Serialized::defaults(serde_json::json!({"\u{1}": 0})));
        match probe.extract::<Settings>() {
            Err(e) => e
                .into_iter()
                .find_map(|e| match e.kind {
                    figment::error::Kind::UnknownField(_, expected) => Some(expected),
                    _ => None,
                })
                .unwrap_or(&[]),
            Ok(_) => &[],
        }
    }

    /// The `PII_VAULT_*` variables of `vars` that name no setting (names
    /// only, never values): ignored by [`Settings::load`], worth a warning.
    pub fn unknown_env_vars(vars: impl IntoIterator<Item = String>) -> Vec<String> {
        let known = Self::keys();
        let mut unknown: Vec<String> = vars
            .into_iter()
            .filter(|name| {
                name.strip_prefix(ENV_PREFIX)
                    .is_some_and(|key| !known.iter().any(|k| key.eq_ignore_ascii_case(k)))
            })
            .collect();
        unknown.sort();
        unknown
    }

    fn validate(&self) -> Result<(), String> {
        if self.master_key.is_some() && self.master_key_file.is_some() {
            return Err("set either master_key or master_key_file, not both".into());
        }
        if !(60..=86_400).contains(&self.token_lifetime_secs) {
            return Err("token_lifetime_secs must be between 60 and 86400".into());
        }
        if self.max_body_bytes < 1024 {
            return Err("max_body_bytes must be at least 1024".into());
        }
        if self.audit_batch_max == 0 {
            return Err("audit_batch_max must be at least 1".into());
        }
        if self.audit_checkpoint_every_events < 1 {
            return Err("audit_checkpoint_every_events must be at least 1".into());
        }
        if !(1..=86_400).contains(&self.audit_checkpoint_every_secs) {
            return Err("audit_checkpoint_every_secs must be between 1 and 86400".into());
        }
        if self.audit_retention_days < 365 {
            return Err(
                "audit_retention_days must be at least 365 (the audit trail is kept for years)"
                    .into(),
            );
        }
        if !(1..=300).contains(&self.keyring_poll_secs) {
            return Err("keyring_poll_secs must be between 1 and 300".into());
        }
        if !(1..=10_000).contains(&self.rewrap_batch_size) {
            return Err("rewrap_batch_size must be between 1 and 10000".into());
        }
        if self.rewrap_pause_ms > 60_000 {
            return Err("rewrap_pause_ms must be at most 60000".into());
        }
        if !(1..=8760).contains(&self.idempotency_ttl_hours) {
            return Err("idempotency_ttl_hours must be between 1 and 8760".into());
        }
        if !(1..=3650).contains(&self.request_token_ttl_days) {
            return Err("request_token_ttl_days must be between 1 and 3650".into());
        }
        if !(60..=86_400).contains(&self.verification_code_ttl_secs) {
            return Err("verification_code_ttl_secs must be between 60 and 86400".into());
        }
        if let Some(url) = &self.public_url {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains(['?', '#', ' '])) {
                return Err(
                    "public_url must be an https:// (or http://) URL without query or fragment"
                        .into(),
                );
            }
        }
        if let Some(issuer) = &self.token_issuer {
            let rest = issuer
                .strip_prefix("https://")
                .or_else(|| issuer.strip_prefix("http://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains(['?', '#', ' '])) {
                return Err(
                    "token_issuer must be an https:// (or http://) URL without query or fragment \
                     (RFC 8414); without it the issuer is public_url"
                        .into(),
                );
            }
            if let Some(public) = &self.public_url
                && issuer.trim_end_matches('/') != public.trim_end_matches('/')
            {
                return Err(format!(
                    "token_issuer ({issuer}) is not public_url ({public}): the tokens' issuer \
                     must be the issuer the metadata at {public}/.well-known/oauth-authorization-server \
                     names; remove token_issuer (the issuer is public_url)"
                ));
            }
        }
        if let Some(url) = &self.outbox_webhook_url {
            let host = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            if host.is_none_or(str::is_empty) {
                return Err("outbox_webhook_url must be an https:// (or http://) URL".into());
            }
        }
        if self.outbox_webhook_ca_file.is_some() && self.outbox_webhook_url.is_none() {
            return Err("outbox_webhook_ca_file is set but outbox_webhook_url is not".into());
        }
        self.validate_smtp()?;
        crate::auth::client_addr::TrustedProxies::parse(&self.trusted_proxies)?;
        for origin in &self.cors_allowed_origins {
            valid_origin(origin)?;
        }
        crate::auth::oidc::validate_settings(&self.identity_providers)?;
        let own = self.issuer();
        if let Some(p) = self
            .identity_providers
            .iter()
            .find(|p| p.issuer.trim_end_matches('/') == own.trim_end_matches('/'))
        {
            let from = if self.token_issuer.is_some() {
                "token_issuer"
            } else if self.public_url.is_some() {
                "public_url"
            } else {
                "listen (no public_url is set)"
            };
            return Err(format!(
                "identity_providers (issuer {:?}): this is the vault's own token issuer \
                 ({own}, from {from}); the vault's tokens and the provider's could not be \
                 told apart. Set public_url to the vault's own address",
                p.issuer
            ));
        }
        if let Some(url) = &self.tombstone_database_url
            && !(url.expose_secret().starts_with("postgres://")
                || url.expose_secret().starts_with("postgresql://"))
        {
            return Err("tombstone_database_url must be a postgres:// URL".into());
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err("log_format must be \"text\" or \"json\"".into());
        }
        Ok(())
    }

    /// The vault's base URL without a trailing slash: `public_url`, or
    /// `http://` and `listen`.
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }

    /// The OAuth issuer: the metadata's `issuer` and the `iss` of every
    /// token the vault signs (they must be equal, RFC 8414 §3.3 and §2).
    /// `token_issuer` as written when set (`public_url`, if set too, names
    /// the same URL), else [`Settings::public_url`].
    pub fn issuer(&self) -> String {
        match (&self.token_issuer, &self.public_url) {
            (Some(issuer), None) => issuer.clone(),
            _ => self.public_url(),
        }
    }

    /// The SMTP settings belong together; the URL's TLS rules are checked
    /// here, at start-up.
    fn validate_smtp(&self) -> Result<(), String> {
        let Some(url) = &self.outbox_smtp_url else {
            if self.outbox_smtp_from.is_some() || self.outbox_smtp_password_file.is_some() {
                return Err(
                    "outbox_smtp_from and outbox_smtp_password_file need outbox_smtp_url".into(),
                );
            }
            return Ok(());
        };
        let endpoint = SmtpEndpoint::parse(url.expose_secret())?;
        if self.outbox_smtp_password_file.is_some() {
            if endpoint.user.is_none() {
                return Err("outbox_smtp_password_file is set but outbox_smtp_url names no user (smtps://USER@host)".into());
            }
            if endpoint.password.is_some() {
                return Err("set the SMTP password in outbox_smtp_url or in outbox_smtp_password_file, not both".into());
            }
        }
        let from = self
            .outbox_smtp_from
            .as_deref()
            .ok_or("outbox_smtp_url is set but outbox_smtp_from (the sender address) is not")?;
        from.parse::<lettre::message::Mailbox>().map_err(|_| {
            "outbox_smtp_from must be an address such as privacy@example.com or \"Privacy <privacy@example.com>\"".to_owned()
        })?;
        Ok(())
    }

    /// The database URL, read from `database_url_file` when that is set.
    pub fn database_url(&self) -> Result<DatabaseUrl, String> {
        match &self.database_url_file {
            Some(f) => std::fs::read_to_string(f)
                .map(|s| DatabaseUrl::new(s.trim()))
                .map_err(|e| format!("cannot read database_url_file {}: {e}", f.display())),
            None => Ok(DatabaseUrl::new(self.database_url.expose_secret())),
        }
    }

    pub fn root_key_source(&self) -> Result<RootKeySource, String> {
        if let Some(k) = &self.master_key {
            return Ok(RootKeySource::Value(k.clone()));
        }
        if let Some(f) = &self.master_key_file {
            return Ok(RootKeySource::File(f.clone()));
        }
        let url = self.database_url()?;
        Ok(match url.sqlite_path() {
            Some(db) => RootKeySource::DevFile(db.with_file_name("root.key")),
            None => RootKeySource::Missing,
        })
    }
}

/// Reads a base64 key from a file, refusing files others can read.
pub fn read_key_file(path: &Path) -> Result<SecretString, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read root key file {}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "root key file {} is readable by others: chmod 600 it",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read root key file {}: {e}", path.display()))?;
    Ok(SecretString::from(text.trim().to_owned()))
}

/// Writes a new key file readable by its owner only; fails if it exists.
pub fn write_key_file(path: &Path, key_b64: &SecretString) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create root key file {}: {e}", path.display()))?;
    f.write_all(key_b64.expose_secret().as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write root key file {}: {e}", path.display()))
}

/// An origin as browsers send it: `scheme://host[:port]`, nothing more.
fn valid_origin(origin: &str) -> Result<(), String> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    let ok = rest.is_some_and(|r| {
        !r.is_empty()
            && !r.contains(['/', '?', '#', '*', ' '])
            && r.bytes().all(|b| b.is_ascii_graphic())
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "cors_allowed_origins: {origin:?} is not an origin like https://app.example.com"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_debug_hides_the_password() {
        let u = DatabaseUrl::new("postgres://vault:s3cr3t-pw@db.internal:5432/vault");
        let shown = format!("{u:?} {u}");
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
        assert!(shown.contains("vault:***@db.internal"));
        assert_eq!(
            format!("{:?}", DatabaseUrl::new("sqlite://./data/vault.db")),
            "sqlite://./data/vault.db"
        );
    }

    #[test]
    fn sqlite_path_is_found() {
        let u = DatabaseUrl::new("sqlite://./data/vault.db?mode=rwc");
        assert_eq!(u.sqlite_path(), Some(PathBuf::from("./data/vault.db")));
        assert_eq!(DatabaseUrl::new("sqlite::memory:").sqlite_path(), None);
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pii-vault.toml");
        std::fs::write(&f, "listen = \"127.0.0.1:9000\"\nlisten_adress = \"x\"\n").unwrap();
        let err = Settings::load(Some(&f)).unwrap_err();
        assert!(err.contains("listen_adress"), "{err}");
    }

    #[test]
    fn the_issuer_is_one_url_for_the_metadata_and_the_tokens() {
        let with = |public_url: Option<&str>, token_issuer: Option<&str>| Settings {
            public_url: public_url.map(str::to_owned),
            token_issuer: token_issuer.map(str::to_owned),
            ..Settings::default()
        };
        assert_eq!(with(None, None).issuer(), "http://127.0.0.1:8080");
        let s = with(Some("https://vault.example.com/"), None);
        assert_eq!(s.issuer(), "https://vault.example.com");
        let s = with(None, Some("https://id.example.com/vault"));
        assert!(s.validate().is_ok());
        assert_eq!(s.issuer(), "https://id.example.com/vault");
        let s = with(
            Some("https://vault.example.com"),
            Some("https://vault.example.com/"),
        );
        assert!(s.validate().is_ok());
        assert_eq!(s.issuer(), "https://vault.example.com");
        let err = with(
            Some("https://vault.example.com"),
            Some("https://other.example.com"),
        )
        .validate()
        .unwrap_err();
        assert!(
            err.contains("token_issuer") && err.contains("public_url"),
            "{err}"
        );
        let err = with(None, Some("pii-vault")).validate().unwrap_err();
        assert!(err.contains("token_issuer"), "{err}");
    }

    #[test]
    fn public_url_defaults_to_the_listen_address_and_is_checked() {
        let s = Settings::default();
        assert_eq!(s.public_url(), "http://127.0.0.1:8080");
        let s = Settings {
            public_url: Some("https://vault.example.com/".into()),
            ..Settings::default()
        };
        assert_eq!(s.public_url(), "https://vault.example.com");
        assert!(s.validate().is_ok());
        for bad in ["vault.example.com", "ftp://x", "https://", "https://x/?a=1"] {
            let s = Settings {
                public_url: Some(bad.into()),
                ..Settings::default()
            };
            assert!(s.validate().unwrap_err().contains("public_url"), "{bad}");
        }
    }

    #[test]
    fn every_setting_is_a_known_key_and_strays_are_named() {
        let keys = Settings::keys();
        assert!(keys.contains(&"listen"), "{keys:?}");
        assert!(keys.contains(&"tombstone_database_url"), "{keys:?}");
        let vars = [
            "PII_VAULT_LISTEN",
            "PII_VAULT_LISTEN_ADRESS",
            "PATH",
            "PII_VAULT_master_key_file",
        ];
        assert_eq!(
            Settings::unknown_env_vars(vars.map(String::from)),
            vec!["PII_VAULT_LISTEN_ADRESS".to_owned()]
        );
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let f = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pii-vault.example.toml");
        let s = Settings::load(Some(&f)).unwrap();
        assert_eq!(s.listen, "127.0.0.1:8080");
    }

    #[test]
    fn file_values_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "listen = \"127.0.0.1:9000\"\ntoken_lifetime_secs = 600\n",
        )
        .unwrap();
        let s = Settings::load(Some(&f)).unwrap();
        assert_eq!(s.listen, "127.0.0.1:9000");
        assert_eq!(s.token_lifetime_secs, 600);
    }

    #[test]
    fn audit_retention_below_a_year_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "audit_retention_days = 30\n").unwrap();
        let err = Settings::load(Some(&f)).unwrap_err();
        assert!(err.contains("audit_retention_days"), "{err}");
        std::fs::write(&f, "audit_retention_days = 400\n").unwrap();
        assert_eq!(Settings::load(Some(&f)).unwrap().audit_retention_days, 400);
        assert_eq!(Settings::default().audit_retention_days, 2557);
    }

    #[test]
    fn the_outbox_webhook_takes_https_or_http_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        for refused in [
            "ftp://hooks.example.com/x",
            "https://",
            "hooks.example.com/x",
        ] {
            std::fs::write(&f, format!("outbox_webhook_url = \"{refused}\"\n")).unwrap();
            let err = Settings::load(Some(&f)).unwrap_err();
            assert!(err.contains("outbox_webhook_url"), "{refused}: {err}");
        }
        std::fs::write(
            &f,
            "outbox_webhook_url = \"https://hooks.example.com/x\"\n\
             outbox_webhook_ca_file = \"/etc/vault/hooks-ca.pem\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&f)).unwrap();
        assert_eq!(
            s.outbox_webhook_ca_file,
            Some(PathBuf::from("/etc/vault/hooks-ca.pem"))
        );
        std::fs::write(
            &f,
            "outbox_webhook_url = \"http://127.0.0.1:9000/x\"\nverification_code_ttl_secs = 600\n",
        )
        .unwrap();
        let s = Settings::load(Some(&f)).unwrap();
        assert_eq!(s.verification_code_ttl_secs, 600);
        assert_eq!(Settings::default().verification_code_ttl_secs, 1800);
        // A CA file for a webhook that is not configured is a mistake.
        std::fs::write(&f, "outbox_webhook_ca_file = \"/etc/vault/hooks-ca.pem\"\n").unwrap();
        let err = Settings::load(Some(&f)).unwrap_err();
        assert!(err.contains("outbox_webhook_ca_file"), "{err}");
    }

    const KEY: &str = "Q2FuYXJ5LXJvb3Qta2V5LTMyLWJ5dGVzLWxvbmchISE=";
    const URL: &str = "postgres://vault:Pw-canary-7f3e@db.internal:5432/vault";

    #[test]
    fn settings_debug_shows_neither_the_root_key_nor_the_database_password() {
        let s = Settings {
            master_key: Some(KEY.into()),
            database_url: URL.into(),
            tombstone_database_url: Some("postgres://t:Tomb-canary-91@db.internal/t".into()),
            ..Settings::default()
        };
        for shown in [format!("{s:?}"), format!("{s:#?}")] {
            assert!(!shown.contains("Tomb-canary-91"), "{shown}");
            assert!(!shown.contains(KEY), "{shown}");
            assert!(!shown.contains("Pw-canary-7f3e"), "{shown}");
            assert!(
                shown.contains("vault:***@db.internal:5432/vault"),
                "{shown}"
            );
            assert!(shown.contains("SecretBox<str>([REDACTED])"), "{shown}");
        }
        // The values themselves are intact behind the types.
        assert_eq!(s.database_url().unwrap().expose(), URL);
        match s.root_key_source().unwrap() {
            RootKeySource::Value(k) => assert_eq!(k.expose_secret(), KEY),
            _ => panic!("the configured key is used"),
        }
    }

    #[test]
    fn secrets_read_from_a_file_are_secret_types_too() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            format!("master_key = \"{KEY}\"\ndatabase_url = \"{URL}\"\n"),
        )
        .unwrap();
        let s = Settings::load(Some(&f)).unwrap();
        assert_eq!(s.database_url.expose_secret(), URL);
        let shown = format!("{s:?}");
        assert!(
            !shown.contains(KEY) && !shown.contains("Pw-canary-7f3e"),
            "{shown}"
        );
    }

    #[test]
    fn trusted_proxies_must_be_networks() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "trusted_proxies = [\"10.0.0.0/8\", \"10.1.2.3/33\"]\n").unwrap();
        let err = Settings::load(Some(&f)).unwrap_err();
        assert!(
            err.contains("trusted_proxies") && err.contains("10.1.2.3/33"),
            "{err}"
        );
        std::fs::write(&f, "trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n").unwrap();
        assert_eq!(Settings::load(Some(&f)).unwrap().trusted_proxies.len(), 2);
        assert!(Settings::default().trusted_proxies.is_empty());
        assert_eq!(Settings::default().intake_per_source_per_hour, 20);
    }

    #[test]
    fn identity_providers_are_read_and_checked_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        let provider = |issuer: &str| {
            format!(
                "[[identity_providers]]\nissuer = \"{issuer}\"\naudience = \"pii-vault\"\n\
                 role_claim = \"groups\"\n[identity_providers.roles]\n\"vault-helpdesk\" = \"helpdesk\"\n"
            )
        };
        std::fs::write(&f, provider("https://login.example.com/")).unwrap();
        let s = Settings::load(Some(&f)).unwrap();
        assert_eq!(
            s.identity_providers,
            vec![IdentityProvider {
                issuer: "https://login.example.com/".into(),
                audience: "pii-vault".into(),
                jwks_uri: None,
                role_claim: "groups".into(),
                roles: [("vault-helpdesk".to_owned(), "helpdesk".to_owned())].into(),
            }]
        );
        std::fs::write(&f, provider("http://login.example.com/")).unwrap();
        let err = Settings::load(Some(&f)).unwrap_err();
        assert!(
            err.contains("identity_providers") && err.contains("https://"),
            "{err}"
        );
        std::fs::write(&f, provider("http://127.0.0.1:8443/")).unwrap();
        assert!(Settings::load(Some(&f)).is_ok(), "loopback may be http");
        let typo = provider("https://login.example.com/").replace("audience", "audiance");
        std::fs::write(&f, typo).unwrap();
        let err = Settings::load(Some(&f)).unwrap_err();
        assert!(err.contains("audiance"), "{err}");
        assert!(Settings::default().identity_providers.is_empty());
    }

    #[test]
    fn the_tombstone_database_must_be_postgres() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "tombstone_database_url = \"sqlite://x.db\"\n").unwrap();
        let err = Settings::load(Some(&f)).unwrap_err();
        assert!(err.contains("tombstone_database_url"), "{err}");
        std::fs::write(
            &f,
            "tombstone_database_url = \"postgres://u@h/tombstones\"\naudit_witness_file = \"/w\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&f)).unwrap();
        assert_eq!(s.audit_witness_file, Some(PathBuf::from("/w")));
    }

    fn smtp_settings(extra: &str) -> Result<Settings, String> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, extra).unwrap();
        Settings::load(Some(&f))
    }

    const FROM: &str = "outbox_smtp_from = \"Privacy <privacy@example.com>\"\n";

    #[test]
    fn smtp_without_tls_is_refused_unless_to_a_loopback_host() {
        for (url, wanted) in [
            ("smtp://mail.example.com:25?tls=none", "loopback"),
            ("smtp://10.0.0.5:25?tls=none", "loopback"),
            (
                "smtp://mail.example.com:587?tls=opportunistic",
                "STARTTLS must be required",
            ),
            (
                "smtp://mail.example.com:587?tls=maybe",
                "tls is required or none",
            ),
            (
                "smtps://mail.example.com?tls=none",
                "tls is required or none",
            ),
            ("http://mail.example.com", "smtps:// or smtp://"),
            ("smtp://mail.example.com:587?port=2", "one query parameter"),
            ("smtp://mail.example.com:587/x", "no path"),
            ("mail.example.com", "must be a URL"),
        ] {
            let err = smtp_settings(&format!("outbox_smtp_url = \"{url}\"\n{FROM}")).unwrap_err();
            assert!(
                err.contains("outbox_smtp_url") && err.contains(wanted),
                "{url}: {err}"
            );
        }
        for (url, security, port) in [
            ("smtp://127.0.0.1:2525?tls=none", SmtpSecurity::Plain, 2525),
            ("smtp://localhost?tls=none", SmtpSecurity::Plain, 587),
            ("smtp://[::1]:25?tls=none", SmtpSecurity::Plain, 25),
            ("smtp://u:p@mail.example.com", SmtpSecurity::StartTls, 587),
            (
                "smtp://mail.example.com:2587?tls=required",
                SmtpSecurity::StartTls,
                2587,
            ),
            ("smtps://u:p@mail.example.com", SmtpSecurity::Tls, 465),
        ] {
            let s = smtp_settings(&format!("outbox_smtp_url = \"{url}\"\n{FROM}")).unwrap();
            let e = SmtpEndpoint::parse(s.outbox_smtp_url.unwrap().expose_secret()).unwrap();
            assert_eq!((e.security, e.port), (security, port), "{url}");
        }
    }

    #[test]
    fn smtp_settings_belong_together_and_hide_the_password() {
        let url =
            "outbox_smtp_url = \"smtps://vault%40example.com:Smtp-canary%2F9@mail.example.com\"\n";
        let err = smtp_settings(url).unwrap_err();
        assert!(err.contains("outbox_smtp_from"), "{err}");
        assert!(!err.contains("Smtp-canary"), "{err}");
        let err =
            smtp_settings(&format!("{url}outbox_smtp_from = \"not an address\"\n")).unwrap_err();
        assert!(err.contains("outbox_smtp_from"), "{err}");
        let err = smtp_settings(FROM).unwrap_err();
        assert!(err.contains("need outbox_smtp_url"), "{err}");
        let err =
            smtp_settings(&format!("{url}{FROM}outbox_smtp_password_file = \"/p\"\n")).unwrap_err();
        assert!(err.contains("not both"), "{err}");
        let err = smtp_settings(&format!(
            "outbox_smtp_url = \"smtps://mail.example.com\"\n{FROM}outbox_smtp_password_file = \"/p\"\n"
        ))
        .unwrap_err();
        assert!(err.contains("names no user"), "{err}");
        let s = smtp_settings(&format!("{url}{FROM}")).unwrap();
        for shown in [format!("{s:?}"), format!("{s:#?}")] {
            assert!(!shown.contains("Smtp-canary"), "{shown}");
            assert!(shown.contains("mail.example.com"), "{shown}");
        }
        let e = SmtpEndpoint::parse(s.outbox_smtp_url.unwrap().expose_secret()).unwrap();
        assert_eq!(e.user.as_deref(), Some("vault@example.com"));
        assert_eq!(
            e.password.as_ref().unwrap().expose_secret(),
            "Smtp-canary/9"
        );
        assert!(!format!("{e:?}").contains("Smtp-canary"));
        let s = smtp_settings(&format!(
            "outbox_smtp_url = \"smtp://vault@mail.example.com\"\n{FROM}outbox_smtp_password_file = \"/run/smtp.pw\"\n"
        ))
        .unwrap();
        assert_eq!(
            s.outbox_smtp_password_file,
            Some(PathBuf::from("/run/smtp.pw"))
        );
    }

    #[test]
    fn key_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("root.key");
        write_key_file(&f, &SecretString::from("a2V5")).unwrap();
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_key_file(&f).unwrap().expose_secret(), "a2V5");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_key_file(&f).unwrap_err().contains("chmod 600"));
        assert!(write_key_file(&f, &SecretString::from("x")).is_err());
    }
}
