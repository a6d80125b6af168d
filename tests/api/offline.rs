//! The disaster-recovery path: `case decrypt`, `case dump` and the reference `age` tool.

use std::path::{Path, PathBuf};
use std::process::Command;

use incident_vault::crypto::CryptoError;
use incident_vault::domain::CaseRef;
use incident_vault::services::offline::{OfflineError, decrypt_case};

use crate::helpers::{Backend, TestApp, canary, full_report, skip_or_fail, spawn_app};
use crate::people::{AdaAndRita, spawn_with_ada_and_rita};

async fn the_escrow_identity_decrypts_the_report_with_case_decrypt(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let secret = canary();
    let (case_ref, _) = app.file(&full_report(&secret)).await;
    let identity = app.escrow_identity_file();

    let output = app.cli(&[
        "case",
        "decrypt",
        "--identity",
        identity.to_str().unwrap(),
        &case_ref,
    ]);

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let case: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(case["case_ref"], case_ref);
    assert_eq!(case["status"], "new");
    assert_eq!(
        case["report"]["description"],
        format!("While I spoke, he photographed me and my colleague. {secret}")
    );
    assert_eq!(
        case["report"]["consent"]["contact"]["handle"],
        format!("+41 {secret}")
    );
    assert_eq!(case["thread"][0]["kind"], "report");
}

/// An identity file that others may read still works, with a warning; an encrypted one (a
/// passphrase-protected identity, or any age file) is refused with what to do instead.
async fn identity_files_are_warned_about_when_shared_and_refused_when_encrypted(backend: Backend) {
    use std::os::unix::fs::PermissionsExt as _;
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (case_ref, _) = app.file(&full_report("x")).await;
    let identity = app.escrow_identity_file();
    let decrypt = |file: &std::path::Path| {
        app.cli(&[
            "case",
            "decrypt",
            "--identity",
            file.to_str().unwrap(),
            &case_ref,
        ])
    };
    let private = decrypt(&identity);
    std::fs::set_permissions(&identity, std::fs::Permissions::from_mode(0o644)).unwrap();
    let shared = decrypt(&identity);
    let sealed = app.dir.path().join("sealed-identity.age");
    let other = age::x25519::Identity::generate().to_public();
    let plaintext = std::fs::read(&identity).unwrap();
    std::fs::write(&sealed, age::encrypt(&other, &plaintext).unwrap()).unwrap();
    std::fs::set_permissions(&sealed, std::fs::Permissions::from_mode(0o600)).unwrap();
    let encrypted = decrypt(&sealed);
    let armored = app.dir.path().join("sealed-identity.asc");
    let mut writer =
        age::Encryptor::with_recipients(std::iter::once(&other as &dyn age::Recipient))
            .unwrap()
            .wrap_output(
                age::armor::ArmoredWriter::wrap_output(Vec::new(), age::armor::Format::AsciiArmor)
                    .unwrap(),
            )
            .unwrap();
    std::io::Write::write_all(&mut writer, &plaintext).unwrap();
    let armored_bytes = writer.finish().unwrap().finish().unwrap();
    std::fs::write(&armored, [b"\n".as_slice(), &armored_bytes].concat()).unwrap();
    std::fs::set_permissions(&armored, std::fs::Permissions::from_mode(0o600)).unwrap();
    let armored = decrypt(&armored);

    // At the 64 KiB limit, padded with comment lines, a file still reads; one byte more does not.
    let at_limit = app.dir.path().join("padded-identity.txt");
    let padded = |length: usize| {
        let mut bytes = plaintext.clone();
        while bytes.len() < length {
            let line = (length - bytes.len()).min(80);
            bytes.push(b'#');
            bytes.extend(std::iter::repeat_n(b'x', line.saturating_sub(2)));
            if line >= 2 {
                bytes.push(b'\n');
            }
        }
        bytes
    };
    std::fs::write(&at_limit, padded(64 * 1024)).unwrap();
    std::fs::set_permissions(&at_limit, std::fs::Permissions::from_mode(0o600)).unwrap();
    let largest = decrypt(&at_limit);
    std::fs::write(&at_limit, padded(64 * 1024 + 1)).unwrap();
    let too_large = decrypt(&at_limit);

    let stderr =
        |output: &std::process::Output| String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(std::fs::metadata(&at_limit).unwrap().len(), 64 * 1024 + 1);
    assert!(largest.status.success(), "{}", stderr(&largest));
    assert!(!too_large.status.success());
    assert!(
        stderr(&too_large).contains("is larger than an identity file (64 KiB at most)"),
        "{}",
        stderr(&too_large)
    );
    assert!(private.status.success(), "{}", stderr(&private));
    assert!(
        !stderr(&private).contains("warning"),
        "{}",
        stderr(&private)
    );
    assert!(shared.status.success(), "{}", stderr(&shared));
    assert!(
        stderr(&shared).contains("warning: others than its owner may read the identity file"),
        "{}",
        stderr(&shared)
    );
    for refused in [&encrypted, &armored] {
        assert!(!refused.status.success());
        assert!(
            stderr(refused).contains("is an encrypted age file"),
            "{}",
            stderr(refused)
        );
        assert!(refused.stdout.is_empty());
    }

    // A file with no key in it, and a public key given for the private one, are said as such,
    // not as "no grant for this case".
    let comments = app.dir.path().join("comments-only.txt");
    std::fs::write(&comments, "# created: 2026-11-29\n# public key: age1…\n").unwrap();
    let recipient = app.dir.path().join("recipient.txt");
    std::fs::write(&recipient, format!("{other}\n")).unwrap();
    for (file, said) in [
        (&comments, "holds no age identity"),
        (
            &recipient,
            "holds a recipient (a public key, age1…), not an identity",
        ),
    ] {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let refused = decrypt(file);
        assert!(!refused.status.success());
        assert!(stderr(&refused).contains(said), "{}", stderr(&refused));
        assert!(refused.stdout.is_empty());
    }
}

