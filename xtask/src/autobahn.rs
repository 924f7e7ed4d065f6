//! `cargo xtask autobahn`: protocol conformance measured the way the field
//! measures it, with the Autobahn|Testsuite fuzzing client.
//!
//! 1. A Python 2.7 virtualenv with `autobahntestsuite` and every dependency
//!    pinned ([`PINS`]), made once and cached in `target/autobahn/venv`.
//! 2. The release `ws-cli` is built and started on a free loopback port
//!    (`--port 0`; the address is read from its "running on" line).
//! 3. `wstest -m fuzzingclient` runs the spec written to
//!    `target/autobahn/spec.json` against `/echo` (the stock `Echo`
//!    component), bounded by [`SUITE_TIMEOUT`]; reports go to
//!    `target/autobahn/reports/servers` (open `index.html` there).
//! 4. `reports/servers/index.json` is summarised per behavior; any failing
//!    case fails the task (see [`behavior_fails`], [`close_fails`]).
//! 5. The server is stopped with SIGTERM, whatever happened, and must exit 0.
//!
//! Options: `--cases 1.*,2.*` runs only those cases (comma separated);
//! `--server-config FILE` hands `--config FILE` to `ws-cli start`;
//! `--tls` runs the suite over `wss://` instead, with the full handshake
//! pipeline: the configuration `cargo xtask bench` uses (origin allow-list,
//! every connection and message limit, one JWT aspect; the fuzzing client
//! sends neither an `Origin` nor a token, so both checks run and pass it as
//! an anonymous client), the suite's message sizes (as in the `ws://` run)
//! and `[tls]` with a self-signed certificate made for the run
//! (`target/autobahn/wss/cert.pem`; the fuzzing client, on Twisted's
//! `ClientContextFactory`, verifies no certificate). Everything of that run
//! goes to `target/autobahn/wss/` (reports in `wss/reports/servers`).
//! `cargo xtask ci` runs both.
//!
//! Environment: `AUTOBAHN_PYTHON27` names the Python 2.7 interpreter to use;
//! otherwise pyenv's 2.7.18 (`pyenv root`, `$PYENV_ROOT`, `~/.pyenv`), then
//! `python2.7` on `PATH`. When none exists, `pyenv install 2.7.18` is tried;
//! when that fails too, the task fails (never a silent skip, in CI or not).
//! `python3` (any 3.x) is needed once, to install virtualenv 20.15.1, the
//! last line of virtualenv that still makes Python 2.7 environments.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::util;

/// The agent name in the spec and the reports.
const AGENT: &str = "ws-provider";
/// The route of the stock `Echo` component.
const ROUTE: &str = "/echo";
/// The Python 2 that pyenv installs when none is there.
const PYTHON2_VERSION: &str = "2.7.18";
/// The last virtualenv that still creates Python 2.7 environments (seeds
/// pip 20.3.4, setuptools 44.1.1 and wheel 0.37.1 from its own bundle, so
/// no download is needed for the seed).
const VIRTUALENV_PIN: &str = "virtualenv==20.15.1";
/// Everything installed into the Python 2.7 virtualenv, pinned exactly: the
/// last releases that still support Python 2.7 (Twisted 20.3.0,
/// cryptography 3.3.2 with its own OpenSSL in the manylinux wheel,
/// pyOpenSSL 21.0.0, …) and the versions `autobahntestsuite` 0.8.2 itself
/// pins (`autobahn[accelerate,twisted]==0.10.9`, `txaio<=2.1.0`). Verified
/// together with `pip check` and a full run. Changing this list rebuilds the
/// cached virtualenv.
const PINS: &[&str] = &[
    "autobahntestsuite==0.8.2",
    "autobahn[accelerate,twisted]==0.10.9",
    "txaio==2.1.0",
    "Twisted==20.3.0",
    "zope.interface==5.5.2",
    "Automat==22.10.0",
    "attrs==21.4.0",
    "constantly==15.1.0",
    "hyperlink==21.0.0",
    "idna==2.10",
    "incremental==22.10.0",
    "PyHamcrest==1.10.1",
    "typing==3.10.0.0",
    "six==1.17.0",
    "wsaccel==0.6.6",
    "ujson==2.0.3",
    "pyOpenSSL==21.0.0",
    "cryptography==3.3.2",
    "cffi==1.15.1",
    "pycparser==2.21",
    "enum34==1.1.10",
    "ipaddress==1.0.23",
    "service-identity==21.1.0",
    "pyasn1==0.5.1",
    "pyasn1-modules==0.3.0",
    "klein==20.6.0",
    "Tubes==0.2.1",
    "Werkzeug==1.0.1",
    "Jinja2==2.11.3",
    "MarkupSafe==1.1.1",
    "unittest2==1.1.0",
    "argparse==1.4.0",
    "linecache2==1.0.0",
    "traceback2==1.4.0",
];
/// Upper bound for the whole `wstest` run (a full run takes well under a
/// minute on a small machine; a hang must not eat CI's budget).
const SUITE_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// The `[websocket]` limits the suite needs lifted in both runs: sections 9
/// and 10 send messages of up to 16 MiB, some in 64-byte fragments.
const SUITE_SIZES: &str = "[websocket]\nmax_message_size_in_kb = 16384\n\
                           max_frame_size_in_kb = 16384\nmax_frames_per_message = 0\n";
