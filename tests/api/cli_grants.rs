//! The offline tools of issue 3: `reviewer export-identity` (checked with the reference `age`
//! tool), `escrow grant` and `desk grant-cases`.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::helpers::{Backend, TestApp, minimal_report, spawn_app};
use crate::offline::{age_tool, run_age};
use crate::people::PASSWORD;

/// Runs the binary against the test's database with `input` on standard input (a password,
/// as a script would pipe it).
pub(crate) fn cli_with_input(app: &TestApp, arguments: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_incident-vault"))
        .args(arguments)
        .env("APP_DATABASE__URL", app.database.url())
        .env("APP_STORAGE__DATA_DIR", app.dir.path().join("data"))
        .env("APP_TELEMETRY__LEVEL", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the incident-vault binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{input}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `incident-vault escrow grant --identity IDENTITY --all --to TO`.
fn escrow_grant_all(app: &TestApp, identity: &std::path::Path, to: &str) -> Output {
    app.cli(&[
        "escrow",
        "grant",
        "--identity",
        identity.to_str().unwrap(),
        "--all",
        "--to",
        to,
    ])
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn an_exported_identity_opens_the_grant_and_then_the_report_with_the_age_tool(
    backend: Backend,
) {
    let Some(age) = age_tool() else { return };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.enrol_first_admin("ada").await;
    let (case_ref, _) = app
        .file(&minimal_report("Read offline with age alone."))
        .await;
    let out = app.dir.path().join("offline");
    std::fs::create_dir(&out).unwrap();
    let exported = out.join("ada-identity.txt");

    let wrong = cli_with_input(
        &app,
        &[
            "reviewer",
            "export-identity",
            "ada",
            "--out",
            exported.to_str().unwrap(),
        ],
        "not the password",
    );
    assert!(!wrong.status.success());
    assert!(
        !exported.exists(),
        "nothing is written for a wrong password"
    );
    let export = cli_with_input(
        &app,
        &[
            "reviewer",
            "export-identity",
            "ada",
            "--out",
            exported.to_str().unwrap(),
        ],
        PASSWORD,
    );
    let dump = app.cli(&["case", "dump", &case_ref, "--out", out.to_str().unwrap()]);

    assert_success(&export);
    assert_success(&dump);
    let (_, secrets) = app.stored_account("ada").await;
    assert_eq!(
        secrets.failed_logins, 0,
        "the right password clears the wrong one's count"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&exported).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "readable by its owner only");
    }
    let (ada, _) = app.stored_account("ada").await;
    let grant = format!("grant-epoch1-reviewer-{}.age", ada.id);
    // The exported file tells its holder which grant files are theirs.
    let file = std::fs::read_to_string(&exported).unwrap();
    assert!(
        file.contains(&format!("# reviewer id: {}", ada.id)),
        "{}",
        file.lines().next().unwrap()
    );
    assert!(file.contains(&grant.replace("epoch1", "epoch<N>")));
    let entry = std::fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .find(|name| name.starts_with("entry-001-report-"))
        .expect("the report entry");
    let case_key = run_age(age, &["-d", "-i", "ada-identity.txt", &grant], &out);
    assert!(String::from_utf8_lossy(&case_key).contains(&format!("# case: {case_ref}")));
    std::fs::write(out.join("case-key.txt"), &case_key).unwrap();
    let report =
        String::from_utf8(run_age(age, &["-d", "-i", "case-key.txt", &entry], &out)).unwrap();
    assert!(report.contains("Read offline with age alone."));
    let events = app.store.audit_events(0, 1000).await.unwrap();
    assert!(
        events
            .iter()
            .any(|event| event.action == "reviewer.identity_exported")
    );
}

/// A script or `systemd-run` without input gives no password: that is refused before the
/// account is tried, so it cannot lock the account. A locked account is said to be locked
/// before any password is tried (the lock still slows guessing); someone who gives the right
/// password to a disabled account is told so, and a wrong one learns nothing more.
async fn the_offline_tools_try_no_empty_password_and_say_why_a_right_one_opens_nothing(
    backend: Backend,
) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.enrol_first_admin("ada").await;
    let out = app.dir.path().join("ada.txt");
    let export = |input: &str| {
        let output = cli_with_input(
            &app,
            &[
                "reviewer",
                "export-identity",
                "ada",
                "--out",
                out.to_str().unwrap(),
            ],
            input,
        );
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };

    for _ in 0..5 {
        let stderr = export("");
        assert!(stderr.contains("no password was given"), "{stderr}");
    }
    let (_, secrets) = app.stored_account("ada").await;
    assert_eq!(secrets.failed_logins, 0, "an empty input is no attempt");
    assert_eq!(secrets.locked_until, 0);

    for _ in 0..2 {
        let stderr = export("not the password");
        assert!(
            stderr.contains("the username or password is wrong"),
            "{stderr}"
        );
    }
    let (_, secrets) = app.stored_account("ada").await;
    assert_eq!(secrets.failed_logins, 2, "the wrong ones counted");
    // Locked for an hour: failures lock for seconds at first, which a slow run could outlast.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    app.execute(&format!(
        "UPDATE reviewer_secrets SET locked_until = {}",
        now + 3600
    ))
    .await;
    for password in [PASSWORD, "not the password"] {
        let stderr = export(password);
        assert!(
            stderr.contains("the account is locked") && stderr.contains("no password was tried"),
            "{stderr}"
        );
    }
    let (_, secrets) = app.stored_account("ada").await;
    assert_eq!(secrets.failed_logins, 2, "nothing was tried while locked");

    app.execute("UPDATE reviewer_secrets SET locked_until = 0")
        .await;
    app.execute("UPDATE reviewers SET status = 'disabled'")
        .await;
    let stderr = export(PASSWORD);
    assert!(
        stderr.contains("the password is right, but the account is disabled, not active"),
        "{stderr}"
    );
    let stderr = export("still not the password");
    assert!(
        stderr.contains("the username or password is wrong") && !stderr.contains("disabled"),
        "{stderr}"
    );
    assert!(!out.exists());
}