/// A case whose report entry was deleted still shows what is left, and says that it lost its
/// report; a whole case does not.
async fn case_decrypt_warns_of_a_case_without_its_report(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (whole, _) = app.file(&full_report("x")).await;
    let (emptied, _) = app.file(&full_report("y")).await;
    app.execute(&format!("DELETE FROM entries WHERE case_id = '{emptied}'"))
        .await;
    let identity = app.escrow_identity_file();
    let decrypt = |case: &str| {
        app.cli(&[
            "case",
            "decrypt",
            "--identity",
            identity.to_str().unwrap(),
            case,
        ])
    };

    let (whole, emptied) = (decrypt(&whole), decrypt(&emptied));

    for output in [&whole, &emptied] {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert!(!String::from_utf8_lossy(&whole.stderr).contains("warning"));
    let warned = String::from_utf8_lossy(&emptied.stderr);
    assert!(warned.contains("holds no report entry"), "{warned}");
    let case: serde_json::Value = serde_json::from_slice(&emptied.stdout).unwrap();
    assert!(case["report"].is_null() && case["thread"].as_array().unwrap().is_empty());
}

async fn a_stranger_identity_decrypts_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (case_ref, _) = app.file(&full_report("x")).await;
    let stranger = age::x25519::Identity::generate();

    let outcome = decrypt_case(
        app.store.as_ref(),
        &[&stranger],
        &CaseRef::parse(&case_ref).unwrap(),
    )
    .await;

    assert!(
        matches!(outcome, Err(OfflineError::NoGrant(_))),
        "{outcome:?}"
    );
}

pub fn age_tool() -> Option<&'static str> {
    let present = Command::new("age")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if present {
        Some("age")
    } else {
        skip_or_fail("the reference `age` tool (apt-get install age)");
        None
    }
}

