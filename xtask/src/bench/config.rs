//! ws-provider's configuration for the bench: every pipeline key its
//! `ws-cli check-config` knows, limits that never refuse the bench, message
//! limits that let the sweep's 64 KiB through, and one JWT aspect whose
//! token the load generators send as a cookie.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::Env;
use super::process::{Client, Server};
use super::scenarios::Kind;

/// The JWT aspect of the bench configuration (issue 7: "one JWT aspect").
const ASPECT: &str = "bench.user";
/// The cookie its token travels in, on every handshake of every scenario.
const TOKEN_COOKIE: &str = "bench_token";
/// The user the token names (`sub`, the aspect's id).
pub(super) const TOKEN_SUB: &str = "bench";
/// The token's `name` claim (the aspect's username).
pub(super) const TOKEN_NAME: &str = "ws-bench";
/// How long the token is valid: far longer than any run.
pub(super) const TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// ws-provider's demo route (`ws-cli start`) that answers any message with
/// the connection's aspects.
pub(crate) const WHOAMI_PATH: &str = "/demo_echo_Whoami";

// ------------------------------------------------------ provider config

/// Which pipeline settings the generated configuration could turn on.
#[derive(Debug, Default)]
pub(crate) struct Hooks {
    pub(crate) applied: Vec<String>,
    pub(crate) missing: Vec<String>,
    /// The index in `applied` of the JWT aspect, when it is on.
    pub(crate) aspect: Option<usize>,
    /// `NAME=TOKEN`: the aspect's credential, which ws-bench sends on every
    /// handshake (to both servers, whether the aspect is on or not).
    pub(crate) cookie: String,
}

/// Settings that put the handshake pipeline and the limits to work without
/// refusing the benchmark's own connections: every key is applied only
/// where `ws-cli check-config` lists it, in the section it lists it in.
/// The load generator sends `Origin: http://localhost`, so the origin check
/// runs (and passes) on every handshake.
const PIPELINE_KEYS: &[(&str, &str, &str)] = &[
    ("allowed_origins", r#"["localhost"]"#, "origin check"),
    ("max_connections", "100000", "limiter: open connections"),
    (
        "max_connections_per_address",
        "100000",
        "limiter: connections per address",
    ),
    (
        "max_connections_per_address_per_second",
        "10000000",
        "limiter: new connections per address per second",
    ),
    (
        "max_messages_per_second",
        "1000000000",
        "limiter: messages per connection per second",
    ),
    (
        "max_messages_per_address_per_second",
        "1000000000",
        "limiter: messages per address per second",
    ),
];

/// The bench's own message limits (the size sweep's largest message is
/// 64 KiB, ws-provider's default limit; set explicitly, with room for
/// framing, so that a change of default cannot refuse the sweep). Not in
/// [`write_pipeline_config`]: Autobahn runs with the defaults.
const MESSAGE_KEYS: &[(&str, &str, &str)] = &[
    (
        "max_message_size_in_kb",
        "128",
        "message limit: the sweep's 64 KiB messages pass",
    ),
    (
        "max_frame_size_in_kb",
        "128",
        "frame limit: the sweep's 64 KiB frames pass",
    ),
];

/// The `(section, key)` pairs `ws-cli check-config` prints.
fn known_keys(cli: &Path) -> Result<Vec<(String, String)>> {
    let mut cmd = Command::new(cli);
    cmd.arg("check-config");
    clear_ws_env(&mut cmd);
    let out = cmd.output().context("cannot run ws-cli check-config")?;
    if !out.status.success() {
        bail!(
            "ws-cli check-config failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let line = line.trim();
        if line.starts_with("[[") {
            // Arrays of tables (per-route overrides): not ours to set.
            section = "[[".to_owned();
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_owned();
        } else if let Some((k, _)) = line.split_once('=')
            && !line.starts_with('#')
            && section != "[["
        {
            keys.push((section.clone(), k.trim().to_owned()));
        }
    }
    Ok(keys)
}

/// `ws-cli` reads `WS_*` variables; the bench's server must not.
pub(crate) fn clear_ws_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("WS_") {
            cmd.env_remove(k);
        }
    }
}

/// Writes to `file` the configuration the bench runs ws-provider with:
/// every handshake pipeline key `ws-cli check-config` knows turned on with
/// limits that refuse nothing of a test's own, and one JWT aspect (a fresh
/// secret next to `file`). Returns what it turned on and what this `cli`
/// lacks. A client without the aspect's cookie connects anonymously.
pub(crate) fn write_pipeline_config(
    cli: &Path,
    file: &Path,
    state: &Path,
) -> Result<(Vec<String>, Vec<String>)> {
    let hooks = write_config(cli, file, state, false)?;
    Ok((hooks.applied, hooks.missing))
}

