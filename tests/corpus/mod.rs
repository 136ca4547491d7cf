//! Hostile values for the `--dotenv` round-trip tests (shared by the test binaries).
#![allow(dead_code)]

/// The 29 values of `dotenv-formats.md`, then extra ones that force double quotes.
pub const NAMED: &[(&str, &str)] = &[
    ("V01_PLAIN", "plainvalue123"),
    ("V02_SPACE", "hello world"),
    ("V03_LEAD_TRAIL_SPACES", "  padded  "),
    ("V04_HASH", "abc#def"),
    ("V05_SPACE_HASH", "abc #def"),
    ("V06_DOLLAR_DOLLAR", "pa$$word"),
    ("V07_DOLLAR_VAR", "x$HOME"),
    ("V08_DOLLAR_BRACE", "x${HOME}y"),
    ("V09_DOLLAR_PAREN", "$(echo pwned)"),
    ("V10_BACKTICKS", "`echo pwned`"),
    ("V11_SINGLE_QUOTE", "it's"),
    ("V12_DOUBLE_QUOTE", "say \"hi\""),
    ("V13_BOTH_QUOTES", "it's \"x\""),
    ("V14_WIN_PATH", "C:\\path\\to"),
    ("V15_LITERAL_BACKSLASH_N", "a\\nb"),
    ("V16_TRAILING_BACKSLASH", "abc\\"),
    ("V17_DOUBLE_BACKSLASH", "a\\\\b"),
    ("V18_LF", "line1\nline2"),
    (
        "V19_PEM",
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7+/=\n-----END PRIVATE KEY-----\n",
    ),
    ("V20_CRLF", "line1\r\nline2"),
    ("V21_TAB", "a\tb"),
    ("V22_EQUALS", "a=b=c"),
    ("V23_UNICODE", "héllo wörld ✓ 日本 🦀"),
    ("V24_EMPTY", ""),
    ("V25_JSON", "{\"a\": [1, 2], \"b\": \"c\"}"),
    ("V26_URL_AMP", "https://x.example/p?a=1&b=2"),
    ("V27_BANG", "hello!world"),
    ("V28_SINGLE_QUOTED", "'quoted'"),
    ("V29_LEADING_DQUOTE", "\"leading"),
    // Extra: values forced into double quotes, or otherwise nasty.
    ("X01_CR_ONLY", "a\rb"),
    ("X02_TRAILING_CR", "abc\r"),
    ("X03_QUOTE_AND_DOLLAR", "it's $HOME and ${HOME}"),
    ("X04_QUOTE_AND_BACKTICK", "it's `id`"),
    ("X05_BACKSLASH_BACKTICK", "\\`id\\`"),
    ("X06_BACKSLASH_QUOTE_END", "abc\\'"),
    ("X07_LEADING_TRAILING_LF", "\nmid\n"),
    ("X08_ONLY_SPACES", "   "),
    ("X09_HASH_START", "#notacomment"),
    ("X10_EXPORT_WORD", "export X=1"),
    ("X11_QUOTE_NEWLINE_HASH", "it's\n# not a comment\nKEY=v"),
    ("X12_TAB_BACKSLASH_T", "\t\\t\t"),
    ("X13_DQ_LF_END", "x\"\n"),
    ("X14_SQ_DQ_CRLF", "'\"\r\n\"'"),
    ("X15_BACKSLASH_SPACE", "a\\ b"),
    ("X16_DEL_BELL", "\u{7}\u{1b}[31m\u{7f}"),
    ("X17_CONTROL", "\u{1}\u{2}\u{8}\u{b}\u{c}"),
    ("X18_NBSP_LSEP", "\u{a0}x\u{2028}y\u{feff}"),
    ("export", "named export"),
    ("_U", "underscore"),
    ("X19_EQ_START", "=start"),
    ("X20_SEMI_PIPE", "a;b|c&&d"),
];

/// The characters the generated values are drawn from: everything the quoting rules care about.
const ALPHABET: &[&str] = &[
    "a", "Z", "0", "_", ".", "/", ":", "@", "%", "+", ",", "=", "-", " ", "\t", "\n", "\r", "\r\n",
    "'", "\"", "`", "\\", "$", "${", "}", "{", "(", ")", "#", " #", "!", "&", ";", "|", "<", ">",
    "*", "?", "[", "]", "~", "^", "é", "✓", "🦀", "\u{7f}", "\u{1}", "\u{a0}", "\\n", "\\'",
    "'\\''", "export ", "\\\"",
];

/// `n` deterministic random variables `G0000_…` (xorshift; same set on every run).
pub fn generated(n: usize) -> Vec<(String, String)> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|i| {
            let len = (next() % 24) as usize;
            let mut v = String::new();
            for _ in 0..len {
                // Half the time a bare-safe run, so all three dotenv quotings occur.
                if next() % 3 == 0 {
                    v.push_str(ALPHABET[(next() % 13) as usize]);
                } else {
                    v.push_str(ALPHABET[(next() % ALPHABET.len() as u64) as usize]);
                }
            }
            (format!("G{i:04}_V"), v)
        })
        .collect()
}

/// The named corpus and 2,000 generated variables, as owned pairs.
pub fn all() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = NAMED
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    v.extend(generated(2000));
    v
}

pub fn as_refs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
}