pub fn run_age(age: &str, arguments: &[&str], directory: &Path) -> Vec<u8> {
    let output = Command::new(age)
        .args(arguments)
        .current_dir(directory)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "age {arguments:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// `case dump` makes its folder private but leaves an existing one as it is (a shared `/tmp`
/// keeps its sticky bit), writes its files 0600, and refuses to overwrite, naming the file.
async fn case_dump_leaves_an_existing_folder_alone_and_names_what_it_will_not_overwrite(
    backend: Backend,
) {
    use std::os::unix::fs::PermissionsExt;
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (case_ref, _) = app.file(&full_report("x")).await;
    let shared = app.dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let fresh = app.dir.path().join("fresh");

    let into_shared = app.cli(&["case", "dump", &case_ref, "--out", shared.to_str().unwrap()]);
    let into_fresh = app.cli(&["case", "dump", &case_ref, "--out", fresh.to_str().unwrap()]);
    let again = app.cli(&["case", "dump", &case_ref, "--out", fresh.to_str().unwrap()]);

    assert!(into_shared.status.success() && into_fresh.status.success());
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&shared), 0o1777, "an existing folder keeps its mode");
    assert_eq!(mode(&fresh), 0o700);
    let written = file_names(&shared);
    assert!(
        written.iter().any(|name| name == "HOW-TO-OPEN.txt"),
        "{written:?}"
    );
    assert!(
        written.iter().any(|name| name.starts_with("grant-")),
        "{written:?}"
    );
    assert!(
        written.iter().any(|name| name.starts_with("entry-")),
        "{written:?}"
    );
    assert_eq!(
        file_names(&fresh),
        written,
        "both dumps hold the same files"
    );
    for folder in [&shared, &fresh] {
        for name in &written {
            let path = folder.join(name);
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains(fresh.to_str().unwrap()), "{stderr}");
    assert_eq!(
        file_names(&fresh),
        written,
        "a refused dump leaves an earlier one's files alone"
    );
}

/// A dump that fails part-way (here a name already taken by the last file it writes; in life a
/// full disk) removes every file it made and touches nothing that was there, so that the same
/// command works once the cause is gone.
async fn a_case_dump_that_fails_part_way_leaves_nothing_of_its_own(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (case_ref, _) = app.file(&full_report("x")).await;
    let out = app.dir.path().join("partial");
    std::fs::create_dir(&out).unwrap();
    let blocker = out.join("HOW-TO-OPEN.txt");
    std::fs::write(&blocker, "the operator's own notes\n").unwrap();

    let failed = app.cli(&["case", "dump", &case_ref, "--out", out.to_str().unwrap()]);

    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains(blocker.to_str().unwrap()), "{stderr}");
    assert!(
        stderr.contains("the files this run made were removed"),
        "{stderr}"
    );
    assert_eq!(file_names(&out), ["HOW-TO-OPEN.txt"]);
    assert_eq!(
        std::fs::read_to_string(&blocker).unwrap(),
        "the operator's own notes\n"
    );

    std::fs::remove_file(&blocker).unwrap();
    let retried = app.cli(&["case", "dump", &case_ref, "--out", out.to_str().unwrap()]);
    assert!(
        retried.status.success(),
        "{}",
        String::from_utf8_lossy(&retried.stderr)
    );
    let names = file_names(&out);
    assert!(
        names.iter().any(|name| name.starts_with("grant-")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|name| name.starts_with("entry-")),
        "{names:?}"
    );
}

/// A dump into folders it makes that runs out of room part-way (a file size limit stands in for a
/// full disk) removes its files and those folders.
async fn a_case_dump_that_runs_out_of_room_removes_the_folders_it_made(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (case_ref, _) = app.file(&full_report("x")).await;
    let top = app.dir.path().join("new");
    let out = top.join("case-files");
    // At most 1 KiB per file (dash counts 512-byte blocks), with SIGXFSZ ignored so that a
    // write past it fails with EFBIG instead of killing the process: a grant (~300 bytes) fits,
    // the sealed report (~2.6 KiB) does not.
    let failed = std::process::Command::new("/bin/sh")
        .args([
            "-c",
            "trap '' XFSZ; ulimit -f 2 && exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_incident-vault"),
            "case",
            "dump",
            &case_ref,
            "--out",
            out.to_str().unwrap(),
        ])
        .env("APP_DATABASE__URL", app.database.url())
        .env("APP_STORAGE__DATA_DIR", app.dir.path().join("data"))
        .env("APP_TELEMETRY__LEVEL", "warn")
        .output()
        .unwrap();

    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "{stderr}");
    assert!(stderr.contains("entry-001-report-"), "{stderr}");
    assert!(
        stderr.contains("the files this run made were removed, and so were the folders it made"),
        "{stderr}"
    );
    assert!(
        !top.exists(),
        "{:?}",
        std::fs::read_dir(&top).map(|entries| entries.count())
    );

    let retried = app.cli(&["case", "dump", &case_ref, "--out", out.to_str().unwrap()]);
    assert!(
        retried.status.success(),
        "{}",
        String::from_utf8_lossy(&retried.stderr)
    );
}

