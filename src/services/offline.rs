//! The disaster-recovery path (issue 2, item 8): read a case straight from the database with an
//! age identity (the escrow key, or later a reviewer's exported identity), or dump its raw age
//! files so that the reference `age` tool can open them without this software.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::crypto::CryptoError;
use crate::crypto::case_key::{CaseIdentity, open_grant};
use crate::crypto::envelope::{EnvelopeBinding, open_envelope};
use crate::domain::{CaseRef, EntryId, EntryKind};
use crate::storage::{CaseRecord, EntryRecord, GrantRecord, Store, StoreError};

/// Why a case could not be read offline.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("no case {0} in this database")]
    UnknownCase(CaseRef),
    #[error("none of the given identities holds a grant for case {0}")]
    NoGrant(CaseRef),
    #[error("refusing case {case}: {what} was tampered with or moved from another row ({cause})")]
    Tampered {
        case: CaseRef,
        what: String,
        cause: CryptoError,
    },
    #[error("case {case}: no grant opens key epoch {epoch}, needed by entry {entry}")]
    MissingEpoch {
        case: CaseRef,
        epoch: i64,
        entry: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A decrypted case, as `incident-vault case decrypt` prints it. Its `Debug` shows the
/// reference and key epoch only: it holds what reporters wrote, and a `?case` in a log line or
/// a panic message must not print that.
#[derive(Serialize)]
pub struct DecryptedCase {
    pub case_ref: String,
    pub status: String,
    pub priority: String,
    pub incident_type: String,
    pub received_on: String,
    pub key_epoch: i64,
    /// The report in its wire shape.
    pub report: serde_json::Value,
    pub thread: Vec<DecryptedEntry>,
}

/// One decrypted thread entry. Never `Debug` (its body is content).
#[derive(Serialize)]
pub struct DecryptedEntry {
    pub id: String,
    pub kind: String,
    pub author: String,
    pub created_on: String,
    pub body: serde_json::Value,
}

impl std::fmt::Debug for DecryptedCase {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DecryptedCase")
            .field("case_ref", &self.case_ref)
            .field("key_epoch", &self.key_epoch)
            .field("entries", &self.thread.len())
            .finish_non_exhaustive()
    }
}

/// A stored column as an error message names it: as it is when it holds only what this service
/// writes there (ASCII letters, digits, `_` and `-`, at most 64 bytes); otherwise quoted, with
/// everything but printable ASCII escaped and cut after 64 characters, so that a row written by
/// something else cannot send escape sequences or pages of text to an operator's terminal
/// (`case decrypt` prints these messages).
fn shown(stored: &str) -> String {
    const LONGEST: usize = 64;
    if is_plain(stored, b"_-") {
        return stored.to_owned();
    }
    let mut escaped: String = stored
        .chars()
        .take(LONGEST)
        .flat_map(char::escape_default)
        .collect();
    if stored.chars().nth(LONGEST).is_some() {
        escaped.push_str("...");
    }
    format!("\"{escaped}\"")
}

/// Whether a stored column holds only what this service writes there: 1 to 64 ASCII letters,
/// digits and `also`.
fn is_plain(stored: &str, also: &[u8]) -> bool {
    !stored.is_empty()
        && stored.len() <= 64
        && stored
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || also.contains(&byte))
}

/// Decrypts a whole case with whichever of `identities` holds a grant for it, checking the
/// binding of every grant and envelope on the way.
pub async fn decrypt_case(
    store: &dyn Store,
    identities: &[&dyn age::Identity],
    case_ref: &CaseRef,
) -> Result<DecryptedCase, OfflineError> {
    let case = store
        .case_record(case_ref.as_str())
        .await?
        .ok_or_else(|| OfflineError::UnknownCase(case_ref.clone()))?;
    let grants = store.grants_of_case(case_ref.as_str()).await?;
    let entries = store.entries_of_case(case_ref.as_str()).await?;
    open_case(case_ref, case, grants, entries, identities)
}