/// How long the server may take to print its "running on" line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server may take to exit after SIGTERM (its shutdown
/// timeout is 5 s by default).
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a long run reports progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

const USAGE: &str = "usage: cargo xtask autobahn [--cases 1.*,2.*] [--server-config FILE] [--tls]";

/// Command-line options.
#[derive(Debug, Default)]
struct Options {
    /// Case patterns; `["*"]` when none were given.
    cases: Vec<String>,
    /// Configuration file for `ws-cli start --config`.
    server_config: Option<PathBuf>,
    /// Over `wss://`, with the full pipeline.
    tls: bool,
}

impl Options {
    /// `None` when help was asked for.
    fn parse(args: &[String]) -> Result<Option<Self>> {
        let mut opts = Self::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(v.to_owned())),
                _ => (arg.as_str(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.next().cloned())
                    .with_context(|| format!("{name} needs a value\n{USAGE}"))
            };
            match name {
                "-h" | "--help" => {
                    println!("{USAGE}");
                    return Ok(None);
                }
                "--cases" => {
                    for case in value()?.split(',').map(str::trim) {
                        ensure!(
                            !case.is_empty()
                                && case
                                    .chars()
                                    .all(|c| c.is_ascii_digit() || c == '.' || c == '*'),
                            "--cases: `{case}` is not a case pattern like 1.*, 9.1.6 or 6.4.*"
                        );
                        opts.cases.push(case.to_owned());
                    }
                }
                "--server-config" => opts.server_config = Some(PathBuf::from(value()?)),
                "--tls" if inline.is_none() => opts.tls = true,
                other => bail!("unknown option `{other}`\n{USAGE}"),
            }
        }
        if opts.cases.is_empty() {
            opts.cases.push("*".to_owned());
        }
        Ok(Some(opts))
    }
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let Some(opts) = Options::parse(args)? else {
        return Ok(());
    };
    let started = Instant::now();
    let result = run_all(&opts);
    println!("xtask: autobahn: total {}", util::human(started.elapsed()));
    result
}

fn run_all(opts: &Options) -> Result<()> {
    let base = util::root().join("target").join("autobahn");
    fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
    // The wss:// run keeps its files apart; the virtualenv is shared.
    let dir = if opts.tls {
        base.join("wss")
    } else {
        base.clone()
    };
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;

    let t = Instant::now();
    let wstest = ensure_wstest(&base)?;
    println!(
        "xtask: autobahn: wstest ready ({})",
        util::human(t.elapsed())
    );

    let bin = util::cargo_build_bin(
        &["build", "--release", "-p", "ws-cli", "--bin", "ws-cli"],
        "ws-cli",
    )?;

    let servers_dir = dir.join("reports").join("servers");
    if servers_dir.exists() {
        fs::remove_dir_all(&servers_dir)
            .with_context(|| format!("cannot remove old reports in {}", servers_dir.display()))?;
    }

    // The fuzzing client opens one connection per case, back to back from
    // 127.0.0.1, and some cases send 1,000 messages at once: the default
    // connection and message limits (a production default) would refuse
    // them, so this run lifts them. Sections 9 and 10 send messages of up
    // to 16 MiB, some in 64-byte fragments: the size and fragment limits
    // are lifted too. Everything else stays at its default.
    let default_config = dir.join("ws-provider.toml");
    if opts.tls {
        tls_config(&bin, &dir, &default_config)?;
    } else {
        let text = format!(
            "# written by cargo xtask autobahn\n[server]\nmax_connections_per_address = 0\n\
             max_connections_per_address_per_second = 0\nmax_messages_per_second = 0\n\
             {SUITE_SIZES}"
        );
        fs::write(&default_config, text)
            .with_context(|| format!("cannot write {}", default_config.display()))?;
    }
    let config = opts.server_config.as_deref().unwrap_or(&default_config);
    let mut server = Server::start(&bin, &dir, Some(config))?;
    let scheme = if opts.tls { "wss" } else { "ws" };
    let url = format!("{scheme}://{}{ROUTE}", server.addr);
    println!(
        "xtask: autobahn: ws-cli (pid {}) listening on {url}",
        server.child.id(),
    );
    let suite = write_spec(&dir, &servers_dir, &url, &opts.cases)
        .and_then(|spec| run_wstest(&wstest, &dir, &spec, &mut server));
    let stopped = server.stop();
    if let (Err(_), Err(e)) = (&suite, &stopped) {
        eprintln!("xtask: autobahn: also: {e:#}");
    }
    let suite_time = suite?;
    stopped?;
    println!("xtask: autobahn: ws-cli stopped (exit 0)");

    let results = load_results(&servers_dir.join("index.json"))?;
    summarize(&results, &servers_dir, suite_time);
    check(&results, &servers_dir)
}

