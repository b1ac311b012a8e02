//! Who is acting. Every service takes one [`Actor`], and the audit trail
//! takes its actor from it alone, so no edge decides for itself who acts.
//!
//! - Staff: a machine client or a person with a vault user, authenticated
//!   at the edge, or a person signed in by a configured identity provider
//!   (`auth::oidc`); their powers are their role's.
//! - A data subject: the holder of a request token; their powers come from
//!   that token alone (their own request: read, verify, export). A staff
//!   caller never holds a request token.
//! - The vault itself (background jobs) and an operator at the command line.
//!
//! An actor that called over the network carries its [`ClientAddr`]; every
//! event it records names it: a staff caller's address as it is
//! (`client_addr`), a data subject's only as a keyed hash
//! (`client_addr_hmac`), so requests from one address can be linked without
//! the trail holding the customer's address.

use std::net::IpAddr;

use uuid::Uuid;

use crate::audit::{Action, Decision, EventDraft};
use crate::crypto::IndexKeys;
use crate::error::{ServiceError, ServiceResult};
use crate::policy::{Capability, Policy, Role};
use crate::store::PrincipalKind;

/// Actor id and role of a requester without an account (a request token,
/// or no authentication at all).
pub const DATA_SUBJECT: &str = "data_subject";
/// Actor id and role of the vault's own background work.
pub const SYSTEM: &str = "system";
/// Actor id of an operator at the command line (role `admin`).
pub const CLI: &str = "cli";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    /// A machine client (client credentials).
    Client,
    /// A person with a vault user (password).
    User,
    /// A person signed in by an external identity provider (its token);
    /// the id is `oidc:<issuer>#<sub>`, the role the provider's mapping's.
    External,
    /// A customer acting on their own data subject request.
    DataSubject,
    /// The vault itself.
    System,
    /// An operator running a command.
    Operator,
}

/// The blind-index derivation label of client address hashes (not a
/// policy field name, which is `[a-z][a-z0-9_]*`).
const CLIENT_ADDR_LABEL: &str = "pii-vault/client-addr/v1";

/// The address a call came from, with its keyed hash.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientAddr {
    ip: IpAddr,
    /// Hex HMAC-SHA256 of the address under a key derived from the vault's
    /// blind-index secret: stable across processes and restarts, useless
    /// without the vault's keys.
    hmac: String,
}

impl ClientAddr {
    pub fn new(ip: IpAddr, keys: &IndexKeys) -> Self {
        let ip = ip.to_canonical();
        let hmac = hex::encode(keys.blind_index(CLIENT_ADDR_LABEL, &ip.to_string()));
        ClientAddr { ip, hmac }
    }

    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The keyed hash (hex).
    pub fn hmac(&self) -> &str {
        &self.hmac
    }

    /// `event` with this address: as it is for staff, hashed for anyone
    /// else.
    pub fn mark(&self, event: EventDraft, staff: bool) -> EventDraft {
        if staff {
            event.reason("client_addr", &self.ip.to_string())
        } else {
            event.reason("client_addr_hmac", &self.hmac)
        }
    }
}

impl std::fmt::Debug for ClientAddr {
    /// The hash only: an address may be a customer's.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientAddr({}…)", &self.hmac[..self.hmac.len().min(12)])
    }
}

#[derive(Debug, Clone)]
pub struct Actor {
    pub kind: ActorKind,
    /// The principal's id, or one of [`DATA_SUBJECT`], [`SYSTEM`], [`CLI`].
    pub id: String,
    /// The role in the policy (`data_subject` and `system` are not roles).
    pub role: String,
    /// The request id the edge assigned (or a fresh one for background work).
    pub request_id: String,
    /// Where the call came from (none for the vault's own work and the
    /// command line).
    pub client_addr: Option<ClientAddr>,
}

impl Actor {
    /// An authenticated staff principal.
    pub fn staff(kind: PrincipalKind, id: String, role: String, request_id: String) -> Self {
        let kind = match kind {
            PrincipalKind::Client => ActorKind::Client,
            PrincipalKind::User => ActorKind::User,
        };
        Actor {
            kind,
            id,
            role,
            request_id,
            client_addr: None,
        }
    }

    /// A member of staff signed in by an external identity provider.
    pub fn external(id: String, role: String, request_id: String) -> Self {
        Actor {
            kind: ActorKind::External,
            id,
            role,
            request_id,
            client_addr: None,
        }
    }

    /// A customer without an account (filing, or holding a request token).
    pub fn data_subject(request_id: &str) -> Self {
        Actor {
            kind: ActorKind::DataSubject,
            id: DATA_SUBJECT.into(),
            role: DATA_SUBJECT.into(),
            request_id: request_id.into(),
            client_addr: None,
        }
    }

    /// The vault's background work.
    pub fn system() -> Self {
        Actor {
            kind: ActorKind::System,
            id: SYSTEM.into(),
            role: SYSTEM.into(),
            request_id: Uuid::now_v7().to_string(),
            client_addr: None,
        }
    }

