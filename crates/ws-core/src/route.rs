//! Default routes derived from a component's name.

/// The default route of a component named `type_path` (its
/// [`Component::name`](crate::Component::name), a path such as
/// `vendor_extension::MyComponent`), like the original's
/// `/Vendor_Extension_MyComponent`: `::` becomes `_`, and every character
/// that is not an ASCII letter, digit, `_`, `-` or `.` becomes `_`, runs of
/// `_` produced that way collapse into one, and none is left at the end.
///
/// ```
/// assert_eq!(ws_core::default_route("demo_echo::Echo"), "/demo_echo_Echo");
/// assert_eq!(
///     ws_core::default_route("my_app::Wrap<my_app::Inner, 3>"),
///     "/my_app_Wrap_my_app_Inner_3"
/// );
/// ```
pub fn default_route(type_path: &str) -> String {
    let mut out = String::with_capacity(type_path.len() + 1);
    out.push('/');
    let mut last_was_sep = false;
    let mut chars = type_path.chars().peekable();
    while let Some(c) = chars.next() {
        let keep = c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if keep {
            out.push(c);
            last_was_sep = c == '_';
            continue;
        }
        if c == ':' && chars.peek() == Some(&':') {
            chars.next();
        }
        if !last_was_sep && out.len() > 1 {
            out.push('_');
            last_was_sep = true;
        }
    }
    while out.len() > 1 && out.ends_with('_') && !type_path.ends_with('_') {
        out.pop();
    }
    if out == "/" {
        out.push('_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::default_route;

    #[test]
    fn examples() {
        assert_eq!(default_route("demo_echo::Echo"), "/demo_echo_Echo");
        assert_eq!(default_route("a::b::C"), "/a_b_C");
        assert_eq!(default_route("x::Y<z::W>"), "/x_Y_z_W");
        assert_eq!(default_route("&dyn x::T"), "/dyn_x_T");
        assert_eq!(default_route("x::{{closure}}"), "/x_closure");
        assert_eq!(default_route("<>"), "/_");
        assert_eq!(default_route("a::B<[u8; 4]>"), "/a_B_u8_4");
    }

    #[test]
    fn only_safe_characters() {
        for name in [
            "a::B<C, D>",
            "(u8, u16)",
            "*const T",
            "fn(u8) -> u8",
            "日本::語",
        ] {
            let r = default_route(name);
            assert!(r.starts_with('/'));
            assert!(
                r[1..]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')),
                "{name} -> {r}"
            );
            assert!(r.len() > 1);
        }
    }
}
