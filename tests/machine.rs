//! The state machine driven directly: every rule of forwarding, hooks, shutdown and exit, without processes or clocks.

use std::time::Duration;

use usher::http::Outcome;
use usher::machine::{
    Action, Event, Found, HookEnd, HookKind, KillCause, Machine, NoteKind, Phase, Policy, Scope,
    Start, StopCause, Target, Timer, Whom, Why, EXIT_POST_START,
};
use usher::process::{Leftover, Status};
use usher::signals::Signal;

const APP: i32 = 7;
const HOOK: i32 = 9;
/// A process the app left behind in its own group, and one outside it.
const IN_GROUP: i32 = 40;
const OUTSIDE: i32 = 41;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A machine plus a clock; collects the actions of each step and answers
/// `FindLeftovers` the way the driver would, from `self.left`.
struct Sim {
    m: Machine,
    now: Duration,
    /// What a search for leftovers finds.
    left: Found,
}

impl Sim {
    /// usher as PID 1.
    fn new(policy: Policy) -> Sim {
        Sim::started(policy, 1, false)
    }

    /// usher as a plain process (with a subreaper's view of its descendants).
    fn not_pid1(policy: Policy) -> Sim {
        Sim::started(policy, 3, false)
    }

    fn started(policy: Policy, me: i32, terminal: bool) -> Sim {
        let start = Start {
            app: APP,
            me,
            terminal,
        };
        Sim {
            m: Machine::new(policy, start, ms(1000)),
            now: ms(1000),
            left: nothing_left(),
        }
    }

    fn at(&mut self, t_ms: u64) -> &mut Self {
        self.now = ms(1000 + t_ms);
        self
    }

    fn feed(&mut self, e: Event) -> Vec<Action> {
        self.m.handle(e, self.now);
        let mut out = Vec::new();
        while let Some(a) = self.m.poll_action() {
            if let Action::FindLeftovers(_) = a {
                self.m.handle(Event::Leftovers(self.left.clone()), self.now);
            }
            out.push(a);
        }
        out
    }

    /// The hook of `kind` is running as `pid`.
    fn hook_runs(&mut self, kind: HookKind, pid: i32) -> Vec<Action> {
        self.feed(Event::HookStarted { kind, pid })
    }

    fn sig(&mut self, signal: Signal) -> Vec<Action> {
        self.feed(Event::Signal {
            signal,
            sender: Some(100),
        })
    }

    /// Advances to the machine's own timeout and fires it.
    fn fire_timer(&mut self) -> Vec<Action> {
        let t = self.m.poll_timeout().expect("a timer should be armed");
        self.now = self.now.max(t);
        self.feed(Event::Timer)
    }

    /// The app is reaped; `left`: processes remain (one in its group, one outside).
    fn app_exits(&mut self, status: Status, left: bool) -> Vec<Action> {
        if left {
            self.left = leftovers(&[(IN_GROUP, APP), (OUTSIDE, OUTSIDE)]);
        }
        let mut out = self.feed(Event::Reaped { pid: APP, status });
        out.extend(self.feed(Event::ReapDone {
            children_left: left,
        }));
        out
    }

    /// The last leftover is reaped.
    fn all_gone(&mut self) -> Vec<Action> {
        self.left = nothing_left();
        self.feed(Event::ReapDone {
            children_left: false,
        })
    }
}

fn nothing_left() -> Found {
    Found {
        list: Some(Vec::new()),
        group_alive: false,
    }
}

fn leftovers(pids: &[(i32, i32)]) -> Found {
    let list = pids
        .iter()
        .map(|&(pid, group)| Leftover { pid, group })
        .collect();
    let group_alive = pids.iter().any(|&(_, g)| g == APP);
    Found {
        list: Some(list),
        group_alive,
    }
}

/// Every signal sent, with its target.
fn sent(actions: &[Action]) -> Vec<(Signal, Target)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { signal, to } => Some((*signal, *to)),
            _ => None,
        })
        .collect()
}

/// Signals sent other than the SIGCONT that follows a stop signal.
fn forwards(actions: &[Action]) -> Vec<(Signal, Target)> {
    let mut all = sent(actions);
    all.retain(|(s, _)| *s != Signal::CONT);
    all
}

fn exit_code(actions: &[Action]) -> Option<i32> {
    actions.iter().find_map(|a| match a {
        Action::Exit(c) => Some(*c),
        _ => None,
    })
}

fn notes(actions: &[Action]) -> Vec<&NoteKind> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Note(n) => Some(&n.kind),
            _ => None,
        })
        .collect()
}

/// The elapsed time on each note, in order.
fn elapsed(actions: &[Action]) -> Vec<Option<Duration>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Note(n) => Some(n.elapsed),
            _ => None,
        })
        .collect()
}

/// The kind and fatality of the first note, if it says a hook could not start.
fn hook_failed(actions: &[Action]) -> Option<(HookKind, bool)> {
    notes(actions).into_iter().find_map(|n| match n {
        NoteKind::HookFailed { kind, fatal, .. } => Some((*kind, *fatal)),
        _ => None,
    })
}

fn killed(actions: &[Action]) -> bool {
    sent(actions).iter().any(|(s, _)| *s == Signal::KILL)
}

fn kill_cause(actions: &[Action]) -> Option<KillCause> {
    notes(actions).into_iter().find_map(|n| match n {
        NoteKind::Signalled {
            why: Why::Kill { cause, .. },
            ..
        } => Some(*cause),
        _ => None,
    })
}

fn grace(drain: u64, grace: Option<u64>) -> Policy {
    Policy {
        drain: ms(drain),
        grace: grace.map(ms),
        ..Policy::default()
    }
}

fn with_pre_stop(mut policy: Policy) -> Policy {
    policy.hooks.push(HookKind::PreStop);
    policy
}

const TO_APP: Target = Target::Group(APP);

/// usher as PID 1, no terminal.
const PID1: Start = Start {
    app: APP,
    me: 1,
    terminal: false,
};

