//! The state machine driven directly: every rule of forwarding, shutdown and exit, without processes or clocks.

use std::time::Duration;

use usher::machine::{Action, Event, KillCause, Machine, Note, Policy, Status, Target, What};
use usher::signals::Signal;

const CHILD: i32 = 7;
const HOOK: i32 = 9;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A machine plus a clock; collects the actions of each step.
struct Sim {
    m: Machine,
    now: Duration,
}

impl Sim {
    fn new(policy: Policy) -> Sim {
        Sim {
            m: Machine::new(policy, CHILD, ms(1000)),
            now: ms(1000),
        }
    }

    fn at(&mut self, t_ms: u64) -> &mut Self {
        self.now = ms(1000 + t_ms);
        self
    }

    fn feed(&mut self, e: Event) -> Vec<Action> {
        self.m.handle(e, self.now);
        std::iter::from_fn(|| self.m.poll_action()).collect()
    }

    fn sig(&mut self, s: Signal) -> Vec<Action> {
        self.feed(Event::Signal(s))
    }

    /// Advances to the machine's own timeout and fires it.
    fn fire_timer(&mut self) -> Vec<Action> {
        let t = self.m.poll_timeout().expect("a timer should be armed");
        self.now = self.now.max(t);
        self.feed(Event::Timer)
    }

    fn main_exits(&mut self, status: Status, left: bool) -> Vec<Action> {
        let mut out = self.feed(Event::Reaped { pid: CHILD, status });
        out.extend(self.feed(Event::ReapDone {
            children_left: left,
        }));
        out
    }
}

fn forwards(actions: &[Action]) -> Vec<(Signal, Target)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Forward { signal, to, .. } => Some((*signal, *to)),
            _ => None,
        })
        .collect()
}

fn exit_code(actions: &[Action]) -> Option<i32> {
    actions.iter().find_map(|a| match a {
        Action::Exit(c) => Some(*c),
        _ => None,
    })
}

fn notes(actions: &[Action]) -> Vec<&Note> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Note(n) => Some(n),
            _ => None,
        })
        .collect()
}

fn has_kill(actions: &[Action]) -> bool {
    actions.iter().any(|a| matches!(a, Action::KillAll { .. }))
}

fn grace(drain: u64, grace: Option<u64>) -> Policy {
    Policy {
        drain: ms(drain),
        grace: grace.map(ms),
        ..Policy::default()
    }
}

// ---- the core: forwarding and exit codes ----

