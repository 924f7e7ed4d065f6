//! The stock `ws-cli` binary: the ws-provider commands with the demo components.

fn main() -> std::process::ExitCode {
    ws_cli::App::new().components(demo_echo::all()).run()
}
