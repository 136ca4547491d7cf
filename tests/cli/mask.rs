//! `--mask`: the command's stdout and stderr pass through r4-run, every fetched value of 6 bytes or
//! more replaced by a marker naming it, however the command writes it.

use crate::support::{r4_run, server_with};

const TOKEN: &str = "tok_live_9f8e7d6c5b4a39281706";
const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\nVJTUt9Us8cKjMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictG\n-----END PRIVATE KEY-----";

/// Asserts that no 12 bytes of `value` are in `text`.
#[track_caller]
fn no_piece_of(value: &str, text: &str) {
    let v = value.as_bytes();
    for piece in v.windows(12) {
        assert!(
            !text.as_bytes().windows(12).any(|w| w == piece),
            "{:?} of the value is in the output:\n{text}",
            String::from_utf8_lossy(piece)
        );
    }
}

async fn masked(script: &str) -> crate::support::Ran {
    let server = server_with(&[("API_TOKEN", TOKEN), ("TLS_KEY", PEM), ("SHORT", "abc12")]).await;
    r4_run()
        .against(&server.uri())
        .args(["--mask", "--", "sh", "-c", script])
        .run_async()
        .await
}

#[tokio::test]
async fn a_value_written_whole_on_either_stream_is_replaced_by_its_name() {
    let ran = masked(
        "echo \"token=$API_TOKEN.\"; echo \"key: $TLS_KEY\" >&2; echo \"short=$SHORT\"; exit 3",
    )
    .await;
    ran.assert_code(3);
    let out = ran.stdout();
    let err = ran.stderr();
    assert_eq!(out, "token=<API_TOKEN masked by r4-run>.\nshort=abc12\n");
    assert_eq!(err, "key: <TLS_KEY masked by r4-run>\n");
    no_piece_of(TOKEN, &out);
    no_piece_of(PEM, &err);
}

#[tokio::test]
async fn a_value_written_in_pieces_with_pauses_is_still_caught() {
    // The token in three writes, a pause between them; the PEM line by line.
    let ran = masked(
        "printf 'a %s' \"$(printf %s \"$API_TOKEN\" | cut -c1-7)\"; sleep 0.1; \
         printf '%s' \"$(printf %s \"$API_TOKEN\" | cut -c8-20)\"; sleep 0.1; \
         printf '%s b\\n' \"$(printf %s \"$API_TOKEN\" | cut -c21-)\"; \
         printf '%s\\n' \"$TLS_KEY\" | while IFS= read -r line; do printf '%s\\n' \"$line\"; sleep 0.02; done",
    )
    .await;
    ran.assert_code(0);
    let out = ran.stdout();
    assert_eq!(
        out,
        "a <API_TOKEN masked by r4-run> b\n<TLS_KEY masked by r4-run>\n"
    );
    no_piece_of(TOKEN, &out);
    no_piece_of(PEM, &out);
}

#[tokio::test]
async fn order_and_unmasked_text_are_kept_and_a_signal_death_is_128_plus_n() {
    let ran =
        masked("i=0; while [ $i -lt 200 ]; do echo \"line $i\"; i=$((i+1)); done; kill -TERM $$")
            .await;
    ran.assert_code(143);
    let want: String = (0..200).map(|i| format!("line {i}\n")).collect();
    assert_eq!(ran.stdout(), want);
}

#[test]
fn a_finished_line_is_not_held_back() {
    // The command prints a line and waits: the line must come out while it waits.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(server_with(&[("API_TOKEN", TOKEN)]));
    let mut r4 = r4_run()
        .against(&server.uri())
        .args([
            "--mask",
            "--",
            "sh",
            "-c",
            "echo \"ready $API_TOKEN\"; exec sleep 60",
        ])
        .spawn();
    let line = r4.await_line("ready");
    assert_eq!(line, "ready <API_TOKEN masked by r4-run>");
    r4.signal(libc::SIGTERM);
    r4.assert_exit(143);
}

#[tokio::test]
async fn mask_comes_from_the_environment_and_cannot_go_with_exec() {
    let server = server_with(&[("API_TOKEN", TOKEN)]).await;
    let ran = r4_run()
        .against(&server.uri())
        .env("R4_MASK", "1")
        .args(["--", "sh", "-c", "echo $API_TOKEN"])
        .run_async()
        .await;
    ran.assert_code(0);
    assert_eq!(ran.stdout(), "<API_TOKEN masked by r4-run>\n");
    r4_run()
        .against(&server.uri())
        .args(["--mask", "--exec", "--", "true"])
        .run_async()
        .await
        .assert_failed_with("cannot be used with");
}