/// Decrypts a case from its rows: `grants` (all of them, or only those of one grantee) are
/// tried with `identities`, and every grant and envelope binding is checked. Pure crypto, no
/// I/O: one X25519 operation per grant tried and per entry, so a caller serving requests runs it
/// off its event loop.
pub fn open_case(
    case_ref: &CaseRef,
    case: CaseRecord,
    grants: Vec<GrantRecord>,
    entries: Vec<EntryRecord>,
    identities: &[&dyn age::Identity],
) -> Result<DecryptedCase, OfflineError> {
    if case.id != case_ref.as_str() {
        return Err(OfflineError::UnknownCase(case_ref.clone()));
    }
    let tampered = |what: String, cause| OfflineError::Tampered {
        case: case_ref.clone(),
        what,
        cause,
    };

    let mut keys: BTreeMap<i64, CaseIdentity> = BTreeMap::new();
    for grant in grants {
        if keys.contains_key(&grant.epoch) {
            continue;
        }
        // An epoch no grant can name (negative, or past u32) is a row someone wrote by hand.
        let opened = u32::try_from(grant.epoch)
            .map_err(|_| CryptoError::Malformed)
            .and_then(|epoch| open_grant(&grant.ciphertext, identities, case_ref, epoch));
        match opened {
            Ok(identity) => {
                // The current epoch's key must be the one the case row seals new content to.
                if grant.epoch == case.key_epoch
                    && identity.recipient().to_string() != case.case_recipient
                {
                    let what = format!(
                        "the {} grant of epoch {}",
                        shown(&grant.grantee_kind),
                        grant.epoch
                    );
                    return Err(tampered(what, CryptoError::BindingMismatch));
                }
                keys.insert(grant.epoch, identity);
            }
            Err(CryptoError::NotForUs) => {}
            Err(cause) => {
                let what = format!(
                    "the {} grant of epoch {}",
                    shown(&grant.grantee_kind),
                    grant.epoch
                );
                return Err(tampered(what, cause));
            }
        }
    }
    if keys.is_empty() {
        return Err(OfflineError::NoGrant(case_ref.clone()));
    }

    let mut report = serde_json::Value::Null;
    let mut thread = Vec::new();
    for entry in entries {
        let what = || format!("entry {}", shown(&entry.id));
        let identity = keys
            .get(&entry.epoch)
            .ok_or_else(|| OfflineError::MissingEpoch {
                case: case_ref.clone(),
                epoch: entry.epoch,
                entry: shown(&entry.id),
            })?;
        let entry_id =
            EntryId::parse(&entry.id).ok_or_else(|| tampered(what(), CryptoError::Malformed))?;
        let kind = EntryKind::parse(&entry.kind)
            .ok_or_else(|| tampered(what(), CryptoError::Malformed))?;
        let binding = EnvelopeBinding {
            case: case_ref,
            entry: &entry_id,
            kind,
        };
        let body = open_envelope(binding, &entry.ciphertext, &[identity.as_age_identity()])
            .map_err(|cause| tampered(what(), cause))?;
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&body).into_owned())
        });
        if kind == EntryKind::Report && report.is_null() {
            report = body.clone();
        }
        thread.push(DecryptedEntry {
            id: entry.id,
            kind: entry.kind,
            author: entry.author,
            created_on: entry.created_on,
            body,
        });
    }
    Ok(DecryptedCase {
        case_ref: case.id,
        status: case.status,
        priority: case.priority,
        incident_type: case.incident_type,
        received_on: case.received_on,
        key_epoch: case.key_epoch,
        report,
        thread,
    })
}

/// Writes every grant and envelope of a case as raw `.age` files into `out`, with a text that
/// explains how to open them with the reference `age` tool. Needs no key: it copies ciphertext.
///
/// All or nothing: the rows are read before the first file is made, and a write that fails (a
/// full disk, a name already taken) removes every file and folder this run made, so that the
/// operator fixes the cause and runs the same command again. What was there before is never
/// touched: a file is removed only if the path still names the very file this run made.
pub async fn dump_case(
    store: &dyn Store,
    case_ref: &CaseRef,
    out: &Path,
) -> Result<Vec<PathBuf>, OfflineError> {
    store
        .case_record(case_ref.as_str())
        .await?
        .ok_or_else(|| OfflineError::UnknownCase(case_ref.clone()))?;
    let grants = store.grants_of_case(case_ref.as_str()).await?;
    let entries = store.entries_of_case(case_ref.as_str()).await?;
    let made_folders = make_folders(out)?;
    let mut written = Vec::new();
    match write_dump(case_ref, &grants, &entries, out, &mut written) {
        Ok(()) => Ok(written.into_iter().map(|file| file.path).collect()),
        Err(error) => {
            let aftermath = undo_dump(&written, &made_folders);
            Err(std::io::Error::new(error.kind(), format!("{error}; {aftermath}")).into())
        }
    }
}

