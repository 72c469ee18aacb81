//! The `ventana replay` contract (README, "`ventana replay`"), driven through the real binary.

mod common;

use common::ventana;
use std::path::{Path, PathBuf};
use std::process::Output;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ventana-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const EXAMPLES: [&str; 3] = ["whatsapp", "messenger", "instagram-comment"];

#[test]
fn examples_replay_to_their_recorded_outputs_byte_for_byte() {
    // `examples/NAME.out.jsonl` records `ventana replay --input examples/NAME.jsonl --snapshots`.
    // After an intended change of behaviour, regenerate with VENTANA_UPDATE_EXAMPLES=1.
    for name in EXAMPLES {
        let input = format!("examples/{name}.jsonl");
        let output = ventana(&["replay", "--input", &input, "--snapshots"]);
        assert!(output.status.success(), "{name}: {}", stderr(&output));
        assert_eq!(stderr(&output), "", "{name}");
        let recorded = root().join(format!("examples/{name}.out.jsonl"));
        if std::env::var_os("VENTANA_UPDATE_EXAMPLES").is_some() {
            std::fs::write(&recorded, &output.stdout).unwrap();
        }
        let expected = std::fs::read_to_string(&recorded).unwrap();
        assert_eq!(
            stdout(&output),
            expected,
            "{name} differs from {}",
            recorded.display()
        );
        let again = ventana(&["replay", "--input", &input, "--snapshots"]);
        assert_eq!(again.stdout, output.stdout, "{name}: not deterministic");
    }
}

