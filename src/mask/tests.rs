use super::*;
use std::collections::BTreeMap;

const PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n\
MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n\
NMoSfm76oqFvAp8Gy0iz5sxjZmSnXyCdPEovGhLa0VzMaQ8s+CLOyS56YyCFGeJZ\n\
-----END PRIVATE KEY-----\n";
const TOKEN: &str = "sk_live_51HqLyjWDarjtT1zdp7dc";

fn masker(values: &[(&str, &str)]) -> Masker {
    Masker::new(values.iter().map(|(n, v)| (*n, v.as_bytes())))
}

/// Feeds `text` cut at `cuts` (positions, increasing) and finishes; checks after every feed that no
/// more is held than may be the start of a value.
fn run_cut(m: &Masker, text: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut stream = m.stream();
    let mut out = Vec::new();
    let mut from = 0;
    for &to in cuts.iter().chain(std::iter::once(&text.len())) {
        stream.feed(&text[from..to], &mut out);
        from = to;
    }
    stream.finish(&mut out);
    assert_eq!(stream.held(), 0);
    out
}

fn whole(m: &Masker, text: &[u8]) -> Vec<u8> {
    run_cut(m, text, &[])
}

fn byte_by_byte(m: &Masker, text: &[u8]) -> Vec<u8> {
    let cuts: Vec<usize> = (1..text.len()).collect();
    run_cut(m, text, &cuts)
}

/// No 12-byte piece of `value` (nor all of it, if shorter) is in `out`.
fn assert_no_piece_of(value: &str, out: &[u8]) {
    let value = value.as_bytes();
    let n = value.len().min(12);
    for piece in value.windows(n) {
        assert!(
            !out.windows(n).any(|w| w == piece),
            "{:?} holds {:?} of a value",
            String::from_utf8_lossy(out),
            String::from_utf8_lossy(piece)
        );
    }
}

/// The definition in the module's documentation, computed on the whole text at once.
fn reference(values: &[(&str, &[u8])], text: &[u8]) -> Vec<u8> {
    let mut names: BTreeMap<&[u8], &str> = BTreeMap::new();
    for &(name, value) in values {
        if value.len() >= MIN_LEN {
            let entry = names.entry(value).or_insert(name);
            *entry = (*entry).min(name);
        }
    }
    let mut occurrences = Vec::new();
    for (&value, &name) in &names {
        for start in 0..text.len() {
            if text[start..].starts_with(value) {
                occurrences.push((start, start + value.len(), name));
            }
        }
    }
    let maximal: Vec<(usize, usize, &str)> = {
        let mut m: Vec<_> = occurrences
            .iter()
            .filter(|&&(s, e, _)| {
                !occurrences
                    .iter()
                    .any(|&(s2, e2, _)| s2 <= s && e <= e2 && (s2, e2) != (s, e))
            })
            .copied()
            .collect();
        m.sort();
        m
    };
    let mut out = Vec::new();
    let (mut emitted, mut run_end) = (0, 0);
    let mut run_names: Vec<&str> = Vec::new();
    for (start, end, name) in maximal {
        if start >= run_end {
            out.extend_from_slice(&text[emitted..start]);
            run_names.clear();
        }
        if !run_names.contains(&name) {
            out.extend_from_slice(format!("<{name} masked by r4-run>").as_bytes());
            run_names.push(name);
        }
        run_end = run_end.max(end);
        emitted = run_end;
    }
    out.extend_from_slice(&text[emitted..]);
    out
}

/// The longest suffix of `text` that is a proper prefix of a value: all that may be held.
fn may_hold(values: &[(&str, &[u8])], text: &[u8]) -> usize {
    values
        .iter()
        .filter(|(_, v)| v.len() >= MIN_LEN)
        .flat_map(|(_, v)| (0..v.len()).filter(move |&k| text.ends_with(&v[..k])))
        .max()
        .unwrap_or(0)
}

/// A small deterministic generator, so a failure can be replayed (the bench draws from it too).
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, alphabet: &[u8], len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len())])
            .collect()
    }
}

fn text(s: &[u8]) -> String {
    String::from_utf8_lossy(s).into_owned()
}