/// Makes `out` and any missing folder above it, one at a time, each 0700 (a folder that exists
/// is left as it is: `--out /tmp` must not take away the sticky bit and others' access), and
/// returns the folders this call made, outermost first. One that appears meanwhile (another
/// process) counts as there before.
fn make_folders(out: &Path) -> std::io::Result<Vec<PathBuf>> {
    let named = |folder: &Path, error: std::io::Error| {
        std::io::Error::new(
            error.kind(),
            format!("could not create {}: {error}", folder.display()),
        )
    };
    let mut missing = Vec::new();
    for folder in out
        .ancestors()
        .filter(|folder| !folder.as_os_str().is_empty())
    {
        match std::fs::symlink_metadata(folder) {
            Ok(_) => break,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                missing.push(folder.to_path_buf());
            }
            Err(error) => return Err(named(folder, error)),
        }
    }
    let mut made = Vec::new();
    for folder in missing.into_iter().rev() {
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        match builder.create(&folder) {
            Ok(()) => made.push(folder),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(error) => {
                // Leave nothing half-made behind this refusal either.
                for folder in made.iter().rev() {
                    let _ = std::fs::remove_dir(folder);
                }
                return Err(named(&folder, error));
            }
        }
    }
    if !std::fs::metadata(out).is_ok_and(|metadata| metadata.is_dir()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            format!("{} is not a folder", out.display()),
        ));
    }
    Ok(made)
}

/// A file [`write_dump`] made, with what identifies it on its file system.
struct MadeFile {
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

/// The device and inode of a file, where the platform has them.
fn file_identity(metadata: &std::fs::Metadata) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((metadata.dev(), metadata.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = metadata;
        None
    }
}

/// Removes the files and then the folders a failed dump made, and says what became of them.
fn undo_dump(written: &[MadeFile], made_folders: &[PathBuf]) -> String {
    let mut kept = Vec::new();
    for file in written {
        let outcome = match std::fs::symlink_metadata(&file.path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error.to_string()),
            // Swapped for another file since (a folder renamed and replaced): not ours to remove.
            Ok(metadata) if file_identity(&metadata) != file.identity => {
                Err("it is no longer the file this run made".to_owned())
            }
            Ok(_) => std::fs::remove_file(&file.path).map_err(|error| error.to_string()),
        };
        if let Err(why) = outcome {
            kept.push(format!("{} ({why})", file.path.display()));
        }
    }
    let mut folders_kept = Vec::new();
    for folder in made_folders.iter().rev() {
        // Only an empty folder goes.
        if let Err(error) = std::fs::remove_dir(folder) {
            folders_kept.push(format!("{} ({error})", folder.display()));
        }
    }
    let mut aftermath = if written.is_empty() {
        "no file was written".to_owned()
    } else if kept.is_empty() {
        "the files this run made were removed".to_owned()
    } else {
        format!(
            "these files this run made could not be removed, check and delete them: {}",
            kept.join(", ")
        )
    };
    match made_folders.first() {
        None => {}
        Some(outermost) if folders_kept.is_empty() => {
            let _ = write!(
                aftermath,
                ", and so were the folders it made, from {}",
                outermost.display()
            );
        }
        Some(_) => {
            let _ = write!(
                aftermath,
                "; folders this run made were kept: {}",
                folders_kept.join(", ")
            );
        }
    }
    aftermath
}