/// Runs `case dump CASE_REF --out <test dir>/dump`, checks that it succeeded, and returns that
/// folder, the command's output and the names of the files it wrote.
fn dump(app: &TestApp, case_ref: &str) -> (PathBuf, std::process::Output, Vec<String>) {
    let out = app.dir.path().join("dump");
    let output = app.cli(&["case", "dump", case_ref, "--out", out.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let names = file_names(&out);
    (out, output, names)
}

/// The names of the files in `folder`, sorted.
fn file_names(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Stored columns that are not plain names (rows written by something other than this service)
/// reach no path, no how-to line and no terminal: those files are named by a counter.
async fn case_dump_names_files_by_a_counter_where_a_stored_column_is_not_plain(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (case_ref, _) = app.file(&full_report("x")).await;
    app.execute(&format!(
        "UPDATE grants SET grantee_id = '../../escaped\nline' \
         WHERE case_id = '{case_ref}' AND grantee_kind = 'escrow'"
    ))
    .await;
    app.execute(&format!(
        "UPDATE entries SET id = 'x/../../escaped' WHERE case_id = '{case_ref}'"
    ))
    .await;
    let (out, output, names) = dump(&app, &case_ref);

    assert_eq!(
        names,
        [
            "HOW-TO-OPEN.txt",
            "entry-001-report-malformed-2-epoch1.age",
            "grant-epoch1-escrow-malformed-1.age",
        ]
    );
    let how_to = std::fs::read_to_string(out.join("HOW-TO-OPEN.txt")).unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    for text in [&how_to[..], &stdout[..]] {
        assert!(!text.contains("escaped") && !text.contains("../"), "{text}");
    }
    let mut stray = Vec::new();
    let mut folders = vec![app.dir.path().to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path.clone());
            }
            if path.to_string_lossy().contains("escaped") {
                stray.push(path);
            }
        }
    }
    assert!(stray.is_empty(), "{stray:?}");
}

async fn the_reference_age_tool_opens_the_files_of_case_dump(backend: Backend) {
    let Some(age) = age_tool() else { return };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let secret = canary();
    let (case_ref, _) = app.file(&full_report(&secret)).await;
    let identity = app.escrow_identity_file();
    let (out, _, names) = dump(&app, &case_ref);

    let grant = names
        .iter()
        .find(|name| name.starts_with("grant-epoch1-escrow"))
        .expect("an escrow grant");
    let entry = names
        .iter()
        .find(|name| name.starts_with("entry-001-report-"))
        .expect("the report entry");
    assert!(names.iter().any(|name| name == "HOW-TO-OPEN.txt"));
    let how_to = std::fs::read_to_string(out.join("HOW-TO-OPEN.txt")).unwrap();
    assert!(how_to.contains(grant.as_str()) && how_to.contains(entry.as_str()));
    let step_one =
        format!("(umask 077; age -d -i /path/to/escrow-identity.txt -o case-key.txt {grant})");
    let step_two = format!("age -d -i case-key.txt {entry}");
    assert!(how_to.contains(&step_one), "{how_to}");
    assert!(how_to.contains(&step_two), "{how_to}");
    assert!(how_to.contains("Run the commands below in this folder"));

    // The two steps of HOW-TO-OPEN, run as written in the dump's folder, with only the stand-in
    // path replaced by where the identity really is.
    let shell = |line: &str| {
        let line = line
            .replace("/path/to/escrow-identity.txt", identity.to_str().unwrap())
            .replace("age -d", &format!("{age} -d"));
        let output = Command::new("sh")
            .args(["-c", &line])
            .current_dir(&out)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    };
    // Step 1: the grant opens to an age identity file for the case, readable by its owner only.
    shell(&step_one);
    let case_key_text = std::fs::read_to_string(out.join("case-key.txt")).unwrap();
    assert!(case_key_text.contains(&format!("# case: {case_ref}")));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("case-key.txt"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "case-key.txt is readable by others");
    }
    // Step 2: the case key opens the report envelope.
    let plaintext = String::from_utf8(shell(&step_two)).unwrap();
    assert!(plaintext.starts_with(&format!("incident-vault envelope v1\ncase: {case_ref}\n")));
    assert!(plaintext.contains(&format!("he photographed me and my colleague. {secret}")));
}

