//! `smsctl` (issue #16 item 3), driven as users drive it: the built binary in a subprocess,
//! against a running stack, with its own `HOME`/`XDG_CONFIG_HOME` in a temp dir.
//!
//! Finding the binary: Cargo gives `CARGO_BIN_EXE_*` only to a package's own tests, and
//! does not build a dependency's binaries. So the suite takes `<target>/<profile>/smsctl`
//! beside its own binary when it is newer than every source it is built from (the CLI's
//! and smsgate-shared's files, the manifests and Cargo.lock; `cargo test --workspace`
//! builds it that way), and otherwise builds it with `cargo build --workspace --bin smsctl`
//! into that target dir and profile. `--workspace` keeps the feature set of a
//! whole-workspace build, so only the CLI is compiled. Checking the dates first spares
//! every test process (nextest runs one per test) a cargo run that takes a minute on a
//! loaded machine. `SMSCTL_BIN` points at a prebuilt binary instead.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use smsgate_tests::app::{numbers, TestApp, ADMIN_PASSWORD};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;

/// A 10,000-recipient bulk through the mock gateway takes seconds; this is a hang guard.
const BULK_DEADLINE: Duration = Duration::from_secs(240);

fn smsctl_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("SMSCTL_BIN") {
            return PathBuf::from(bin);
        }
        // <target>/<profile>/deps/it-<hash>
        let exe = std::env::current_exe().expect("the test binary's path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("<target>/<profile>");
        let target_dir = profile_dir.parent().expect("<target>");
        let bin = profile_dir.join(format!("smsctl{}", std::env::consts::EXE_SUFFIX));
        if is_fresh(&bin) {
            return bin;
        }
        let mut build = std::process::Command::new(env!("CARGO"));
        build
            .args(["build", "--quiet", "--workspace", "--bin", "smsctl"])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => {}
            Some("release") => {
                build.arg("--release");
            }
            Some(profile) => {
                build.args(["--profile", profile]);
            }
            None => panic!("no profile dir in {}", exe.display()),
        }
        let built = build.output().expect("run cargo build");
        assert!(
            built.status.success(),
            "cargo build --bin smsctl failed:\n{}",
            String::from_utf8_lossy(&built.stderr)
        );
        bin
    })
}

/// The binary exists and no file it is built from changed after it was linked.
fn is_fresh(bin: &Path) -> bool {
    fn newest(path: &Path) -> std::time::SystemTime {
        let Ok(meta) = std::fs::metadata(path) else {
            return std::time::SystemTime::UNIX_EPOCH;
        };
        let own = meta.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH);
        if !meta.is_dir() {
            return own;
        }
        std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| newest(&entry.path()))
            .fold(own, std::cmp::max)
    }
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return false;
    };
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    [
        "tools/cli",
        "shared/src",
        "shared/Cargo.toml",
        "Cargo.toml",
        "Cargo.lock",
    ]
    .iter()
    .all(|source| newest(&root.join(source)) <= built)
}

/// One user's machine: a home dir of its own, so `login` writes nowhere else.
struct Shell {
    home: TempDir,
    /// `SMSCTL_URL`/`SMSCTL_TOKEN` for every run (the CI way), when set.
    env: Vec<(&'static str, String)>,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// stdout as JSON: with `--json` it must hold that and nothing else.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    #[track_caller]
    fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl Shell {
    fn new() -> Shell {
        Shell {
            home: tempfile::tempdir().expect("a temp home"),
            env: Vec::new(),
        }
    }

    /// A shell with `SMSCTL_URL`/`SMSCTL_TOKEN` set (no login).
    fn with_env(app: &TestApp, token: &str) -> Shell {
        let mut shell = Shell::new();
        shell.env = vec![
            ("SMSCTL_URL", app.base_url.clone()),
            ("SMSCTL_TOKEN", token.to_owned()),
        ];
        shell
    }

    fn config_dir(&self) -> PathBuf {
        self.home.path().join("config")
    }

    fn credentials(&self) -> PathBuf {
        self.config_dir().join("smsctl").join("credentials.json")
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.home.path().join(name);
        std::fs::write(&path, content).expect("write a test file");
        path
    }

    async fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, "").await
    }