// ---- the core: forwarding and exit codes ----

#[test]
fn forwards_to_the_group_by_default_and_the_app_alone_with_single_child() {
    let mut s = Sim::new(Policy::default());
    assert_eq!(sent(&s.sig(Signal::HUP)), [(Signal::HUP, TO_APP)]);
    let mut s = Sim::new(Policy {
        single_child: true,
        ..Policy::default()
    });
    assert_eq!(
        sent(&s.sig(Signal::USR1)),
        [(Signal::USR1, Target::Process(APP))]
    );
}

#[test]
fn never_forwards_chld_or_faults() {
    let mut s = Sim::new(Policy::default());
    for n in [
        libc::SIGCHLD,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGKILL,
        libc::SIGSTOP,
    ] {
        assert!(s.sig(Signal::new(n).unwrap()).is_empty(), "{n}");
    }
    let rt = Signal::new(usher::signals::rtmin() + 2).unwrap();
    assert_eq!(sent(&s.sig(rt)), [(rt, TO_APP)]);
}

#[test]
fn sigpipe_raised_by_usher_own_write_stays_with_usher() {
    let mut s = Sim::not_pid1(Policy::default());
    for signal in [Signal::PIPE, Signal::XFSZ] {
        let own = s.feed(Event::Signal {
            signal,
            sender: Some(3),
        });
        assert!(own.is_empty(), "raised in usher (pid 3): {own:?}");
        let from_outside = s.feed(Event::Signal {
            signal,
            sender: Some(55),
        });
        assert_eq!(sent(&from_outside), [(signal, TO_APP)]);
        let from_kernel = s.feed(Event::Signal {
            signal,
            sender: None,
        });
        assert_eq!(sent(&from_kernel), [(signal, TO_APP)]);
    }
}

#[test]
fn rewrite_and_drop() {
    let mut policy = Policy::default();
    policy.rewrite.set(Signal::TERM, Some(Signal::QUIT));
    policy.rewrite.set(Signal::HUP, None);
    let mut s = Sim::new(policy);
    let a = s.sig(Signal::HUP);
    assert!(sent(&a).is_empty());
    assert_eq!(
        notes(&a),
        [&NoteKind::Dropped {
            signal: Signal::HUP
        }]
    );
    assert_eq!(forwards(&s.sig(Signal::TERM)), [(Signal::QUIT, TO_APP)]);
}

#[test]
fn a_stop_signal_rewritten_to_0_is_dropped_and_starts_nothing() {
    let mut policy = grace(0, Some(2000));
    policy.rewrite.set(Signal::INT, None);
    let mut s = Sim::new(policy);
    let a = s.sig(Signal::INT);
    assert!(sent(&a).is_empty(), "{a:?}");
    assert!(matches!(notes(&a)[..], [NoteKind::Dropped { .. }]), "{a:?}");
    assert_eq!(s.m.phase(), Phase::Running);
    assert_eq!(s.m.poll_timeout(), None, "no deadline was started");
    // TERM, not rewritten, still starts the sequence.
    assert!(matches!(
        notes(&s.sig(Signal::TERM))[0],
        NoteKind::StopReceived { .. }
    ));
}

#[test]
fn a_signal_rewritten_to_a_stop_signal_is_forwarded_at_once() {
    // --stop-on names what usher receives; the rewrite only changes what goes out.
    let mut policy = grace(5000, Some(10_000));
    policy.rewrite.set(Signal::HUP, Some(Signal::TERM));
    let mut s = Sim::new(policy);
    assert_eq!(sent(&s.sig(Signal::HUP)), [(Signal::TERM, TO_APP)]);
    assert_eq!(s.m.phase(), Phase::Running);
}

#[test]
fn exit_codes_follow_the_app() {
    for (status, code) in [
        (Status::Exited(0), 0),
        (Status::Exited(3), 3),
        (Status::Signaled(Signal::TERM), 143),
        (Status::Signaled(Signal::KILL), 137),
    ] {
        let mut s = Sim::new(Policy::default());
        let a = s.app_exits(status, false);
        assert_eq!(exit_code(&a), Some(code), "{status:?}");
        assert!(s.m.exited());
    }
}

#[test]
fn remapped_codes_become_zero() {
    let policy = Policy {
        remap_exit: vec![143, 3],
        ..Policy::default()
    };
    let mut s = Sim::new(policy.clone());
    let a = s.app_exits(Status::Signaled(Signal::TERM), false);
    assert_eq!(exit_code(&a), Some(0));
    let mut s = Sim::new(policy);
    assert_eq!(exit_code(&s.app_exits(Status::Exited(4), false)), Some(4));
}

#[test]
fn orphans_are_reaped_without_exiting() {
    let mut s = Sim::new(Policy::default());
    let a = s.feed(Event::Reaped {
        pid: 123,
        status: Status::Exited(0),
    });
    assert!(matches!(notes(&a)[0], NoteKind::Reaped { pid: 123, .. }));
    let a = s.feed(Event::ReapDone {
        children_left: true,
    });
    assert!(exit_code(&a).is_none());
    assert!(!s.m.exited());
}

// ---- the shutdown sequence ----

#[test]
fn step1_stop_logs_and_arms_the_drain_and_the_deadline() {
    let mut s = Sim::new(grace(1000, Some(5000)));
    let a = s.sig(Signal::TERM);
    assert!(sent(&a).is_empty(), "nothing forwarded during the drain");
    assert!(matches!(
        notes(&a)[0],
        NoteKind::StopReceived {
            signal: Signal::TERM,
            ..
        }
    ));
    assert_eq!(elapsed(&a)[0], Some(Duration::ZERO));
    assert_eq!(s.m.phase(), Phase::Draining);
    assert_eq!(s.m.timer(Timer::Drain), Some(ms(2000)));
    assert_eq!(s.m.timer(Timer::Deadline), Some(ms(6000)));
    assert_eq!(s.m.poll_timeout(), Some(ms(2000)), "the drain ends first");
}