/// Writes `file`: the bench's full-pipeline configuration and `[tls]` with
/// a self-signed certificate for `localhost` and 127.0.0.1, made in `dir`.
fn tls_config(bin: &Path, dir: &Path, file: &Path) -> Result<()> {
    let (applied, missing) = crate::bench::write_pipeline_config(bin, file, &dir.join("state"))?;
    ensure!(
        missing.is_empty(),
        "this ws-cli lacks part of the pipeline: {}",
        missing.join("; ")
    );
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .context("cannot make the self-signed certificate")?;
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    fs::write(&cert, made.cert.pem())
        .with_context(|| format!("cannot write {}", cert.display()))?;
    fs::write(&key, made.signing_key.serialize_pem())
        .with_context(|| format!("cannot write {}", key.display()))?;
    let mut text =
        fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    text.push_str(&format!(
        "\n# cargo xtask autobahn --tls: the suite's message sizes, and a self-signed\n\
         # certificate made for this run.\n{SUITE_SIZES}[tls]\ncert = {}\nkey = {}\n",
        serde_json::to_string(&cert.display().to_string())?,
        serde_json::to_string(&key.display().to_string())?,
    ));
    fs::write(file, text).with_context(|| format!("cannot write {}", file.display()))?;
    println!(
        "xtask: autobahn: wss:// with the full pipeline ({})",
        file.display()
    );
    for a in &applied {
        println!("xtask: autobahn:   {a}");
    }
    println!(
        "xtask: autobahn:   (the fuzzing client sends no Origin and no token: both checks run \
         and admit it, anonymous)"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// The Python side: Python 2.7, virtualenv, autobahntestsuite.

/// Makes (or reuses) `dir/venv` and returns its `wstest`.
fn ensure_wstest(dir: &Path) -> Result<PathBuf> {
    let venv = dir.join("venv");
    let python = venv.join("bin").join("python");
    let wstest = venv.join("bin").join("wstest");
    let marker = venv.join(".xtask-pins");
    let requirements = PINS.join("\n") + "\n";
    let wanted = format!("# {VIRTUALENV_PIN}\n{requirements}");

    let cached = fs::read_to_string(&marker).is_ok_and(|m| m == wanted)
        && wstest.is_file()
        && quiet(Command::new(&python).args(["-c", "import autobahntestsuite.wstest"]));
    if cached {
        return Ok(wstest);
    }

    let python27 = find_python27()?;
    println!(
        "xtask: autobahn: making {} with {}",
        venv.display(),
        python27.display()
    );
    let virtualenv = ensure_virtualenv(dir)?;
    if venv.exists() {
        fs::remove_dir_all(&venv).with_context(|| format!("cannot remove {}", venv.display()))?;
    }
    run_checked(
        Command::new(&virtualenv)
            .args(["-m", "virtualenv", "--quiet", "--no-periodic-update"])
            .arg("--app-data")
            .arg(dir.join("virtualenv-app-data"))
            .arg("--python")
            .arg(&python27)
            .arg(&venv),
        "virtualenv (Python 2.7)",
    )?;
    let req_file = dir.join("requirements-py27.txt");
    fs::write(&req_file, &requirements)
        .with_context(|| format!("cannot write {}", req_file.display()))?;
    run_checked(
        pip(&python)
            .args(["install", "--quiet", "--requirement"])
            .arg(&req_file),
        "pip install autobahntestsuite (Python 2.7)",
    )?;
    run_checked(pip(&python).arg("check"), "pip check (Python 2.7)")?;
    ensure!(
        wstest.is_file(),
        "{} is missing after pip install autobahntestsuite",
        wstest.display()
    );
    fs::write(&marker, wanted).with_context(|| format!("cannot write {}", marker.display()))?;
    Ok(wstest)
}

/// `python -m pip` without the noise of an unsupported Python.
fn pip(python: &Path) -> Command {
    let mut cmd = Command::new(python);
    cmd.args(["-m", "pip"])
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PIP_NO_PYTHON_VERSION_WARNING", "1")
        .env("PYTHONWARNINGS", "ignore");
    cmd
}

/// A Python 3 venv in `dir/virtualenv-tool` holding [`VIRTUALENV_PIN`];
/// returns its interpreter.
fn ensure_virtualenv(dir: &Path) -> Result<PathBuf> {
    let tool = dir.join("virtualenv-tool");
    let python = tool.join("bin").join("python");
    let version = VIRTUALENV_PIN.trim_start_matches("virtualenv==");
    let has_it = Command::new(&python)
        .args(["-m", "virtualenv", "--version"])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).starts_with(&format!("virtualenv {version} "))
        });
    if has_it {
        return Ok(python);
    }
    if tool.exists() {
        fs::remove_dir_all(&tool).with_context(|| format!("cannot remove {}", tool.display()))?;
    }
    run_checked(
        Command::new("python3").args(["-m", "venv"]).arg(&tool),
        "python3 -m venv (needed once to install virtualenv 20.15.1; install python3 and \
         python3-venv if it is missing)",
    )?;
    run_checked(
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            VIRTUALENV_PIN,
        ]),
        "pip install virtualenv==20.15.1 (Python 3)",
    )?;
    Ok(python)
}