/// The bench's configuration: [`write_pipeline_config`]'s, plus the message
/// limits of [`MESSAGE_KEYS`].
pub(crate) fn write_provider_config(cli: &Path, file: &Path, state: &Path) -> Result<Hooks> {
    write_config(cli, file, state, true)
}

fn write_config(cli: &Path, file: &Path, state: &Path, bench_limits: bool) -> Result<Hooks> {
    let keys = known_keys(cli)?;
    let mut sections: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let state_str = serde_json::to_string(&state.display().to_string())?;
    for (k, v) in [
        ("host", r#""127.0.0.1""#.to_owned()),
        ("port", "0".to_owned()),
        ("state_dir", state_str),
    ] {
        if let Some((sec, _)) = keys.iter().find(|(_, key)| key == k) {
            sections
                .entry(sec.clone())
                .or_default()
                .push((k.to_owned(), v));
        }
    }
    let mut hooks = Hooks::default();
    let extra: &[(&str, &str, &str)] = if bench_limits { MESSAGE_KEYS } else { &[] };
    for (key, value, what) in PIPELINE_KEYS.iter().chain(extra) {
        match keys.iter().find(|(_, k)| k == key) {
            Some((sec, _)) => {
                sections
                    .entry(sec.clone())
                    .or_default()
                    .push(((*key).to_owned(), (*value).to_owned()));
                hooks
                    .applied
                    .push(format!("{sec}.{key} = {value} ({what})"));
            }
            None => hooks
                .missing
                .push(format!("{key} ({what}): ws-cli has no such key yet")),
        }
    }
    // Issue 7's pipeline also has one JWT aspect: a secret made for this
    // run, and a token signed with it that ws-bench sends as a cookie.
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key_file = dir.join("bench-jwt.secret");
    let token = make_token(&key_file)?;
    hooks.cookie = format!("{TOKEN_COOKIE}={token}");
    let aspect = aspect_toml(&key_file)?;
    let mut text = String::from(
        "# Written by `cargo xtask bench`: ws-provider with every pipeline key that\n\
         # `ws-cli check-config` knows turned on, limits high enough never to refuse\n\
         # the benchmark's own connections, and one JWT aspect whose token ws-bench\n\
         # sends on every handshake. Regenerated (with a new secret) on every run.\n",
    );
    for (sec, kvs) in &sections {
        let _ = write!(text, "\n[{sec}]\n");
        for (k, v) in kvs {
            let _ = writeln!(text, "{k} = {v}");
        }
    }
    let check = |text: &str| -> Result<std::result::Result<(), String>> {
        std::fs::write(file, text).with_context(|| format!("cannot write {}", file.display()))?;
        let mut cmd = Command::new(cli);
        cmd.arg("check-config").arg("--config").arg(file);
        clear_ws_env(&mut cmd);
        let out = cmd.output().context("cannot run ws-cli check-config")?;
        Ok(if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        })
    };
    let what = "one JWT aspect";
    match check(&format!("{text}{aspect}"))? {
        Ok(()) => {
            hooks.aspect = Some(hooks.applied.len());
            hooks.applied.push(format!(
                "[[aspect]] name = \"{ASPECT}\", credential = {{ cookie = \"{TOKEN_COOKIE}\" }}, \
                 jwt HS256 with key_file {} ({what}: every handshake sends a token for \
                 sub \"{TOKEN_SUB}\")",
                key_file.display()
            ));
        }
        // A `--provider-bin` build from before authentication existed.
        Err(e) if e.contains("unknown field `aspect`") => {
            hooks.missing.push(format!(
                "{what} ([[aspect]] with [aspect.jwt]): this ws-cli has no [[aspect]] yet"
            ));
            if let Err(e) = check(&text)? {
                bail!(
                    "ws-cli rejects the bench configuration {}: {e}",
                    file.display()
                );
            }
        }
        Err(e) => bail!(
            "ws-cli rejects the bench configuration {}: {e}",
            file.display()
        ),
    }
    for m in &hooks.missing {
        eprintln!("xtask bench: not on in this run: {m}");
    }
    Ok(hooks)
}