#[test]
fn step2_forwards_when_the_drain_ends() {
    let mut s = Sim::new(grace(1000, Some(5000)));
    s.sig(Signal::TERM);
    s.at(999);
    let early = s.feed(Event::Timer);
    assert!(sent(&early).is_empty(), "an early timer forwards nothing");
    let a = s.fire_timer();
    assert_eq!(sent(&a), [(Signal::TERM, TO_APP)]);
    assert_eq!(elapsed(&a)[0], Some(ms(1000)));
    assert_eq!(s.m.phase(), Phase::Stopping);
    assert_eq!(s.m.poll_timeout(), Some(ms(6000)), "then the deadline");
}

#[test]
fn step2_forwarding_waits_for_the_pre_stop_hook() {
    let mut s = Sim::new(with_pre_stop(grace(500, Some(5000))));
    let a = s.sig(Signal::TERM);
    assert!(a.contains(&Action::StartHook(HookKind::PreStop)));
    s.hook_runs(HookKind::PreStop, HOOK);
    let a = s.fire_timer();
    assert!(sent(&a).is_empty(), "the drain is over, the hook is not");
    assert_eq!(
        s.m.poll_timeout(),
        Some(ms(4000)),
        "then the reserve point, 2 s before the deadline"
    );
    s.at(1500);
    let a = s.feed(Event::Reaped {
        pid: HOOK,
        status: Status::Exited(0),
    });
    assert!(matches!(
        notes(&a)[0],
        NoteKind::HookEnded { pid: HOOK, took, .. } if *took == ms(1500)
    ));
    assert_eq!(forwards(&a), [(Signal::TERM, TO_APP)]);
    assert_eq!(s.m.poll_timeout(), Some(ms(6000)), "only the deadline left");
}

#[test]
fn step2_hook_done_before_the_drain_ends_still_waits_for_the_drain() {
    let mut s = Sim::new(with_pre_stop(grace(1000, None)));
    s.sig(Signal::TERM);
    s.hook_runs(HookKind::PreStop, HOOK);
    s.at(100);
    let a = s.feed(Event::Reaped {
        pid: HOOK,
        status: Status::Exited(0),
    });
    assert!(sent(&a).is_empty());
    assert_eq!(forwards(&s.fire_timer()), [(Signal::TERM, TO_APP)]);
}

#[test]
fn step2_a_hook_that_cannot_start_is_logged_and_does_not_block() {
    let mut s = Sim::new(with_pre_stop(grace(0, None)));
    s.sig(Signal::TERM);
    let a = s.feed(Event::HookFailed {
        kind: HookKind::PreStop,
        reason: "cannot run \"x\": command not found in PATH".into(),
    });
    assert_eq!(hook_failed(&a), Some((HookKind::PreStop, false)));
    assert_eq!(forwards(&a), [(Signal::TERM, TO_APP)]);
}

#[test]
fn step2_hanging_hook_is_cut_at_the_reserve_and_the_app_gets_its_stop_signal() {
    // grace 3 s: the reserve is min(2 s, 1.5 s), so at 1.5 s the hook is
    // killed with its group and TERM goes out; SIGKILL waits for 3 s.
    let mut s = Sim::new(with_pre_stop(grace(500, Some(3000))));
    s.sig(Signal::TERM);
    s.hook_runs(HookKind::PreStop, HOOK);
    s.fire_timer(); // the drain
    let a = s.fire_timer();
    assert_eq!(s.now, ms(2500));
    assert_eq!(
        sent(&a),
        [(Signal::KILL, Target::Group(HOOK)), (Signal::TERM, TO_APP)]
    );
    assert!(matches!(
        notes(&a)[0],
        NoteKind::HookCut { kind: HookKind::PreStop, pid: HOOK, took } if *took == ms(1500)
    ));
    assert_eq!(s.m.poll_timeout(), Some(ms(4000)), "the deadline");
    let a = s.feed(Event::Reaped {
        pid: HOOK,
        status: Status::Signaled(Signal::KILL),
    });
    assert!(matches!(
        notes(&a)[..],
        [NoteKind::Reaped { pid: HOOK, .. }]
    ));
    s.left = leftovers(&[(APP, APP)]);
    let a = s.fire_timer();
    assert_eq!(sent(&a), [(Signal::KILL, Target::Everyone)]);
    let a = s.app_exits(Status::Signaled(Signal::KILL), false);
    assert_eq!(exit_code(&a), Some(137));
}

#[test]
fn step3_second_stop_cuts_the_drain() {
    let mut s = Sim::new(grace(10_000, None));
    s.sig(Signal::TERM);
    s.at(300);
    let a = s.sig(Signal::INT);
    assert!(matches!(
        notes(&a)[0],
        NoteKind::DrainCut {
            signal: Signal::INT
        }
    ));
    assert_eq!(forwards(&a), [(Signal::INT, TO_APP)]);
    assert_eq!(s.m.poll_timeout(), None, "nothing left to time");
    s.at(500);
    let again = s.sig(Signal::TERM);
    assert_eq!(
        forwards(&again),
        [(Signal::TERM, TO_APP)],
        "later stops go through"
    );
}

#[test]
fn step4_other_signals_pass_during_the_drain() {
    let mut s = Sim::new(grace(10_000, None));
    s.sig(Signal::TERM);
    assert_eq!(sent(&s.sig(Signal::HUP)), [(Signal::HUP, TO_APP)]);
    assert_eq!(s.m.poll_timeout(), Some(ms(11_000)), "the drain goes on");
}

#[test]
fn step5_app_exiting_during_the_drain_ends_it() {
    let mut s = Sim::new(grace(10_000, Some(20_000)));
    s.sig(Signal::TERM);
    s.at(200);
    let a = s.app_exits(Status::Exited(0), false);
    assert!(sent(&a).is_empty());
    assert_eq!(exit_code(&a), Some(0));
    assert_eq!(s.m.poll_timeout(), None);
}

