//! The audit log (issue 3, item 8): append-only and hash-chained, so that removing, reordering or
//! editing any event breaks the chain at that event. Events carry no content and no address.
//!
//! hash(n) = SHA-256("incident-vault/audit/v1" ‖ previous_hash ‖ each field, length-prefixed),
//! where the previous_hash of the first event is 32 zero bytes.

use sha2::{Digest, Sha256};

use crate::storage::{AuditEventRecord, NewAuditEvent, Store, StoreError};

/// Events read per page while verifying.
const VERIFY_PAGE: i64 = 1000;

/// Appends one event to the chain; returns its sequence number.
pub async fn record(store: &dyn Store, event: NewAuditEvent) -> Result<i64, StoreError> {
    store.append_audit_event(&event, &chain_hash).await
}

/// The hash of the event at `sequence` that follows an event whose hash is `previous_hash`.
pub fn chain_hash(sequence: i64, previous_hash: &[u8], event: &NewAuditEvent) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(b"incident-vault/audit/v1");
    hasher.update(previous_hash);
    let sequence = sequence.to_string();
    let occurred_at = event.occurred_at.to_string();
    let target = event
        .target
        .as_deref()
        .map_or(b"\x00none".as_slice(), str::as_bytes);
    let fields: [&[u8]; 6] = [
        sequence.as_bytes(),
        occurred_at.as_bytes(),
        event.actor.as_bytes(),
        event.action.as_bytes(),
        target,
        event.outcome.as_bytes(),
    ];
    for field in fields {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field);
    }
    hasher.finalize().to_vec()
}

/// The first link of the chain that does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the audit chain is broken{}: {reason}", at_event(*.sequence))]
pub struct BrokenLink {
    /// The sequence number of the first event that fails; 0 where no event is to blame (the
    /// head row itself is gone).
    pub sequence: i64,
    /// What fails there.
    pub reason: &'static str,
}

fn at_event(sequence: i64) -> String {
    if sequence > 0 {
        format!(" at event #{sequence}")
    } else {
        String::new()
    }
}

/// Why verification could not finish.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Broken(#[from] BrokenLink),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An event's place and hash, noted outside the database (`incident-vault audit verify` prints
/// the head as one). The chain and its head live in the same database, so whoever can write to it
/// can trim or rewrite both consistently; an anchor kept elsewhere catches that: the event must
/// still be there, with the same hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// The event's sequence number.
    pub sequence: i64,
    /// Its chain hash.
    pub hash: Vec<u8>,
}

/// The text is not `SEQUENCE:HASH` with a positive sequence and a 64-digit hex hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an audit anchor is written SEQUENCE:HASH, e.g. 42:<64 hex digits>")]
pub struct InvalidAnchor;

impl std::str::FromStr for Anchor {
    type Err = InvalidAnchor;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (sequence, hash) = text.trim().split_once(':').ok_or(InvalidAnchor)?;
        let sequence: i64 = sequence.parse().map_err(|_| InvalidAnchor)?;
        // Hex digits only: `from_str_radix` would also take a sign.
        if sequence < 1 || hash.len() != 64 || !hash.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(InvalidAnchor);
        }
        let hash = (0..hash.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&hash[at..at + 2], 16).map_err(|_| InvalidAnchor))
            .collect::<Result<Vec<u8>, _>>()?;
        Ok(Self { sequence, hash })
    }
}

impl std::fmt::Display for Anchor {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}:", self.sequence)?;
        self.hash
            .iter()
            .try_for_each(|byte| write!(formatter, "{byte:02x}"))
    }
}

/// What a verification found: how many events hold, and the head they end at (an anchor to keep
/// outside the database; `None` for an empty chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub events: u64,
    pub head: Option<Anchor>,
}

/// Recomputes the whole chain and checks that it ends at the head; returns how many events
/// hold, or the first broken link. Events appended while it runs are checked too, and the head
/// read again at the end must have reached the last of them.
pub async fn verify(store: &dyn Store) -> Result<u64, VerifyError> {
    Ok(verify_against(store, &[]).await?.events)
}