/// Makes a fresh HS256 secret (64 hex digits from `/dev/urandom`), writes
/// it to `key_file` (mode 0600), and returns a JWT signed with it: `sub`
/// [`TOKEN_SUB`], `name` [`TOKEN_NAME`], `iat` now and `exp`
/// [`TOKEN_LIFETIME`] later.
pub(super) fn make_token(key_file: &Path) -> Result<String> {
    use std::os::unix::fs::OpenOptionsExt as _;

    let mut random = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .context("cannot read /dev/urandom for the bench's JWT secret")?;
    let secret: String = random.iter().map(|b| format!("{b:02x}")).collect();
    // Removed first: the mode applies to new files only.
    let _ = std::fs::remove_file(key_file);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(key_file)
        .and_then(|mut f| f.write_all(secret.as_bytes()))
        .with_context(|| format!("cannot write {}", key_file.display()))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    let claims = json!({
        "sub": TOKEN_SUB,
        "name": TOKEN_NAME,
        "iat": now,
        "exp": now + TOKEN_LIFETIME.as_secs(),
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .context("cannot sign the bench's JWT")
}

/// The `[[aspect]]` table of the bench configuration (appended last: in
/// TOML everything after `[[aspect]]` belongs to it).
pub(super) fn aspect_toml(key_file: &Path) -> Result<String> {
    let key_file = serde_json::to_string(&key_file.display().to_string())?;
    Ok(format!(
        "\n# One JWT aspect: ws-bench sends the token as the cookie `{TOKEN_COOKIE}`.\n\
         [[aspect]]\n\
         name = \"{ASPECT}\"\n\
         credential = {{ cookie = \"{TOKEN_COOKIE}\" }}\n\
         \n\
         [aspect.jwt]\n\
         algorithm = \"HS256\"\n\
         key_file = {key_file}\n\
         \n\
         [aspect.jwt.claims]\n\
         id = \"sub\"\n\
         username = \"name\"\n"
    ))
}

/// Asks a ws-provider started for this alone, on [`WHOAMI_PATH`] with the
/// bench's cookie, who is on the connection; fails unless [`ASPECT`] is
/// logged in as the token's user. Returns what it reported of the aspect.
pub(crate) fn check_aspect(env: &Env) -> Result<Value> {
    let log = env.logs.join("aspect-check-ws-provider.log");
    let mut server = Server::start(env, Kind::Provider, &log)?;
    let mut args: Vec<String> = [
        "probe",
        "--addr",
        &server.addr.to_string(),
        "--path",
        WHOAMI_PATH,
        "--message",
        "whoami",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(cookie_args(env));
    let answer = Client::start(env, &args, false).and_then(|c| c.finish(Duration::from_secs(30)));
    let stopped = server.stop();
    let answer = answer.with_context(|| {
        format!(
            "cannot check the JWT aspect `{ASPECT}`: no answer from ws-provider's \
             {WHOAMI_PATH} (server log: {})",
            log.display()
        )
    })?;
    stopped?;
    let reply = answer
        .rest
        .get("reply")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let seen = logged_in_aspect(reply).with_context(|| {
        format!(
            "JWT aspect check before measuring (configuration: {}, server log: {})",
            env.config.display(),
            log.display()
        )
    })?;
    eprintln!(
        "xtask bench: JWT aspect `{ASPECT}` checked on {WHOAMI_PATH}: logged in as id {}, \
         username {}",
        seen["id"], seen["username"]
    );
    Ok(seen)
}

/// [`ASPECT`] in the answer of `demo_echo::Whoami`, when it is logged in as
/// the token's user.
pub(super) fn logged_in_aspect(reply: &str) -> Result<Value> {
    let who: Value = serde_json::from_str(reply).with_context(|| {
        format!("{WHOAMI_PATH} answered {reply:?}, not the JSON of demo_echo::Whoami")
    })?;
    let seen = &who["aspects"][ASPECT];
    if seen["logged_in"] != true || seen["id"] != TOKEN_SUB {
        bail!(
            "the JWT aspect `{ASPECT}` does not resolve: with the bench's token in the \
             cookie `{TOKEN_COOKIE}`, ws-provider's {WHOAMI_PATH} reports it as {seen} \
             (expected logged in as id \"{TOKEN_SUB}\"); all aspects: {}. The bench stops \
             rather than measure anonymous connections",
            who["aspects"]
        );
    }
    Ok(seen.clone())
}

/// The ws-bench arguments that send the bench's cookie.
pub(crate) fn cookie_args(env: &Env) -> [String; 2] {
    ["--cookie".to_owned(), env.cookie.clone()]
}