#[test]
fn step6_leftovers_get_the_stop_signal_then_sigkill_at_the_deadline() {
    let mut s = Sim::new(grace(0, Some(2000)));
    let a = s.app_exits(Status::Exited(7), true);
    assert_eq!(sent(&a), [(Signal::TERM, Target::Everyone)]);
    assert!(notes(&a).contains(&&NoteKind::Signalled {
        signal: Signal::TERM,
        whom: Whom::Pids(vec![IN_GROUP, OUTSIDE]),
        why: Why::Ask {
            except_group: false
        },
    }));
    assert_eq!(exit_code(&a), None, "leftovers still running");
    assert_eq!(
        s.m.poll_timeout(),
        Some(ms(3000)),
        "the deadline counts from the app's exit"
    );
    let a = s.fire_timer();
    assert_eq!(sent(&a), [(Signal::KILL, Target::Everyone)]);
    assert_eq!(
        exit_code(&s.all_gone()),
        Some(7),
        "the app's own code, not 137"
    );
}

#[test]
fn step6_without_a_grace_period_leftovers_are_killed_at_once() {
    let mut s = Sim::new(Policy::default());
    let a = s.app_exits(Status::Exited(0), true);
    assert_eq!(kill_cause(&a), Some(KillCause::NoGrace));
    assert_eq!(exit_code(&a), None);
    let a = s.feed(Event::ReapDone {
        children_left: true,
    });
    assert!(killed(&a), "kill again if anything is still there");
    assert!(notes(&a).iter().any(|n| matches!(
        n,
        NoteKind::Signalled {
            why: Why::Kill { round: 2, .. },
            ..
        }
    )));
    assert_eq!(exit_code(&s.all_gone()), Some(0));
}

#[test]
fn step6_leftovers_get_the_stop_signal_that_was_received_rewritten() {
    let mut policy = grace(0, Some(5000));
    policy.stop_on = vec![Signal::QUIT];
    policy.rewrite.set(Signal::QUIT, Some(Signal::USR1));
    let mut s = Sim::new(policy);
    let a = s.app_exits(Status::Exited(0), true);
    assert_eq!(forwards(&a), [(Signal::USR1, Target::Everyone)]);
}

#[test]
fn step6_an_app_that_exited_alone_costs_no_search_as_pid1() {
    let mut s = Sim::new(grace(0, Some(5000)));
    let a = s.app_exits(Status::Exited(0), false);
    assert!(!a.iter().any(|a| matches!(a, Action::FindLeftovers(_))));
    assert_eq!(exit_code(&a), Some(0));
}

#[test]
fn sigcont_follows_a_stop_signal_only_while_something_is_stopped() {
    // An app with a SIGCONT handler must not see a CONT it was never sent
    // (dumb-init's and tini's behaviour); a stopped one must still get its
    // stop signal now rather than at the deadline.
    let mut s = Sim::new(grace(0, Some(5000)));
    s.feed(Event::Stopped { pid: APP });
    assert_eq!(
        sent(&s.sig(Signal::TERM)),
        [(Signal::TERM, TO_APP), (Signal::CONT, TO_APP)]
    );
    let mut s = Sim::new(grace(0, Some(5000)));
    s.feed(Event::Stopped { pid: APP });
    s.feed(Event::Continued { pid: APP });
    assert_eq!(
        sent(&s.sig(Signal::TERM)),
        [(Signal::TERM, TO_APP)],
        "resumed since"
    );
    let mut s = Sim::new(grace(0, Some(5000)));
    s.feed(Event::Stopped { pid: OUTSIDE });
    let a = s.app_exits(Status::Exited(0), true);
    assert_eq!(
        sent(&a),
        [
            (Signal::TERM, Target::Everyone),
            (Signal::CONT, Target::Everyone)
        ],
        "a stopped leftover sees its stop signal too"
    );
}

#[test]
fn step7_app_ignoring_term_is_killed_at_the_deadline() {
    let mut s = Sim::new(grace(1000, Some(4000)));
    s.sig(Signal::TERM);
    assert!(!killed(&s.fire_timer()), "drain end forwards, no kill");
    s.at(3999);
    assert!(!killed(&s.feed(Event::Timer)));
    s.left = leftovers(&[(APP, APP)]);
    let a = s.fire_timer();
    assert_eq!(kill_cause(&a), Some(KillCause::Deadline));
    let kill = a.iter().position(|a| {
        matches!(
            a,
            Action::Send {
                signal: Signal::KILL,
                ..
            }
        )
    });
    let search = a.iter().position(|a| matches!(a, Action::FindLeftovers(_)));
    assert!(
        kill < search,
        "SIGKILL first, the list (for the log) after: {a:?}"
    );
    assert_eq!(elapsed(&a).last(), Some(&Some(ms(4000))));
    s.at(4010);
    let a = s.app_exits(Status::Signaled(Signal::KILL), false);
    assert_eq!(exit_code(&a), Some(137));
}

#[test]
fn deadline_exit_is_137_even_when_remapped_code_would_be_zero() {
    let policy = Policy {
        remap_exit: vec![137],
        ..grace(0, Some(1000))
    };
    let mut s = Sim::new(policy);
    s.sig(Signal::TERM);
    s.fire_timer();
    let a = s.app_exits(Status::Signaled(Signal::KILL), false);
    assert_eq!(exit_code(&a), Some(137));
}

#[test]
fn stop_on_quit_makes_term_an_ordinary_signal() {
    let mut s = Sim::new(Policy {
        stop_on: vec![Signal::QUIT],
        ..grace(1000, None)
    });
    assert_eq!(sent(&s.sig(Signal::TERM)), [(Signal::TERM, TO_APP)]);
    assert!(
        sent(&s.sig(Signal::QUIT)).is_empty(),
        "QUIT starts the drain"
    );
    assert_eq!(forwards(&s.fire_timer()), [(Signal::QUIT, TO_APP)]);
}

