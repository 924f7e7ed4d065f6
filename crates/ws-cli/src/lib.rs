//! The ws-provider command line (`ws-cli start | stop | list | routes |
//! check-config`), as a library so that an application's own binary
//! registers its own components and gets the same commands:
//!
//! ```no_run
//! use ws_core::{Connection, Message, component_fn};
//!
//! fn main() -> std::process::ExitCode {
//!     ws_cli::App::new()
//!         .component(component_fn("/echo", |conn: Connection, msg: Message| async move {
//!             conn.send(msg)?;
//!             Ok(())
//!         }))
//!         .run()
//! }
//! ```
//!
//! Such an application depends on `ws-cli` with `default-features = false`:
//! the default `demo` feature only serves the stock binary, which mounts the
//! `demo-echo` components.

/// `print!` to stdout that never panics: when stdout is a closed pipe
/// (`ws-cli list | head -1`, a server whose terminal went away), what
/// cannot be written is dropped. Returns nothing.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

/// [`out!`] with a newline.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod cli;
mod commands;
pub mod config;
mod logging;
mod nofile;
pub mod state;
mod systemd;

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser as _;
use ws_core::Component;

pub use cli::{Cli, Command};

/// The command line application: components plus the commands.
#[derive(Default)]
pub struct App {
    components: Vec<Arc<dyn Component>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("components", &self.components.len())
            .finish()
    }
}

impl App {
    /// An application with no component yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a component.
    #[must_use]
    pub fn component(mut self, component: impl Component) -> Self {
        self.components.push(Arc::new(component));
        self
    }

    /// Adds shared components.
    #[must_use]
    pub fn components(mut self, components: impl IntoIterator<Item = Arc<dyn Component>>) -> Self {
        self.components.extend(components);
        self
    }

    /// Parses the process arguments and runs the command.
    pub fn run(self) -> ExitCode {
        self.run_from(std::env::args_os())
    }

    /// Parses `args` (the first is the program name) and runs the command.
    pub fn run_from(self, args: impl IntoIterator<Item = OsString>) -> ExitCode {
        let cli = match Cli::try_parse_from(args) {
            Ok(cli) => cli,
            Err(e) => {
                let _ = e.print();
                return if e.use_stderr() {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
        };
        match cli.command {
            Command::Start(args) => commands::start(self.components, &args),
            Command::Stop(args) => commands::stop(&args),
            Command::List(args) => commands::list(&args),
            Command::Routes(args) => commands::routes(self.components, &args),
            Command::CheckConfig(args) => commands::check_config(&args),
        }
    }
}