#[test]
fn every_line_is_an_output_event_and_snapshots_come_last_sorted() {
    let output = ventana(&[
        "replay",
        "--input",
        "examples/whatsapp.jsonl",
        "--snapshots",
    ]);
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    let (snapshots, outputs): (Vec<&str>, Vec<&str>) = lines
        .iter()
        .partition(|l| l.contains(r#""type":"snapshot""#));
    assert_eq!(snapshots.len(), 1);
    assert_eq!(lines.last(), snapshots.last());
    for line in outputs {
        ventana_wire::parse_output(line).unwrap_or_else(|e| panic!("{line}: {e}"));
    }
}

#[test]
fn invalid_lines_are_reported_with_their_number_and_skipped() {
    let conversation =
        r#""conversation":{"channel":"whatsapp","account":"a","channel_id":"b","contact_id":"c"}"#;
    let log = [
        format!(r#"{{"id":"c1","type":"customer_message","occurred_at":"2026-03-02T10:00:00Z",{conversation}}}"#),
        "{not json".to_owned(),
        format!(r#"{{"id":"x","type":"fax","occurred_at":"2026-03-02T10:00:00Z",{conversation}}}"#),
        String::new(),
        format!(r#"{{"id":"a1","type":"outbound_message","occurred_at":"2026-03-02T10:01:00Z","kind":"message",{conversation}}}"#),
        format!(r#"{{"id":"c2","type":"customer_message","occurred_at":"2026-03-02T11:00:00Z","logged_at":"2026-03-02T10:50:00Z",{conversation}}}"#),
        format!(r#"{{"id":"a2","type":"outbound_message","occurred_at":"2026-03-02T10:02:00Z","sender":"agent","kind":"message",{conversation}}}"#),
    ]
    .join("\n");
    let path = temp_file("invalid.jsonl", &log);
    let output = ventana(&["replay", "--input", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let errors: Vec<String> = stderr(&output).lines().map(str::to_owned).collect();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(errors[0].starts_with("line 2: undecodable"), "{errors:?}");
    assert!(errors[1] == "line 3: unknown event type", "{errors:?}");
    assert!(
        errors[2].starts_with("line 5: missing field `sender`"),
        "{errors:?}"
    );
    assert!(errors[3].starts_with("line 6: clock skew"), "{errors:?}");
    // The valid events still flowed: the customer opened, the agent was accepted.
    let text = stdout(&output);
    assert!(
        text.contains(r#""caused_by":"c1""#) && text.contains(r#""type":"outbound_accepted""#),
        "{text}"
    );
}

#[test]
fn an_unreadable_file_or_a_bad_policy_exits_1_with_a_clear_message() {
    let output = ventana(&["replay", "--input", "no/such/file.jsonl"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("cannot read no/such/file.jsonl"),
        "{}",
        stderr(&output)
    );

    let policy = temp_file(
        "bad.toml",
        "[channels.messenger]\nhuman_agent_window = \"12h\"\n",
    );
    let output = ventana(&[
        "replay",
        "--input",
        "examples/whatsapp.jsonl",
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("channels.messenger.human_agent_window"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_data_directory_that_holds_no_store_is_refused_not_created() {
    let parent = std::env::temp_dir().join(format!("ventana-cli-{}", std::process::id()));
    let typo = parent.join("ventana-dta");
    for command in ["verify", "erase"] {
        let mut args = vec![command, "--data", typo.to_str().unwrap()];
        if command == "erase" {
            args.extend(["whatsapp/a/b/c", "--yes"]);
        }
        let output = ventana(&args);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{command}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains("no ventana store in"),
            "{command}: {}",
            stderr(&output)
        );
        assert!(!typo.exists(), "{command} created {}", typo.display());
    }
}

#[test]
fn a_policy_file_changes_the_decisions() {
    let policy = temp_file(
        "no-extension.toml",
        "[channels.messenger]\nhuman_agent_window = \"0s\"\n",
    );
    let output = ventana(&[
        "replay",
        "--input",
        "examples/messenger.jsonl",
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(!text.contains(r#""tag":"human_agent""#), "{text}");
    assert!(
        text.contains(r#""message_id":"m_a2","source":"policy","reason":"window_expired""#),
        "{text}"
    );
}

#[test]
fn until_stops_folding_and_fires_every_deadline_up_to_it() {
    let output = ventana(&[
        "replay",
        "--input",
        "examples/whatsapp.jsonl",
        "--until",
        "2026-03-03T12:00:00Z",
        "--snapshots",
    ]);
    assert!(output.status.success());
    let text = stdout(&output);
    assert!(
        !text.contains("wamid.c3"),
        "events after --until are not folded"
    );
    let snapshot = text.lines().last().unwrap();
    assert!(snapshot.contains(r#""state":"expired""#), "{snapshot}");
    assert!(snapshot.contains(r#""allowed":["template"]"#), "{snapshot}");
}

#[test]
fn the_table_format_is_a_readable_timeline() {
    let output = ventana(&[
        "replay",
        "--input",
        "examples/instagram-comment.jsonl",
        "--format",
        "table",
    ]);
    assert!(output.status.success());
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0], "instagram/acme/ig-200/igsid-42",
        "the conversation first"
    );
    assert!(lines[2].starts_with("TIME") && lines[2].contains("STATE AFTER"));
    // Cells and notes wrap: read the words whatever the line breaks.
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.contains("NOT DELIVERED: awaiting_customer_acceptance"),
        "{text}"
    );
    assert!(words.contains("→ duplicate, ignored (R14)"), "{text}");
}

#[test]
fn terminal_output_fits_120_columns_with_times_to_the_second() {
    let all: String = EXAMPLES
        .iter()
        .map(|name| std::fs::read_to_string(root().join(format!("examples/{name}.jsonl"))).unwrap())
        .collect();
    let mixed = temp_file("mixed.jsonl", &all);
    let mut outputs = vec![ventana(&[
        "replay",
        "--input",
        mixed.to_str().unwrap(),
        "--format",
        "table",
    ])];
    for name in EXAMPLES {
        let input = format!("examples/{name}.jsonl");
        let first: serde_json::Value = serde_json::from_str(
            std::fs::read_to_string(root().join(&input))
                .unwrap()
                .lines()
                .next()
                .unwrap(),
        )
        .unwrap();
        let c = &first["conversation"];
        let key = ["channel", "account", "channel_id", "contact_id"]
            .map(|f| c[f].as_str().unwrap().to_owned())
            .join("/");
        outputs.push(ventana(&["replay", "--input", &input, "--format", "table"]));
        outputs.push(ventana(&["explain", &key, "--input", &input]));
    }
    for output in &outputs {
        assert!(output.status.success(), "{}", stderr(output));
        let text = stdout(output);
        for line in text.lines() {
            assert!(
                line.chars().count() <= 120,
                "{} columns: {line}",
                line.chars().count()
            );
        }
        // Rows start with an instant for people: `2026-03-02 10:00:00`, to the second.
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("2026-")).collect();
        assert!(!rows.is_empty(), "{text}");
        for row in rows {
            let time = &row[..19];
            assert!(
                time.as_bytes()[10] == b' '
                    && time[11..].chars().filter(|c| *c == ':').count() == 2,
                "{row}"
            );
            assert!(row[19..].starts_with("  "), "{row}");
        }
    }
    // Several conversations: a legend, and `#N` in the table.
    let mixed = stdout(&outputs[0]);
    assert!(
        mixed.starts_with("#1  whatsapp/acme/15550001111/4915112345678\n#2  "),
        "{mixed}"
    );
}

#[test]
fn help_explains_every_flag() {
    let text = stdout(&ventana(&["replay", "--help"]));
    for flag in ["--input", "--policy", "--until", "--snapshots", "--format"] {
        assert!(text.contains(flag), "{flag} missing from:\n{text}");
    }
}

#[test]
fn replay_takes_its_file_with_or_without_input() {
    let flag = ventana(&["replay", "--input", "examples/whatsapp.jsonl"]);
    let positional = ventana(&["replay", "examples/whatsapp.jsonl"]);
    assert!(positional.status.success(), "{}", stderr(&positional));
    assert_eq!(stdout(&positional), stdout(&flag));
    let neither = ventana(&["replay"]);
    assert_eq!(neither.status.code(), Some(2));
    assert!(stderr(&neither).contains("--input"), "{}", stderr(&neither));
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    // Far more output than a pipe holds: the writes after the reader is gone fail.
    let events: String = (0..5_000)
        .map(|n| {
            format!(
                r#"{{"id":"c{n}","type":"customer_message","occurred_at":"2026-03-02T10:00:00Z","conversation":{{"channel":"whatsapp","account":"acme","channel_id":"1","contact_id":"{n}"}}}}"#
            ) + "\n"
        })
        .collect();
    let input = temp_file("many.jsonl", &events);
    for format in ["json", "table"] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ventana"))
            .args([
                "replay",
                "--input",
                input.to_str().unwrap(),
                "--format",
                format,
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Read one line, then go away (`| head -1`).
        let mut first = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        std::io::BufRead::read_line(&mut out, &mut first).unwrap();
        assert!(!first.is_empty());
        drop(out);
        let output = child.wait_with_output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{format}: {}",
            stderr(&output)
        );
        assert_eq!(stderr(&output), "", "{format}");
    }
}

#[test]
fn without_nats_the_live_commands_say_so_at_once_in_one_line() {
    let port = ventana_tests::nats::free_port();
    let url = format!("nats://127.0.0.1:{port}");
    for args in [
        vec!["state", "whatsapp/acme/1/2"],
        vec!["check", "whatsapp/acme/1/2"],
        vec!["tail"],
        vec!["import", "examples/whatsapp.jsonl"],
        vec!["export"],
    ] {
        let mut args = args.clone();
        args.extend(["--nats", &url]);
        let output = ventana(&args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let error = stderr(&output);
        assert_eq!(error.lines().count(), 1, "{args:?}: {error}");
        assert!(
            error.contains(&url)
                && error.contains("connection refused")
                && error.contains("ventana dev"),
            "{args:?}: {error}"
        );
    }
}