async fn the_escrow_key_grants_one_case_or_all_of_them_to_a_reviewer(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (first, _) = app.file(&minimal_report("Before anyone enrolled.")).await;
    let admin = app.enrol_first_admin("ada").await;
    let admin_token = app.login(&admin).await;
    let (_, rita_token) = app
        .add_reviewer(&admin_token, "rita", "reviewer", &[])
        .await;
    let (second, _) = app.file(&minimal_report("After.")).await;
    let escrow = app.escrow_identity_file();
    let stranger = app.dir.path().join("stranger.txt");
    std::fs::write(
        &stranger,
        format!(
            "{}\n",
            age::secrecy::ExposeSecret::expose_secret(
                &age::x25519::Identity::generate().to_string()
            )
        ),
    )
    .unwrap();

    let with_stranger = escrow_grant_all(&app, &stranger, "rita");
    let one = app.cli(&[
        "escrow",
        "grant",
        "--identity",
        escrow.to_str().unwrap(),
        "--case",
        &first,
        "--to",
        "rita",
    ]);
    let mistyped = app.cli(&[
        "escrow",
        "grant",
        "--identity",
        escrow.to_str().unwrap(),
        "--case",
        "0000-0000-0000",
        "--to",
        "rita",
    ]);
    let read_first = app
        .get_as(&rita_token, &format!("/api/v1/cases/{first}"))
        .await;
    let still_hidden = app
        .get_as(&rita_token, &format!("/api/v1/cases/{second}"))
        .await;
    let all = escrow_grant_all(&app, &escrow, "rita");
    // Every case is held now, so none would be opened: the key is checked all the same.
    let stranger_when_all_held = escrow_grant_all(&app, &stranger, "rita");

    for refused in [&with_stranger, &stranger_when_all_held] {
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("is not the escrow identity of this instance")
                && stderr.contains("nothing was granted"),
            "{stderr}"
        );
    }
    assert_success(&one);
    assert!(!mistyped.status.success());
    let stderr = String::from_utf8_lossy(&mistyped.stderr);
    assert!(stderr.contains("no case 0000-0000-0000"), "{stderr}");
    assert_eq!(read_first.status(), 200);
    assert_eq!(still_hidden.status(), 404);
    assert_success(&all);
    assert!(
        String::from_utf8_lossy(&all.stdout).contains("granted 1 case(s) to rita; 1 held already"),
        "{}",
        String::from_utf8_lossy(&all.stdout)
    );
    let list: Value = app
        .get_as(&rita_token, "/api/v1/cases")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["cases"].as_array().unwrap().len(), 2);
    let grants_by_escrow = app
        .store
        .audit_events(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|event| event.action == "case.grant" && event.actor == "cli:escrow")
        .count();
    assert_eq!(grants_by_escrow, 2);
}

