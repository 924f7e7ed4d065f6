//! The built route table and request matching.

use std::fmt;

use percent_encoding::percent_decode_str;

use crate::route::{Route, RouteMatch};

/// Every component's route under the server-wide prefix, ready to match
/// request paths.
///
/// Built with [`RouteTableBuilder`](crate::RouteTableBuilder); immutable,
/// `Send + Sync` when `T` is, so it can be shared in an `Arc`.
///
/// ```
/// use ws_routing::RouteTableBuilder;
///
/// let mut builder = RouteTableBuilder::new("/ws").unwrap();
/// builder.add(Some("/chat/{room}"), "demo::Chat", 1).unwrap();
/// builder.add(None, "demo_echo::Echo", 2).unwrap();
/// let table = builder.build();
///
/// let m = table.at("/ws/chat/caf%C3%A9").unwrap();
/// assert_eq!(m.route.component(), "demo::Chat");
/// assert_eq!(m.params, [("room".to_owned(), "café".to_owned())]);
/// assert_eq!(*table.at("/ws/demo_echo_Echo/").unwrap().route.value(), 2);
/// assert!(table.at("/demo_echo_Echo").is_none());
/// ```
#[derive(Clone)]
pub struct RouteTable<T> {
    pub(crate) prefix: String,
    /// Full path → index into `routes`.
    pub(crate) router: matchit::Router<usize>,
    pub(crate) routes: Vec<Route<T>>,
}

impl<T> RouteTable<T> {
    /// The normalised prefix, `""` for the root.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The routes, in registration order.
    pub fn routes(&self) -> &[Route<T>] {
        &self.routes
    }

    /// The number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether the table has no route.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Matches a request path.
    ///
    /// The path is matched as it arrives (not percent-decoded, no `.`/`..`
    /// resolution, no slash collapsing). A single trailing slash is
    /// tolerated: `/echo/` is first matched as `/echo`, then as given.
    /// Anything from a `?` or `#` on is ignored. Parameter values are
    /// percent-decoded; a value that does not decode to UTF-8 makes the
    /// match fail.
    pub fn at(&self, path: &str) -> Option<RouteMatch<'_, T>> {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        if !path.starts_with('/') {
            return None;
        }
        let trimmed = path
            .strip_suffix('/')
            .filter(|t| !t.is_empty() && !t.ends_with('/'));
        let matched = trimmed
            .and_then(|t| self.router.at(t).ok())
            .or_else(|| self.router.at(path).ok())?;
        let route = self.routes.get(*matched.value)?;
        let params = matched
            .params
            .iter()
            .map(|(name, value)| {
                let value = percent_decode_str(value).decode_utf8().ok()?;
                Some((name.to_owned(), value.into_owned()))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(RouteMatch { route, params })
    }
}