/// [`verify`], and also that each anchor's event is still in the chain with the anchored hash:
/// this catches a chain trimmed or rewritten together with its head.
pub async fn verify_against(
    store: &dyn Store,
    anchors: &[Anchor],
) -> Result<Verified, VerifyError> {
    let (head_sequence, head_hash) = match store.audit_head().await {
        // The row that every append moves on: a database deleted it, as no code of ours does.
        Err(StoreError::Database(sqlx::Error::RowNotFound)) => {
            return Err(BrokenLink {
                sequence: 0,
                reason: "the head of the chain is missing: its row was deleted",
            }
            .into());
        }
        head => head?,
    };
    let mut previous_hash = vec![0u8; 32];
    let mut expected_sequence = 1;
    let mut verified = 0;
    let check_anchors = |event: &AuditEventRecord| {
        if anchors
            .iter()
            .any(|anchor| anchor.sequence == event.sequence && anchor.hash != event.hash)
        {
            return Err(BrokenLink {
                sequence: event.sequence,
                reason: "it differs from its anchor: the chain was rewritten up to here, or this \
                         is not the database the anchor was taken from",
            });
        }
        Ok(())
    };
    while expected_sequence <= head_sequence {
        let page = store
            .audit_events(expected_sequence - 1, VERIFY_PAGE)
            .await?;
        let page: Vec<_> = page
            .into_iter()
            .filter(|event| event.sequence <= head_sequence)
            .collect();
        if page.is_empty() {
            break;
        }
        for event in &page {
            check_link(event, expected_sequence, &previous_hash)?;
            check_anchors(event)?;
            previous_hash.clone_from(&event.hash);
            expected_sequence += 1;
            verified += 1;
        }
    }
    if expected_sequence - 1 != head_sequence {
        return Err(BrokenLink {
            sequence: expected_sequence,
            reason: "events up to the head of the chain were removed",
        }
        .into());
    }
    if previous_hash != head_hash {
        return Err(BrokenLink {
            sequence: head_sequence,
            reason: "the head of the chain records another hash for it",
        }
        .into());
    }
    // Events past the head read above: appended since (the service runs), or left behind by a
    // head that was moved back. They must go on linking, and the head read again must have
    // reached them; the last one checked is the head printed.
    loop {
        let page = store
            .audit_events(expected_sequence - 1, VERIFY_PAGE)
            .await?;
        if page.is_empty() {
            break;
        }
        for event in &page {
            check_link(event, expected_sequence, &previous_hash)?;
            check_anchors(event)?;
            previous_hash.clone_from(&event.hash);
            expected_sequence += 1;
            verified += 1;
        }
    }
    // Anchored events are checked where the walk met them; one past the end of the chain is
    // judged once the whole chain was walked, so that a head moved back is named as such below.
    let last = expected_sequence - 1;
    let (head_now, head_hash_now) = store.audit_head().await?;
    if last > head_now {
        return Err(BrokenLink {
            sequence: head_now + 1,
            reason: "it lies past the head of the chain: the head was moved back",
        }
        .into());
    }
    if last == head_now && previous_hash != head_hash_now {
        return Err(BrokenLink {
            sequence: head_now,
            reason: "the head of the chain records another hash for it",
        }
        .into());
    }
    if anchors.iter().any(|anchor| anchor.sequence > last) {
        return Err(BrokenLink {
            sequence: last + 1,
            reason: "the chain ends before an anchored event: it was trimmed, or this is not the \
                     database the anchor was taken from",
        }
        .into());
    }
    Ok(Verified {
        events: verified,
        head: (last > 0).then_some(Anchor {
            sequence: last,
            hash: previous_hash,
        }),
    })
}