#[test]
fn timeline_notes_carry_time_since_the_stop() {
    let mut s = Sim::new(grace(1000, Some(5000)));
    assert_eq!(elapsed(&s.sig(Signal::HUP)), [None], "before any stop");
    s.sig(Signal::TERM);
    s.fire_timer();
    s.at(1500);
    let a = s.app_exits(Status::Exited(0), false);
    assert!(elapsed(&a).iter().all(|t| *t == Some(ms(1500))), "{a:?}");
    assert_eq!(
        notes(&a).last(),
        Some(&&NoteKind::Exiting {
            code: 0,
            notable: true
        })
    );
}

// ---- hooks: post-start, HTTP answers, the stop reserve ----

const POST: i32 = 10;

fn with_post_start(mut policy: Policy) -> Policy {
    policy.hooks.push(HookKind::PostStart);
    policy
}

/// A machine whose post-start hook is running as POST.
fn post_start_running(policy: Policy) -> Sim {
    let mut s = Sim::new(with_post_start(policy));
    s.hook_runs(HookKind::PostStart, POST);
    s
}

#[test]
fn post_start_runs_alongside_the_app_from_the_start() {
    let mut m = Machine::new(with_post_start(Policy::default()), PID1, ms(0));
    assert_eq!(
        m.poll_action(),
        Some(Action::StartHook(HookKind::PostStart)),
        "the hook is asked for at once, and nothing waits for it"
    );
    assert_eq!(m.poll_action(), None);
    assert_eq!(m.phase(), Phase::Running);
}

#[test]
fn post_start_success_is_exit_0_or_http_200_to_399() {
    for (answer, status) in [
        (None, Status::Exited(0)),
        (Some(Outcome::Status(200)), Status::Exited(0)),
        (Some(Outcome::Status(302)), Status::Exited(0)),
    ] {
        let mut s = post_start_running(Policy::default());
        if let Some(outcome) = answer {
            s.feed(Event::HookAnswered { pid: POST, outcome });
        }
        s.at(300);
        let a = s.feed(Event::Reaped { pid: POST, status });
        assert!(
            matches!(notes(&a)[..], [NoteKind::HookEnded { kind: HookKind::PostStart, fatal: false, took, .. }] if *took == ms(300)),
            "{a:?}"
        );
        assert_eq!(s.m.phase(), Phase::Running, "the app goes on");
    }
}

#[test]
fn post_start_failure_stops_the_container_with_the_full_sequence_and_exit_124() {
    let failures = [
        (None, Status::Exited(1)),
        (None, Status::Signaled(Signal::KILL)),
        (Some(Outcome::Status(500)), Status::Exited(1)),
        (Some(Outcome::Status(503)), Status::Exited(1)),
        (
            Some(Outcome::Failed("cannot connect: Connection refused".into())),
            Status::Exited(1),
        ),
        (
            Some(Outcome::Failed("no status line within 10s".into())),
            Status::Exited(1),
        ),
    ];
    for (answer, status) in failures {
        let mut s = post_start_running(with_pre_stop(grace(1000, Some(5000))));
        if let Some(outcome) = answer.clone() {
            s.feed(Event::HookAnswered { pid: POST, outcome });
        }
        let a = s.feed(Event::Reaped { pid: POST, status });
        let n = notes(&a);
        assert!(
            matches!(
                n[0],
                NoteKind::HookEnded {
                    kind: HookKind::PostStart,
                    fatal: true,
                    ..
                }
            ),
            "{answer:?}: {a:?}"
        );
        assert!(matches!(
            n[1],
            NoteKind::StopReceived {
                signal: Signal::TERM,
                cause: StopCause::PostStartFailed,
                ..
            }
        ));
        assert!(
            a.contains(&Action::StartHook(HookKind::PreStop)),
            "pre-stop hook first"
        );
        assert!(sent(&a).is_empty(), "then the drain");
        s.feed(Event::HookFailed {
            kind: HookKind::PreStop,
            reason: "x".into(),
        });
        assert_eq!(forwards(&s.fire_timer()), [(Signal::TERM, TO_APP)]);
        let a = s.app_exits(Status::Exited(0), false);
        assert_eq!(
            exit_code(&a),
            Some(EXIT_POST_START),
            "not 0: the start failed"
        );
    }
}

#[test]
fn post_start_that_cannot_start_stops_the_container_too() {
    let mut m = Machine::new(with_post_start(Policy::default()), PID1, ms(0));
    while m.poll_action().is_some() {}
    m.handle(
        Event::HookFailed {
            kind: HookKind::PostStart,
            reason: "cannot run \"/warm\": no such file".into(),
        },
        ms(5),
    );
    let a: Vec<Action> = std::iter::from_fn(|| m.poll_action()).collect();
    assert_eq!(hook_failed(&a), Some((HookKind::PostStart, true)));
    assert_eq!(forwards(&a), [(Signal::TERM, TO_APP)]);
}

#[test]
fn post_start_failing_after_a_stop_was_asked_for_is_only_a_warning() {
    let mut s = post_start_running(grace(0, Some(5000)));
    s.sig(Signal::TERM);
    let a = s.feed(Event::Reaped {
        pid: POST,
        status: Status::Exited(1),
    });
    assert!(matches!(
        notes(&a)[..],
        [NoteKind::HookEnded { fatal: false, .. }]
    ));
    assert_eq!(
        exit_code(&s.app_exits(Status::Exited(0), false)),
        Some(0),
        "the app's own code"
    );
}

#[test]
fn post_start_still_running_when_the_app_exits_is_a_leftover() {
    let mut s = post_start_running(grace(0, Some(5000)));
    s.m = Machine::new(
        with_post_start(grace(0, Some(5000))),
        Start {
            app: APP,
            me: 3,
            terminal: false,
        },
        s.now,
    );
    s.hook_runs(HookKind::PostStart, POST);
    s.left = leftovers(&[(POST, POST)]);
    s.feed(Event::Reaped {
        pid: APP,
        status: Status::Exited(0),
    });
    let a = s.feed(Event::ReapDone {
        children_left: true,
    });
    assert_eq!(forwards(&a), [(Signal::TERM, Target::Process(POST))]);
    s.left = leftovers(&[(POST, POST)]);
    assert_eq!(
        sent(&s.fire_timer()),
        [(Signal::KILL, Target::Process(POST))]
    );
}