/// Finds a Python 2.7 interpreter, installing 2.7.18 with pyenv when there
/// is none and pyenv is there.
fn find_python27() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("AUTOBAHN_PYTHON27") {
        let p = PathBuf::from(p);
        return python27_at(&p).with_context(|| {
            format!(
                "AUTOBAHN_PYTHON27={} is not a Python 2.7 interpreter",
                p.display()
            )
        });
    }
    if let Some(p) = python27_candidates().iter().find_map(|c| python27_at(c)) {
        return Ok(p);
    }
    let Some(pyenv) = find_pyenv() else {
        bail!(
            "Python 2.7 is needed by the Autobahn|Testsuite and was not found (looked for \
             pyenv's {PYTHON2_VERSION} and python2.7 on PATH), and pyenv is not installed to \
             build it; install Python 2.7 or set AUTOBAHN_PYTHON27 to its interpreter"
        );
    };
    println!(
        "xtask: autobahn: no Python 2.7 found; running `{} install --skip-existing {PYTHON2_VERSION}`",
        pyenv.display()
    );
    let status = Command::new(&pyenv)
        .args(["install", "--skip-existing", PYTHON2_VERSION])
        .status()
        .with_context(|| format!("cannot run {}", pyenv.display()))?;
    if !status.success() {
        bail!(
            "Python 2.7 is needed by the Autobahn|Testsuite and was not found, and `pyenv \
             install {PYTHON2_VERSION}` failed ({status}); install Python 2.7 or set \
             AUTOBAHN_PYTHON27 to its interpreter"
        );
    }
    python27_candidates()
        .iter()
        .find_map(|c| python27_at(c))
        .context("pyenv installed Python 2.7, but no interpreter was found afterwards")
}

/// The real path of `candidate` when it runs and is Python 2.7.
fn python27_at(candidate: &Path) -> Option<PathBuf> {
    let out = Command::new(candidate)
        .args([
            "-c",
            "import sys; sys.stdout.write('%d.%d %s' % (sys.version_info[0], \
             sys.version_info[1], sys.executable))",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let exe = text.strip_prefix("2.7 ")?;
    (!exe.is_empty()).then(|| PathBuf::from(exe))
}

/// Where a Python 2.7 may be, best first.
fn python27_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for root in pyenv_roots() {
        let versions = root.join("versions");
        out.push(versions.join(PYTHON2_VERSION).join("bin").join("python2.7"));
        let mut others: Vec<PathBuf> = fs::read_dir(&versions)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("2.7"))
            .map(|e| e.path().join("bin").join("python2.7"))
            .collect();
        others.sort();
        out.extend(others.into_iter().rev());
    }
    out.push(PathBuf::from("python2.7"));
    out.push(PathBuf::from("python2"));
    out
}

/// pyenv's root directories: `pyenv root`, `$PYENV_ROOT`, `~/.pyenv`.
fn pyenv_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Some(pyenv) = find_pyenv()
        && let Ok(out) = Command::new(pyenv).arg("root").output()
        && out.status.success()
    {
        roots.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    if let Some(r) = std::env::var_os("PYENV_ROOT") {
        roots.push(PathBuf::from(r));
    }
    if let Some(home) = std::env::var_os("HOME") {
        roots.push(PathBuf::from(home).join(".pyenv"));
    }
    roots.dedup();
    roots
}