    async fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut command = tokio::process::Command::new(smsctl_bin());
        command
            .args(args)
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.config_dir())
            .env_remove("SMSCTL_URL")
            .env_remove("SMSCTL_TOKEN")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("start smsctl");
        let mut input = child.stdin.take().expect("stdin");
        input
            .write_all(stdin.as_bytes())
            .await
            .expect("write stdin");
        drop(input);
        let output = tokio::time::timeout(BULK_DEADLINE, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("smsctl {args:?} still running after {BULK_DEADLINE:?}"))
            .expect("smsctl ran");
        Run {
            code: output.status.code().expect("smsctl exited, not killed"),
            stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
            stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
        }
    }

    async fn login(&self, app: &TestApp) -> Run {
        self.run_with_stdin(
            &[
                "login",
                "--url",
                &app.base_url,
                "--username",
                "SMSadmin",
                "--password-stdin",
            ],
            &format!("{ADMIN_PASSWORD}\n"),
        )
        .await
    }
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn login_keeps_a_private_token_that_send_status_and_watch_use() {
    let app = TestApp::spawn().await;
    let shell = Shell::new();

    let login = shell.login(&app).await.ok();
    let credentials = shell.credentials();
    assert!(login.stdout.contains("logged in to"), "{}", login.stdout);
    #[cfg(unix)]
    {
        assert_eq!(
            mode(&credentials),
            0o600,
            "the token file is the user's alone"
        );
        assert_eq!(mode(credentials.parent().unwrap()), 0o700);
    }
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(&credentials).unwrap()).unwrap();
    assert_eq!(stored["url"], app.base_url);
    let token = stored["token"].as_str().expect("a stored token");
    assert!(
        !login.stdout.contains(token) && !login.stderr.contains(token),
        "never printed"
    );

    // No --url, no --token: the stored login is used.
    let sent = shell
        .run(&[
            "send",
            "--to",
            "9123 4567",
            "--text",
            "from the CLI",
            "--json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(sent["recipient"], "+85291234567");
    assert_eq!(sent["content"], "from the CLI");
    let id = sent["id"].as_i64().expect("an id");

    let watched = shell
        .run(&["watch", &id.to_string(), "--json"])
        .await
        .ok()
        .json();
    assert_eq!(watched["id"], id);
    assert_eq!(watched["status"], "sent");
    assert_eq!(watched["success_count"], 1);
    assert_eq!(watched["pending_count"], 0);
    assert_eq!(app.mock.received_for("85291234567").len(), 1);

    let status = shell.run(&["status", &id.to_string()]).await.ok();
    assert!(
        status.stdout.starts_with(&format!("message {id}: sent")),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("1 sent, 0 failed"),
        "{}",
        status.stdout
    );

    let out = shell.run(&["logout"]).await.ok();
    assert!(out.stdout.contains("logged out"), "{}", out.stdout);
    assert!(!credentials.exists());
    let refused = shell.run(&["status", &id.to_string()]).await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("not logged in"),
        "{}",
        refused.stderr
    );
    app.teardown().await;
}

#[tokio::test]
async fn a_wrong_password_is_the_apis_401_and_nothing_is_stored() {
    let app = TestApp::spawn_without_dispatcher().await;
    let shell = Shell::new();
    let run = shell
        .run_with_stdin(
            &[
                "login",
                "--url",
                &app.base_url,
                "--username",
                "SMSadmin",
                "--password-stdin",
            ],
            "not the password\n",
        )
        .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    assert!(run.stderr.contains(", HTTP 401)"), "{}", run.stderr);
    assert!(run.stdout.is_empty());
    assert!(!shell.credentials().exists());
    app.teardown().await;
}