#[test]
fn a_value_written_whole_is_replaced_by_a_marker_naming_it() {
    let m = masker(&[("STRIPE_KEY", TOKEN), ("PORT", "8080")]);
    let input = format!("connecting with key={TOKEN} to :8080\n");
    let out = whole(&m, input.as_bytes());
    assert_eq!(
        text(&out),
        "connecting with key=<STRIPE_KEY masked by r4-run> to :8080\n"
    );
    assert_eq!(m.len(), 1);
}

#[test]
fn a_value_cut_at_any_two_points_or_byte_by_byte_is_still_replaced() {
    let m = masker(&[("STRIPE_KEY", TOKEN), ("OTHER", "sk_live_other_value")]);
    let input = format!("key: {TOKEN}, again:{TOKEN}!\n");
    let want = "key: <STRIPE_KEY masked by r4-run>, again:<STRIPE_KEY masked by r4-run>!\n";
    let bytes = input.as_bytes();
    for i in 0..=bytes.len() {
        for j in i..=bytes.len() {
            let out = run_cut(&m, bytes, &[i, j]);
            assert_eq!(text(&out), want, "cut at {i} and {j}");
        }
    }
    let out = byte_by_byte(&m, bytes);
    assert_eq!(text(&out), want);
    assert_no_piece_of(TOKEN, &out);
}

#[test]
fn a_multi_line_pem_is_replaced_whole_however_it_is_written() {
    let m = masker(&[("TLS_KEY", PEM), ("STRIPE_KEY", TOKEN)]);
    let input = format!(
        "starting\nloaded key:\n{PEM}listening on :443\n-----BEGIN CERTIFICATE-----\nMIIB\n"
    );
    let want = "starting\nloaded key:\n<TLS_KEY masked by r4-run>listening on :443\n-----BEGIN CERTIFICATE-----\nMIIB\n";
    let bytes = input.as_bytes();
    assert_eq!(text(&whole(&m, bytes)), want);
    let out = byte_by_byte(&m, bytes);
    assert_eq!(text(&out), want);
    assert_no_piece_of(PEM, &out);
    // Line by line, as a program that writes its lines one by one.
    let cuts: Vec<usize> = (0..bytes.len())
        .filter(|&i| bytes[i] == b'\n')
        .map(|i| i + 1)
        .collect();
    assert_eq!(text(&run_cut(&m, bytes, &cuts)), want);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..200 {
        let count = rng.below(12);
        let mut cuts: Vec<usize> = (0..count).map(|_| rng.below(bytes.len())).collect();
        cuts.sort();
        assert_eq!(text(&run_cut(&m, bytes, &cuts)), want, "cuts {cuts:?}");
    }
}

#[test]
fn text_without_values_passes_unchanged_and_in_order() {
    let m = masker(&[
        ("TLS_KEY", PEM),
        ("STRIPE_KEY", TOKEN),
        ("DB", "postgres://u:pw@db/x"),
    ]);
    let mut rng = Rng(42);
    let all: Vec<u8> = (0..=255).collect();
    for _ in 0..50 {
        let len = rng.below(3000);
        let input = rng.bytes(&all, len);
        let count = rng.below(40);
        let mut cuts: Vec<usize> = (0..count).map(|_| rng.below(len + 1)).collect();
        cuts.sort();
        assert_eq!(run_cut(&m, &input, &cuts), input);
        assert_eq!(byte_by_byte(&m, &input), input);
    }
    // Text that starts values without finishing them comes out as it went in.
    let input = b"sk_live_51 -----BEGIN PRIVATE KEY-----\nMIIE postgres://u:pw@db/y sk_live_51HqLyjWDarjtT1zdp7d";
    assert_eq!(byte_by_byte(&m, input), input);
    assert_eq!(whole(&m, input), input);
}

#[test]
fn values_under_six_bytes_are_not_masked() {
    let m = masker(&[
        ("PORT", "8080"),
        ("FLAG", "true"),
        ("NAME", "abcde"),
        ("SIX", "abcdef"),
    ]);
    assert_eq!(m.len(), 1);
    let out = whole(&m, b"port 8080 true abcde abcdef\n");
    assert_eq!(text(&out), "port 8080 true abcde <SIX masked by r4-run>\n");
    let m = masker(&[("PORT", "8080"), ("FLAG", "true")]);
    assert!(m.is_empty());
    assert_eq!(whole(&m, b"port 8080 true\n"), b"port 8080 true\n");
}