/// One case whose escrow grant was swapped for another case's (someone with write access to the
/// database) is refused by name, and the batch still grants the cases after it.
async fn a_tampered_case_is_named_and_the_escrow_batch_grants_the_rest(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.enrol_first_admin("ada").await;
    let admin_token = app.login(&admin).await;
    let (_, rita_token) = app
        .add_reviewer(&admin_token, "rita", "reviewer", &[])
        .await;
    let mut cases = Vec::new();
    for text in ["First.", "Second.", "Third."] {
        cases.push(app.file(&minimal_report(text)).await.0);
    }
    // The first case in id order, the order of `--all`: the cases after it show the batch went
    // on.
    cases.sort();
    let tampered = cases[0].clone();
    app.execute(&format!(
        "UPDATE grants SET ciphertext = (SELECT other.ciphertext FROM grants other \
         WHERE other.case_id = '{}' AND other.grantee_kind = 'escrow') \
         WHERE case_id = '{tampered}' AND grantee_kind = 'escrow'",
        cases[1]
    ))
    .await;
    let escrow = app.escrow_identity_file();

    let all = escrow_grant_all(&app, &escrow, "rita");

    let stdout = String::from_utf8_lossy(&all.stdout);
    let stderr = String::from_utf8_lossy(&all.stderr);
    assert!(
        !all.status.success(),
        "a refused case fails the run: {stdout}"
    );
    assert!(
        stdout.contains(
            "granted 2 case(s) to rita; 0 held already; 0 not opened by the given identity; 1 \
             refused"
        ),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("refused: {tampered}")), "{stdout}");
    assert_eq!(stdout.matches("refused: ").count(), 1, "{stdout}");
    assert!(stderr.contains("1 case(s) hold a grant"), "{stderr}");
    for case in &cases {
        let status = app
            .get_as(&rita_token, &format!("/api/v1/cases/{case}"))
            .await
            .status();
        let expected = if *case == tampered { 404 } else { 200 };
        assert_eq!(status, expected, "{case}");
    }
}

async fn a_coordinator_grants_a_desk_to_a_new_member_from_the_command_line(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.enrol_first_admin("ada").await;
    let admin_token = app.login(&admin).await;
    for number in 0..3 {
        app.file(&minimal_report(&format!("desk case {number}")))
            .await;
    }
    let (_, nora_token) = app
        .add_reviewer(&admin_token, "nora", "reviewer", &["default"])
        .await;
    app.add_reviewer(&admin_token, "otto", "reviewer", &[])
        .await;

    let not_a_member = cli_with_input(
        &app,
        &[
            "desk",
            "grant-cases",
            "default",
            "--as",
            "ada",
            "--to",
            "otto",
        ],
        PASSWORD,
    );
    let wrong_password = cli_with_input(
        &app,
        &[
            "desk",
            "grant-cases",
            "default",
            "--as",
            "ada",
            "--to",
            "nora",
        ],
        "wrong password",
    );
    let granted = cli_with_input(
        &app,
        &[
            "desk",
            "grant-cases",
            "default",
            "--as",
            "ada",
            "--to",
            "nora",
        ],
        PASSWORD,
    );

    assert!(!not_a_member.status.success());
    assert!(!wrong_password.status.success());
    assert_success(&granted);
    assert!(String::from_utf8_lossy(&granted.stdout).contains("granted 3 case(s) to nora"));
    let list: Value = app
        .get_as(&nora_token, "/api/v1/cases")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["cases"].as_array().unwrap().len(), 3);
}

crate::on_both_backends!(
    an_exported_identity_opens_the_grant_and_then_the_report_with_the_age_tool,
    the_offline_tools_try_no_empty_password_and_say_why_a_right_one_opens_nothing,
    the_escrow_key_grants_one_case_or_all_of_them_to_a_reviewer,
    a_tampered_case_is_named_and_the_escrow_batch_grants_the_rest,
    a_coordinator_grants_a_desk_to_a_new_member_from_the_command_line,
);