async fn the_reference_age_tool_can_write_what_we_read(backend: Backend) {
    let Some(age) = age_tool() else { return };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (case_ref, _) = app.file(&full_report("x")).await;
    let case_ref = CaseRef::parse(&case_ref).unwrap();
    let grant = &app.store.grants_of_case(case_ref.as_str()).await.unwrap()[0];
    let case_identity = incident_vault::crypto::case_key::open_grant(
        &grant.ciphertext,
        &[&app.escrow],
        &case_ref,
        1,
    )
    .unwrap();
    // An envelope written by Go age, for the case recipient, opens with our code.
    let entry = incident_vault::domain::EntryId::generate();
    let binding = incident_vault::crypto::envelope::EnvelopeBinding {
        case: &case_ref,
        entry: &entry,
        kind: incident_vault::domain::EntryKind::InternalNote,
    };
    let plaintext = incident_vault::crypto::envelope::encode_envelope_plaintext(
        binding,
        b"note from the field",
    );
    let directory = app.dir.path();
    std::fs::write(directory.join("note.txt"), &*plaintext).unwrap();
    let case_recipient = case_identity.recipient().to_string();
    run_age(
        age,
        &["-r", &case_recipient, "-o", "note.age", "note.txt"],
        directory,
    );
    let sealed = std::fs::read(directory.join("note.age")).unwrap();

    let body = incident_vault::crypto::envelope::open_envelope(
        binding,
        &sealed,
        &[case_identity.as_age_identity()],
    )
    .unwrap();

    assert_eq!(&**body, b"note from the field");
}

/// A swap is refused on every way into a case: the library, the `case decrypt` command with the
/// escrow key, and a reviewer's `GET /api/v1/cases/{ref}`; none shows the first case's content.
async fn a_ciphertext_swapped_between_cases_is_detected_and_refused(backend: Backend) {
    let Some(AdaAndRita {
        app, rita_token, ..
    }) = spawn_with_ada_and_rita(backend).await
    else {
        return;
    };
    let secret = canary();
    let (first, _) = app.file(&full_report(&secret)).await;
    let (second, _) = app.file(&full_report("second case")).await;
    let second_ref = CaseRef::parse(&second).unwrap();
    let identities: [&dyn age::Identity; 1] = [&app.escrow];
    let open_second = || decrypt_case(app.store.as_ref(), &identities, &second_ref);
    let escrow_file = app.escrow_identity_file();
    let decrypt_second = || {
        app.cli(&[
            "case",
            "decrypt",
            "--identity",
            escrow_file.to_str().unwrap(),
            &second,
        ])
    };
    let second_path = format!("/api/v1/cases/{second}");
    let read_second = || app.get_as(&rita_token, &second_path);
    assert!(open_second().await.is_ok());
    let untouched = decrypt_second();
    assert!(
        untouched.status.success(),
        "{}",
        String::from_utf8_lossy(&untouched.stderr)
    );
    assert!(String::from_utf8_lossy(&untouched.stdout).contains("second case"));
    assert_eq!(read_second().await.status(), 200);

    // The envelope of the first case in the second case's row: the second key cannot open it.
    app.execute(&format!(
        "UPDATE entries SET ciphertext = (SELECT ciphertext FROM entries WHERE case_id = '{first}') \
         WHERE case_id = '{second}'"
    ))
    .await;
    let outcome = open_second().await;
    assert!(
        matches!(
            &outcome,
            Err(OfflineError::Tampered {
                cause: CryptoError::NotForUs | CryptoError::Undecryptable,
                ..
            })
        ),
        "{outcome:?}"
    );
    assert_refused_everywhere(&secret, decrypt_second(), read_second().await).await;

    // And the first case's grants with it, each grantee's in its place: the key opens the
    // envelope, but the binding inside the grant names the first case, so the swap is refused
    // rather than read as the second case.
    app.execute(&format!(
        "UPDATE grants SET ciphertext = (SELECT other.ciphertext FROM grants other \
         WHERE other.case_id = '{first}' AND other.grantee_kind = grants.grantee_kind \
         AND other.grantee_id = grants.grantee_id AND other.epoch = grants.epoch) \
         WHERE case_id = '{second}'"
    ))
    .await;
    let outcome = open_second().await;
    assert_refused_by_binding(&outcome);
    assert_refused_everywhere(&secret, decrypt_second(), read_second().await).await;
}

