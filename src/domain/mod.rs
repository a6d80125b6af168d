//! Validated domain types. Each is parsed once at the edge; nothing below the routes handles a
//! raw string that "means" a receipt, a case reference or a desk.

pub mod case_ref;
pub mod desk;
pub mod idempotency;
pub mod password;
mod random_id;
pub mod receipt;
pub mod report;
pub mod username;
pub mod vocabulary;
pub mod wire;

pub use case_ref::{CaseRef, EntryId, InvalidCaseRef};
pub use desk::{DeskName, DeskSlug, InvalidDeskName, InvalidDeskSlug};
pub use idempotency::{IdempotencyKey, InvalidIdempotencyKey};
pub use password::{Password, PasswordRejected};
pub use receipt::{InvalidReceipt, ReceiptCode};
pub use report::{Report, ReportRejected, ReportWire};
pub use username::{InvalidUsername, Username};
pub use vocabulary::{
    AccountStatus, CaseStatus, DeskRole, EntryKind, IncidentType, MechanismKind,
    OccurredAtPrecision, PerpetratorKind, Role, SgReportConsent,
};
