//! The state machine driven directly: every rule of forwarding, hooks, shutdown and exit, without processes or clocks.

use std::time::Duration;

use usher::machine::{
    Action, Event, Found, HookKind, KillCause, Machine, NoteKind, Phase, Policy, Scope, Start,
    Target, Timer, Whom, Why,
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

fn with_pre_stop(policy: Policy) -> Policy {
    Policy {
        hooks: vec![HookKind::PreStop],
        ..policy
    }
}

const TO_APP: Target = Target::Group(APP);

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
    assert_eq!(sent(&a), [(Signal::TERM, TO_APP), (Signal::CONT, TO_APP)]);
    assert_eq!(elapsed(&a)[0], Some(ms(1000)));
    assert_eq!(s.m.phase(), Phase::Stopping);
    assert_eq!(s.m.poll_timeout(), Some(ms(6000)), "then the deadline");
}

#[test]
fn step2_forwarding_waits_for_the_pre_stop_hook() {
    let mut s = Sim::new(with_pre_stop(grace(500, Some(5000))));
    let a = s.sig(Signal::TERM);
    assert!(a.contains(&Action::StartHook(HookKind::PreStop)));
    s.feed(Event::HookStarted {
        kind: HookKind::PreStop,
        pid: HOOK,
    });
    let a = s.fire_timer();
    assert!(sent(&a).is_empty(), "the drain is over, the hook is not");
    assert_eq!(s.m.poll_timeout(), Some(ms(6000)), "only the deadline left");
    s.at(1500);
    let a = s.feed(Event::Reaped {
        pid: HOOK,
        status: Status::Exited(0),
    });
    assert!(matches!(
        notes(&a)[0],
        NoteKind::HookExited { pid: HOOK, took, .. } if *took == ms(1500)
    ));
    assert_eq!(forwards(&a), [(Signal::TERM, TO_APP)]);
}

#[test]
fn step2_hook_done_before_the_drain_ends_still_waits_for_the_drain() {
    let mut s = Sim::new(with_pre_stop(grace(1000, None)));
    s.sig(Signal::TERM);
    s.feed(Event::HookStarted {
        kind: HookKind::PreStop,
        pid: HOOK,
    });
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
    assert!(matches!(
        notes(&a)[0],
        NoteKind::HookFailed {
            kind: HookKind::PreStop,
            ..
        }
    ));
    assert_eq!(forwards(&a), [(Signal::TERM, TO_APP)]);
}

