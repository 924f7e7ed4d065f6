//! What a component may set up when the server starts: timers, signal
//! handlers and background tasks, all stopped when the server shuts down.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::hub::Hub;

/// A boxed future that runs in the background until the server stops.
pub type BackgroundTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A signal a component can react to. SIGTERM and SIGINT belong to the server
/// (they shut it down) and are not offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Signal {
    /// SIGHUP.
    Hangup,
    /// SIGUSR1.
    User1,
    /// SIGUSR2.
    User2,
}

/// One piece of work registered in [`ServerContext`], as the server (or a
/// test, through [`testing::tasks`](crate::testing::tasks)) sees it.
#[non_exhaustive]
pub enum Task {
    /// Call `callback` every `period`, first after one period.
    Every {
        /// Time between calls.
        period: Duration,
        /// The work.
        callback: Box<dyn FnMut() + Send + 'static>,
    },
    /// Call `callback` on each delivery of `signal`.
    OnSignal {
        /// The signal.
        signal: Signal,
        /// The work.
        callback: Box<dyn FnMut() + Send + 'static>,
    },
    /// Run a future until it ends or the server stops.
    Spawn(BackgroundTask),
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Every { period, .. } => f.debug_struct("Every").field("period", period).finish(),
            Self::OnSignal { signal, .. } => {
                f.debug_struct("OnSignal").field("signal", signal).finish()
            }
            Self::Spawn(_) => f.write_str("Spawn"),
        }
    }
}

/// Handed to [`Component::configure`](crate::Component::configure) once, before
/// the server accepts connections (the original's `configureLoop`).
///
/// Everything registered here runs on the server's runtime and is stopped when
/// the server shuts down.
#[derive(Debug)]
pub struct ServerContext {
    route: String,
    hub: Hub,
    tasks: Vec<Task>,
}

impl ServerContext {
    /// A context for the component mounted on `route` (prefix included),
    /// with a hub of its own: for tests of `configure` (see
    /// [`testing::tasks`](crate::testing::tasks)).
    pub fn new(route: impl Into<String>) -> Self {
        Self::with_hub(route, Hub::local())
    }

    /// A context sharing the server's hub.
    pub(crate) fn with_hub(route: impl Into<String>, hub: Hub) -> Self {
        Self {
            route: route.into(),
            hub,
            tasks: Vec::new(),
        }
    }

    /// The server's hub, for publishing from timers and tasks.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The full route the component is mounted on, prefix included.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// Calls `callback` every `period` (first after one period) until shutdown.
    /// A zero period is raised to one millisecond.
    pub fn every(&mut self, period: Duration, callback: impl FnMut() + Send + 'static) {
        self.tasks.push(Task::Every {
            period: period.max(Duration::from_millis(1)),
            callback: Box::new(callback),
        });
    }

    /// Calls `callback` each time the process receives `signal`.
    pub fn on_signal(&mut self, signal: Signal, callback: impl FnMut() + Send + 'static) {
        self.tasks.push(Task::OnSignal {
            signal,
            callback: Box::new(callback),
        });
    }

    /// Runs `task` in the background; it is dropped at shutdown if still running.
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.push(Task::Spawn(Box::pin(task)));
    }

    /// The registered work, for the server to run.
    pub(crate) fn into_tasks(self) -> Vec<Task> {
        self.tasks
    }
}