#[test]
fn a_value_that_begins_a_longer_one_gives_way_to_it() {
    let m = masker(&[("SHORT", "secret-abc"), ("LONG", "secret-abc-def-ghi")]);
    assert_eq!(
        text(&byte_by_byte(&m, b"x secret-abc-def-ghi y\n")),
        "x <LONG masked by r4-run> y\n"
    );
    assert_eq!(
        text(&byte_by_byte(&m, b"x secret-abc-def y\n")),
        "x <SHORT masked by r4-run>-def y\n"
    );
    // The shorter one, written last, is still masked at the end of the stream.
    assert_eq!(
        text(&byte_by_byte(&m, b"x secret-abc")),
        "x <SHORT masked by r4-run>"
    );
}

#[test]
fn overlapping_values_are_both_masked_and_no_tail_is_left() {
    let first = "alpha-bravo-charlie";
    let second = "charlie-delta-echo";
    let m = masker(&[("FIRST", first), ("SECOND", second)]);
    let out = byte_by_byte(&m, b"[alpha-bravo-charlie-delta-echo]\n");
    assert_eq!(
        text(&out),
        "[<FIRST masked by r4-run><SECOND masked by r4-run>]\n"
    );
    assert_no_piece_of(first, &out);
    assert_no_piece_of(second, &out);
    // A value inside another is part of it.
    let m = masker(&[("OUTER", "xx-inner-value-xx"), ("INNER", "inner-value")]);
    assert_eq!(
        text(&byte_by_byte(&m, b"a xx-inner-value-xx b inner-value c\n")),
        "a <OUTER masked by r4-run> b <INNER masked by r4-run> c\n"
    );
}

#[test]
fn a_value_repeated_gets_a_marker_each_time_but_one_for_a_run_overlapping_itself() {
    let m = masker(&[("A", "aaaaaa"), ("T", "tok123")]);
    assert_eq!(
        text(&whole(&m, b"tok123tok123 tok123\n")),
        "<T masked by r4-run><T masked by r4-run> <T masked by r4-run>\n"
    );
    let line = [b'a'; 10_000];
    assert_eq!(text(&byte_by_byte(&m, &line)), "<A masked by r4-run>");
    assert_eq!(text(&whole(&m, b"aaaaa")), "aaaaa");
}

#[test]
fn one_value_under_two_names_is_masked_under_the_name_that_sorts_first() {
    for values in [
        [("ZETA", TOKEN), ("ALPHA", TOKEN)],
        [("ALPHA", TOKEN), ("ZETA", TOKEN)],
    ] {
        let m = masker(&values);
        assert_eq!(m.len(), 1);
        let out = whole(&m, format!("{TOKEN}\n").as_bytes());
        assert_eq!(text(&out), "<ALPHA masked by r4-run>\n");
    }
}

#[test]
fn only_what_may_begin_a_value_is_held_and_a_line_is_not_kept_waiting() {
    let m = masker(&[("STRIPE_KEY", TOKEN)]);
    let mut stream = m.stream();
    let mut out = Vec::new();
    stream.feed(b"ready\n", &mut out);
    assert_eq!(text(&out), "ready\n");
    assert_eq!(stream.held(), 0);
    stream.feed(b"key=sk_live_5", &mut out);
    assert_eq!(text(&out), "ready\nkey=");
    assert_eq!(stream.held(), "sk_live_5".len());
    stream.feed(b"1HqLyjWDarjtT1zdp7dc", &mut out);
    // Complete and not the start of anything longer: out with the write that completed it.
    assert_eq!(text(&out), "ready\nkey=<STRIPE_KEY masked by r4-run>");
    assert_eq!(stream.held(), 0);
    stream.feed(b"\nsk_live_5x\n", &mut out);
    assert_eq!(
        text(&out),
        "ready\nkey=<STRIPE_KEY masked by r4-run>\nsk_live_5x\n"
    );
    assert_eq!(stream.held(), 0);
}

#[test]
fn a_value_that_may_still_grow_waits_for_the_next_byte_only() {
    let m = masker(&[("SHORT", "secret-abc"), ("LONG", "secret-abc-def-ghi")]);
    let mut stream = m.stream();
    let mut out = Vec::new();
    stream.feed(b"x secret-abc", &mut out);
    assert_eq!(text(&out), "x ");
    assert_eq!(stream.held(), "secret-abc".len());
    stream.feed(b"\n", &mut out);
    assert_eq!(text(&out), "x <SHORT masked by r4-run>\n");
    assert_eq!(stream.held(), 0);
}