#[tokio::test]
async fn a_10000_line_csv_bulk_is_followed_to_its_end() {
    let app = TestApp::spawn().await;
    let shell = Shell::with_env(&app, &app.token);
    let mut csv = String::from("name,phone\n");
    for (i, number) in numbers(10_000, 5100).iter().enumerate() {
        csv.push_str(&format!("customer {i},{number}\n"));
    }
    let path = shell.file("customers.csv", &csv);

    let run = shell
        .run(&[
            "bulk",
            "--csv",
            path.to_str().unwrap(),
            "--text",
            "Sale starts today",
            "--json",
        ])
        .await
        .ok();
    let done = run.json();
    assert_eq!(done["status"], "sent", "{done}");
    assert_eq!(done["recipient_count"], 10_000);
    assert_eq!(done["success_count"], 10_000);
    assert_eq!(done["pending_count"], 0);
    assert!(
        run.stderr.contains("accepted: 10000 recipients"),
        "{}",
        run.stderr
    );
    assert_eq!(
        app.mock.stats().ok,
        10_000,
        "the gateway saw every number once"
    );
    assert_eq!(app.message_count().await, 1);
    app.teardown().await;
}

#[tokio::test]
async fn a_bulk_rerun_with_its_idempotency_key_is_accepted_once() {
    let app = TestApp::spawn_without_dispatcher().await;
    let shell = Shell::with_env(&app, &app.token);
    let path = shell.file("few.csv", "phone_number\n91234567\n+85261234567\n");
    let args = [
        "bulk",
        "--csv",
        path.to_str().unwrap(),
        "--text",
        "once",
        "--no-wait",
        "--json",
        "--idempotency-key",
        "campaign-2026-12",
    ];
    let first = shell.run(&args).await.ok().json();
    let again = shell.run(&args).await.ok().json();
    assert_eq!(first["total"], 2);
    assert_eq!(first["status"], "pending");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(app.message_count().await, 1);
    app.teardown().await;
}

#[tokio::test]
async fn every_bad_csv_line_is_reported_with_its_line_number_and_nothing_is_sent() {
    let app = TestApp::spawn_without_dispatcher().await;
    let shell = Shell::with_env(&app, &app.token);
    let path = shell.file(
        "list.csv",
        "name,phone\nAnn,91234567\nBob,12ab\n\"Carl\nJr\",+8529043628\nDee,6123 4567\nEve,\n",
    );
    let run = shell
        .run(&[
            "bulk",
            "--csv",
            path.to_str().unwrap(),
            "--text",
            "hi",
            "--json",
        ])
        .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stdout.is_empty(), "nothing on stdout: {}", run.stdout);
    let name = path.display().to_string();
    for expected in [
        format!("{name}:3: \"12ab\": not a phone number"),
        // Carl's quoted name spans lines 4 and 5: his record starts on line 4.
        format!("{name}:4: \"+8529043628\": not a phone number"),
        format!("{name}:7: \"\": not a phone number"),
    ] {
        assert!(
            run.stderr.contains(&expected),
            "{expected} missing from:\n{}",
            run.stderr
        );
    }
    assert!(
        run.stderr.contains("3 bad lines, nothing was sent"),
        "{}",
        run.stderr
    );
    assert_eq!(app.message_count().await, 0);
    app.teardown().await;
}