#[test]
fn step2_hanging_hook_is_cut_at_the_deadline() {
    let mut s = Sim::new(with_pre_stop(grace(500, Some(3000))));
    s.sig(Signal::TERM);
    s.feed(Event::HookStarted {
        kind: HookKind::PreStop,
        pid: HOOK,
    });
    s.fire_timer(); // the drain
    s.left = leftovers(&[(APP, APP), (HOOK, HOOK)]);
    let a = s.fire_timer();
    assert_eq!(s.now, ms(4000));
    assert_eq!(sent(&a), [(Signal::KILL, Target::Everyone)]);
    assert_eq!(kill_cause(&a), Some(KillCause::Deadline));
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
    assert_eq!(
        sent(&a),
        [
            (Signal::TERM, Target::Everyone),
            (Signal::CONT, Target::Everyone)
        ]
    );
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
fn step7_app_ignoring_term_is_killed_at_the_deadline() {
    let mut s = Sim::new(grace(1000, Some(4000)));
    s.sig(Signal::TERM);
    assert!(!killed(&s.fire_timer()), "drain end forwards, no kill");
    s.at(3999);
    assert!(!killed(&s.feed(Event::Timer)));
    s.left = leftovers(&[(APP, APP)]);
    let a = s.fire_timer();
    assert_eq!(kill_cause(&a), Some(KillCause::Deadline));
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
    assert!(s.m.wants_stops());
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
    assert!(!s.m.wants_stops());
    assert!(s.feed(Event::Stopped { pid: APP }).is_empty());
    assert!(!s.sig(Signal::CONT).contains(&Action::Foreground));
}

// ---- properties over random event sequences ----

mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Step {
        Wait(u64),
        Stop(bool), // TERM or INT
        Other,
        AppExit(i32),
        HookExit,
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
            Just(Step::HookExit),
            Just(Step::Orphan),
            any::<bool>().prop_map(Step::ReapDone),
            Just(Step::Timer),
        ]
    }

    fn policy() -> impl Strategy<Value = Policy> {
        (
            0u64..2000,
            proptest::option::of(1u64..6000),
            any::<bool>(),
            proptest::option::of(0i32..256),
        )
            .prop_map(|(drain, grace, pre_stop, remap)| {
                let grace = grace.map(|g| g + drain); // drain < grace, as the CLI enforces
                Policy {
                    drain: ms(drain),
                    grace: grace.map(ms),
                    hooks: if pre_stop {
                        vec![HookKind::PreStop]
                    } else {
                        vec![]
                    },
                    remap_exit: remap.into_iter().collect(),
                    ..Policy::default()
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn shutdown_invariants(
            policy in policy(),
            pid1 in any::<bool>(),
            steps in proptest::collection::vec(step(), 0..40),
        ) {
            let start = ms(1000);
            let me = if pid1 { 1 } else { 3 };
            let mut m = Machine::new(policy.clone(), Start { app: APP, me, terminal: false }, start);
            let mut now = start;
            let mut t0: Option<Duration> = None;
            let mut stops = 0;
            let mut forwarded_stop = false;
            let mut app_status: Option<Status> = None;
            let mut killed_while_alive = false;
            let mut hook_started = false;
            let mut exited_with = None;

            for step in steps {
                let event = match step {
                    Step::Wait(d) => { now += ms(d); continue; }
                    Step::Stop(term) => Event::Signal {
                        signal: if term { Signal::TERM } else { Signal::INT },
                        sender: Some(100),
                    },
                    Step::Other => Event::Signal { signal: Signal::HUP, sender: None },
                    Step::AppExit(c) => {
                        if app_status.is_some() { continue; }
                        let status = if c == 256 { Status::Signaled(Signal::KILL) } else { Status::Exited(c) };
                        Event::Reaped { pid: APP, status }
                    }
                    Step::HookExit => Event::Reaped { pid: HOOK, status: Status::Exited(0) },
                    Step::Orphan => Event::Reaped { pid: 77, status: Status::Exited(1) },
                    Step::ReapDone(left) => {
                        // The driver never says "no children" while the app lives.
                        Event::ReapDone { children_left: left || app_status.is_none() }
                    }
                    Step::Timer => match m.poll_timeout() {
                        Some(t) => { now = now.max(t); Event::Timer }
                        None => continue,
                    },
                };
                if let Event::Signal { signal, .. } = event {
                    if signal == Signal::TERM || signal == Signal::INT {
                        stops += 1;
                        if t0.is_none() && app_status.is_none() { t0 = Some(now); }
                    }
                }
                if let Event::Reaped { pid: APP, status } = event {
                    app_status = Some(status);
                    if t0.is_none() { t0 = Some(now); }
                }
                let is_timer = event == Event::Timer;
                let mut queue = vec![event];
                while let Some(event) = queue.pop() {
                    m.handle(event, now);
                    while let Some(a) = m.poll_action() {
                        prop_assert!(exited_with.is_none(), "no action after Exit: {:?}", a);
                        match a {
                            Action::Send { signal, to } if signal == Signal::TERM || signal == Signal::INT => {
                                if app_status.is_none() && !forwarded_stop {
                                    let t0 = t0.expect("stop forwarded before any stop signal");
                                    prop_assert!(
                                        now >= t0 + policy.drain || stops >= 2,
                                        "stop forwarded at {:?} before the drain ended at {:?} with one stop",
                                        now - t0, policy.drain
                                    );
                                    forwarded_stop = true;
                                }
                                prop_assert!(pid1 || to != Target::Everyone, "kill(-1) outside a namespace");
                            }
                            Action::Send { signal: Signal::KILL, to } => {
                                prop_assert!(pid1 || to != Target::Everyone, "kill(-1) outside a namespace");
                                match policy.grace {
                                    Some(g) => prop_assert!(now >= t0.unwrap() + g, "SIGKILL before the deadline"),
                                    None => prop_assert!(app_status.is_some(), "SIGKILL while the app lives, without a grace period"),
                                }
                                if app_status.is_none() { killed_while_alive = true; }
                            }
                            Action::StartHook(kind) => {
                                prop_assert!(policy.hooks.contains(&kind) && !hook_started);
                                hook_started = true;
                                queue.push(Event::HookStarted { kind, pid: HOOK });
                            }
                            Action::FindLeftovers(_) => {
                                queue.push(Event::Leftovers(leftovers(&[(APP, APP), (OUTSIDE, OUTSIDE)])));
                            }
                            Action::Exit(code) => {
                                let status = app_status.expect("exit before the app was reaped");
                                let want = if killed_while_alive && status == Status::Signaled(Signal::KILL) {
                                    137
                                } else if policy.remap_exit.contains(&status.code()) {
                                    0
                                } else {
                                    status.code()
                                };
                                prop_assert_eq!(code, want);
                                exited_with = Some(code);
                            }
                            _ => {}
                        }
                    }
                }
                if is_timer {
                    // Firing the timer makes progress: it never asks to be
                    // fired again at once (no spinning).
                    prop_assert!(m.poll_timeout().is_none_or(|t| t > now), "timer spins at {:?}", now);
                }
            }
        }
    }
}