/// The `pyenv` executable: on `PATH`, else in `$PYENV_ROOT` or `~/.pyenv`.
fn find_pyenv() -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from("pyenv")];
    if let Some(r) = std::env::var_os("PYENV_ROOT") {
        candidates.push(PathBuf::from(r).join("bin").join("pyenv"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".pyenv").join("bin").join("pyenv"));
    }
    candidates
        .into_iter()
        .find(|c| quiet(Command::new(c).arg("--version")))
}

/// Whether `cmd` runs and succeeds, its output discarded.
fn quiet(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `cmd` with inherited output, failing with `what` when it fails.
fn run_checked(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {what}: {cmd:?}"))?;
    if !status.success() {
        bail!("{what} failed ({status}): {cmd:?}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The server.

/// The `ws-cli start` child; stopped with SIGTERM when dropped if
/// [`Server::stop`] was not called.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    stopped: bool,
}

impl Server {
    /// Starts `bin` on a free loopback port and waits for its "running on" line.
    fn start(bin: &Path, dir: &Path, config: Option<&Path>) -> Result<Self> {
        let out_path = dir.join("server.out");
        let log = dir.join("server.log");
        let stdout = File::create(&out_path)
            .with_context(|| format!("cannot create {}", out_path.display()))?;
        let stderr =
            File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut cmd = Command::new(bin);
        cmd.args(["start", "--host", "127.0.0.1", "--port", "0"]);
        if let Some(config) = config {
            cmd.arg("--config").arg(config);
        }
        let child = cmd
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        // From here on, dropping `server` stops the process.
        let mut server = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            stopped: false,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let out = fs::read_to_string(&out_path).unwrap_or_default();
            if let Some((addr, pid)) = out.lines().find_map(parse_running_line) {
                ensure!(
                    pid == server.child.id(),
                    "ws-cli says its pid is {pid}, but the process started is {}",
                    server.child.id()
                );
                ensure!(
                    addr.ip().is_loopback() && addr.port() != 0,
                    "ws-cli listens on {addr}, expected a loopback address"
                );
                server.addr = addr;
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait().context("cannot wait for ws-cli")? {
                server.stopped = true;
                bail!(
                    "ws-cli exited before listening ({status}):\n{}",
                    tail(&server.log, 20)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "ws-cli printed no \"running on\" line within {}:\n{}",
                    util::human(START_TIMEOUT),
                    tail(&server.log, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the server has exited already (its status, if so).
    fn exited(&mut self) -> Result<Option<ExitStatus>> {
        self.child.try_wait().context("cannot wait for ws-cli")
    }

    /// SIGTERM to this process only, then waits; fails unless it exits 0.
    fn stop(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let pid = self.child.id();
        let status = match self.exited()? {
            Some(status) => {
                bail!(
                    "ws-cli (pid {pid}) had exited on its own ({status}):\n{}",
                    tail(&self.log, 20)
                )
            }
            None => {
                let raw = i32::try_from(pid).context("pid out of range")?;
                kill(Pid::from_raw(raw), Signal::SIGTERM)
                    .with_context(|| format!("cannot send SIGTERM to ws-cli (pid {pid})"))?;
                util::wait_timeout(&mut self.child, STOP_TIMEOUT)?
            }
        };
        match status {
            Some(status) if status.code() == Some(0) => Ok(()),
            Some(status) => bail!(
                "ws-cli (pid {pid}) exited with {status} after SIGTERM, expected 0:\n{}",
                tail(&self.log, 20)
            ),
            None => {
                // Our own child, not yet reaped: the pid cannot have been reused.
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "ws-cli (pid {pid}) did not exit within {} of SIGTERM; killed it:\n{}",
                    util::human(STOP_TIMEOUT),
                    tail(&self.log, 20)
                )
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.stopped
            && let Err(e) = self.stop()
        {
            eprintln!("xtask: autobahn: {e:#}");
        }
    }
}

/// `WebSocket server running on ADDR with pid PID` → (ADDR, PID).
fn parse_running_line(line: &str) -> Option<(SocketAddr, u32)> {
    let rest = line.split_once("running on ")?.1;
    let (addr, pid) = rest.split_once(" with pid ")?;
    Some((addr.trim().parse().ok()?, pid.trim().parse().ok()?))
}

/// The last `n` lines of a log file, indented.
fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(n);
    let mut out = format!("  ({}, last {} lines)", path.display(), lines.len() - from);
    for l in &lines[from..] {
        out.push_str("\n  ");
        out.push_str(l);
    }
    out
}

// ---------------------------------------------------------------------------
// The run.

/// Writes the fuzzingclient spec and returns its path.
fn write_spec(dir: &Path, servers_dir: &Path, url: &str, cases: &[String]) -> Result<PathBuf> {
    let spec = json!({
        "outdir": servers_dir,
        "servers": [{ "agent": AGENT, "url": url }],
        "cases": cases,
        // 12.* and 13.* test permessage-deflate; the server does not offer
        // it (tokio-tungstenite has no compression), so they could only
        // report UNIMPLEMENTED. Nothing else is excluded.
        "exclude-cases": ["12.*", "13.*"],
        "exclude-agent-cases": {},
    });
    let path = dir.join("spec.json");
    let text = serde_json::to_string_pretty(&spec).context("cannot serialise the spec")?;
    fs::write(&path, text + "\n").with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Kills the child (ours) when dropped while still running.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs `wstest -m fuzzingclient` (output in `dir/wstest.log`), bounded by
/// [`SUITE_TIMEOUT`] and by the server staying up; returns how long it took.
fn run_wstest(wstest: &Path, dir: &Path, spec: &Path, server: &mut Server) -> Result<Duration> {
    let log_path = dir.join("wstest.log");
    let log =
        File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let log_err = log.try_clone().context("cannot share the wstest log")?;
    println!(
        "xtask: autobahn: wstest -m fuzzingclient -s {} (log: {})",
        spec.display(),
        log_path.display()
    );
    let started = Instant::now();
    let mut wstest = KillOnDrop(
        Command::new(wstest)
            .args(["-m", "fuzzingclient", "-s"])
            .arg(spec)
            .current_dir(dir)
            .env("PYTHONWARNINGS", "ignore")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .with_context(|| format!("cannot start {}", wstest.display()))?,
    );
    let mut next_progress = started + PROGRESS_EVERY;
    loop {
        if let Some(status) = wstest.0.try_wait().context("cannot wait for wstest")? {
            ensure!(
                status.success(),
                "wstest failed ({status}):\n{}",
                tail(&log_path, 30)
            );
            return Ok(started.elapsed());
        }
        if let Some(status) = server.exited()? {
            bail!(
                "ws-cli exited during the run ({status}), at {}:\n{}",
                last_case(&log_path),
                tail(&server.log, 20)
            );
        }
        if started.elapsed() >= SUITE_TIMEOUT {
            bail!(
                "wstest did not finish within {} (at {}); killed it",
                util::human(SUITE_TIMEOUT),
                last_case(&log_path)
            );
        }
        if Instant::now() >= next_progress {
            next_progress += PROGRESS_EVERY;
            println!(
                "xtask: autobahn: {} in, at {}",
                util::human(started.elapsed()),
                last_case(&log_path)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// "case 9.1.6 (#243)" from the wstest log.
fn last_case(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let running: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("Running test case ID "))
        .collect();
    match running.last() {
        Some(l) => format!(
            "case {} (#{})",
            l.split_whitespace().next().unwrap_or("?"),
            running.len()
        ),
        None => "no case yet".to_owned(),
    }
}

// ---------------------------------------------------------------------------
// The results.

/// One case of `index.json`.
#[derive(Debug)]
struct CaseResult {
    id: String,
    behavior: String,
    behavior_close: String,
    remote_close_code: Option<i64>,
    report_file: Option<String>,
}

/// The behaviors Autobahn reports, in the order they are summarised.
const BEHAVIORS: &[&str] = &[
    "OK",
    "NON-STRICT",
    "INFORMATIONAL",
    "UNIMPLEMENTED",
    "FAILED",
];

/// Whether a case's `behavior` fails the run: FAILED, and anything Autobahn
/// might report that is not known to be acceptable.
fn behavior_fails(b: &str) -> bool {
    !matches!(b, "OK" | "NON-STRICT" | "INFORMATIONAL" | "UNIMPLEMENTED")
}

/// Whether a case's `behaviorClose` fails the run: FAILED (wrong endpoint
/// closed, or no handshake), UNCLEAN (the report marks both red) and
/// anything unknown. WRONG CODE and FAILED BY CLIENT are shown but pass, as
/// in Autobahn's own report (orange and yellow).
fn close_fails(b: &str) -> bool {
    !matches!(
        b,
        "OK" | "NON-STRICT" | "INFORMATIONAL" | "UNIMPLEMENTED" | "WRONG CODE" | "FAILED BY CLIENT"
    )
}

/// Case ids in numeric order: 1.1.2 < 1.1.10 < 2.1.
fn case_key(id: &str) -> Vec<u32> {
    id.split('.')
        .map(|p| p.parse().unwrap_or(u32::MAX))
        .collect()
}

fn load_results(index: &Path) -> Result<Vec<CaseResult>> {
    let text = fs::read_to_string(index).with_context(|| {
        format!(
            "cannot read {} (did wstest write its reports?)",
            index.display()
        )
    })?;
    let doc: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", index.display()))?;
    let Some(cases) = doc.get(AGENT).and_then(Value::as_object) else {
        let agents: Vec<&String> = doc
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        bail!(
            "{} has no results for agent `{AGENT}` (agents: {agents:?})",
            index.display()
        );
    };
    let text_of =
        |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or("?").to_owned();
    let mut results: Vec<CaseResult> = cases
        .iter()
        .map(|(id, v)| CaseResult {
            id: id.clone(),
            behavior: text_of(v, "behavior"),
            behavior_close: text_of(v, "behaviorClose"),
            remote_close_code: v.get("remoteCloseCode").and_then(Value::as_i64),
            report_file: v
                .get("reportfile")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
        .collect();
    ensure!(!results.is_empty(), "{} lists no cases", index.display());
    results.sort_by_key(|r| case_key(&r.id));
    Ok(results)
}

/// Prints one line per behavior, for `behavior` and for `behaviorClose`.
fn summarize(results: &[CaseResult], servers_dir: &Path, took: Duration) {
    println!(
        "xtask: autobahn: {} cases against {AGENT} in {} (report: {})",
        results.len(),
        util::human(took),
        servers_dir.join("index.html").display()
    );
    let field_lines = |field: &str, get: fn(&CaseResult) -> &str| {
        let mut by: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for r in results {
            by.entry(get(r)).or_default().push(&r.id);
        }
        let mut names: Vec<&str> = BEHAVIORS.to_vec();
        names.extend(by.keys().filter(|k| !BEHAVIORS.contains(k)));
        for name in names {
            let ids = by.get(name).map(Vec::as_slice).unwrap_or_default();
            let mut line = format!("  {field:<14} {name:<17} {:>4}", ids.len());
            if name != "OK" && !ids.is_empty() {
                line.push_str("  ");
                line.push_str(&abbreviate(ids, 16));
            }
            println!("{line}");
        }
    };
    field_lines("behavior", |r| &r.behavior);
    field_lines("behaviorClose", |r| &r.behavior_close);
}

/// `a, b, c … and 12 more`.
fn abbreviate(ids: &[&str], max: usize) -> String {
    let mut s = ids.iter().take(max).copied().collect::<Vec<_>>().join(", ");
    if ids.len() > max {
        s.push_str(&format!(" … and {} more", ids.len() - max));
    }
    s
}

/// How many failing cases get their report's details printed.
const DETAILS_SHOWN: usize = 12;

/// Fails when any case fails, naming every failing case with its behaviors
/// (grouped by behavior pair) and printing what the first reports say.
fn check(results: &[CaseResult], servers_dir: &Path) -> Result<()> {
    let failing: Vec<&CaseResult> = results
        .iter()
        .filter(|r| behavior_fails(&r.behavior) || close_fails(&r.behavior_close))
        .collect();
    if failing.is_empty() {
        println!("xtask: autobahn: no failing case");
        return Ok(());
    }
    // Handshakes the server refused (no 101): one line per HTTP status.
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    for (i, r) in failing.iter().enumerate() {
        let report = r
            .report_file
            .as_ref()
            .and_then(|f| CaseReport::read(&servers_dir.join(f)));
        if let Some(status) = report.as_ref().and_then(|c| c.refused_with.clone()) {
            *refused.entry(status).or_default() += 1;
        }
        if i < DETAILS_SHOWN {
            println!(
                "xtask: autobahn: FAILING {} (behavior {}, behaviorClose {}, close code {})",
                r.id,
                r.behavior,
                r.behavior_close,
                r.remote_close_code
                    .map_or_else(|| "none".to_owned(), |c| c.to_string())
            );
            if let Some(report) = report {
                println!("{}", report.detail);
            }
        }
    }
    if failing.len() > DETAILS_SHOWN {
        println!(
            "xtask: autobahn: … {} more failing cases (details in {})",
            failing.len() - DETAILS_SHOWN,
            servers_dir.display()
        );
    }
    for (status, n) in &refused {
        println!(
            "xtask: autobahn: {n} failing cases never got a WebSocket: the server answered \
             the opening handshake with `{status}`{}",
            if status.contains(" 429 ") {
                " (its connection limits; Autobahn opens one connection per case, \
                 back to back, from one address)"
            } else {
                ""
            }
        );
    }
    let mut groups: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for r in &failing {
        groups
            .entry((&r.behavior, &r.behavior_close))
            .or_default()
            .push(&r.id);
    }
    let list: Vec<String> = groups
        .iter()
        .map(|((b, c), ids)| format!("behavior {b}, behaviorClose {c}: {}", ids.join(", ")))
        .collect();
    bail!(
        "{} of {} Autobahn cases failed; {}",
        failing.len(),
        results.len(),
        list.join("; ")
    )
}

/// What a case's own JSON report says, for a failing case.
struct CaseReport {
    /// Description, expectation and outcome, indented, on four lines.
    detail: String,
    /// The HTTP status line when the handshake was not answered with 101.
    refused_with: Option<String>,
}

impl CaseReport {
    fn read(path: &Path) -> Option<Self> {
        let v: Value = serde_json::from_str(&fs::read_to_string(path).ok()?).ok()?;
        let field = |k: &str| strip_html(v.get(k).and_then(Value::as_str).unwrap_or(""));
        let status = v
            .get("httpResponse")
            .and_then(Value::as_str)
            .and_then(|r| r.lines().next())
            .map(str::trim)
            .unwrap_or("");
        let refused_with =
            (!status.is_empty() && !status.contains(" 101 ")).then(|| status.to_owned());
        let mut detail = format!(
            "    description: {}\n    expectation: {}\n    result: {}\n    close: {}",
            field("description"),
            field("expectation"),
            field("result"),
            field("resultClose")
        );
        if let Some(status) = &refused_with {
            detail.push_str(&format!("\n    handshake answer: {status}"));
        }
        Some(Self {
            detail,
            refused_with,
        })
    }
}

/// The text of a report's HTML snippet, on one line.
fn strip_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> Result<Option<Options>> {
        Options::parse(&args.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn options() {
        let o = opts(&[]).unwrap().unwrap();
        assert_eq!(o.cases, ["*"]);
        let o = opts(&["--cases", "1.*, 2.*"]).unwrap().unwrap();
        assert_eq!(o.cases, ["1.*", "2.*"]);
        let o = opts(&["--cases=9.1.6", "--server-config", "x.toml"])
            .unwrap()
            .unwrap();
        assert_eq!(o.cases, ["9.1.6"]);
        assert_eq!(o.server_config, Some(PathBuf::from("x.toml")));
        assert!(!o.tls);
        assert!(opts(&["--tls"]).unwrap().unwrap().tls);
        assert!(opts(&["--tls=yes"]).is_err());
        assert!(opts(&["--cases"]).is_err());
        assert!(opts(&["--cases", "1.*,"]).is_err());
        assert!(opts(&["--cases", "1;rm"]).is_err());
        assert!(opts(&["--keep"]).is_err());
        assert!(opts(&["--help"]).unwrap().is_none());
    }

    #[test]
    fn running_line() {
        let (addr, pid) =
            parse_running_line("WebSocket server running on 127.0.0.1:40123 with pid 77").unwrap();
        assert_eq!(addr, "127.0.0.1:40123".parse().unwrap());
        assert_eq!(pid, 77);
        assert!(parse_running_line("PATH  COMPONENT").is_none());
    }

    #[test]
    fn verdicts() {
        assert!(!behavior_fails("OK"));
        assert!(!behavior_fails("NON-STRICT"));
        assert!(behavior_fails("FAILED"));
        assert!(behavior_fails("NO_CLOSE?"));
        assert!(close_fails("FAILED"));
        assert!(close_fails("UNCLEAN"));
        assert!(!close_fails("WRONG CODE"));
        assert!(!close_fails("OK"));
    }

    #[test]
    fn ordering_and_html() {
        let mut ids = vec!["2.1", "1.1.10", "10.1.1", "1.1.2"];
        ids.sort_by_key(|i| case_key(i));
        assert_eq!(ids, ["1.1.2", "1.1.10", "2.1", "10.1.1"]);
        assert_eq!(
            strip_html("Send <b>RSV = 2</b>,<br>then"),
            "Send RSV = 2 , then"
        );
    }

    #[test]
    fn results_from_index() {
        let dir = std::env::temp_dir().join(format!("xtask-autobahn-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let index = dir.join("index.json");
        fs::write(
            &index,
            r#"{"ws-provider": {
                "1.1.2": {"behavior": "OK", "behaviorClose": "OK", "remoteCloseCode": 1000, "reportfile": "a.json"},
                "1.1.10": {"behavior": "FAILED", "behaviorClose": "OK", "remoteCloseCode": null, "reportfile": "b.json"}
            }}"#,
        )
        .unwrap();
        let r = load_results(&index).unwrap();
        assert_eq!(
            r.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            ["1.1.2", "1.1.10"]
        );
        let err = check(&r, &dir).unwrap_err().to_string();
        assert!(
            err.contains("1 of 2 Autobahn cases failed; behavior FAILED, behaviorClose OK: 1.1.10"),
            "{err}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
