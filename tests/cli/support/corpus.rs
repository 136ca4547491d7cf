//! Hostile values: every character class that breaks a naive quoter, parser or shell.

pub const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\nVJTUt9Us8cKjMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n-----END PRIVATE KEY-----\n";

/// (name, value) pairs; names are valid shell names so every format can carry them.
pub fn hostile() -> Vec<(&'static str, &'static str)> {
    vec![
        ("PLAIN", "plain"),
        ("SPACE", "a b"),
        ("EDGE_SPACES", "  padded  "),
        ("HASH", "a#b"),
        ("SPACE_HASH", "a #b"),
        ("DOLLARS", "$$"),
        ("DOLLAR_HOME", "$HOME"),
        ("BRACED", "${HOME}"),
        ("SUBST", "$(id)"),
        ("BACKTICKS", "`id`"),
        ("SINGLE", "it's"),
        ("DOUBLE", "say \"hi\""),
        ("BOTH_QUOTES", "it's \"x\""),
        ("WIN_PATH", "C:\\path\\to"),
        ("LITERAL_NL", "a\\nb"),
        ("TRAILING_BS", "abc\\"),
        ("DOUBLE_BS", "a\\\\b"),
        ("NEWLINE", "line1\nline2"),
        ("PEM_BLOCK", PEM),
        ("CRLF", "a\r\nb"),
        ("TAB", "a\tb"),
        ("EQUALS", "a=b=c"),
        ("UNICODE", "héllo wörld ✓ 日本 🦀"),
        ("EMPTY", ""),
        ("JSON", "{\"a\": [1, \"two\"]}"),
        ("URL", "https://u:p@host/x?a=1&b=2"),
        ("BANG", "hello!world"),
        ("QUOTED", "'quoted'"),
        ("LEADING_DQ", "\"lead"),
    ]
}
