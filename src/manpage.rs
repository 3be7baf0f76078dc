//! usher.1, the man page, built from the option table as `--help` is, so the two never drift.
//!
//! `cargo run --example manpage > docs/usher.1` writes it; a test checks the
//! committed copy is current. Not linked into the binary (nothing in
//! `main` calls it).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use core::fmt::Write as _;

use crate::cli::{Opt, OPTIONS};

/// The roff source of `usher(1)`.
pub fn render() -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        ".TH USHER 1 \"\" \"usher {}\" \"User Commands\"",
        crate::cli::VERSION
    );
    out.push_str(
        ".SH NAME\nusher \\- a tiny PID 1 for containers: starts the app, reaps zombies, forwards signals, shuts down gracefully\n\
         .SH SYNOPSIS\n.B usher\n[\\fIOPTIONS\\fR] [\\fB\\-\\-\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR...]\n\
         .br\n.B usher \\-\\-check\n[\\fB\\-\\-ready\\fR] [\\fIOPTIONS\\fR] \\fIURL\\fR\n\
         .SH DESCRIPTION\nusher runs as a container's ENTRYPOINT (or as the engine's \\fB\\-\\-init\\fR), starts \\fICOMMAND\\fR as its child, \
         reaps every orphan, forwards signals to the app's process group, and shuts the app down gracefully: \
         an optional drain before the stop signal, lifecycle hooks, and its own deadline after which it SIGKILLs what is left and says so in the log.\n\
         .PP\nEverything from \\fICOMMAND\\fR on belongs to the app. Every option can also be set by its environment variable; the flag wins. \
         An empty variable counts as unset, except \\fBUSHER_TERMINATION_LOG\\fR, where it means none.\n.SH OPTIONS\n",
    );
    for opt in OPTIONS.iter().filter(|o| !o.help.is_empty()) {
        let _ = writeln!(out, ".TP\n{}", flags(opt));
        out.push_str(&escape(&opt.help.join(" ")));
        out.push('\n');
        if let (true, Some(var)) = (crate::cli::owns_var(opt), opt.var) {
            let _ = writeln!(
                out,
                ".br\nVariable: \\fB{}\\fR (e.g. {})",
                var.name,
                escape(var.example)
            );
        }
    }
    out.push_str(
        ".SH ENVIRONMENT\ntini's and dumb-init's variables are read when usher's own is not set:\n",
    );
    for opt in OPTIONS.iter().filter(|o| crate::cli::owns_var(o)) {
        for peer in opt.var.map_or(&[][..], |v| v.peers) {
            let _ = writeln!(out, ".TP\n.B {}\n{}", peer.var, escape(peer.says));
        }
    }
    out.push_str(".SH EXIT STATUS\n");
    for (code, meaning) in crate::codes::TABLE {
        let _ = writeln!(out, ".TP\n.B {}\n{}", escape(code), escape(meaning));
    }
    out.push_str(
        ".SH EXAMPLES\n.nf\nENTRYPOINT [\"/usher\", \"\\-\\-drain\", \"5s\", \"\\-\\-grace\\-period\", \"25s\", \"\\-\\-\"]\n\
         HEALTHCHECK CMD [\"/usher\", \"\\-\\-check\", \"http://127.0.0.1:8080/healthz\"]\n\
         docker run \\-\\-init \\-v /usr/local/bin/usher:/sbin/docker\\-init:ro \\-e USHER_DRAIN=5s IMAGE\n.fi\n\
         .SH SEE ALSO\n\\fBtini\\fR(1), \\fBdumb\\-init\\fR(1), \\fBdocker\\-run\\fR(1)\n",
    );
    out
}

/// `\fB\-s\fR, \fB\-\-subreaper\fR \fIVALUE\fR`
fn flags(opt: &Opt) -> String {
    let mut names = Vec::new();
    if let Some(s) = opt.short {
        names.push(format!("\\fB\\-{s}\\fR"));
    }
    if let Some(l) = opt.long {
        names.push(format!("\\fB\\-\\-{}\\fR", escape(l)));
    }
    let mut text = names.join(", ");
    if let Some(v) = opt.value() {
        let _ = write!(text, " \\fI{}\\fR", escape(v));
    }
    text
}

/// Hyphens and backslashes as roff wants them; a leading dot or quote kept literal.
pub(crate) fn escape(text: &str) -> String {
    let mut out = text.replace('\\', "\\e").replace('-', "\\-");
    if out.starts_with(['.', '\'']) {
        out.insert_str(0, "\\&");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::format;
    #[test]
    fn the_committed_man_page_is_current() {
        let committed = include_str!("../docs/usher.1");
        assert!(
            committed == super::render(),
            "docs/usher.1 is stale: cargo run --example manpage > docs/usher.1"
        );
        for opt in crate::cli::OPTIONS.iter().filter(|o| !o.help.is_empty()) {
            if let Some(long) = opt.long {
                assert!(
                    committed.contains(&format!("\\-\\-{}", long.replace('-', "\\-"))),
                    "{long}"
                );
            }
        }
    }
}
