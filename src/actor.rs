//! Who is acting. Every service takes one [`Actor`], and the audit trail
//! takes its actor from it alone, so no edge decides for itself who acts.
//!
//! - Staff: a machine client or a person with a vault user, authenticated
//!   at the edge; their powers are their role's.
//! - A data subject: the holder of a request token; their powers come from
//!   that token alone (their own request: read, verify, export). A staff
//!   caller never holds a request token.
//! - The vault itself (background jobs) and an operator at the command line.

use uuid::Uuid;

use crate::audit::{Action, Decision, EventDraft};
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
    /// A customer acting on their own data subject request.
    DataSubject,
    /// The vault itself.
    System,
    /// An operator running a command.
    Operator,
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
        }
    }

    /// A customer without an account (filing, or holding a request token).
    pub fn data_subject(request_id: &str) -> Self {
        Actor {
            kind: ActorKind::DataSubject,
            id: DATA_SUBJECT.into(),
            role: DATA_SUBJECT.into(),
            request_id: request_id.into(),
        }
    }

    /// The vault's background work.
    pub fn system() -> Self {
        Actor {
            kind: ActorKind::System,
            id: SYSTEM.into(),
            role: SYSTEM.into(),
            request_id: Uuid::now_v7().to_string(),
        }
    }

    /// An operator at the command line.
    pub fn cli() -> Self {
        Actor {
            kind: ActorKind::Operator,
            id: CLI.into(),
            role: "admin".into(),
            request_id: Uuid::now_v7().to_string(),
        }
    }

    /// A staff client or user (as opposed to a data subject or the vault).
    pub fn is_staff(&self) -> bool {
        matches!(self.kind, ActorKind::Client | ActorKind::User)
    }

    /// The actor's role in the loaded policy; 403 `role_unknown` for a data
    /// subject, the system, or a role the policy no longer declares.
    pub fn role<'p>(&self, policy: &'p Policy) -> ServiceResult<&'p Role> {
        let role = match self.kind {
            ActorKind::DataSubject | ActorKind::System => None,
            _ => policy.role(&self.role),
        };
        role.ok_or_else(|| {
            ServiceError::forbidden("role_unknown").detail("the caller's role is not in the policy")
        })
    }

    /// 403 `capability_required` unless the actor's role has `cap`.
    pub fn require(&self, policy: &Policy, cap: Capability) -> ServiceResult<()> {
        if self.role(policy)?.capabilities.contains(&cap) {
            Ok(())
        } else {
            Err(ServiceError::forbidden("capability_required")
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
            Err(ServiceError::forbidden("capability_required")
                .detail(format!("this call needs one of: {}", names.join(", "))))
        }
    }

    /// Whether the actor's role has `cap` (false for non-staff).
    pub fn has(&self, policy: &Policy, cap: Capability) -> bool {
        self.role(policy).is_ok_and(|r| r.has(cap))
    }

    /// An audit event by this actor.
    pub fn event(&self, action: Action, decision: Decision) -> EventDraft {
        EventDraft::new(&self.id, &self.role, action, decision, &self.request_id)
    }
}