/// `case decrypt` failed and a reviewer's read was refused, and neither showed `secret`.
async fn assert_refused_everywhere(
    secret: &str,
    decrypted: std::process::Output,
    read: reqwest::Response,
) {
    assert!(
        !decrypted.status.success(),
        "case decrypt opened a swapped case"
    );
    let stdout = String::from_utf8_lossy(&decrypted.stdout);
    let stderr = String::from_utf8_lossy(&decrypted.stderr);
    assert!(
        !stdout.contains(secret) && !stderr.contains(secret),
        "case decrypt showed the other case: {stdout} {stderr}"
    );
    let status = read.status();
    let body = read.text().await.unwrap();
    assert_ne!(status, 200, "a reviewer read a swapped case: {body}");
    assert!(!body.contains(secret), "{body}");
}

async fn an_envelope_resealed_to_another_case_is_refused_by_its_binding(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (first, _) = app.file(&full_report("first case")).await;
    let (second, _) = app.file(&full_report("second case")).await;
    let first_ref = CaseRef::parse(&first).unwrap();
    let second_ref = CaseRef::parse(&second).unwrap();
    // Someone who read the first case re-encrypts its plaintext, header and all, to the second
    // case's public recipient and writes it into the second case's row: the key fits, the
    // binding does not.
    let first_key = incident_vault::crypto::case_key::open_grant(
        &app.store.grants_of_case(&first).await.unwrap()[0].ciphertext,
        &[&app.escrow],
        &first_ref,
        1,
    )
    .unwrap();
    let first_entry = &app.store.entries_of_case(&first).await.unwrap()[0];
    let decryptor = age::Decryptor::new_buffered(&first_entry.ciphertext[..]).unwrap();
    let mut reader = decryptor
        .decrypt(std::iter::once(first_key.as_age_identity()))
        .unwrap();
    let mut plaintext = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut plaintext).unwrap();
    let second_case = app.store.case_record(&second).await.unwrap().unwrap();
    let second_recipient: age::x25519::Recipient = second_case.case_recipient.parse().unwrap();
    let resealed = age::encrypt(&second_recipient, &plaintext).unwrap();
    let hex: String = resealed.iter().map(|byte| format!("{byte:02x}")).collect();
    let literal = match backend {
        Backend::Sqlite => format!("X'{hex}'"),
        Backend::Postgres => format!("'\\x{hex}'::bytea"),
    };
    app.execute(&format!(
        "UPDATE entries SET ciphertext = {literal} WHERE case_id = '{second}'"
    ))
    .await;

    let outcome = decrypt_case(app.store.as_ref(), &[&app.escrow], &second_ref).await;

    assert_refused_by_binding(&outcome);
}

async fn an_envelope_moved_to_another_entry_of_the_same_case_is_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (case_ref, _) = app.file(&full_report("x")).await;
    // Re-label the report row as another entry id: same key, wrong binding.
    app.execute(&format!(
        "UPDATE entries SET id = 'ZZZZZZZZZZZZZZZZ' WHERE case_id = '{case_ref}'"
    ))
    .await;

    let outcome = decrypt_case(
        app.store.as_ref(),
        &[&app.escrow],
        &CaseRef::parse(&case_ref).unwrap(),
    )
    .await;

    assert_refused_by_binding(&outcome);
}

/// The case was refused because a binding inside a ciphertext names another row.
fn assert_refused_by_binding<T: std::fmt::Debug>(outcome: &Result<T, OfflineError>) {
    assert!(
        matches!(
            outcome,
            Err(OfflineError::Tampered {
                cause: CryptoError::BindingMismatch,
                ..
            })
        ),
        "{outcome:?}"
    );
}

crate::on_both_backends!(
    case_decrypt_warns_of_a_case_without_its_report,
    identity_files_are_warned_about_when_shared_and_refused_when_encrypted,
    case_dump_names_files_by_a_counter_where_a_stored_column_is_not_plain,
    the_escrow_identity_decrypts_the_report_with_case_decrypt,
    a_stranger_identity_decrypts_nothing,
    the_reference_age_tool_opens_the_files_of_case_dump,
    case_dump_leaves_an_existing_folder_alone_and_names_what_it_will_not_overwrite,
    a_case_dump_that_fails_part_way_leaves_nothing_of_its_own,
    a_case_dump_that_runs_out_of_room_removes_the_folders_it_made,
    the_reference_age_tool_can_write_what_we_read,
    a_ciphertext_swapped_between_cases_is_detected_and_refused,
    an_envelope_moved_to_another_entry_of_the_same_case_is_refused,
    an_envelope_resealed_to_another_case_is_refused_by_its_binding,
);