/// The writes of [`dump_case`]: every file it makes goes into `written` as soon as it exists, so
/// that a failure can remove it, written in full or not.
fn write_dump(
    case_ref: &CaseRef,
    grants: &[GrantRecord],
    entries: &[EntryRecord],
    out: &Path,
    written: &mut Vec<MadeFile>,
) -> std::io::Result<()> {
    // File names are made of stored columns; one that holds anything but letters, digits and '_'
    // (a row written by something other than this service) is named by a counter instead, so
    // that no byte of it reaches a path, the how-to text or the terminal.
    let mut odd = 0;
    let mut component = |stored: &str| -> String {
        if is_plain(stored, b"_") {
            stored.to_owned()
        } else {
            odd += 1;
            // With a '-', which a plain name never holds: no stored name can take it.
            format!("malformed-{odd}")
        }
    };
    let mut write_new = |name: String, bytes: &[u8]| -> std::io::Result<()> {
        let path = out.join(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let named = |error: std::io::Error| {
            std::io::Error::new(error.kind(), format!("{}: {error}", path.display()))
        };
        let mut file = options.open(&path).map_err(named)?;
        // Recorded as soon as it exists, so that a failure removes it, written in full or not.
        let identity = file.metadata().ok().as_ref().and_then(file_identity);
        written.push(MadeFile {
            path: path.clone(),
            identity,
        });
        file.write_all(bytes).map_err(named)?;
        file.sync_all().map_err(named)?;
        Ok(())
    };
    let mut grant_names = Vec::new();
    for grant in grants {
        let name = format!(
            "grant-epoch{}-{}-{}.age",
            grant.epoch,
            component(&grant.grantee_kind),
            component(&grant.grantee_id)
        );
        write_new(name.clone(), &grant.ciphertext)?;
        grant_names.push(name);
    }
    let mut entry_names = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let name = format!(
            "entry-{:03}-{}-{}-epoch{}.age",
            index + 1,
            component(&entry.kind),
            component(&entry.id),
            entry.epoch
        );
        write_new(name.clone(), &entry.ciphertext)?;
        entry_names.push(name);
    }
    let step_one = match grant_names.iter().find(|name| name.contains("-escrow-")) {
        Some(escrow_grant) => {
            format!(
                "   (umask 077; age -d -i /path/to/escrow-identity.txt -o case-key.txt {escrow_grant})"
            )
        }
        None => "   This case holds no escrow grant, which every case should: report it. A\n   \
                 reviewer's exported identity opens that reviewer's grant the same way:\n\n   \
                 (umask 077; age -d -i /path/to/reviewer-identity.txt -o case-key.txt GRANT-FILE)"
            .to_owned(),
    };
    let step_two = match entry_names.first() {
        Some(first_entry) => format!("   age -d -i case-key.txt {first_entry}"),
        None => "   This case holds no entries: there is nothing to open.".to_owned(),
    };
    let how_to = format!(
        "Case {case_ref}: raw age files, as stored.\n\
         \n\
         Every file here is a standard age file (https://age-encryption.org/v1). Work in a folder\n\
         that only you can read, on an encrypted disk; not in /tmp or a shared folder.\n\
         \n\
         Run the commands below in this folder. /path/to/... stands for where your own identity\n\
         file really is: keep it on its offline medium, not in this folder. case-key.txt is\n\
         written into this folder.\n\
         \n\
         1. Open your grant with your own identity (the offline escrow key, or a reviewer's\n\
            exported identity). Its plaintext is an age identity file for this case; its comment\n\
            lines name the case and the key epoch. `umask 077` keeps it readable by you only;\n\
            delete it when you are done.\n\
         \n\
         {step_one}\n\
         \n\
         2. Open each entry with the case key of its epoch (the grant of that epoch):\n\
         \n\
         {step_two}\n\
         \n\
         An entry's plaintext starts with a header (case, entry, kind, length); check that it\n\
         names this case and the entry's file name. The report follows as JSON, then padding\n\
         (newlines) that hides its exact size.\n\
         \n\
         Grants: {grants}\n\
         Entries: {entries}\n",
        grants = grant_names.join(", "),
        entries = entry_names.join(", "),
    );
    write_new("HOW-TO-OPEN.txt".into(), how_to.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_in_messages_are_shown_plain_or_escaped_and_cut() {
        assert_eq!(shown("escrow"), "escrow");
        assert_eq!(shown("E-7K2M_x"), "E-7K2M_x");
        // Terminal escapes, bidirectional overrides and line breaks are escaped, quoted.
        assert_eq!(shown("\u{1b}[2Jx"), "\"\\u{1b}[2Jx\"");
        assert_eq!(shown("a\u{202e}b\n"), "\"a\\u{202e}b\\n\"");
        assert_eq!(shown(""), "\"\"");
        // Pages of text are cut after 64 characters.
        let long = "x".repeat(65);
        assert_eq!(shown(&long), format!("\"{}...\"", "x".repeat(64)));
        assert_eq!(shown(&"y".repeat(64)), "y".repeat(64));
        for hostile in ["\u{1b}]0;owned\u{7}", &"é".repeat(100), "\r\0"] {
            let message = shown(hostile);
            assert!(message.chars().all(|c| c.is_ascii_graphic()), "{message}");
            assert!(message.len() <= 2 + 64 * 10 + 3, "{message}");
        }
    }

    #[test]
    fn the_debug_form_of_a_decrypted_case_shows_no_content() {
        let case = DecryptedCase {
            case_ref: "K7QM-3XTA-9PWD".into(),
            status: "new".into(),
            priority: "normal".into(),
            incident_type: "threat".into(),
            received_on: "2026-11-29".into(),
            key_epoch: 1,
            report: serde_json::json!({"description": "CANARY-report"}),
            thread: vec![DecryptedEntry {
                id: "E1".into(),
                kind: "report".into(),
                author: "reporter".into(),
                created_on: "2026-11-29".into(),
                body: serde_json::json!({"description": "CANARY-entry"}),
            }],
        };

        let shown = format!("{case:?} {:?}", Ok::<_, ()>(&case));

        assert!(shown.contains("K7QM-3XTA-9PWD"));
        assert!(!shown.contains("CANARY"), "{shown}");
    }
}