fn check_link(
    event: &AuditEventRecord,
    expected_sequence: i64,
    previous_hash: &[u8],
) -> Result<(), BrokenLink> {
    let broken = |reason| BrokenLink {
        sequence: event.sequence.min(expected_sequence),
        reason,
    };
    if event.sequence > expected_sequence {
        return Err(broken("it is missing: the chain skips it"));
    }
    if event.sequence < expected_sequence {
        return Err(broken("it comes again out of order: renumbered or copied"));
    }
    if event.previous_hash != previous_hash {
        return Err(broken(
            "it does not point to the hash of the event before it",
        ));
    }
    let content = NewAuditEvent {
        occurred_at: event.occurred_at,
        actor: event.actor.clone(),
        action: event.action.clone(),
        target: event.target.clone(),
        outcome: event.outcome.clone(),
    };
    if chain_hash(event.sequence, previous_hash, &content) != event.hash {
        return Err(broken("its content does not match its hash"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn an_anchor_parses_back_from_its_text(sequence in 1_i64..i64::MAX, hash in proptest::collection::vec(any::<u8>(), 32)) {
            let anchor = Anchor { sequence, hash };
            prop_assert_eq!(anchor.to_string().parse::<Anchor>(), Ok(anchor));
        }

        #[test]
        fn parsing_arbitrary_text_as_an_anchor_never_panics(text in "\\PC{0,80}") {
            let _ = text.parse::<Anchor>();
        }
    }

    #[test]
    fn malformed_anchors_are_refused() {
        let hash = "ab".repeat(32);
        assert!(format!("7:{hash}").parse::<Anchor>().is_ok());
        for text in [
            format!("0:{hash}"),
            format!("-1:{hash}"),
            format!("x:{hash}"),
            format!("7:{}", &hash[..62]),
            format!("7:{hash}00"),
            format!("7:{}zz", &hash[..62]),
            format!("7:{}\u{e9}", &hash[..62]),
            format!("7:+{}", &hash[..63]),
            hash.clone(),
        ] {
            assert_eq!(text.parse::<Anchor>(), Err(InvalidAnchor), "{text}");
        }
    }

    fn event(action: &str) -> NewAuditEvent {
        NewAuditEvent {
            occurred_at: 1_700_000_000,
            actor: "cli".into(),
            action: action.into(),
            target: Some("K7QM-3XTA-9PWD".into()),
            outcome: "success".into(),
        }
    }

    fn chain(actions: &[&str]) -> Vec<AuditEventRecord> {
        let mut previous = vec![0u8; 32];
        let mut records = Vec::new();
        for (index, action) in actions.iter().enumerate() {
            let content = event(action);
            let sequence = index as i64 + 1;
            let hash = chain_hash(sequence, &previous, &content);
            records.push(AuditEventRecord {
                sequence,
                occurred_at: content.occurred_at,
                actor: content.actor,
                action: content.action,
                target: content.target,
                outcome: content.outcome,
                previous_hash: previous.clone(),
                hash: hash.clone(),
            });
            previous = hash;
        }
        records
    }

    fn first_break(records: &[AuditEventRecord]) -> Option<BrokenLink> {
        let mut previous = vec![0u8; 32];
        for (index, record) in records.iter().enumerate() {
            if let Err(broken) = check_link(record, index as i64 + 1, &previous) {
                return Some(broken);
            }
            previous.clone_from(&record.hash);
        }
        None
    }

    #[test]
    fn an_untouched_chain_holds() {
        assert_eq!(first_break(&chain(&["a", "b", "c"])), None);
    }

    #[test]
    fn an_edited_event_is_named() {
        let mut records = chain(&["a", "b", "c"]);
        records[1].outcome = "failure".into();
        assert_eq!(first_break(&records).unwrap().sequence, 2);
    }

    #[test]
    fn a_removed_event_is_named() {
        let mut records = chain(&["a", "b", "c"]);
        records.remove(1);
        assert_eq!(first_break(&records).unwrap().sequence, 2);
    }

    #[test]
    fn a_recomputed_hash_breaks_the_next_link() {
        let mut records = chain(&["a", "b", "c"]);
        records[1].outcome = "failure".into();
        let content = event("b");
        let content = NewAuditEvent {
            outcome: "failure".into(),
            ..content
        };
        records[1].hash = chain_hash(2, &records[0].hash, &content);
        assert_eq!(first_break(&records).unwrap().sequence, 3);
    }

    #[test]
    fn a_missing_target_differs_from_an_empty_one() {
        let without = NewAuditEvent {
            target: None,
            ..event("a")
        };
        let empty = NewAuditEvent {
            target: Some(String::new()),
            ..event("a")
        };
        assert_ne!(
            chain_hash(1, &[0; 32], &without),
            chain_hash(1, &[0; 32], &empty)
        );
    }
}
