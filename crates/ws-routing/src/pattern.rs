//! The syntax of one path segment: static text and matchit 0.9 parameters.
//!
//! A segment is either static text, or holds exactly one parameter `{name}`
//! with optional static text around it (`img-{id}.png`), or is a whole
//! catch-all `{*name}` (last segment only). Static text is limited to the
//! ASCII characters a URL path may hold without percent-encoding, because
//! request paths are matched as they arrive, undecoded.

/// The most parameters one route may declare.
///
/// matchit renames parameters to single letters internally and panics past
/// the alphabet; this bound keeps well clear of that and of silly routes.
pub(crate) const MAX_PARAMS: usize = 16;

/// Checks one character of static text (of a route or a prefix).
///
/// `{`, `}` and `*` are the caller's business: their meaning depends on
/// where they appear.
pub(crate) fn check_static_char(c: char) -> Result<(), String> {
    if c.is_ascii_alphanumeric() || "-._~!$&'()+,;=:@".contains(c) {
        return Ok(());
    }
    Err(match c {
        ' ' => "contains a space".to_owned(),
        c if c.is_control() => format!("contains a control character (U+{:04X})", c as u32),
        c if c.is_whitespace() => format!("contains whitespace (U+{:04X})", c as u32),
        '?' => "contains `?`; a query string is not part of a path".to_owned(),
        '#' => "contains `#`; a fragment is not part of a path".to_owned(),
        '%' => "contains `%`; percent-encoded characters are not supported, request paths \
                are matched undecoded"
            .to_owned(),
        '*' => "contains `*` outside a catch-all parameter `{*name}`".to_owned(),
        c if !c.is_ascii() => format!(
            "contains the non-ASCII character `{c}`; only ASCII letters, digits and \
             -._~!$&'()+,;=:@ are allowed"
        ),
        c => format!("contains `{c}`, which is not allowed in a URL path"),
    })
}

/// Refuses `.` and `..`: clients and proxies resolve them away, so such a
/// route could never be reached as written.
pub(crate) fn check_dot_segment(segment: &str) -> Result<(), String> {
    match segment {
        "." | ".." => Err(format!(
            "contains a `{segment}` segment, which clients resolve away"
        )),
        _ => Ok(()),
    }
}

/// Checks one non-empty segment of a route.
///
/// `is_last` tells whether a catch-all is allowed here; `names` collects the
/// parameter names seen so far in the route, to refuse duplicates.
pub(crate) fn check_segment<'a>(
    segment: &'a str,
    is_last: bool,
    names: &mut Vec<&'a str>,
) -> Result<(), String> {
    check_dot_segment(segment)?;
    if segment.contains("{{") || segment.contains("}}") {
        return Err(format!(
            "segment `{segment}` contains `{{{{` or `}}}}`; literal braces are not supported \
             in routes"
        ));
    }
    let opens = segment.matches('{').count();
    let closes = segment.matches('}').count();
    if opens > closes {
        return Err(format!(
            "segment `{segment}` has a `{{` without a matching `}}`"
        ));
    }
    if closes > opens {
        return Err(format!(
            "segment `{segment}` has a `}}` without a matching `{{`"
        ));
    }
    if opens > 1 {
        return Err(format!(
            "segment `{segment}` has more than one parameter; one per segment is allowed"
        ));
    }

    let (Some(open), Some(close)) = (segment.find('{'), segment.find('}')) else {
        return check_static(segment, true);
    };
    if close < open {
        return Err(format!(
            "segment `{segment}` has a `}}` without a matching `{{`"
        ));
    }
    let before = &segment[..open];
    let name = &segment[open + 1..close];
    let after = &segment[close + 1..];

    let name = match name.strip_prefix('*') {
        Some(rest) => {
            if !before.is_empty() || !after.is_empty() {
                return Err(format!(
                    "catch-all parameter `{{{name}}}` must be a whole segment, like `/{{{name}}}`"
                ));
            }
            if !is_last {
                return Err(format!(
                    "catch-all parameter `{{{name}}}` must be the last segment"
                ));
            }
            check_name(rest)?;
            rest
        }
        None => {
            check_name(name)?;
            name
        }
    };
    if names.contains(&name) {
        return Err(format!("parameter `{name}` appears more than once"));
    }
    names.push(name);
    if names.len() > MAX_PARAMS {
        return Err(format!("has more than {MAX_PARAMS} parameters"));
    }
    check_static(before, false)?;
    check_static(after, false)
}

