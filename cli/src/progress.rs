//! Progress of the binary's long tasks (`replay`, `verify`, `verify
//! --seal`, `export`, `history`), drawn by `indicatif` on stderr: a bar
//! with events done, the total and events per second when the total is
//! known, a spinner with the time taken when it is not.
//!
//! Drawn only when stderr is a terminal (indicatif's `stderr` target hides
//! itself otherwise: a pipe, a file, a test) and never with `--json`, so
//! that what machines read is never mixed with it. Stdout is never touched.

use std::future::Future;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// Where bars are drawn: stderr when `shown`, nowhere otherwise.
fn target(shown: bool) -> ProgressDrawTarget {
    if shown {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// A bar over `total` events, labelled `label`.
pub fn events(label: &str, total: u64, shown: bool) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{prefix:<14} [{bar:30}] {pos}/{len} events, {rate} events/s, {elapsed}",
    )
    .expect("a valid template")
    .with_key(
        "rate",
        |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0}", state.per_sec());
        },
    )
    .progress_chars("#>.");
    ProgressBar::with_draw_target(Some(total), target(shown))
        .with_style(style)
        .with_prefix(label.to_owned())
}

/// A spinner for work whose size is not known ahead, saying what it does.
pub fn working(message: &str, shown: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, target(shown))
        .with_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("a valid template"),
        )
        .with_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Leaves a finished bar on its line, and ends the line: indicatif leaves
/// the cursor after the bar, where the next output would follow it.
pub fn finish(bar: &ProgressBar) {
    bar.finish();
    if !bar.is_hidden() {
        eprintln!();
    }
}

/// Awaits `work` under a spinner saying `message`, then clears it.
pub async fn while_working<T>(message: &str, shown: bool, work: impl Future<Output = T>) -> T {
    let spinner = working(message, shown);
    let out = work.await;
    spinner.finish_and_clear();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_bars_draw_nothing_but_still_count() {
        let bar = events("access_index", 10, false);
        assert!(bar.is_hidden());
        bar.inc(4);
        assert_eq!(bar.position(), 4);
        assert_eq!(bar.length(), Some(10));
        bar.finish();
        let spinner = working("replaying", false);
        assert!(spinner.is_hidden());
        spinner.finish_and_clear();
    }
}