#[test]
fn finish_writes_what_was_held_and_starts_afresh() {
    let m = masker(&[("STRIPE_KEY", TOKEN)]);
    let mut stream = m.stream();
    let mut out = Vec::new();
    stream.feed(b"partial sk_live_51Hq", &mut out);
    assert_eq!(text(&out), "partial ");
    stream.finish(&mut out);
    assert_eq!(text(&out), "partial sk_live_51Hq");
    assert_eq!(stream.held(), 0);
    // A value cannot span the end of one stream and the start of the next.
    stream.feed(b"LyjWDarjtT1zdp7dc ", &mut out);
    stream.feed(TOKEN.as_bytes(), &mut out);
    stream.finish(&mut out);
    assert_eq!(
        text(&out),
        "partial sk_live_51HqLyjWDarjtT1zdp7dc <STRIPE_KEY masked by r4-run>"
    );
}

#[test]
fn with_no_values_everything_passes_straight_through() {
    let m = Masker::new(std::iter::empty());
    assert!(m.is_empty());
    let mut stream = m.stream();
    let mut out = Vec::new();
    stream.feed(b"anything at all", &mut out);
    assert_eq!(stream.held(), 0);
    stream.finish(&mut out);
    assert_eq!(out, b"anything at all");
}

#[test]
fn names_are_escaped_in_the_marker() {
    let m = masker(&[("EVIL\u{1b}[2K\nNAME", TOKEN)]);
    let out = whole(&m, TOKEN.as_bytes());
    assert_eq!(text(&out), "<EVIL\\u{1b}[2K\\nNAME masked by r4-run>");
}

#[test]
fn the_same_as_the_definition_for_any_values_text_and_writes() {
    // Few letters, so that values overlap, nest and repeat, and text often begins them.
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let alphabet = b"abc\n";
    for round in 0..3000 {
        let count = 1 + rng.below(6);
        let mut owned: Vec<(String, Vec<u8>)> = Vec::new();
        for i in 0..count {
            // Names are unique, as in a project; now and then a value is another's under a new name.
            let value = match rng.below(8) {
                0 if i > 0 => owned[rng.below(i)].1.clone(),
                _ => {
                    let len = 3 + rng.below(9);
                    rng.bytes(alphabet, len)
                }
            };
            owned.push((format!("V{}", rng.below(100)), value));
            owned[i].0.push_str(&format!("_{i}"));
        }
        let values: Vec<(&str, &[u8])> = owned
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        let mut input = Vec::new();
        while input.len() < 120 {
            if rng.below(3) == 0 {
                input.extend_from_slice(values[rng.below(count)].1);
            } else {
                let len = 1 + rng.below(4);
                input.extend(rng.bytes(alphabet, len));
            }
        }
        let want = reference(&values, &input);
        let m = Masker::new(values.iter().copied());
        let mut stream = m.stream();
        let mut out = Vec::new();
        let mut from = 0;
        while from < input.len() {
            let to = (from + 1 + rng.below(if round % 2 == 0 { 3 } else { 30 })).min(input.len());
            stream.feed(&input[from..to], &mut out);
            from = to;
            assert!(
                want.starts_with(&out),
                "round {round}: emitted {:?}, which the whole text does not begin with: {:?}\nvalues {owned:?}\ninput {:?}, fed up to {to}",
                text(&out),
                text(&want),
                text(&input)
            );
            let scan = &stream.scan;
            assert!(
                scan.held[..scan.held_start].iter().all(|&b| b == 0),
                "round {round}: what was written out is still in the held buffer"
            );
            assert!(
                stream.held() <= may_hold(&values, &input[..to]),
                "round {round}: holds {} bytes after {:?}",
                stream.held(),
                text(&input[..to])
            );
        }
        stream.finish(&mut out);
        assert_eq!(text(&out), text(&want), "round {round}: values {owned:?}");
    }
}