    /// An operator at the command line.
    pub fn cli() -> Self {
        Actor {
            kind: ActorKind::Operator,
            id: CLI.into(),
            role: "admin".into(),
            request_id: Uuid::now_v7().to_string(),
            client_addr: None,
        }
    }

    /// The same actor, calling from `addr`.
    pub fn from_addr(mut self, addr: Option<ClientAddr>) -> Self {
        self.client_addr = addr;
        self
    }

    /// A staff client or user, or staff signed in by an identity provider
    /// (as opposed to a data subject or the vault).
    pub fn is_staff(&self) -> bool {
        matches!(
            self.kind,
            ActorKind::Client | ActorKind::User | ActorKind::External
        )
    }

    /// The actor's role in the loaded policy; 403 `role_unknown` for a data
    /// subject, the system, or a role the policy no longer declares.
    pub fn role<'p>(&self, policy: &'p Policy) -> ServiceResult<&'p Role> {
        let role = match self.kind {
            ActorKind::DataSubject | ActorKind::System => None,
            _ => policy.role(&self.role),
        };
        role.ok_or_else(|| {
            ServiceError::insufficient_scope("role_unknown")
                .detail("the caller's role is not in the policy")
        })
    }

    /// 403 `capability_required` unless the actor's role has `cap`.
    pub fn require(&self, policy: &Policy, cap: Capability) -> ServiceResult<()> {
        if self.role(policy)?.capabilities.contains(&cap) {
            Ok(())
        } else {
            Err(ServiceError::insufficient_scope("capability_required")
                .detail(format!("this call needs the {} capability", cap.as_str())))
        }
    }

    /// 403 `capability_required` unless the role has one of `caps`.
    pub fn require_any(&self, policy: &Policy, caps: &[Capability]) -> ServiceResult<()> {
        let role = self.role(policy)?;
        if caps.iter().any(|c| role.has(*c)) {
            Ok(())
        } else {
            let names: Vec<&str> = caps.iter().map(|c| c.as_str()).collect();
            Err(ServiceError::insufficient_scope("capability_required")
                .detail(format!("this call needs one of: {}", names.join(", "))))
        }
    }

    /// Whether the actor's role has `cap` (false for non-staff).
    pub fn has(&self, policy: &Policy, cap: Capability) -> bool {
        self.role(policy).is_ok_and(|r| r.has(cap))
    }

    /// An audit event by this actor, naming where the call came from.
    pub fn event(&self, action: Action, decision: Decision) -> EventDraft {
        let ev = EventDraft::new(&self.id, &self.role, action, decision, &self.request_id);
        match &self.client_addr {
            Some(addr) => addr.mark(ev, self.is_staff()),
            None => ev,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{RootKey, new_index_secret};

    fn keys() -> IndexKeys {
        new_index_secret(&RootKey::generate().unwrap().0).unwrap().0
    }

    #[test]
    fn staff_events_name_the_address_and_others_only_its_keyed_hash() {
        let keys = keys();
        let addr = ClientAddr::new("203.0.113.7".parse().unwrap(), &keys);
        let staff = Actor::staff(PrincipalKind::User, "u1".into(), "dpo".into(), "r1".into())
            .from_addr(Some(addr.clone()));
        let ev = staff.event(Action::CustomerRead, Decision::Allowed);
        assert_eq!(ev.reasons["client_addr"], "203.0.113.7");
        assert!(!ev.reasons.contains_key("client_addr_hmac"));

        let subject = Actor::data_subject("r2").from_addr(Some(addr.clone()));
        let ev = subject.event(Action::RequestReceived, Decision::Allowed);
        assert_eq!(ev.reasons["client_addr_hmac"], addr.hmac());
        assert_eq!(addr.hmac().len(), 64);
        assert!(!serde_json::to_string(&ev).unwrap().contains("203.0.113.7"));
        assert!(
            !format!("{subject:?}").contains("203.0.113.7"),
            "Debug hides it"
        );

        let system = Actor::system().event(Action::RequestReceived, Decision::Allowed);
        assert!(system.reasons.is_empty(), "no address, nothing added");
    }

    #[test]
    fn the_keyed_hash_is_stable_per_key_and_address() {
        let (k1, k2) = (keys(), keys());
        let ip: IpAddr = "2001:db8::7".parse().unwrap();
        assert_eq!(ClientAddr::new(ip, &k1), ClientAddr::new(ip, &k1));
        assert_ne!(
            ClientAddr::new(ip, &k1).hmac(),
            ClientAddr::new(ip, &k2).hmac()
        );
        let other: IpAddr = "2001:db8::8".parse().unwrap();
        assert_ne!(
            ClientAddr::new(ip, &k1).hmac(),
            ClientAddr::new(other, &k1).hmac()
        );
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        let v4: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(ClientAddr::new(mapped, &k1), ClientAddr::new(v4, &k1));
    }
}
