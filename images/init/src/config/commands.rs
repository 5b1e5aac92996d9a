//! `bootcmd` and `runcmd`: each command run to completion, in order, with
//! its output on the console as `[runcmd] …` lines and in
//! `/var/log/runcmd.log` (the onboot containers' [`Sys::run`]).
//!
//! A string runs as `/bin/sh -c STRING`, a list as argv (found on `PATH`),
//! both with the image's `/bin/sh` required: cloud-init turns both into a
//! shell script, so an image without a shell cannot run them. A failing
//! command is an error in the report; the next one still runs. Non-goal: a
//! timeout (cloud-init has none either; a hung `runcmd` is the user's).

use super::Report;
use crate::sys::Sys;

pub const SHELL: &str = "/bin/sh";

/// Run every command of `kind` (`bootcmd`/`runcmd`).
pub fn run_all(sys: &dyn Sys, kind: &str, cmds: &[Vec<String>], report: &mut Report) {
    if cmds.is_empty() {
        return;
    }
    if !sys.exists(SHELL) {
        report.skip(
            sys,
            format!(
                "{kind}: needs {SHELL} in the image, which has none; {} commands not run",
                cmds.len()
            ),
        );
        return;
    }
    for (i, argv) in cmds.iter().enumerate() {
        let shown = match argv.as_slice() {
            [sh, c, s] if sh == SHELL && c == "-c" => s.clone(),
            _ => argv.join(" "),
        };
        sys.log(&format!("cloud-config: {kind}[{i}]: {shown}"));
        match sys.run(argv, kind) {
            Ok(0) => sys.log(&format!("cloud-config: {kind}[{i}] exit code 0")),
            Ok(code) => report.error(sys, format!("{kind}[{i}] exit code {code}")),
            Err(e) => report.error(
                sys,
                format!(
                    "{kind}[{i}]: starting {}: {e}",
                    argv.first().map_or("", String::as_str)
                ),
            ),
        }
    }
    report.applied(kind);
}
