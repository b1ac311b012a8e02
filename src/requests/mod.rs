//! Data subject requests (GDPR Art. 12–22, CCPA §1798.100 ff.): intake,
//! verification, approval, deadlines, and carrying out each kind —
//! access and portability exports, erasure, rectification, restriction,
//! objection, opt-out of sale/sharing and limiting sensitive data — plus
//! legal holds, the outbox and notices to recipients; the privacy team's
//! use cases ([`staff`]) and the views of a request ([`view`]).

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
pub mod staff;
pub mod view;

pub use rows::StoredRequests;
