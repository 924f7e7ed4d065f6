//! Running what components registered in their `ServerContext`: timers,
//! signal handlers and background tasks, all ended at shutdown.

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt as _;
use tokio::task::JoinSet;
use ws_core::__runtime::Task;
use ws_core::Signal;

/// Starts every task on the current runtime; dropping or aborting the set
/// stops them all.
pub(crate) fn start(tasks: Vec<(String, Task)>) -> std::io::Result<JoinSet<()>> {
    let mut set = JoinSet::new();
    for (component, task) in tasks {
        match task {
            Task::Every {
                period,
                mut callback,
            } => {
                set.spawn(async move {
                    let start = tokio::time::Instant::now() + period;
                    let mut tick = tokio::time::interval_at(start, period);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tick.tick().await;
                        if std::panic::catch_unwind(AssertUnwindSafe(&mut callback)).is_err() {
                            tracing::error!(%component, "timer callback panicked");
                        }
                    }
                });
            }
            Task::OnSignal {
                signal,
                mut callback,
            } => {
                let Some(kind) = signal_kind(signal) else {
                    tracing::warn!(%component, ?signal, "signal not supported, handler ignored");
                    continue;
                };
                let mut stream = tokio::signal::unix::signal(kind)?;
                set.spawn(async move {
                    while stream.recv().await.is_some() {
                        if std::panic::catch_unwind(AssertUnwindSafe(&mut callback)).is_err() {
                            tracing::error!(%component, ?signal, "signal callback panicked");
                        }
                    }
                });
            }
            Task::Spawn(fut) => {
                set.spawn(async move {
                    if AssertUnwindSafe(fut).catch_unwind().await.is_err() {
                        tracing::error!(%component, "background task panicked");
                    }
                });
            }
            other => {
                tracing::warn!(%component, task = ?other, "task kind not supported, ignored");
            }
        }
    }
    Ok(set)
}

fn signal_kind(signal: Signal) -> Option<tokio::signal::unix::SignalKind> {
    use tokio::signal::unix::SignalKind;
    Some(match signal {
        Signal::Hangup => SignalKind::hangup(),
        Signal::User1 => SignalKind::user_defined1(),
        Signal::User2 => SignalKind::user_defined2(),
        _ => return None,
    })
}