#[test]
fn forwards_to_the_group_by_default_and_the_child_with_single_child() {
    let mut s = Sim::new(Policy::default());
    assert_eq!(
        forwards(&s.sig(Signal::HUP)),
        [(Signal::HUP, Target::Group(CHILD))]
    );
    let mut s = Sim::new(Policy {
        single_child: true,
        ..Policy::default()
    });
    assert_eq!(
        forwards(&s.sig(Signal::USR1)),
        [(Signal::USR1, Target::Child(CHILD))]
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
    assert_eq!(forwards(&s.sig(rt)), [(rt, Target::Group(CHILD))]);
}

#[test]
fn rewrite_and_drop() {
    let mut policy = Policy::default();
    policy.rewrite.set(Signal::TERM, Some(Signal::QUIT));
    policy.rewrite.set(Signal::HUP, None);
    let mut s = Sim::new(policy);
    assert!(forwards(&s.sig(Signal::HUP)).is_empty());
    assert_eq!(
        forwards(&s.sig(Signal::TERM)),
        [(Signal::QUIT, Target::Group(CHILD))]
    );
}

#[test]
fn exit_codes_follow_the_child() {
    for (status, code) in [
        (Status::Exited(0), 0),
        (Status::Exited(3), 3),
        (Status::Signaled(Signal::TERM), 143),
        (Status::Signaled(Signal::KILL), 137),
    ] {
        let mut s = Sim::new(Policy::default());
        assert_eq!(
            exit_code(&s.main_exits(status, false)),
            Some(code),
            "{status:?}"
        );
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
    assert_eq!(
        exit_code(&s.main_exits(Status::Signaled(Signal::TERM), false)),
        Some(0)
    );
    let mut s = Sim::new(policy);
    assert_eq!(exit_code(&s.main_exits(Status::Exited(4), false)), Some(4));
}

#[test]
fn orphans_are_reaped_without_exiting() {
    let mut s = Sim::new(Policy::default());
    let a = s.feed(Event::Reaped {
        pid: 123,
        status: Status::Exited(0),
    });
    assert!(matches!(notes(&a)[0].what, What::Reaped { pid: 123, .. }));
    assert!(exit_code(&s.feed(Event::ReapDone {
        children_left: true
    }))
    .is_none());
    assert!(!s.m.exited());
}

#[test]
fn waits_for_leftovers_before_exiting() {
    let mut s = Sim::new(grace(0, Some(5000)));
    let a = s.main_exits(Status::Exited(4), true);
    assert!(a.iter().any(|a| matches!(
        a,
        Action::SignalStragglers {
            signal: Signal::TERM,
            ..
        }
    )));
    assert_eq!(exit_code(&a), None, "leftovers still running");
    s.at(100);
    s.feed(Event::Reaped {
        pid: 50,
        status: Status::Exited(0),
    });
    assert_eq!(
        exit_code(&s.feed(Event::ReapDone {
            children_left: false
        })),
        Some(4)
    );
}

// ---- the shutdown sequence ----

#[test]
fn step1_stop_logs_and_arms_timers() {
    let mut s = Sim::new(grace(1000, Some(5000)));
    let a = s.sig(Signal::TERM);
    assert!(
        forwards(&a).is_empty(),
        "nothing forwarded during the drain"
    );
    assert!(matches!(
        notes(&a)[0].what,
        What::StopReceived {
            signal: Signal::TERM,
            ..
        }
    ));
    assert_eq!(notes(&a)[0].t, Some(Duration::ZERO));
    assert_eq!(
        s.m.poll_timeout(),
        Some(ms(2000)),
        "drain end is the next timer"
    );
}

#[test]
fn step2_forwards_when_the_drain_ends() {
    let mut s = Sim::new(grace(1000, Some(5000)));
    s.sig(Signal::TERM);
    s.at(999);
    assert!(
        forwards(&s.feed(Event::Timer)).is_empty(),
        "an early timer forwards nothing"
    );
    let a = s.fire_timer();
    assert_eq!(forwards(&a), [(Signal::TERM, Target::Group(CHILD))]);
    assert_eq!(notes(&a)[0].t, Some(ms(1000)));
    assert_eq!(
        s.m.poll_timeout(),
        Some(ms(6000)),
        "then only the deadline is armed"
    );
}

#[test]
fn step2_forwarding_waits_for_the_hook() {
    let mut s = Sim::new(Policy {
        pre_stop: true,
        ..grace(500, Some(5000))
    });
    let a = s.sig(Signal::TERM);
    assert!(a.contains(&Action::StartHook));
    s.feed(Event::HookStarted(HOOK));
    s.at(600);
    assert!(
        forwards(&s.feed(Event::Timer)).is_empty(),
        "hook still running"
    );
    assert_eq!(
        s.m.poll_timeout(),
        Some(ms(6000)),
        "no drain timer while the hook runs"
    );
    s.at(1500);
    let a = s.feed(Event::Reaped {
        pid: HOOK,
        status: Status::Exited(0),
    });
    assert!(
        matches!(notes(&a)[0].what, What::HookExited { pid: HOOK, took, .. } if took == ms(1500))
    );
    assert_eq!(forwards(&a), [(Signal::TERM, Target::Group(CHILD))]);
}

#[test]
fn step2_hook_done_before_drain_end_still_waits_for_the_drain() {
    let mut s = Sim::new(Policy {
        pre_stop: true,
        ..grace(1000, None)
    });
    s.sig(Signal::TERM);
    s.feed(Event::HookStarted(HOOK));
    s.at(100);
    assert!(forwards(&s.feed(Event::Reaped {
        pid: HOOK,
        status: Status::Exited(0)
    }))
    .is_empty());
    assert_eq!(
        forwards(&s.fire_timer()),
        [(Signal::TERM, Target::Group(CHILD))]
    );
}

#[test]
fn step2_a_hook_that_cannot_start_does_not_block() {
    let mut s = Sim::new(Policy {
        pre_stop: true,
        ..grace(0, None)
    });
    s.sig(Signal::TERM);
    assert_eq!(
        forwards(&s.feed(Event::HookFailed)),
        [(Signal::TERM, Target::Group(CHILD))]
    );
}

#[test]
fn step2_hanging_hook_is_cut_at_the_deadline() {
    let mut s = Sim::new(Policy {
        pre_stop: true,
        ..grace(500, Some(3000))
    });
    s.sig(Signal::TERM);
    s.feed(Event::HookStarted(HOOK));
    let a = s.fire_timer();
    assert_eq!(s.now, ms(4000));
    assert!(a
        .iter()
        .any(|a| matches!(a, Action::KillAll { cause: KillCause::Deadline, t } if *t == ms(3000))));
    let a = s.main_exits(Status::Signaled(Signal::KILL), false);
    assert_eq!(exit_code(&a), Some(137));
}

#[test]
fn step3_second_stop_cuts_the_drain() {
    let mut s = Sim::new(grace(10_000, None));
    s.sig(Signal::TERM);
    s.at(300);
    let a = s.sig(Signal::INT);
    assert!(matches!(
        notes(&a)[0].what,
        What::DrainCut {
            signal: Signal::INT
        }
    ));
    assert_eq!(forwards(&a), [(Signal::INT, Target::Group(CHILD))]);
    assert_eq!(s.m.poll_timeout(), None, "nothing left to time");
    s.at(500);
    assert_eq!(
        forwards(&s.sig(Signal::TERM)),
        [(Signal::TERM, Target::Group(CHILD))],
        "later stops forward again"
    );
}

#[test]
fn step4_other_signals_pass_during_the_drain() {
    let mut s = Sim::new(grace(10_000, None));
    s.sig(Signal::TERM);
    assert_eq!(
        forwards(&s.sig(Signal::HUP)),
        [(Signal::HUP, Target::Group(CHILD))]
    );
    assert_eq!(s.m.poll_timeout(), Some(ms(11_000)), "the drain goes on");
}

#[test]
fn step5_app_exiting_during_the_drain_ends_it() {
    let mut s = Sim::new(grace(10_000, Some(20_000)));
    s.sig(Signal::TERM);
    s.at(200);
    let a = s.main_exits(Status::Exited(0), false);
    assert!(forwards(&a).is_empty());
    assert_eq!(exit_code(&a), Some(0));
    assert_eq!(s.m.poll_timeout(), None);
}

#[test]
fn step6_leftovers_get_the_stop_signal_then_sigkill_at_the_deadline() {
    let mut s = Sim::new(grace(0, Some(2000)));
    let a = s.main_exits(Status::Exited(7), true);
    assert!(a.iter().any(|a| matches!(
        a,
        Action::SignalStragglers {
            signal: Signal::TERM,
            ..
        }
    )));
    assert!(!has_kill(&a));
    assert_eq!(
        s.m.poll_timeout(),
        Some(ms(3000)),
        "the deadline counts from the app's exit"
    );
    let a = s.fire_timer();
    assert!(has_kill(&a));
    let a = s.feed(Event::ReapDone {
        children_left: false,
    });
    assert_eq!(exit_code(&a), Some(7), "the app's own code, not 137");
}

#[test]
fn step6_without_a_grace_period_leftovers_are_killed_at_once() {
    let mut s = Sim::new(Policy::default());
    let a = s.main_exits(Status::Exited(0), true);
    assert!(a.iter().any(|a| matches!(
        a,
        Action::KillAll {
            cause: KillCause::NoGrace,
            ..
        }
    )));
    assert_eq!(exit_code(&a), None);
    let a = s.feed(Event::ReapDone {
        children_left: true,
    });
    assert!(has_kill(&a), "kill again if anything is still there");
    assert_eq!(
        exit_code(&s.feed(Event::ReapDone {
            children_left: false
        })),
        Some(0)
    );
}

#[test]
fn step6_leftovers_get_the_stop_signal_that_was_received_rewritten() {
    let mut policy = grace(0, Some(5000));
    policy.stop_on = vec![Signal::QUIT];
    policy.rewrite.set(Signal::QUIT, Some(Signal::USR1));
    let mut s = Sim::new(policy);
    let a = s.main_exits(Status::Exited(0), true);
    assert!(a.iter().any(|a| matches!(
        a,
        Action::SignalStragglers {
            signal: Signal::USR1,
            ..
        }
    )));
}

#[test]
fn step7_app_ignoring_term_is_killed_at_the_deadline() {
    let mut s = Sim::new(grace(1000, Some(4000)));
    s.sig(Signal::TERM);
    assert!(!has_kill(&s.fire_timer()), "drain end forwards, no kill");
    s.at(3999);
    assert!(!has_kill(&s.feed(Event::Timer)));
    let a = s.fire_timer();
    assert!(a
        .iter()
        .any(|a| matches!(a, Action::KillAll { cause: KillCause::Deadline, t } if *t == ms(4000))));
    s.at(4010);
    assert_eq!(
        exit_code(&s.main_exits(Status::Signaled(Signal::KILL), false)),
        Some(137)
    );
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
    assert_eq!(
        exit_code(&s.main_exits(Status::Signaled(Signal::KILL), false)),
        Some(137)
    );
}

#[test]
fn stop_on_quit_makes_term_an_ordinary_signal() {
    let mut s = Sim::new(Policy {
        stop_on: vec![Signal::QUIT],
        ..grace(1000, None)
    });
    assert_eq!(
        forwards(&s.sig(Signal::TERM)),
        [(Signal::TERM, Target::Group(CHILD))]
    );
    assert!(
        forwards(&s.sig(Signal::QUIT)).is_empty(),
        "QUIT starts the drain"
    );
    assert_eq!(
        forwards(&s.fire_timer()),
        [(Signal::QUIT, Target::Group(CHILD))]
    );
}

#[test]
fn timeline_notes_carry_time_since_t0() {
    let mut s = Sim::new(grace(1000, Some(5000)));
    s.at(0);
    s.sig(Signal::TERM);
    s.fire_timer();
    s.at(1500);
    let a = s.main_exits(Status::Exited(0), false);
    let ts: Vec<_> = notes(&a).iter().map(|n| n.t).collect();
    assert!(ts.iter().all(|t| *t == Some(ms(1500))), "{ts:?}");
    assert!(matches!(
        notes(&a).last().unwrap().what,
        What::Exiting {
            code: 0,
            notable: true
        }
    ));
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
        MainExit(i32),
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
            (0i32..257).prop_map(Step::MainExit), // 256: killed by SIGKILL
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
                    pre_stop,
                    remap_exit: remap.into_iter().collect(),
                    ..Policy::default()
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn shutdown_invariants(policy in policy(), steps in proptest::collection::vec(step(), 0..40)) {
            let start = ms(1000);
            let mut m = Machine::new(policy.clone(), CHILD, start);
            let mut now = start;
            let mut t0: Option<Duration> = None;
            let mut stops = 0;
            let mut forwarded_stop = false;
            let mut main_status: Option<Status> = None;
            let mut killed_while_alive = false;
            let mut hook_started = false;
            let mut exited_with = None;

            for step in steps {
                let event = match step {
                    Step::Wait(d) => { now += ms(d); continue; }
                    Step::Stop(term) => Event::Signal(if term { Signal::TERM } else { Signal::INT }),
                    Step::Other => Event::Signal(Signal::HUP),
                    Step::MainExit(c) => {
                        if main_status.is_some() { continue; }
                        let status = if c == 256 { Status::Signaled(Signal::KILL) } else { Status::Exited(c) };
                        Event::Reaped { pid: CHILD, status }
                    }
                    Step::HookExit => Event::Reaped { pid: HOOK, status: Status::Exited(0) },
                    Step::Orphan => Event::Reaped { pid: 77, status: Status::Exited(1) },
                    Step::ReapDone(left) => {
                        // The driver never says "no children" while the main child lives.
                        Event::ReapDone { children_left: left || main_status.is_none() }
                    }
                    Step::Timer => match m.poll_timeout() {
                        Some(t) => { now = now.max(t); Event::Timer }
                        None => continue,
                    },
                };
                if let Event::Signal(s) = event {
                    if s == Signal::TERM || s == Signal::INT {
                        stops += 1;
                        if t0.is_none() && main_status.is_none() { t0 = Some(now); }
                    }
                }
                if let Event::Reaped { pid: CHILD, status } = event {
                    main_status = Some(status);
                    if t0.is_none() { t0 = Some(now); }
                }
                m.handle(event, now);
                let mut follow_up = Vec::new();
                while let Some(a) = m.poll_action() {
                    prop_assert!(exited_with.is_none(), "no action after Exit: {:?}", a);
                    match a {
                        Action::Forward { signal, .. } if signal == Signal::TERM || signal == Signal::INT => {
                            if !forwarded_stop {
                                let t0 = t0.expect("stop forwarded before any stop signal");
                                prop_assert!(
                                    now >= t0 + policy.drain || stops >= 2,
                                    "stop forwarded at {:?} before the drain ended at {:?} with one stop",
                                    now - t0, policy.drain
                                );
                            }
                            forwarded_stop = true;
                        }
                        Action::KillAll { cause, .. } => {
                            match cause {
                                KillCause::Deadline => {
                                    let deadline = t0.unwrap() + policy.grace.expect("deadline without grace");
                                    prop_assert!(now >= deadline, "SIGKILL before the deadline");
                                }
                                KillCause::NoGrace => {
                                    prop_assert!(policy.grace.is_none());
                                    prop_assert!(main_status.is_some(), "NoGrace kill while the app lives");
                                }
                            }
                            if main_status.is_none() { killed_while_alive = true; }
                        }
                        Action::StartHook => {
                            prop_assert!(policy.pre_stop && !hook_started);
                            hook_started = true;
                            follow_up.push(Event::HookStarted(HOOK));
                        }
                        Action::Exit(code) => {
                            let status = main_status.expect("exit before the main child was reaped");
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
                for e in follow_up {
                    m.handle(e, now);
                    while m.poll_action().is_some() {}
                }
                if event == Event::Timer {
                    // Firing the timer makes progress: it never asks to be
                    // fired again at once (no spinning).
                    prop_assert!(m.poll_timeout().is_none_or(|t| t > now), "timer spins at {:?}", now);
                }
            }
        }
    }
}

// ---- terminal job control (not PID 1) ----

#[test]
fn job_control_stops_with_the_app_and_hands_back_the_terminal() {
    let mut s = Sim::new(Policy {
        job_control: true,
        ..Policy::default()
    });
    assert_eq!(s.feed(Event::Stopped { pid: CHILD }), [Action::StopSelf]);
    assert!(
        s.feed(Event::Stopped { pid: 99 }).is_empty(),
        "other children stopping do not matter"
    );
    let a = s.sig(Signal::new(libc::SIGCONT).unwrap());
    assert_eq!(a[0], Action::Foreground, "terminal first, then CONT");
    assert_eq!(
        forwards(&a),
        [(Signal::new(libc::SIGCONT).unwrap(), Target::Group(CHILD))]
    );
}

#[test]
fn as_pid1_usher_never_stops() {
    let mut s = Sim::new(Policy::default());
    assert!(s.feed(Event::Stopped { pid: CHILD }).is_empty());
    let a = s.sig(Signal::new(libc::SIGCONT).unwrap());
    assert!(!a.contains(&Action::Foreground));
}

#[test]
fn leftovers_in_the_group_are_not_told_twice() {
    let mut s = Sim::new(grace(0, Some(5000)));
    s.sig(Signal::TERM);
    let a = s.main_exits(Status::Signaled(Signal::TERM), true);
    assert!(
        a.iter().any(|a| matches!(
            a,
            Action::SignalStragglers {
                except_group: true,
                ..
            }
        )),
        "the group already got TERM: {a:?}"
    );
    let mut s = Sim::new(grace(0, Some(5000)));
    let a = s.main_exits(Status::Exited(0), true);
    assert!(a.iter().any(|a| matches!(
        a,
        Action::SignalStragglers {
            except_group: false,
            ..
        }
    )));
    let mut s = Sim::new(Policy {
        single_child: true,
        ..grace(0, Some(5000))
    });
    s.sig(Signal::TERM);
    let a = s.main_exits(Status::Exited(0), true);
    assert!(
        a.iter().any(|a| matches!(
            a,
            Action::SignalStragglers {
                except_group: false,
                ..
            }
        )),
        "with -c only the child was told"
    );
}