#[test]
fn two_thousand_values_are_all_found() {
    let mut rng = Rng(7);
    let alphabet: Vec<u8> = (b'0'..=b'9')
        .chain(b'a'..=b'z')
        .chain(b'A'..=b'Z')
        .collect();
    let owned: Vec<(String, Vec<u8>)> = (0..2000)
        .map(|i| {
            let len = 20 + rng.below(180);
            (format!("VAR_{i:04}"), rng.bytes(&alphabet, len))
        })
        .collect();
    let values: Vec<(&str, &[u8])> = owned
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    let m = Masker::new(values.iter().copied());
    assert_eq!(m.len(), 2000);
    let mut input = Vec::new();
    for (i, (_, v)) in owned.iter().enumerate().step_by(7) {
        input.extend_from_slice(format!("line {i}: value=").as_bytes());
        input.extend_from_slice(v);
        input.extend_from_slice(b" done\n");
    }
    let want = reference(&values, &input);
    let mut cuts: Vec<usize> = (0..500).map(|_| rng.below(input.len())).collect();
    cuts.sort();
    let out = run_cut(&m, &input, &cuts);
    assert_eq!(text(&out), text(&want));
    assert_eq!(
        out.windows(b"masked by r4-run".len())
            .filter(|w| w == b"masked by r4-run")
            .count(),
        2000_usize.div_ceil(7)
    );
    let pieces: std::collections::HashSet<&[u8]> =
        owned.iter().flat_map(|(_, v)| v.windows(12)).collect();
    assert!(!out.windows(12).any(|w| pieces.contains(w)));
}

/// Every byte the automaton keeps.
fn image(m: &Masker) -> Vec<u8> {
    let a = m.automaton.as_ref().unwrap();
    let mut image = a.classes.to_vec();
    image.extend(a.dense.iter().flat_map(|s| s.to_le_bytes()));
    image.extend_from_slice(&a.class);
    image.extend(a.fail.iter().flat_map(|s| s.to_le_bytes()));
    image.extend(a.branches.iter().map(|b| b.1));
    image
}

fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_automaton_holds_no_value_in_plain() {
    // A binary value using every byte: with classes dealt in byte order its trie path would be the
    // value itself, so this test can see plaintext when it is there.
    let binary: Vec<u8> = (0..=255u8).rev().collect();
    let in_order = Masker::with_classes([("BINARY", binary.as_slice())], |_| {});
    assert!(
        holds(&image(&in_order), &binary[8..20]),
        "the negative control"
    );
    let values = [
        ("BINARY", binary.as_slice()),
        ("STRIPE_KEY", TOKEN.as_bytes()),
    ];
    for _ in 0..20 {
        let dealt = Masker::new(values.iter().copied());
        let image = image(&dealt);
        for (_, value) in values {
            for piece in value.windows(8) {
                assert!(!holds(&image, piece));
            }
        }
    }
    let m = masker(&[("TLS_KEY", PEM)]);
    for line in PEM.lines() {
        assert!(!holds(&image(&m), &line.as_bytes()[..8]), "{line}");
    }
}

#[test]
fn the_bytes_of_a_found_value_are_wiped_from_what_is_held() {
    let m = masker(&[("SHORT", "secret-abc"), ("LONG", "secret-abc-def-ghi")]);
    let mut stream = m.stream();
    let mut out = Vec::new();
    // "secret-abc" is found but may yet be the start of LONG: held, and wiped where it is held.
    stream.feed(b"x secret-", &mut out);
    stream.feed(b"abc", &mut out);
    assert_eq!(stream.held(), 10);
    let buffer = &stream.scan.held;
    let whole_buffer = &buffer[..buffer.len()];
    assert!(!holds(whole_buffer, b"secret"));
    assert!(!holds(whole_buffer, b"abc"));
    stream.feed(b"!", &mut out);
    assert_eq!(text(&out), "x <SHORT masked by r4-run>!");

    // A beginning held in one write and completed by the next is not left behind either.
    let m = masker(&[("STRIPE_KEY", TOKEN)]);
    let mut stream = m.stream();
    let mut out = Vec::new();
    stream.feed(b"a long line to make room, then sk_live_51HqLy", &mut out);
    let held = stream.held();
    stream.feed(b"jWDarjtT1zdp7dc and more", &mut out);
    assert_eq!(held, "sk_live_51HqLy".len());
    let buffer = &stream.scan.held;
    assert!(!holds(&buffer[..buffer.len()], b"sk_live_51HqLy"));
    assert_eq!(
        text(&out),
        "a long line to make room, then <STRIPE_KEY masked by r4-run> and more"
    );
}

#[test]
fn masker_and_streams_go_to_other_threads() {
    fn shared<T: Send + Sync>() {}
    fn sent<T: Send>() {}
    shared::<Masker>();
    sent::<Stream>();
}