#[test]
fn a_failing_pre_stop_hook_is_a_warning_and_the_sequence_goes_on() {
    for (answer, status) in [
        (None, Status::Exited(3)),
        (Some(Outcome::Status(503)), Status::Exited(1)),
    ] {
        let mut s = Sim::new(with_pre_stop(grace(0, Some(5000))));
        s.sig(Signal::TERM);
        s.hook_runs(HookKind::PreStop, HOOK);
        if let Some(outcome) = answer {
            s.feed(Event::HookAnswered { pid: HOOK, outcome });
        }
        let a = s.feed(Event::Reaped { pid: HOOK, status });
        let end = match notes(&a)[0] {
            NoteKind::HookEnded {
                end, fatal: false, ..
            } => end.clone(),
            other => panic!("{other:?}"),
        };
        assert!(!end.ok());
        assert!(matches!(
            end,
            HookEnd::Exited(_) | HookEnd::Answered(Outcome::Status(503))
        ));
        assert_eq!(forwards(&a), [(Signal::TERM, TO_APP)]);
    }
}

#[test]
fn the_reserve_is_two_seconds_or_half_the_grace_period() {
    for (grace_ms, reserve_ms) in [(30_000, 2000), (4000, 2000), (3000, 1500), (1000, 500)] {
        let p = grace(0, Some(grace_ms));
        assert_eq!(p.reserve(), Some(ms(reserve_ms)), "grace {grace_ms}ms");
        let mut s = Sim::new(with_pre_stop(p));
        s.sig(Signal::TERM);
        assert_eq!(
            s.m.timer(Timer::Reserve),
            Some(ms(1000 + grace_ms - reserve_ms))
        );
    }
    assert_eq!(Policy::default().reserve(), None, "no deadline, no reserve");
}

#[test]
fn a_drain_that_does_not_fit_before_the_reserve_is_shortened_with_a_warning() {
    let mut m = Machine::new(grace(9000, Some(10_000)), PID1, ms(0));
    assert_eq!(
        m.poll_action(),
        Some(Action::Note(usher::machine::Note {
            elapsed: None,
            kind: NoteKind::DrainShortened {
                asked: ms(9000),
                to: ms(8000),
                grace: ms(10_000),
                reserve: ms(2000),
            }
        }))
    );
    let mut s = Sim::new(grace(9000, Some(10_000)));
    s.sig(Signal::TERM);
    let a = s.fire_timer();
    assert_eq!(s.now, ms(9000), "8 s after the stop");
    assert_eq!(forwards(&a), [(Signal::TERM, TO_APP)]);
    let mut s = Sim::new(grace(5000, Some(10_000)));
    assert!(s.sig(Signal::HUP).iter().all(
        |a| !matches!(a, Action::Note(n) if matches!(n.kind, NoteKind::DrainShortened { .. }))
    ));
}

// ---- whom leftovers are signalled: PID 1 or not, and what /proc shows ----

#[test]
fn as_pid1_leftovers_are_everyone_but_a_group_already_told_is_spared() {
    let mut s = Sim::new(grace(0, Some(5000)));
    s.sig(Signal::TERM);
    let a = s.app_exits(Status::Signaled(Signal::TERM), true);
    assert_eq!(
        forwards(&a),
        [(Signal::TERM, Target::Process(OUTSIDE))],
        "the group got TERM already; a second can cut its cleanup short"
    );
    assert!(notes(&a).contains(&&NoteKind::Signalled {
        signal: Signal::TERM,
        whom: Whom::Pids(vec![OUTSIDE]),
        why: Why::Ask { except_group: true },
    }));
    // With -c only the app itself was told.
    let mut s = Sim::new(Policy {
        single_child: true,
        ..grace(0, Some(5000))
    });
    s.sig(Signal::TERM);
    let a = s.app_exits(Status::Exited(0), true);
    assert_eq!(forwards(&a), [(Signal::TERM, Target::Everyone)]);
}

#[test]
fn as_pid1_without_proc_everyone_is_signalled_rather_than_no_one() {
    let mut s = Sim::new(grace(0, Some(5000)));
    s.sig(Signal::TERM);
    s.left = Found {
        list: None,
        group_alive: true,
    };
    s.feed(Event::Reaped {
        pid: APP,
        status: Status::Exited(0),
    });
    let a = s.feed(Event::ReapDone {
        children_left: true,
    });
    assert_eq!(forwards(&a), [(Signal::TERM, Target::Everyone)]);
    assert!(notes(&a).iter().any(|n| matches!(
        n,
        NoteKind::Signalled {
            whom: Whom::Unknown,
            ..
        }
    )));
}

#[test]
fn not_pid1_the_group_and_the_descendants_outside_it_never_kill_minus_1() {
    let mut s = Sim::not_pid1(grace(0, Some(5000)));
    let a = s.app_exits(Status::Exited(0), true);
    assert!(a.contains(&Action::FindLeftovers(Scope::Descendants)));
    assert_eq!(
        forwards(&a),
        [
            (Signal::TERM, Target::Group(APP)),
            (Signal::TERM, Target::Process(OUTSIDE))
        ]
    );
    s.left = leftovers(&[(IN_GROUP, APP)]);
    let a = s.fire_timer();
    assert_eq!(sent(&a), [(Signal::KILL, Target::Group(APP))]);
    assert!(!sent(&a).iter().any(|(_, t)| *t == Target::Everyone));
}

