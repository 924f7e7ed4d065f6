//! The errors of building a route table.

/// Why a prefix or a route was refused.
///
/// Every message names what was refused and where it came from, so it can be
/// shown to the person who configured the server as it is:
///
/// ```
/// let err = ws_routing::normalize_prefix("a b").unwrap_err();
/// assert_eq!(err.to_string(), "route prefix `a b`: contains a space");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The server-wide route prefix is not a valid path prefix.
    #[error("route prefix `{prefix}`: {reason}")]
    InvalidPrefix {
        /// The prefix as configured.
        prefix: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A component's route is not a valid route.
    #[error("route `{route}` of component `{component}`: {reason}")]
    InvalidRoute {
        /// The route as the component declared it (or its default route).
        route: String,
        /// The display name (type path) of the component.
        component: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A component's route is already taken, or overlaps another route so
    /// that a request could not be told apart.
    #[error("{}", conflict_message(.route, .component, .existing_route, .existing_component))]
    Conflict {
        /// The full path (prefix included) of the route being added.
        route: String,
        /// The component being added.
        component: String,
        /// The full path of the route registered earlier.
        existing_route: String,
        /// The component registered earlier.
        existing_component: String,
    },
}

fn conflict_message(
    route: &str,
    component: &str,
    existing_route: &str,
    existing_component: &str,
) -> String {
    if route == existing_route {
        format!(
            "route `{route}` of component `{component}` is already taken by component \
             `{existing_component}`"
        )
    } else {
        format!(
            "route `{route}` of component `{component}` conflicts with route \
             `{existing_route}` of component `{existing_component}`"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::RouteError;

    #[test]
    fn messages_name_what_and_where() {
        let e = RouteError::InvalidPrefix {
            prefix: "a b".into(),
            reason: "contains a space".into(),
        };
        assert_eq!(e.to_string(), "route prefix `a b`: contains a space");

        let e = RouteError::InvalidRoute {
            route: "/x{".into(),
            component: "a::B".into(),
            reason: "segment `x{` has a `{` without a matching `}`".into(),
        };
        assert_eq!(
            e.to_string(),
            "route `/x{` of component `a::B`: segment `x{` has a `{` without a matching `}`"
        );
    }

    #[test]
    fn conflict_names_both_sides() {
        let same = RouteError::Conflict {
            route: "/echo".into(),
            component: "b::Two".into(),
            existing_route: "/echo".into(),
            existing_component: "a::One".into(),
        };
        assert_eq!(
            same.to_string(),
            "route `/echo` of component `b::Two` is already taken by component `a::One`"
        );

        let overlap = RouteError::Conflict {
            route: "/chat/{id}".into(),
            component: "b::Two".into(),
            existing_route: "/chat/{room}".into(),
            existing_component: "a::One".into(),
        };
        assert_eq!(
            overlap.to_string(),
            "route `/chat/{id}` of component `b::Two` conflicts with route `/chat/{room}` of \
             component `a::One`"
        );
    }
}
