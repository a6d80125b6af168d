//! First start: the instance salt, the default desk and the escrow recipient (issue 2, item 5).

use std::str::FromStr;

use age::secrecy::SecretString;
use anyhow::{Context, bail};
use rand::{RngCore, rngs::OsRng};

use crate::crypto::receipt::InstanceSalt;
use crate::domain::desk::DEFAULT_DESK_SLUG;
use crate::storage::{DeskRecord, InstanceRecord, Store};

/// The instance-wide keys, loaded at start-up.
#[derive(Clone)]
pub struct InstanceKeys {
    /// Salt of the receipt KDF.
    pub receipt_salt: InstanceSalt,
    /// The offline escrow key: it receives one grant per case.
    pub escrow_recipient: age::x25519::Recipient,
}

/// An escrow identity generated on first start. It exists only in memory: shown once to the
/// operator before its recipient is recorded (see [`open_instance`]), then dropped.
pub struct GeneratedEscrow {
    pub identity: SecretString,
    pub recipient: String,
}

/// Whether start-up may make a secret that only a person may see: the escrow identity generated
/// on first start when none is configured, and the first account's setup code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscrowGeneration {
    /// The caller will show them to a person (a local instance at a terminal, or a test).
    Allowed,
    /// Nobody would see them, or a log would (a service manager, a container, production):
    /// refuse to generate an escrow identity, and issue no setup code.
    Refused,
}

/// Shows a generated escrow identity to a person before it is recorded. An error stops the start
/// with nothing recorded.
pub type ShowEscrow<'a> = &'a mut (dyn FnMut(&GeneratedEscrow) -> anyhow::Result<()> + Send);

/// Why a first start without `escrow.recipient` is refused where nobody could see a generated
/// identity.
pub fn no_escrow_recipient() -> anyhow::Error {
    anyhow::anyhow!(
        "escrow.recipient (APP_ESCROW__RECIPIENT) is not set, and this is not a local instance at \
         an interactive terminal, where a generated escrow identity could be shown safely. \
         Generate one offline with `age-keygen -o escrow-identity.txt`, keep that file offline, \
         and set APP_ESCROW__RECIPIENT to the age1… public key it prints"
    )
}

/// What [`open_instance`] found or made.
pub struct OpenedInstance {
    pub keys: InstanceKeys,
    /// The escrow identity generated and recorded by this call, to be shown no more.
    pub generated: Option<GeneratedEscrow>,
    /// Whether this call recorded the instance: false when it was there already, or when another
    /// process recorded its own at the same moment.
    pub created: bool,
}