/// Checks static text; `whole` when it is the whole segment.
fn check_static(text: &str, whole: bool) -> Result<(), String> {
    if whole
        && let Some(rest) = text.strip_prefix(':')
        && is_identifier(rest)
    {
        return Err(format!(
            "segment `{text}` looks like a parameter in an older syntax; write `{{{rest}}}`"
        ));
    }
    text.chars().try_for_each(check_static_char)
}

/// Parameter names are identifiers: ASCII letters, digits and `_`, not
/// starting with a digit.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("has a parameter with an empty name".to_owned());
    }
    if !is_identifier(name) {
        return Err(format!(
            "parameter name `{name}` is not an identifier (ASCII letters, digits and `_`, not \
             starting with a digit)"
        ));
    }
    Ok(())
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::{MAX_PARAMS, check_segment, check_static_char};

    fn segment(s: &str) -> Result<Vec<&str>, String> {
        let mut names = Vec::new();
        check_segment(s, true, &mut names).map(|()| names)
    }

    #[test]
    fn accepts_matchit_parameters() {
        assert_eq!(segment("echo"), Ok(vec![]));
        assert_eq!(segment("{room}"), Ok(vec!["room"]));
        assert_eq!(segment("img-{id}.png"), Ok(vec!["id"]));
        assert_eq!(segment("{*rest}"), Ok(vec!["rest"]));
        assert_eq!(segment("{_x9}"), Ok(vec!["_x9"]));
    }

    #[test]
    fn refuses_bad_parameters_with_a_reason() {
        for (s, reason) in [
            ("x{", "has a `{` without a matching `}`"),
            ("x}", "has a `}` without a matching `{`"),
            ("}x{", "has a `}` without a matching `{`"),
            ("{a}{b}", "more than one parameter"),
            ("{}", "empty name"),
            ("{*}", "empty name"),
            ("{9a}", "not an identifier"),
            ("{a-b}", "not an identifier"),
            ("{{a}}", "literal braces"),
            ("x{*rest}", "must be a whole segment"),
            (":room", "write `{room}`"),
            ("a*b", "outside a catch-all"),
            (".", "`.` segment"),
            ("..", "`..` segment"),
        ] {
            let err = segment(s).unwrap_err();
            assert!(err.contains(reason), "{s}: {err}");
        }
    }

    #[test]
    fn catch_all_only_last() {
        let mut names = Vec::new();
        let err = check_segment("{*rest}", false, &mut names).unwrap_err();
        assert!(err.contains("must be the last segment"), "{err}");
    }

    #[test]
    fn duplicate_names_and_too_many() {
        let mut names = vec!["room"];
        let err = check_segment("{room}", true, &mut names).unwrap_err();
        assert!(err.contains("`room` appears more than once"), "{err}");

        let segs: Vec<String> = (0..=MAX_PARAMS).map(|i| format!("{{p{i}}}")).collect();
        let mut names = Vec::new();
        let results: Vec<_> = segs
            .iter()
            .map(|s| check_segment(s, false, &mut names))
            .collect();
        assert!(results[..MAX_PARAMS].iter().all(Result::is_ok));
        assert!(
            results[MAX_PARAMS]
                .as_ref()
                .unwrap_err()
                .contains("more than 16")
        );
    }

    #[test]
    fn static_characters() {
        for c in "aZ09-._~!$&'()+,;=:@".chars() {
            assert_eq!(check_static_char(c), Ok(()), "{c}");
        }
        assert_eq!(check_static_char(' '), Err("contains a space".to_owned()));
        assert!(
            check_static_char('\t')
                .unwrap_err()
                .contains("control character (U+0009)")
        );
        assert!(
            check_static_char('\u{3000}')
                .unwrap_err()
                .contains("whitespace (U+3000)")
        );
        assert!(check_static_char('?').unwrap_err().contains("query"));
        assert!(check_static_char('#').unwrap_err().contains("fragment"));
        assert!(
            check_static_char('%')
                .unwrap_err()
                .contains("percent-encoded")
        );
        assert!(check_static_char('é').unwrap_err().contains("non-ASCII"));
        assert!(
            check_static_char('<')
                .unwrap_err()
                .contains("not allowed in a URL path")
        );
    }
}