#[test]
fn not_pid1_an_app_group_with_members_outside_usher_tree_is_still_told() {
    // Without -s, orphans leave usher's tree, but kill(-group) reaches them.
    let mut s = Sim::not_pid1(grace(0, Some(5000)));
    s.left = Found {
        list: Some(Vec::new()),
        group_alive: true,
    };
    s.feed(Event::Reaped {
        pid: APP,
        status: Status::Exited(0),
    });
    let a = s.feed(Event::ReapDone {
        children_left: false,
    });
    assert_eq!(forwards(&a), [(Signal::TERM, Target::Group(APP))]);
    assert!(notes(&a).iter().any(|n| matches!(
        n,
        NoteKind::Signalled {
            whom: Whom::Group(APP),
            ..
        }
    )));
    assert_eq!(
        exit_code(&a),
        Some(0),
        "usher cannot wait for what it cannot reap"
    );
}

#[test]
fn a_search_that_found_nothing_is_not_repeated_before_the_next_reap() {
    let mut s = Sim::not_pid1(Policy::default());
    s.feed(Event::Reaped {
        pid: APP,
        status: Status::Exited(0),
    });
    let a = s.feed(Event::ReapDone {
        children_left: true,
    });
    let searches = a
        .iter()
        .filter(|a| matches!(a, Action::FindLeftovers(_)))
        .count();
    assert_eq!(
        searches, 1,
        "the stop signal and the SIGKILL share one: {a:?}"
    );
    assert!(sent(&a).is_empty());
}

// ---- terminal job control (not PID 1) ----

#[test]
fn job_control_stops_with_the_app_and_hands_back_the_terminal() {
    let mut s = Sim::started(Policy::default(), 3, true);
    assert_eq!(s.feed(Event::Stopped { pid: APP }), [Action::StopSelf]);
    assert!(
        s.feed(Event::Stopped { pid: 99 }).is_empty(),
        "other children stopping do not matter"
    );
    let a = s.sig(Signal::CONT);
    assert_eq!(a[0], Action::Foreground, "terminal first, then CONT");
    assert_eq!(sent(&a), [(Signal::CONT, TO_APP)]);
}

#[test]
fn as_pid1_usher_never_stops() {
    let mut s = Sim::started(Policy::default(), 1, true);
    assert!(s.feed(Event::Stopped { pid: APP }).is_empty());
    assert!(!s.sig(Signal::CONT).contains(&Action::Foreground));
}

// ---- properties over random event sequences ----

mod props {
    use super::*;
    use proptest::prelude::*;

    /// The post-start hook's pid (the pre-stop hook is HOOK).
    const POST: i32 = 10;