impl<T: fmt::Debug> fmt::Debug for RouteTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteTable")
            .field("prefix", &self.prefix)
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use crate::{RouteError, RouteTable, RouteTableBuilder};

    fn table(prefix: &str, routes: &[(Option<&str>, &str)]) -> RouteTable<usize> {
        let mut builder = RouteTableBuilder::new(prefix).unwrap();
        for (i, (route, component)) in routes.iter().enumerate() {
            builder.add(*route, component, i).unwrap();
        }
        builder.build()
    }

    fn params(t: &RouteTable<usize>, path: &str) -> Vec<(String, String)> {
        t.at(path)
            .unwrap_or_else(|| panic!("{path} should match"))
            .params
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn default_routes_from_type_paths() {
        let t = table("", &[(None, "demo_echo::Echo")]);
        assert_eq!(t.prefix(), "");
        assert_eq!(t.routes()[0].path(), "/demo_echo_Echo");
        assert_eq!(
            t.at("/demo_echo_Echo").unwrap().route.component(),
            "demo_echo::Echo"
        );

        let t = table("/ws", &[(None, "demo_echo::Echo"), (None, "a::B<C>")]);
        assert_eq!(t.prefix(), "/ws");
        assert_eq!(t.routes()[0].path(), "/ws/demo_echo_Echo");
        assert_eq!(t.routes()[1].path(), "/ws/a_B_C");
        assert_eq!(*t.at("/ws/a_B_C").unwrap().route.value(), 1);
        assert!(t.at("/demo_echo_Echo").is_none());
    }

    #[test]
    fn custom_routes_get_the_prefix_once() {
        let t = table(
            "socket.io",
            &[
                (Some("echo"), "a::Echo"),
                (Some("/socket.io/chat"), "a::Chat"),
                (Some("/socket.iox"), "a::X"),
                (Some("/"), "a::Root"),
            ],
        );
        let paths: Vec<_> = t.routes().iter().map(|r| r.path()).collect();
        assert_eq!(
            paths,
            [
                "/socket.io/echo",
                "/socket.io/chat",
                "/socket.io/socket.iox",
                "/socket.io"
            ]
        );
        assert_eq!(t.at("/socket.io").unwrap().route.component(), "a::Root");
        assert_eq!(t.at("/socket.io/").unwrap().route.component(), "a::Root");
        assert!(t.at("/socket.iox").is_none());
    }

    #[test]
    fn root_route_without_prefix() {
        let t = table("/", &[(Some("/"), "a::Root"), (Some("/x"), "a::X")]);
        assert_eq!(t.routes()[0].path(), "/");
        assert_eq!(t.at("/").unwrap().route.component(), "a::Root");
        assert!(t.at("//").is_none());
        assert!(t.at("").is_none());
    }

    #[test]
    fn params_are_percent_decoded() {
        let t = table("", &[(Some("/chat/{room}"), "a::Chat")]);
        assert_eq!(params(&t, "/chat/caf%C3%A9"), pairs(&[("room", "café")]));
        assert_eq!(params(&t, "/chat/a%2Fb"), pairs(&[("room", "a/b")]));
        assert_eq!(params(&t, "/chat/a+b"), pairs(&[("room", "a+b")]));
        assert_eq!(params(&t, "/chat/lobby/"), pairs(&[("room", "lobby")]));
        assert!(t.at("/chat/%FF").is_none(), "not UTF-8");
        assert!(t.at("/chat/").is_none());
        assert!(t.at("/chat").is_none());
        assert!(t.at("/chat/a/b").is_none());
    }

    #[test]
    fn params_in_pattern_order() {
        let t = table(
            "/p",
            &[
                (Some("/{b}/x/{a}"), "a::One"),
                (Some("/img/{id}.png"), "a::Img"),
            ],
        );
        assert_eq!(t.routes()[0].path(), "/p/{b}/x/{a}");
        assert_eq!(params(&t, "/p/1/x/2"), pairs(&[("b", "1"), ("a", "2")]));
        assert_eq!(params(&t, "/p/img/7.png"), pairs(&[("id", "7")]));
        assert!(t.at("/p/img/7.jpg").is_none());
    }

    #[test]
    fn catch_all() {
        let t = table(
            "",
            &[
                (Some("/files/{*rest}"), "a::Files"),
                (Some("/files/index"), "a::Index"),
            ],
        );
        assert_eq!(params(&t, "/files/a/b.txt"), pairs(&[("rest", "a/b.txt")]));
        assert_eq!(params(&t, "/files/a%20b/c"), pairs(&[("rest", "a b/c")]));
        assert_eq!(params(&t, "/files/a/"), pairs(&[("rest", "a")]));
        assert_eq!(t.at("/files/index").unwrap().route.component(), "a::Index");
        assert!(t.at("/files/").is_none());
        assert!(t.at("/files").is_none());
    }

    #[test]
    fn trailing_slash_prefers_the_route_without_it() {
        let t = table(
            "",
            &[(Some("/{*rest}"), "a::All"), (Some("/echo"), "a::Echo")],
        );
        assert_eq!(t.at("/echo").unwrap().route.component(), "a::Echo");
        assert_eq!(t.at("/echo/").unwrap().route.component(), "a::Echo");
        assert_eq!(params(&t, "/echo/x/"), pairs(&[("rest", "echo/x")]));
        assert_eq!(params(&t, "/echo//"), pairs(&[("rest", "echo//")]));
    }

    #[test]
    fn exact_match_only() {
        let t = table("/ws", &[(Some("/echo"), "a::Echo")]);
        assert!(t.at("/ws/echo").is_some());
        assert!(t.at("/ws/echo?x=1").is_some(), "query ignored");
        assert!(t.at("/ws/echo#f").is_some(), "fragment ignored");
        for miss in [
            "/ws/echo//",
            "/ws/ech",
            "/ws/echoo",
            "/ws//echo",
            "/WS/echo",
            "ws/echo",
            "/ws",
        ] {
            assert!(t.at(miss).is_none(), "{miss}");
        }
    }

    #[test]
    fn static_beats_parameter() {
        let t = table(
            "",
            &[
                (Some("/chat/{room}"), "a::Chat"),
                (Some("/chat/admin"), "a::Admin"),
            ],
        );
        assert_eq!(t.at("/chat/admin").unwrap().route.component(), "a::Admin");
        assert_eq!(t.at("/chat/other").unwrap().route.component(), "a::Chat");
    }

    #[test]
    fn duplicate_route_names_both_components() {
        let mut b = RouteTableBuilder::new("/ws").unwrap();
        b.add(Some("/echo"), "a::One", 0).unwrap();
        let err = b.add(Some("/ws/echo/"), "b::Two", 1).unwrap_err();
        assert_eq!(
            err,
            RouteError::Conflict {
                route: "/ws/echo".into(),
                component: "b::Two".into(),
                existing_route: "/ws/echo".into(),
                existing_component: "a::One".into(),
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("a::One") && msg.contains("b::Two"), "{msg}");
        let t = b.build();
        assert_eq!(t.len(), 1);
        assert_eq!(*t.at("/ws/echo").unwrap().route.value(), 0);
    }

    #[test]
    fn same_default_route_conflicts() {
        let mut b = RouteTableBuilder::new("").unwrap();
        b.add(None, "a::B", 0).unwrap();
        let err = b.add(Some("a_B"), "x::Y", 1).unwrap_err();
        assert!(
            err.to_string()
                .contains("already taken by component `a::B`"),
            "{err}"
        );
    }

    #[test]
    fn overlapping_parameters_conflict() {
        let mut b = RouteTableBuilder::new("").unwrap();
        b.add(Some("/x"), "a::X", 0).unwrap();
        b.add(Some("/chat/{room}"), "a::One", 1).unwrap();
        let err = b.add(Some("/chat/{id}"), "b::Two", 2).unwrap_err();
        assert_eq!(
            err.to_string(),
            "route `/chat/{id}` of component `b::Two` conflicts with route `/chat/{room}` of \
             component `a::One`"
        );

        b.add(Some("/files/{*rest}"), "a::Files", 3).unwrap();
        let err = b.add(Some("/files/{name}"), "b::File", 4).unwrap_err();
        let RouteError::Conflict {
            existing_component, ..
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(existing_component, "a::Files", "{err}");

        // Nothing half-inserted: the earlier routes still match.
        let t = b.build();
        assert_eq!(t.len(), 3);
        assert_eq!(*t.at("/chat/r").unwrap().route.value(), 1);
        assert_eq!(*t.at("/files/f").unwrap().route.value(), 3);
    }

    #[test]
    fn invalid_routes_say_which_and_why() {
        let mut b = RouteTableBuilder::<()>::new("/ws").unwrap();
        let err = b.add(Some("/x{"), "a::B", ()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "route `/x{` of component `a::B`: segment `x{` has a `{` without a matching `}`"
        );
        let err = b.add(Some("/{*rest}/x"), "a::B", ()).unwrap_err();
        assert!(
            err.to_string().contains("must be the last segment"),
            "{err}"
        );
        let err = b.add(None, "..", ()).unwrap_err();
        assert!(
            matches!(&err, RouteError::InvalidRoute { route, .. } if route == "/.."),
            "{err:?}"
        );
        assert!(b.build().is_empty());
    }

    #[test]
    fn invalid_prefix() {
        let err = RouteTableBuilder::<()>::new("/a b").unwrap_err();
        assert_eq!(err.to_string(), "route prefix `/a b`: contains a space");
    }

    #[test]
    fn every_allowed_character_and_many_parameters() {
        let route = "/a-z.A_Z~0!$&'()+,;=:@9";
        let names: Vec<String> = (0..crate::pattern::MAX_PARAMS)
            .map(|i| format!("{{p{i}}}"))
            .collect();
        let many = names.join("/");
        let t = table("", &[(Some(route), "a::Chars"), (Some(&many), "a::Many")]);
        assert_eq!(t.at(route).unwrap().route.component(), "a::Chars");
        let path: Vec<String> = (0..names.len()).map(|i| format!("/v{i}")).collect();
        let m = t.at(&path.concat()).unwrap();
        assert_eq!(m.route.component(), "a::Many");
        assert_eq!(m.params.len(), names.len());
        assert_eq!(m.params[15], ("p15".to_owned(), "v15".to_owned()));
    }

    #[test]
    fn shareable_and_debuggable() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<RouteTable<String>>();
        send_sync::<crate::Route<String>>();

        let t = table("/ws", &[(Some("/echo"), "a::Echo")]);
        let dbg = format!("{t:?}");
        assert!(
            dbg.contains("\"/ws/echo\"") && dbg.contains("a::Echo"),
            "{dbg}"
        );
    }
}