#[tokio::test]
async fn status_cancel_and_their_json_shapes() {
    // No dispatcher: the bulk stays pending, so there is something to cancel.
    let app = TestApp::spawn_without_dispatcher().await;
    let shell = Shell::with_env(&app, &app.token);
    let accepted = shell
        .run(&[
            "send",
            "--to",
            "91234567",
            "--to",
            "+85261234567",
            "--text",
            "later",
            "--json",
        ])
        .await
        .ok()
        .json();
    let id = accepted["id"].as_i64().unwrap();
    assert_eq!(accepted["total"], 2);

    let status = shell
        .run(&["status", &id.to_string(), "--json"])
        .await
        .ok()
        .json();
    assert_eq!(status["id"], id);
    assert_eq!(status["status"], "pending");
    assert_eq!(status["recipient_count"], 2);
    assert_eq!(status["pending_count"], 2);
    assert_eq!(status["content"], "later");

    let cancelled = shell
        .run(&["cancel", &id.to_string(), "--json"])
        .await
        .ok()
        .json();
    assert_eq!(cancelled["id"], id);
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["cancelled_now"], 2);
    let human = shell.run(&["cancel", &id.to_string()]).await.ok();
    assert!(
        human.stdout.contains(&format!(
            "message {id}: cancelled; 0 recipient(s) cancelled now"
        )),
        "{}",
        human.stdout
    );
    let watched = shell
        .run(&["watch", &id.to_string(), "--json"])
        .await
        .ok()
        .json();
    assert_eq!(watched["status"], "cancelled");
    assert_eq!(watched["cancelled_count"], 2);
    app.teardown().await;
}

#[tokio::test]
async fn the_apis_4xx_bodies_are_shown_with_code_and_status() {
    let app = TestApp::spawn_without_dispatcher().await;
    let shell = Shell::with_env(&app, &app.token);

    let missing = shell.run(&["status", "999999", "--json"]).await;
    assert_eq!(missing.code, 1);
    assert!(missing.stdout.is_empty());
    assert!(
        missing.stderr.contains("(NOT_FOUND, HTTP 404)"),
        "{}",
        missing.stderr
    );

    let empty = shell
        .run(&["send", "--to", "91234567", "--text", " "])
        .await;
    assert_eq!(empty.code, 1);
    assert!(
        empty
            .stderr
            .contains("error: content must not be empty (EMPTY_CONTENT, HTTP 400)"),
        "{}",
        empty.stderr
    );

    // Checked here before any request: exit 2, the reason, nothing sent.
    let bad = shell
        .run(&["send", "--to", "+8529043628", "--text", "hi"])
        .await;
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("\"+8529043628\": not a phone number"),
        "{}",
        bad.stderr
    );

    let shell = Shell::with_env(&app, "not-a-token");
    let unauthorized = shell.run(&["status", "1"]).await;
    assert_eq!(unauthorized.code, 1);
    assert!(
        unauthorized.stderr.contains(", HTTP 401)"),
        "{}",
        unauthorized.stderr
    );
    assert!(
        unauthorized.stderr.contains("hint: log in again"),
        "{}",
        unauthorized.stderr
    );
    assert!(
        !unauthorized.stderr.contains("not-a-token"),
        "the token is never printed"
    );
    assert_eq!(app.message_count().await, 0);
    app.teardown().await;
}

#[tokio::test]
async fn an_unreachable_api_is_a_network_error_with_exit_code_3() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let shell = Shell::new();
    let run = shell
        .run(&["status", "7", "--url", &url, "--token", "t0ken"])
        .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr
            .starts_with(&format!("error: cannot reach {url}/api/sms/7: ")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.to_lowercase().contains("refused"),
        "the cause: {}",
        run.stderr
    );
    assert!(!run.stderr.contains("t0ken"));
}

// ---- export and opt-out

#[tokio::test]
async fn export_streams_the_recipients_csv_to_stdout_or_a_file() {
    let app = TestApp::spawn().await;
    let shell = Shell::with_env(&app, &app.token);
    let sent = shell
        .run(&[
            "send",
            "--to",
            "91234567",
            "--to",
            "61234567",
            "--to",
            "+85251234567",
            "--text",
            "export me",
            "--json",
        ])
        .await
        .ok()
        .json();
    let id = sent["id"].as_i64().unwrap().to_string();
    shell.run(&["watch", &id]).await.ok();

    let to_stdout = shell.run(&["export", &id]).await.ok();
    let mut lines = to_stdout.stdout.lines();
    assert!(
        lines.next().unwrap().starts_with("id,number,status"),
        "{}",
        to_stdout.stdout
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 3, "{}", to_stdout.stdout);
    for number in ["+85291234567", "+85261234567", "+85251234567"] {
        assert!(
            rows.iter()
                .any(|r| r.contains(number) && r.contains(",sent,")),
            "{number}"
        );
    }

    let file = shell.home.path().join("report.csv");
    let described = shell
        .run(&["export", &id, "-o", file.to_str().unwrap(), "--json"])
        .await
        .ok()
        .json();
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(written, to_stdout.stdout, "the same CSV, to the file");
    assert_eq!(described["bytes"], written.len());
    assert_eq!(described["message_id"], sent["id"]);

    let missing = shell
        .run(&["export", "999999", "-o", file.to_str().unwrap()])
        .await;
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("HTTP 404)"), "{}", missing.stderr);
    app.teardown().await;
}

