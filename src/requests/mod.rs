//! Data subject requests (GDPR Art. 12–22, CCPA §1798.100 ff.): intake,
//! verification, approval, deadlines, and carrying out each kind —
//! access and portability exports, erasure, rectification, restriction,
//! objection, opt-out of sale/sharing and limiting sensitive data — plus
//! legal holds, the outbox and notices to recipients.

pub mod background;
pub mod erasure;
pub mod export;
pub mod flow;
pub mod holds;
pub mod lifecycle;
pub mod mail;
pub mod notify;
pub mod outbox;
pub mod rows;
pub mod smtp;

pub use rows::StoredRequests;