    #[derive(Clone, Debug)]
    enum Step {
        Wait(u64),
        Stop(bool), // TERM or INT
        Other,
        AppExit(i32),
        HookExit(i32),
        PostStartExit(i32),
        Orphan,
        ReapDone(bool),
        Timer,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u64..3000).prop_map(Step::Wait),
            any::<bool>().prop_map(Step::Stop),
            Just(Step::Other),
            (0i32..257).prop_map(Step::AppExit), // 256: killed by SIGKILL
            (0i32..2).prop_map(Step::HookExit),
            (0i32..2).prop_map(Step::PostStartExit),
            Just(Step::Orphan),
            any::<bool>().prop_map(Step::ReapDone),
            Just(Step::Timer),
        ]
    }

    fn policy() -> impl Strategy<Value = Policy> {
        (
            0u64..6000,
            proptest::option::of(1u64..6000),
            any::<bool>(),
            any::<bool>(),
            proptest::option::of(0i32..256),
        )
            .prop_map(|(drain, grace, pre_stop, post_start, remap)| {
                let grace = grace.map(|g| g + drain); // drain < grace, as the CLI enforces
                let mut hooks = Vec::new();
                if pre_stop {
                    hooks.push(HookKind::PreStop);
                }
                if post_start {
                    hooks.push(HookKind::PostStart);
                }
                Policy {
                    drain: ms(drain),
                    grace: grace.map(ms),
                    hooks,
                    remap_exit: remap.into_iter().collect(),
                    ..Policy::default()
                }
            })
    }

    /// What the test knows of the world, to check the machine against.
    #[derive(Default)]
    struct World {
        now: Duration,
        t0: Option<Duration>,
        stops: u32,
        forwarded_stop: bool,
        app: Option<Status>,
        killed_while_alive: bool,
        /// The hooks' pids while they run.
        running: Vec<i32>,
        started: Vec<HookKind>,
        start_failed: bool,
        exited_with: Option<i32>,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn shutdown_invariants(
            policy in policy(),
            pid1 in any::<bool>(),
            steps in proptest::collection::vec(step(), 0..40),
        ) {
            let me = if pid1 { 1 } else { 3 };
            let mut w = World { now: ms(1000), ..World::default() };
            let mut m = Machine::new(policy.clone(), Start { app: APP, me, terminal: false }, w.now);
            check(&policy, pid1, &mut m, &mut w, Vec::new())?;
            for step in steps {
                let event = match step {
                    Step::Wait(d) => { w.now += ms(d); continue; }
                    Step::Stop(term) => Event::Signal {
                        signal: if term { Signal::TERM } else { Signal::INT },
                        sender: Some(100),
                    },
                    Step::Other => Event::Signal { signal: Signal::HUP, sender: None },
                    Step::AppExit(c) => {
                        if w.app.is_some() { continue; }
                        let status = if c == 256 { Status::Signaled(Signal::KILL) } else { Status::Exited(c) };
                        Event::Reaped { pid: APP, status }
                    }
                    Step::HookExit(c) => Event::Reaped { pid: HOOK, status: Status::Exited(c) },
                    Step::PostStartExit(c) => Event::Reaped { pid: POST, status: Status::Exited(c) },
                    Step::Orphan => Event::Reaped { pid: 77, status: Status::Exited(1) },
                    Step::ReapDone(left) => {
                        // The driver never says "no children" while the app lives.
                        Event::ReapDone { children_left: left || w.app.is_none() }
                    }
                    Step::Timer => match m.poll_timeout() {
                        Some(t) => { w.now = w.now.max(t); Event::Timer }
                        None => continue,
                    },
                };
                match &event {
                    Event::Signal { signal, .. } if *signal == Signal::TERM || *signal == Signal::INT => {
                        w.stops += 1;
                        if w.t0.is_none() && w.app.is_none() { w.t0 = Some(w.now); }
                    }
                    Event::Reaped { pid: APP, status } => {
                        w.app = Some(*status);
                        if w.t0.is_none() { w.t0 = Some(w.now); }
                    }
                    Event::Reaped { pid, status } if w.running.contains(pid) => {
                        w.running.retain(|p| p != pid);
                        // A failed post-start hook, while the app runs and no
                        // stop was asked for, stops the container.
                        if *pid == POST && *status != Status::Exited(0) && w.app.is_none() && w.t0.is_none() {
                            w.start_failed = true;
                            w.t0 = Some(w.now);
                            w.stops += 1;
                        }
                    }
                    _ => {}
                }
                let is_timer = event == Event::Timer;
                check(&policy, pid1, &mut m, &mut w, vec![event])?;
                if is_timer {
                    // Firing the timer makes progress: it never asks to be
                    // fired again at once (no spinning).
                    prop_assert!(m.poll_timeout().is_none_or(|t| t > w.now), "timer spins at {:?}", w.now);
                }
                // The stop reserve: by R before the deadline the app has been
                // asked to stop, whatever the drain and the pre-stop hook.
                if let (Some(t0), Some(g), Some(r), None) = (w.t0, policy.grace, policy.reserve(), w.app) {
                    if is_timer && w.now >= t0 + g - r && w.exited_with.is_none() {
                        prop_assert!(w.forwarded_stop, "no stop signal by the reserve point at {:?}", w.now - t0);
                    }
                }
            }
        }
    }

    /// Feeds `events` (and what the machine's own actions lead to) and checks every action.
    fn check(
        policy: &Policy,
        pid1: bool,
        m: &mut Machine,
        w: &mut World,
        mut queue: Vec<Event>,
    ) -> Result<(), TestCaseError> {
        let mut deadline_kill = false;
        loop {
            if let Some(event) = queue.pop() {
                m.handle(event, w.now);
            }
            let Some(a) = m.poll_action() else {
                if !queue.is_empty() {
                    continue;
                }
                if deadline_kill {
                    prop_assert!(
                        w.running.is_empty(),
                        "hooks {:?} outlive the deadline",
                        w.running
                    );
                }
                return Ok(());
            };
            prop_assert!(w.exited_with.is_none(), "no action after Exit: {:?}", a);
            match a {
                Action::Send { signal, to } if signal == Signal::TERM || signal == Signal::INT => {
                    prop_assert!(
                        pid1 || to != Target::Everyone,
                        "kill(-1) outside a namespace"
                    );
                    if w.app.is_none() && !w.forwarded_stop {
                        let t0 = w.t0.expect("stop forwarded before any stop");
                        let reserve_point =
                            policy.grace.zip(policy.reserve()).map(|(g, r)| t0 + g - r);
                        prop_assert!(
                            w.now >= t0 + policy.drain()
                                || w.stops >= 2
                                || reserve_point.is_some_and(|p| w.now >= p),
                            "stop forwarded at {:?}, before the drain ended at {:?}, with one stop",
                            w.now - t0,
                            policy.drain()
                        );
                        w.forwarded_stop = true;
                    }
                }
                Action::Send {
                    signal: Signal::KILL,
                    to: Target::Group(HOOK),
                } => {
                    let (t0, g, r) = (
                        w.t0.unwrap(),
                        policy.grace.unwrap(),
                        policy.reserve().unwrap(),
                    );
                    prop_assert!(
                        w.now >= t0 + g - r,
                        "the hook was cut before the reserve point"
                    );
                    w.running.retain(|&p| p != HOOK);
                }
                Action::Send {
                    signal: Signal::KILL,
                    to,
                } => {
                    prop_assert!(
                        pid1 || to != Target::Everyone,
                        "kill(-1) outside a namespace"
                    );
                    match policy.grace {
                        Some(g) => {
                            prop_assert!(w.now >= w.t0.unwrap() + g, "SIGKILL before the deadline");
                            deadline_kill = true;
                        }
                        None => prop_assert!(
                            w.app.is_some(),
                            "SIGKILL while the app lives, without a grace period"
                        ),
                    }
                    if w.app.is_none() {
                        w.killed_while_alive = true;
                    }
                    // No hook outlives the SIGKILL round.
                    if matches!(to, Target::Everyone) {
                        w.running.clear();
                    }
                    if let Target::Process(p) = to {
                        w.running.retain(|&h| h != p);
                    }
                }
                Action::StartHook(kind) => {
                    prop_assert!(policy.hooks.contains(&kind) && !w.started.contains(&kind));
                    w.started.push(kind);
                    let pid = if kind == HookKind::PreStop {
                        HOOK
                    } else {
                        POST
                    };
                    w.running.push(pid);
                    queue.push(Event::HookStarted { kind, pid });
                }
                Action::FindLeftovers(_) => {
                    let mut list = vec![(OUTSIDE, OUTSIDE)];
                    if w.app.is_none() {
                        list.push((APP, APP));
                    }
                    list.extend(w.running.iter().map(|&h| (h, h)));
                    queue.push(Event::Leftovers(leftovers(&list)));
                }
                Action::Exit(code) => {
                    let status = w.app.expect("exit before the app was reaped");
                    let want = if w.start_failed {
                        EXIT_POST_START
                    } else if w.killed_while_alive && status == Status::Signaled(Signal::KILL) {
                        137
                    } else if policy.remap_exit.contains(&status.code()) {
                        0
                    } else {
                        status.code()
                    };
                    prop_assert_eq!(code, want);
                    w.exited_with = Some(code);
                }
                _ => {}
            }
        }
    }
}