#[tokio::test]
async fn opt_outs_are_added_listed_imported_and_removed() {
    let app = TestApp::spawn().await;
    let shell = Shell::with_env(&app, &app.token);

    let added = shell.run(&["opt-out", "add", "9123 4567"]).await.ok();
    assert!(
        added
            .stdout
            .contains("+85291234567 added to your opt-out list"),
        "{}",
        added.stdout
    );
    let again = shell.run(&["opt-out", "add", "+85291234567"]).await.ok();
    assert!(again.stdout.contains("already on"), "{}", again.stdout);

    let listed = shell.run(&["opt-out", "list", "--json"]).await.ok().json();
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["opt_outs"][0]["phone_number"], "+85291234567");
    assert_eq!(listed["opt_outs"][0]["scope"], "user");

    // A send to it is accepted and that recipient ends opted out, never sent.
    let sent = shell
        .run(&[
            "send", "--to", "91234567", "--to", "61234567", "--text", "hi", "--json",
        ])
        .await
        .ok()
        .json();
    let done = shell
        .run(&["watch", &sent["id"].to_string(), "--json"])
        .await
        .ok()
        .json();
    assert_eq!(done["opted_out_count"], 1);
    assert_eq!(done["success_count"], 1);
    assert!(app.mock.received_for("85291234567").is_empty());

    // Import: a bad line refuses the whole file here, before any request.
    let bad = shell.file("bad.csv", "phone\n61110000\n12ab\n");
    let refused = shell
        .run(&["opt-out", "import", bad.to_str().unwrap()])
        .await;
    assert_eq!(refused.code, 2);
    assert!(
        refused
            .stderr
            .contains("bad.csv:3: \"12ab\": not a phone number"),
        "{}",
        refused.stderr
    );
    let good = shell.file("good.csv", "name,phone\nA,61110000\nB,+85291234567\n");
    let imported = shell
        .run(&["opt-out", "import", good.to_str().unwrap(), "--json"])
        .await
        .ok()
        .json();
    assert_eq!(imported["added"], 1);
    assert_eq!(imported["already_listed"], 1);

    let removed = shell
        .run(&["opt-out", "remove", "91234567", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(removed["removed"], true);
    assert_eq!(removed["phone_number"], "+85291234567");
    let not_listed = shell.run(&["opt-out", "remove", "91234567"]).await;
    assert_eq!(not_listed.code, 1);
    assert!(
        not_listed.stderr.contains("HTTP 404)"),
        "{}",
        not_listed.stderr
    );

    // The global list is admins' to change.
    let (_, staff_token) = app.create_user("staff", "Staff#pass1").await;
    let staff = Shell::with_env(&app, &staff_token);
    let forbidden = staff.run(&["opt-out", "add", "91234567", "--global"]).await;
    assert_eq!(forbidden.code, 1);
    assert!(
        forbidden.stderr.contains("HTTP 403)"),
        "{}",
        forbidden.stderr
    );
    shell
        .run(&["opt-out", "add", "91234567", "--global"])
        .await
        .ok();
    let global = staff
        .run(&["opt-out", "list", "--global", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(global["opt_outs"][0]["phone_number"], "+85291234567");
    app.teardown().await;
}