/// Loads the instance, creating it on first start. If no escrow recipient is configured on first
/// start, generates one, hands it to `show`, and only then records its recipient: a start that
/// dies between the two (a closed terminal, a kill) leaves an identity that was seen but not
/// used, never cases sealed to a key nobody saw. The identity is never stored; it is returned
/// when it was recorded. Refuses to start when the configured recipient differs from the
/// recorded one: cases would be sealed to a key the escrow holder does not have.
pub async fn open_instance(
    store: &dyn Store,
    configured_escrow: Option<age::x25519::Recipient>,
    generation: EscrowGeneration,
    show: ShowEscrow<'_>,
) -> anyhow::Result<OpenedInstance> {
    let existing = store
        .instance()
        .await
        .context("could not read the instance row")?;
    let (record, generated, created) = match existing {
        Some(record) => (record, None, false),
        None => {
            let (recipient, generated) = match &configured_escrow {
                Some(recipient) => (recipient.to_string(), None),
                None if generation == EscrowGeneration::Refused => {
                    return Err(no_escrow_recipient());
                }
                None => {
                    let identity = crate::crypto::generate_identity();
                    let recipient = identity.to_public().to_string();
                    let generated = GeneratedEscrow {
                        identity: identity.to_string(),
                        recipient: recipient.clone(),
                    };
                    (recipient, Some(generated))
                }
            };
            let mut salt = vec![0u8; 32];
            OsRng.fill_bytes(&mut salt);
            let proposal = InstanceRecord {
                receipt_salt: salt,
                escrow_recipient: recipient,
                created_on: super::today(),
            };
            let default_desk = DeskRecord {
                id: crate::domain::EntryId::generate().to_string(),
                slug: DEFAULT_DESK_SLUG.to_owned(),
                name: "Default desk".to_owned(),
            };
            if let Some(escrow) = &generated {
                show(escrow).context(
                    "could not show the generated escrow identity; nothing was recorded, and the \
                     next start generates another",
                )?;
            }
            let winner = match store.initialise_instance(&proposal, &default_desk).await {
                Ok(winner) => winner,
                Err(error) => {
                    let error =
                        anyhow::Error::from(error).context("could not initialise the instance");
                    if generated.is_none() {
                        return Err(error);
                    }
                    // A COMMIT may reach the database before its answer is lost: a row read back
                    // says the shown identity is in use. No row does not prove the opposite (a
                    // commit still under way, a WAL frame replayed at the next open), and
                    // keeping an unused identity costs nothing, so the operator is never told to
                    // discard it: the next start names the recipient in force.
                    match store.instance().await {
                        Ok(Some(recorded)) => {
                            tracing::warn!(
                                error = %format!("{error:#}"),
                                "initialising the instance reported an error, but the instance \
                                 is recorded: carrying on"
                            );
                            recorded
                        }
                        Ok(None) | Err(_) => {
                            return Err(error.context(format!(
                                "the escrow identity shown above may or may not be recorded: keep \
                                 it until a start, or `incident-vault init`, names the escrow \
                                 recipient this database records; discard it only if that is \
                                 not its public key ({})",
                                generated
                                    .as_ref()
                                    .map_or("", |escrow| escrow.recipient.as_str())
                            )));
                        }
                    }
                }
            };
            // Another node may have initialised the instance at the same moment: then our
            // freshly generated escrow identity is not the one cases are sealed to.
            let generated = match generated {
                Some(escrow) if escrow.recipient != winner.escrow_recipient => {
                    // Public keys only.
                    tracing::warn!(
                        discarded = %escrow.recipient,
                        recorded = %winner.escrow_recipient,
                        "another process initialised this database at the same moment: the \
                         escrow identity shown above was not recorded; discard it, and hold \
                         the identity of the recorded recipient offline"
                    );
                    None
                }
                generated => generated,
            };
            // The salt is random: only the row this call proposed carries it.
            let created = winner.receipt_salt == proposal.receipt_salt;
            (winner, generated, created)
        }
    };
    if let Some(configured) = &configured_escrow
        && configured.to_string() != record.escrow_recipient
    {
        bail!(
            "escrow.recipient (APP_ESCROW__RECIPIENT) is {configured}, but this instance seals \
             its cases to {}. The escrow key is fixed per instance in this release (the README's \
             key rotation note): set the recorded recipient, or check that this is the database \
             you meant",
            record.escrow_recipient
        );
    }

    if configured_escrow.is_none() && generated.is_none() {
        // A public key, not a secret: the operator needs it to configure the setting.
        tracing::warn!(
            recipient = %record.escrow_recipient,
            "escrow.recipient (APP_ESCROW__RECIPIENT) is not set: sealing to the escrow recipient \
             this instance recorded. Set it to that value; make sure its identity is held \
             offline, or no case can be recovered without a reviewer"
        );
    }

    let escrow_recipient = age::x25519::Recipient::from_str(&record.escrow_recipient)
        .map_err(|_| anyhow::anyhow!("the stored escrow recipient is corrupt"))?;
    let receipt_salt: [u8; 32] = record
        .receipt_salt
        .as_slice()
        .try_into()
        .context("the stored receipt salt is not 32 bytes")?;
    Ok(OpenedInstance {
        keys: InstanceKeys {
            receipt_salt: InstanceSalt(receipt_salt),
            escrow_recipient,
        },
        generated,
        created,
    })
}
