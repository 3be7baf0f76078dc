//! The state machine in the very loop usher runs, against an in-memory world: every rule of forwarding, hooks, the drain, shutdown and exit, without processes or clocks.

mod common;
use common::sim::*;

use std::time::Duration;

use usher::hook::{HookAction, HookEnd, HookKind, Outcome};
use usher::machine::{
    Action, Cause, DrainEnd, DrainSpec, Event, HookTrouble, KillCause, Life, Named, NoteKind,
    Policy, Purpose, Start, Target, Timer,
};
use usher::process::{Memory, Status, Traffic};
use usher::signals::Signal;

fn grace(drain: u64, grace: Option<u64>) -> Policy {
    Policy {
        drain: DrainSpec::Fixed(ms(drain)),
        grace: grace.map(ms),
        ..Policy::default()
    }
}

/// `Policy::default()` changed by `change`.
fn policy(change: impl FnOnce(&mut Policy)) -> Policy {
    let mut p = Policy::default();
    change(&mut p);
    p
}

fn with(mut policy: Policy, kind: HookKind) -> Policy {
    policy.hooks[kind as usize] = Some(HookAction::Command(vec![kind.name().into()]));
    policy
}

fn is_draining(s: &Sim) -> bool {
    matches!(s.m().life(), Life::Draining { .. })
}

fn kill_cause(actions: &[Action]) -> Option<KillCause> {
    notes(actions).into_iter().find_map(|n| match n {
        NoteKind::Signalled {
            purpose: Purpose::Kill { cause, .. },
            ..
        } => Some(*cause),
        _ => None,
    })
}

fn ending(actions: &[Action]) -> &usher::machine::Ending {
    let exit = actions.iter().find_map(|a| match a {
        Action::Exit(e) => Some(e),
        _ => None,
    });
    exit.expect("an exit")
}

// ---- the core: forwarding and exit codes ----

#[test]
fn forwards_to_the_group_by_default_and_the_app_alone_with_single_child() {
    let mut s = Sim::new(Policy::default());
    assert_eq!(sent(&s.sig(HUP)), [(HUP, TO_APP)]);
    let mut s = Sim::new(policy(|p| p.single_child = true));
    assert_eq!(sent(&s.sig(USR1)), [(USR1, Target::Process(APP))]);
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
    for signal in [PIPE, XFSZ] {
        let own = s.feed(Event::Signal {
            signal,
            sender: Some(3),
        });
        assert!(own.is_empty(), "raised in usher (pid 3): {own:?}");
        for sender in [Some(55), None] {
            let a = s.feed(Event::Signal { signal, sender });
            assert_eq!(sent(&a), [(signal, TO_APP)]);
        }
    }
}

#[test]
fn rewrite_and_drop() {
    let mut policy = Policy::default();
    policy.rewrite.set(TERM, Some(QUIT));
    policy.rewrite.set(HUP, None);
    let mut s = Sim::new(policy);
    let a = s.sig(HUP);
    assert!(sent(&a).is_empty());
    assert_eq!(notes(&a), [&NoteKind::Dropped { signal: HUP }]);
    assert_eq!(forwards(&s.sig(TERM)), [(QUIT, TO_APP)]);
}

#[test]
fn a_stop_signal_rewritten_to_0_is_dropped_and_starts_nothing() {
    let mut policy = grace(0, Some(2000));
    policy.rewrite.set(INT, None);
    let mut s = Sim::new(policy);
    let a = s.sig(INT);
    let dropped = matches!(notes(&a)[..], [NoteKind::Dropped { .. }]);
    assert!(sent(&a).is_empty() && dropped, "{a:?}");
    assert_eq!(s.m().life(), &Life::Running);
    assert_eq!(s.timeout(), None, "no deadline was started");
    let a = s.sig(TERM);
    assert!(matches!(notes(&a)[0], NoteKind::StopReceived { .. }));
}

#[test]
fn a_signal_rewritten_to_a_stop_signal_is_forwarded_at_once() {
    // --stop-on names what usher receives; the rewrite only changes what goes out.
    let mut policy = grace(5000, Some(10_000));
    policy.rewrite.set(HUP, Some(TERM));
    let mut s = Sim::new(policy);
    assert_eq!(sent(&s.sig(HUP)), [(TERM, TO_APP)]);
    assert_eq!(s.m().life(), &Life::Running);
}

#[test]
fn exit_codes_follow_the_app_and_remapped_codes_become_zero() {
    for (status, remap, code) in [
        (EXIT_0, vec![], 0),
        (Status::Exited(3), vec![], 3),
        (Status::Signaled(TERM), vec![], 143),
        (KILLED, vec![], 137),
        (Status::Signaled(TERM), vec![143, 3], 0),
        (Status::Exited(4), vec![143, 3], 4),
    ] {
        let mut s = Sim::new(policy(|p| p.remap_exit = remap));
        let a = s.app_exits(status, false);
        assert_eq!(exit_code(&a), Some(code), "{status:?}");
        assert!(s.m().exited());
    }
}

#[test]
fn orphans_are_reaped_without_exiting() {
    let mut s = Sim::new(Policy::default());
    let a = s.reaped(123, EXIT_0);
    assert!(matches!(notes(&a)[0], NoteKind::Reaped { pid: 123, .. }));
    let a = s.reap_done(true);
    assert!(exit_code(&a).is_none() && !s.m().exited());
}

// ---- the shutdown sequence, in order ----

#[test]
fn a_stop_logs_and_arms_the_drain_and_the_deadline() {
    let mut s = Sim::new(grace(1000, Some(5000)));
    let a = s.sig(TERM);
    assert!(sent(&a).is_empty(), "nothing forwarded during the drain");
    let n = notes(&a);
    assert!(matches!(n[0], NoteKind::StopReceived { signal: TERM, .. }));
    assert_eq!(elapsed(&a)[0], Some(Duration::ZERO));
    let shown = a.contains(&Action::ShowStopping);
    assert!(shown, "--check --ready can tell");
    assert!(is_draining(&s));
    assert_eq!(s.m().timer(Timer::Drain), Some(ms(2000)));
    assert_eq!(s.m().timer(Timer::Deadline), Some(ms(6000)));
    assert_eq!(s.timeout(), Some(ms(2000)), "the drain ends first");
}

#[test]
fn the_stop_signal_goes_out_when_the_drain_ends() {
    let mut s = Sim::new(grace(1000, Some(5000)));
    s.sig(TERM);
    s.at(999);
    let early = s.feed(Event::Timer);
    assert!(sent(&early).is_empty(), "an early timer forwards nothing");
    let a = s.fire_timer();
    assert_eq!(sent(&a), [(TERM, TO_APP)]);
    assert_eq!(elapsed(&a)[0], Some(ms(1000)));
    assert!(matches!(s.m().life(), Life::Stopping { .. }));
    assert_eq!(s.timeout(), Some(ms(6000)), "then the deadline");
}

#[test]
fn the_stop_signal_waits_for_the_pre_stop_hook() {
    let mut s = Sim::new(with(grace(500, Some(5000)), PRE_STOP));
    let a = s.sig(TERM);
    assert!(started(&a, PRE_STOP));
    let NoteKind::HookStarted { kind, pid } = notes(&a)[1] else {
        panic!("{a:?}")
    };
    assert_eq!((*kind, *pid), (PRE_STOP, HOOK));
    let drained = s.fire_timer();
    assert!(sent(&drained).is_empty(), "the drain is over, not the hook");
    // Then the reserve point, 2 s before the deadline.
    assert_eq!(s.timeout(), Some(ms(4000)), "the reserve point");
    s.at(1500);
    let a = s.reaped(HOOK, EXIT_0);
    let ended = |n: &NoteKind| matches!(n, NoteKind::HookEnded { pid: HOOK, took, .. } if *took == ms(1500));
    assert!(ended(notes(&a)[0]), "{a:?}");
    assert_eq!(forwards(&a), [(TERM, TO_APP)]);
    assert_eq!(s.timeout(), Some(ms(6000)), "only the deadline left");
}

#[test]
fn a_pre_stop_hook_done_before_the_drain_ends_still_waits_for_the_drain() {
    let mut s = Sim::new(with(grace(1000, None), PRE_STOP));
    s.sig(TERM);
    s.at(100);
    assert!(sent(&s.reaped(HOOK, EXIT_0)).is_empty());
    assert_eq!(forwards(&s.fire_timer()), [(TERM, TO_APP)]);
}

#[test]
fn a_pre_stop_hook_that_cannot_start_is_logged_and_does_not_block() {
    let mut s = Sim::refusing_hooks(with(grace(0, None), PRE_STOP));
    let a = s.sig(TERM);
    assert!(notes(&a).iter().any(|n| matches!(
        n,
        NoteKind::HookFailed {
            kind: PRE_STOP,
            fatal: false,
            ..
        }
    )));
    assert_eq!(forwards(&a), [(TERM, TO_APP)]);
}

#[test]
fn a_hanging_pre_stop_hook_is_cut_at_the_reserve_and_the_app_gets_its_stop_signal() {
    // grace 3 s: the reserve is min(2 s, 1.5 s), so at 1.5 s the hook is
    // killed with its group and TERM goes out; SIGKILL waits for 3 s.
    let mut s = Sim::new(with(grace(500, Some(3000)), PRE_STOP));
    s.sig(TERM);
    s.fire_timer(); // the drain
    let a = s.fire_timer();
    assert_eq!(s.now(), ms(2500));
    assert_eq!(sent(&a), [(KILL, Target::Group(HOOK)), (TERM, TO_APP)]);
    let cut = |n: &NoteKind| matches!(n, NoteKind::HookCut { kind: PRE_STOP, pid: HOOK, took } if *took == ms(1500));
    assert!(cut(notes(&a)[0]), "{a:?}");
    assert_eq!(s.timeout(), Some(ms(4000)), "the deadline");
    let a = s.reaped(HOOK, KILLED);
    assert!(matches!(
        notes(&a)[..],
        [NoteKind::Reaped { pid: HOOK, .. }]
    ));
    s.l.world.left = leftovers(&[(APP, APP)]);
    assert_eq!(sent(&s.fire_timer()), [(KILL, EVERYONE)]);
    let a = s.app_exits(KILLED, false);
    assert_eq!(exit_code(&a), Some(137));
    let hooks = &ending(&a).hooks;
    assert_eq!(hooks, &[(PRE_STOP, HookTrouble::Cut)], "for the message");
}

#[test]
fn a_second_stop_cuts_the_drain_and_later_ones_go_through() {
    let mut s = Sim::new(grace(10_000, None));
    s.sig(TERM);
    s.at(300);
    let a = s.sig(INT);
    assert!(matches!(notes(&a)[0], NoteKind::DrainCut { signal: INT }));
    assert_eq!(forwards(&a), [(INT, TO_APP)]);
    assert_eq!(s.timeout(), None, "nothing left to time");
    s.at(500);
    assert_eq!(forwards(&s.sig(TERM)), [(TERM, TO_APP)]);
}

#[test]
fn a_second_stop_goes_through_a_running_pre_stop_hook_with_no_drain_to_cut() {
    let mut s = Sim::new(with(grace(0, Some(5000)), PRE_STOP));
    assert!(started(&s.sig(TERM), PRE_STOP));
    s.at(300);
    let a = s.sig(TERM);
    assert_eq!(
        forwards(&a),
        [(TERM, TO_APP)],
        "the hook holds it no longer"
    );
    let cut = |n: &&NoteKind| matches!(n, NoteKind::DrainCut { .. });
    assert!(!notes(&a).iter().any(cut), "no drain to cut: {a:?}");
}

#[test]
fn other_signals_pass_during_the_drain() {
    let mut s = Sim::new(grace(10_000, None));
    s.sig(TERM);
    assert_eq!(sent(&s.sig(HUP)), [(HUP, TO_APP)]);
    assert_eq!(s.timeout(), Some(ms(11_000)), "the drain goes on");
}

#[test]
fn an_app_exiting_during_the_drain_ends_it() {
    let mut s = Sim::new(grace(10_000, Some(20_000)));
    s.sig(TERM);
    s.at(200);
    let a = s.app_exits(EXIT_0, false);
    assert!(sent(&a).is_empty());
    assert_eq!(exit_code(&a), Some(0));
    assert_eq!(s.timeout(), None);
}

#[test]
fn leftovers_get_the_stop_signal_then_sigkill_at_the_deadline() {
    let mut s = Sim::new(grace(0, Some(2000)));
    let a = s.app_exits(Status::Exited(7), true);
    assert_eq!(sent(&a), [(TERM, EVERYONE)]);
    assert!(notes(&a).contains(&&NoteKind::Signalled {
        signal: TERM,
        named: Named::Pids(vec![IN_GROUP, OUTSIDE]),
        purpose: Purpose::Ask {
            spared_group: false
        },
    }));
    assert_eq!(exit_code(&a), None, "leftovers still running");
    // The deadline counts from the app's exit.
    assert_eq!(s.timeout(), Some(ms(3000)), "the deadline");
    assert_eq!(sent(&s.fire_timer()), [(KILL, EVERYONE)]);
    let a = s.all_gone();
    assert_eq!(exit_code(&a), Some(7), "the app's own code, not 137");
    let killed = &ending(&a).deadline;
    assert_eq!(killed, &Some(vec![IN_GROUP, OUTSIDE]), "whom it killed");
}

#[test]
fn without_a_grace_period_leftovers_are_killed_at_once_and_again_while_any_is_left() {
    let mut s = Sim::new(Policy::default());
    let a = s.app_exits(EXIT_0, true);
    assert_eq!(kill_cause(&a), Some(KillCause::NoGrace));
    assert_eq!(exit_code(&a), None);
    let a = s.reap_done(true);
    assert!(killed(&a), "kill again if anything is still there");
    assert!(notes(&a).iter().any(|n| matches!(
        n,
        NoteKind::Signalled {
            purpose: Purpose::Kill { round: 2, .. },
            ..
        }
    )));
    assert_eq!(exit_code(&s.all_gone()), Some(0));
}

#[test]
fn leftovers_get_the_stop_signal_that_was_received_rewritten() {
    let mut policy = grace(0, Some(5000));
    policy.stop_on = vec![QUIT];
    policy.rewrite.set(QUIT, Some(USR1));
    let mut s = Sim::new(policy);
    assert_eq!(forwards(&s.app_exits(EXIT_0, true)), [(USR1, EVERYONE)]);
}

#[test]
fn an_app_that_exited_alone_costs_no_census_as_pid1() {
    let mut s = Sim::new(grace(0, Some(5000)));
    let a = s.app_exits(EXIT_0, false);
    assert!(!a.iter().any(|a| matches!(a, Action::Census(_))));
    assert_eq!(exit_code(&a), Some(0));
}

#[test]
fn sigcont_follows_a_stop_signal_only_while_something_is_suspended() {
    // An app with a SIGCONT handler must not see a CONT it was never sent
    // (dumb-init's and tini's behaviour); a suspended one must still get its
    // stop signal now rather than at the deadline.
    let mut s = Sim::new(grace(0, Some(5000)));
    s.feed(Event::Suspended { pid: APP });
    assert_eq!(sent(&s.sig(TERM)), [(TERM, TO_APP), (CONT, TO_APP)]);
    let mut s = Sim::new(grace(0, Some(5000)));
    s.feed(Event::Suspended { pid: APP });
    s.feed(Event::Resumed { pid: APP });
    assert_eq!(sent(&s.sig(TERM)), [(TERM, TO_APP)], "resumed since");
    let mut s = Sim::new(grace(0, Some(5000)));
    s.feed(Event::Suspended { pid: OUTSIDE });
    let a = s.app_exits(EXIT_0, true);
    let want = [(TERM, EVERYONE), (CONT, EVERYONE)];
    assert_eq!(sent(&a), want, "a suspended leftover too");
}

#[test]
fn an_app_ignoring_term_is_killed_at_the_deadline_sigkill_before_the_census() {
    let mut s = Sim::new(grace(1000, Some(4000)));
    s.sig(TERM);
    assert!(!killed(&s.fire_timer()), "drain end forwards, no kill");
    s.at(3999);
    assert!(!killed(&s.feed(Event::Timer)));
    s.l.world.left = leftovers(&[(APP, APP), (IN_GROUP, APP)]);
    let a = s.fire_timer();
    assert_eq!(kill_cause(&a), Some(KillCause::Deadline));
    let kill = a
        .iter()
        .position(|a| matches!(a, Action::Send { signal: KILL, .. }));
    let census = a.iter().position(|a| matches!(a, Action::Census(_)));
    // SIGKILL first, the list (for the log) after.
    assert!(kill < census, "{a:?}");
    let named = notes(&a).into_iter().find_map(|n| match n {
        NoteKind::Signalled { named, .. } => Some(named.clone()),
        _ => None,
    });
    let alive = Some(Named::Pids(vec![APP, IN_GROUP]));
    assert_eq!(named, alive, "every process alive at the deadline");
    assert_eq!(elapsed(&a).last(), Some(&Some(ms(4000))));
    s.at(4010);
    assert_eq!(exit_code(&s.app_exits(KILLED, false)), Some(137));
}

#[test]
fn not_pid1_the_deadline_names_every_descendant_alive_then() {
    let mut s = Sim::not_pid1(grace(0, Some(1500)));
    s.sig(TERM);
    s.l.world.left = leftovers(&[(APP, APP), (IN_GROUP, APP), (OUTSIDE, OUTSIDE)]);
    let a = s.fire_timer();
    assert_eq!(sent(&a), [(KILL, TO_APP), (KILL, Target::Process(OUTSIDE))]);
    assert!(notes(&a).iter().any(|n| matches!(n, NoteKind::Signalled { named: Named::Pids(p), .. } if p == &[APP, IN_GROUP, OUTSIDE])));
}

#[test]
fn a_late_timer_past_the_reserve_and_the_deadline_asks_before_it_kills() {
    let mut s = Sim::new(with(grace(9000, Some(10_000)), PRE_STOP));
    s.sig(TERM);
    s.at(30_000);
    let a = s.feed(Event::Timer);
    let order: Vec<Signal> = forwards(&a).into_iter().map(|(sig, _)| sig).collect();
    assert_eq!(order, [KILL, TERM, KILL], "hook cut, app asked, killed");
    assert_eq!(forwards(&a)[1], (TERM, TO_APP));
}

#[test]
fn the_deadline_exit_is_137_even_when_the_remapped_code_would_be_zero() {
    let mut s = Sim::new(Policy {
        remap_exit: vec![137],
        ..grace(0, Some(1000))
    });
    s.sig(TERM);
    s.fire_timer();
    assert_eq!(exit_code(&s.app_exits(KILLED, false)), Some(137));
}

#[test]
fn stop_on_quit_makes_term_an_ordinary_signal() {
    let mut s = Sim::new(Policy {
        stop_on: vec![QUIT],
        ..grace(1000, None)
    });
    assert_eq!(sent(&s.sig(TERM)), [(TERM, TO_APP)]);
    assert!(sent(&s.sig(QUIT)).is_empty(), "QUIT starts the drain");
    assert_eq!(forwards(&s.fire_timer()), [(QUIT, TO_APP)]);
}

#[test]
fn timeline_notes_carry_time_since_the_stop_and_the_last_says_why() {
    let mut s = Sim::new(grace(1000, Some(5000)));
    assert_eq!(elapsed(&s.sig(HUP)), [None], "before any stop");
    s.sig(TERM);
    s.fire_timer();
    s.at(1500);
    let a = s.app_exits(EXIT_0, false);
    assert!(elapsed(&a).iter().all(|t| *t == Some(ms(1500))), "{a:?}");
    let NoteKind::Exiting {
        ending,
        notable: true,
    } = notes(&a).last().copied().unwrap()
    else {
        panic!("{a:?}")
    };
    let said = (ending.code, ending.cause, ending.app);
    assert_eq!(said, (0, Cause::Signal(TERM), EXIT_0));
}

// ---- hooks: post-start, HTTP answers, post-stop ----

#[test]
fn post_start_runs_alongside_the_app_from_the_start() {
    let mut s = Sim::new(with(Policy::default(), POST_START));
    let a = s.take();
    assert!(started(&a, POST_START), "asked for at once; nothing waits");
    assert_eq!(s.m().life(), &Life::Running);
}

#[test]
fn post_start_success_is_exit_0_or_http_200_to_399() {
    for (answer, status) in [(None, 0), (Some(200), 0), (Some(302), 0)] {
        let mut s = Sim::new(with(Policy::default(), POST_START));
        s.take();
        if let Some(code) = answer {
            s.feed(Event::HookAnswered {
                pid: POST,
                outcome: Outcome::Status(code),
            });
        }
        s.at(300);
        let a = s.reaped(POST, Status::Exited(status));
        let ok = matches!(notes(&a)[..], [NoteKind::HookEnded { kind: POST_START, fatal: false, took, .. }] if *took == ms(300));
        assert!(ok, "{a:?}");
        assert_eq!(s.m().life(), &Life::Running, "the app goes on");
    }
}

#[test]
fn post_start_failure_stops_the_container_with_the_full_sequence_and_exit_124() {
    let failures = [
        (None, Status::Exited(1)),
        (None, KILLED),
        (Some(Outcome::Status(503)), Status::Exited(1)),
        (
            Some(Outcome::Failed("cannot connect: Connection refused".into())),
            Status::Exited(1),
        ),
    ];
    for (answer, status) in failures {
        let mut s = Sim::new(with(with(grace(1000, Some(5000)), PRE_STOP), POST_START));
        s.take();
        if let Some(outcome) = answer.clone() {
            s.feed(Event::HookAnswered { pid: POST, outcome });
        }
        let a = s.reaped(POST, status);
        let n = notes(&a);
        let NoteKind::HookEnded { kind, fatal, .. } = n[0] else {
            panic!("{answer:?}: {a:?}")
        };
        assert_eq!((*kind, *fatal), (POST_START, true), "{answer:?}: {a:?}");
        let NoteKind::StopReceived { signal, cause, .. } = n[1] else {
            panic!("{a:?}")
        };
        assert_eq!((*signal, *cause), (TERM, Cause::PostStartFailed));
        assert!(started(&a, PRE_STOP), "pre-stop hook first");
        assert!(sent(&a).is_empty(), "then the drain");
        s.reaped(HOOK, EXIT_0);
        assert_eq!(forwards(&s.fire_timer()), [(TERM, TO_APP)]);
        let a = s.app_exits(EXIT_0, false);
        assert_eq!(exit_code(&a), Some(124), "not 0: the start failed");
    }
}

#[test]
fn post_start_that_cannot_start_stops_the_container_too() {
    let mut s = Sim::refusing_hooks(with(Policy::default(), POST_START));
    let a = s.take();
    let failed = notes(&a).iter().any(|n| {
        matches!(
            n,
            NoteKind::HookFailed {
                kind: POST_START,
                fatal: true,
                ..
            }
        )
    });
    assert!(failed, "{a:?}");
    assert_eq!(forwards(&a), [(TERM, TO_APP)]);
    assert_eq!(exit_code(&s.app_exits(EXIT_0, false)), Some(124));
}

#[test]
fn post_start_failing_after_a_stop_was_asked_for_is_only_a_warning() {
    let mut s = Sim::new(with(grace(0, Some(5000)), POST_START));
    s.sig(TERM);
    let a = s.reaped(POST, Status::Exited(1));
    let n = notes(&a);
    assert!(matches!(n[..], [NoteKind::HookEnded { fatal: false, .. }]));
    let a = s.app_exits(EXIT_0, false);
    assert_eq!(exit_code(&a), Some(0), "the app's own code");
}

#[test]
fn post_start_still_running_when_the_app_exits_is_a_leftover() {
    let mut s = Sim::not_pid1(with(grace(0, Some(5000)), POST_START));
    s.l.world.left = leftovers(&[(POST, POST)]);
    s.reaped(APP, EXIT_0);
    let a = s.reap_done(true);
    assert_eq!(forwards(&a), [(TERM, Target::Process(POST))]);
    assert_eq!(sent(&s.fire_timer()), [(KILL, Target::Process(POST))]);
}

#[test]
fn a_failing_pre_stop_hook_is_a_warning_and_the_sequence_goes_on() {
    for (answer, status) in [
        (None, Status::Exited(3)),
        (Some(Outcome::Status(503)), Status::Exited(1)),
    ] {
        let mut s = Sim::new(with(grace(0, Some(5000)), PRE_STOP));
        s.sig(TERM);
        if let Some(outcome) = answer {
            s.feed(Event::HookAnswered { pid: HOOK, outcome });
        }
        let a = s.reaped(HOOK, status);
        let NoteKind::HookEnded {
            end, fatal: false, ..
        } = notes(&a)[0]
        else {
            panic!("{a:?}")
        };
        let failed = matches!(
            end,
            HookEnd::Exited(_) | HookEnd::Answered(Outcome::Status(503))
        );
        assert!(!end.ok() && failed, "{end:?}");
        assert_eq!(forwards(&a), [(TERM, TO_APP)]);
        let e = s.app_exits(EXIT_0, false);
        let hooks = &ending(&e).hooks;
        assert!(matches!(hooks[..], [(PRE_STOP, HookTrouble::Ended(_))]));
    }
}

#[test]
fn post_stop_runs_last_and_its_failure_keeps_the_code() {
    let mut s = Sim::new(with(grace(0, Some(5000)), POST_STOP));
    s.sig(TERM);
    let a = s.app_exits(Status::Exited(3), true);
    assert!(!started(&a, POST_STOP), "not while leftovers live");
    let a = s.all_gone();
    let once_gone = started(&a, POST_STOP) && exit_code(&a).is_none();
    assert!(once_gone, "once all are gone: {a:?}");
    assert_eq!(s.timeout(), Some(ms(6000)), "bounded by the deadline");
    let a = s.reaped(LAST, Status::Exited(1));
    let NoteKind::HookEnded { kind, fatal, .. } = notes(&a)[0] else {
        panic!("{a:?}")
    };
    assert_eq!((*kind, *fatal), (POST_STOP, false));
    let a = s.all_gone();
    assert_eq!(exit_code(&a), Some(3), "the app's code, not the hook's");
    let hooks = &ending(&a).hooks;
    assert!(matches!(hooks[..], [(POST_STOP, HookTrouble::Ended(_))]));
}

#[test]
fn post_stop_runs_after_the_app_own_exit_and_a_hanging_one_is_cut() {
    // No grace period: the documented bound; and a hook that cannot start.
    let mut s = Sim::not_pid1(with(Policy::default(), POST_STOP));
    let a = s.app_exits(EXIT_0, false);
    assert!(started(&a, POST_STOP));
    assert_eq!(s.timeout(), Some(s.now() + usher::machine::POST_STOP_BOUND));
    let a = s.fire_timer();
    assert_eq!(sent(&a), [(KILL, Target::Group(LAST))]);
    let NoteKind::HookCut { kind, .. } = notes(&a)[0] else {
        panic!("{a:?}")
    };
    assert_eq!(*kind, POST_STOP);
    s.reaped(LAST, KILLED);
    assert_eq!(exit_code(&s.all_gone()), Some(0));
    let mut s = Sim::refusing_hooks(with(Policy::default(), POST_STOP));
    let a = s.app_exits(Status::Exited(5), false);
    // A post-stop that cannot start does not hold the exit.
    assert_eq!(exit_code(&a), Some(5));
}

#[test]
fn post_stop_after_a_deadline_kill_gets_the_stop_reserve() {
    let mut s = Sim::new(with(grace(0, Some(3000)), POST_STOP));
    s.sig(TERM);
    s.fire_timer(); // the deadline: SIGKILL
    let a = s.app_exits(KILLED, false);
    assert!(started(&a, POST_STOP));
    let reserve = s.now() + ms(1500); // R = min(2 s, grace/2)
    assert_eq!(s.timeout(), Some(reserve));
    s.reaped(LAST, EXIT_0);
    assert_eq!(exit_code(&s.all_gone()), Some(137));
}

#[test]
fn the_reserve_is_two_seconds_or_half_the_grace_period() {
    for (grace_ms, reserve_ms) in [(30_000, 2000), (4000, 2000), (3000, 1500), (1000, 500)] {
        let p = grace(0, Some(grace_ms));
        assert_eq!(p.reserve(), Some(ms(reserve_ms)), "grace {grace_ms}ms");
        let mut s = Sim::new(with(p, PRE_STOP));
        s.sig(TERM);
        let point = ms(1000 + grace_ms - reserve_ms);
        assert_eq!(s.m().timer(Timer::Reserve), Some(point));
    }
    assert_eq!(Policy::default().reserve(), None, "no deadline, no reserve");
}

#[test]
fn a_drain_that_does_not_fit_before_the_reserve_is_shortened_with_a_warning() {
    let mut s = Sim::new(grace(9000, Some(10_000)));
    let warned = NoteKind::DrainShortened {
        asked: ms(9000),
        to: ms(8000),
        grace: ms(10_000),
        reserve: ms(2000),
    };
    assert_eq!(notes(&s.take()), [&warned]);
    s.sig(TERM);
    let a = s.fire_timer();
    assert_eq!(s.now(), ms(9000), "8 s after the stop");
    assert_eq!(forwards(&a), [(TERM, TO_APP)]);
    let mut s = Sim::new(grace(5000, Some(10_000)));
    assert!(s.take().is_empty());
}

// ---- the adaptive drain: MIN..MAX, ending when the traffic does ----

fn range(min: u64, max: u64, grace_ms: Option<u64>) -> Policy {
    Policy {
        drain: DrainSpec::Range {
            min: ms(min),
            max: ms(max),
        },
        grace: grace_ms.map(ms),
        ..Policy::default()
    }
}

/// Traffic arriving at `per_look` arrivals per 100 ms until `stop` ms after the start.
fn traffic(s: &mut Sim, listeners: u32, per_look: u64, stop: u64) {
    s.l.world.traffic = Box::new(move |now| {
        let t = now.as_millis() as u64 - 1000;
        let arrivals = per_look * (t.min(stop) / 100);
        Ok(Traffic {
            listeners,
            arrivals,
            connections: 1,
        })
    });
}

fn drain_over(a: &[Action]) -> Option<DrainEnd> {
    notes(a).into_iter().find_map(|n| {
        if let NoteKind::DrainOver { end } = n {
            Some(*end)
        } else {
            None
        }
    })
}

/// Fires timers until the stop signal goes out; when it did, and the drain's end.
fn until_forwarded(s: &mut Sim) -> (u64, Option<DrainEnd>) {
    let mut end = None;
    for _ in 0..1000 {
        let a = s.fire_timer();
        end = end.or(drain_over(&a));
        if !forwards(&a).is_empty() {
            return (s.now().as_millis() as u64 - 1000, end);
        }
    }
    panic!("never forwarded");
}

#[test]
fn an_adaptive_drain_ends_soon_after_the_traffic_stops() {
    let mut s = Sim::new(range(0, 10_000, None));
    traffic(&mut s, 1, 3, 3000);
    let a = s.sig(TERM);
    assert!(a.contains(&Action::Look), "the first look comes at once");
    let (t, end) = until_forwarded(&mut s);
    assert!((3300..=3600).contains(&t), "forwarded at {t} ms");
    let quiet = matches!(end, Some(DrainEnd::Quiet { arrivals: 90, .. }));
    assert!(quiet, "{end:?}");
}

#[test]
fn an_adaptive_drain_holds_at_least_min_and_at_most_max() {
    let mut s = Sim::new(range(2000, 10_000, None));
    traffic(&mut s, 1, 0, 0);
    s.sig(TERM);
    assert_eq!(until_forwarded(&mut s).0, 2000, "a quiet server: MIN");
    let mut s = Sim::new(range(0, 4000, None));
    traffic(&mut s, 1, 2, u64::MAX);
    s.sig(TERM);
    let (t, end) = until_forwarded(&mut s);
    assert_eq!(t, 4000, "steady traffic: MAX");
    assert!(matches!(end, Some(DrainEnd::Max { .. })), "{end:?}");
}

#[test]
fn an_app_without_a_listening_socket_drains_min_and_says_so() {
    let mut s = Sim::new(range(1500, 10_000, None));
    traffic(&mut s, 0, 0, 0);
    s.sig(TERM);
    assert_eq!(until_forwarded(&mut s), (1500, Some(DrainEnd::NoListener)));
}

#[test]
fn unseen_traffic_holds_to_max_with_one_warning() {
    let mut s = Sim::new(range(0, 3000, Some(10_000)));
    s.l.world.traffic = Box::new(|_| Err("no sock_diag".into()));
    let a = s.sig(TERM);
    assert!(notes(&a)
        .iter()
        .any(|n| matches!(n, NoteKind::TrafficUnseen { .. })));
    assert_eq!(until_forwarded(&mut s), (3000, Some(DrainEnd::Unseen)));
}

#[test]
fn a_second_signal_and_the_reserve_end_an_adaptive_drain() {
    let mut s = Sim::new(range(0, 60_000, None));
    traffic(&mut s, 1, 3, u64::MAX);
    s.sig(TERM);
    s.fire_timer();
    assert_eq!(forwards(&s.sig(TERM)), [(TERM, TO_APP)]);
    assert_eq!(s.timeout(), None, "no more looks");
    let mut s = Sim::new(range(0, 9000, Some(10_000)));
    traffic(&mut s, 1, 3, u64::MAX);
    s.sig(TERM);
    let (at, _) = until_forwarded(&mut s);
    assert_eq!(at, 8000, "MAX cut to the reserve point");
}

// ---- OOM kills named ----

#[test]
fn a_sigkill_death_while_the_oom_counter_grew_is_named() {
    let (limit, peak) = (Some(32 << 20), Some(32 << 20));
    let memory = |oom_kills| {
        Some(Memory {
            oom_kills,
            limit,
            peak,
        })
    };
    let (app, me, terminal) = (APP, 1, false);
    let start = Start {
        app,
        me,
        terminal,
        memory: memory(2),
    };
    let mut s = Sim::at_start(Policy::default(), start);
    let killed = |pid, memory| Event::Reaped {
        pid,
        status: KILLED,
        memory,
    };
    let oom = |a: &[Action]| {
        notes(a)
            .iter()
            .any(|n| matches!(n, NoteKind::OomKilled { .. }))
    };
    let a = s.feed(killed(50, memory(2)));
    assert!(!oom(&a), "the counter did not grow");
    let a = s.feed(killed(APP, memory(3)));
    assert!(matches!(notes(&a)[0], NoteKind::OomKilled { pid: APP, .. }));
    let a = s.reap_done(false);
    let e = ending(&a);
    let named = e.app_oom.is_some() && e.oom.is_empty() && e.code == 137;
    assert!(named, "{e:?}");
    let mut s = Sim::at_start(
        Policy::default(),
        Start {
            memory: None,
            ..start
        },
    );
    let a = s.feed(killed(APP, memory(9)));
    assert!(!oom(&a), "no cgroup at start: nothing said");
}

// ---- whom leftovers are signalled, and the loop's protocol ----

#[test]
fn as_pid1_leftovers_are_everyone_but_a_group_already_told_is_spared() {
    let mut s = Sim::new(grace(0, Some(5000)));
    s.sig(TERM);
    let a = s.app_exits(Status::Signaled(TERM), true);
    // A second TERM to the group could cut its cleanup short.
    assert_eq!(forwards(&a), [(TERM, Target::Process(OUTSIDE))]);
    // With -c only the app itself was told.
    let mut policy = grace(0, Some(5000));
    policy.single_child = true;
    let mut s = Sim::new(policy);
    s.sig(TERM);
    assert_eq!(forwards(&s.app_exits(EXIT_0, true)), [(TERM, EVERYONE)]);
}

#[test]
fn not_pid1_without_children_only_the_group_is_probed_and_usher_exits() {
    // Without -s, orphans leave usher's tree, but kill(-group) reaches them.
    let mut s = Sim::not_pid1(grace(0, Some(5000)));
    s.l.world.left = usher::machine::Census {
        list: Some(Vec::new()),
        group_alive: true,
    };
    s.reaped(APP, EXIT_0);
    let a = s.reap_done(false);
    assert_eq!(forwards(&a), [(TERM, TO_APP)]);
    // usher cannot wait for what it cannot reap.
    assert_eq!(exit_code(&a), Some(0));
}

#[test]
fn a_census_that_found_nobody_is_not_repeated_before_the_next_reap() {
    let mut s = Sim::not_pid1(grace(0, Some(5000)));
    s.reaped(APP, EXIT_0);
    let a = s.reap_done(true);
    let censuses = |a: &[Action]| a.iter().filter(|a| matches!(a, Action::Census(_))).count();
    assert_eq!(censuses(&a), 1);
    let a = s.sig(TERM);
    assert!(censuses(&a) == 0 && sent(&a).is_empty(), "{a:?}");
}

#[test]
fn an_answer_is_handled_before_anything_else_and_nothing_runs_in_between() {
    // The census the app's exit asks for is answered as the very next event:
    // its signals follow the ask, before the loop waits for anything.
    let mut s = Sim::new(grace(0, Some(5000)));
    let a = s.app_exits(EXIT_0, true);
    let census = a
        .iter()
        .position(|a| matches!(a, Action::Census(_)))
        .unwrap();
    let named = a.iter().position(
        |a| matches!(a, Action::Note(n) if matches!(*n.kind, NoteKind::Signalled { .. })),
    );
    assert_eq!(named, Some(census + 1), "{a:?}");
}

// ---- terminal job control (not PID 1) ----

#[test]
fn job_control_suspends_with_the_app_and_hands_back_the_terminal() {
    let mut s = Sim::started(Policy::default(), 3, true);
    assert_eq!(s.feed(Event::Suspended { pid: APP }), [Action::Suspend]);
    let other = s.feed(Event::Suspended { pid: 99 });
    assert!(other.is_empty(), "other children do not matter");
    let a = s.sig(CONT);
    assert_eq!(a[0], Action::Foreground, "terminal first, then CONT");
    assert_eq!(sent(&a), [(CONT, TO_APP)]);
    let mut s = Sim::started(Policy::default(), 1, true);
    let app = s.feed(Event::Suspended { pid: APP });
    assert!(app.is_empty(), "as PID 1 usher never suspends");
    assert!(!s.sig(CONT).contains(&Action::Foreground));
}

// ---- properties over random event sequences ----

mod props {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    #[derive(Clone, Debug)]
    enum Step {
        Wait(u64),
        Stop(bool), // TERM or INT
        Other,
        AppExit(i32), // 256: killed by SIGKILL
        HookExit(i32, i32),
        Orphan,
        ReapDone(bool),
        Timer,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u64..3000).prop_map(Step::Wait),
            any::<bool>().prop_map(Step::Stop),
            Just(Step::Other),
            (0i32..257).prop_map(Step::AppExit),
            (prop::sample::select(vec![HOOK, POST, LAST]), 0i32..2)
                .prop_map(|(p, c)| Step::HookExit(p, c)),
            Just(Step::Orphan),
            any::<bool>().prop_map(Step::ReapDone),
            Just(Step::Timer),
        ]
    }

    fn policy() -> impl Strategy<Value = (Policy, u64, u64)> {
        let drain = prop_oneof![
            (0u64..6000).prop_map(|d| DrainSpec::Fixed(ms(d))),
            (0u64..3000, 0u64..6000).prop_map(|(min, more)| DrainSpec::Range {
                min: ms(min),
                max: ms(min + more)
            }),
        ];
        let hooks = prop::collection::vec(any::<bool>(), 3);
        // The traffic an adaptive drain sees: arrivals a look, until when.
        let traffic = (0u64..4, 0u64..8000);
        (
            drain,
            proptest::option::of(1u64..6000),
            hooks,
            proptest::option::of(0i32..256),
            traffic,
        )
            .prop_map(|(drain, grace, hooks, remap, (rate, until))| {
                let grace = grace.map(|g| ms(g) + drain.max()); // drain < grace, as the CLI enforces
                let mut policy = Policy {
                    drain,
                    grace,
                    remap_exit: remap.into_iter().collect(),
                    ..Policy::default()
                };
                for (kind, on) in HookKind::ALL.into_iter().zip(hooks) {
                    if on {
                        policy = with(policy, kind);
                    }
                }
                (policy, rate, until)
            })
    }

    /// What the test knows of the world, to check the machine against.
    #[derive(Default)]
    struct Known {
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
            (policy, rate, until) in policy(),
            pid1 in any::<bool>(),
            steps in proptest::collection::vec(step(), 0..40),
        ) {
            let mut s = if pid1 { Sim::new(policy.clone()) } else { Sim::not_pid1(policy.clone()) };
            s.l.world.traffic = Box::new(move |now| {
                let t = now.as_millis() as u64 - 1000;
                Ok(Traffic { listeners: 1, arrivals: rate * (t.min(until) / 100), connections: 1 })
            });
            let mut k = Known::default();
            let a = s.take();
            check(&policy, pid1, &s, &mut k, a)?;
            for step in steps {
                let now = s.now();
                let event = match step {
                    Step::Wait(d) => { s.l.world.now += ms(d); continue; }
                    Step::Stop(term) => {
                        k.stops += 1;
                        if k.t0.is_none() && k.app.is_none() { k.t0 = Some(now); }
                        let signal = if term { TERM } else { INT };
                        Event::Signal { signal, sender: Some(100) }
                    }
                    Step::Other => Event::Signal { signal: HUP, sender: None },
                    Step::AppExit(c) => {
                        if k.app.is_some() { continue; }
                        let status = if c == 256 { KILLED } else { Status::Exited(c) };
                        k.app = Some(status);
                        k.t0 = k.t0.or(Some(now));
                        Event::Reaped { pid: APP, status, memory: None }
                    }
                    Step::HookExit(pid, c) => {
                        if !k.running.contains(&pid) { continue; }
                        k.running.retain(|p| *p != pid);
                        // A failed post-start hook, while the app runs and no
                        // stop was asked for, stops the container.
                        if pid == POST && c != 0 && k.app.is_none() && k.t0.is_none() {
                            k.start_failed = true;
                            k.t0 = Some(now);
                            k.stops += 1;
                        }
                        Event::Reaped { pid, status: Status::Exited(c), memory: None }
                    }
                    Step::Orphan => Event::Reaped { pid: 77, status: Status::Exited(1), memory: None },
                    // The driver never says "no children" while the app or a hook lives.
                    Step::ReapDone(left) => {
                        Event::ReapDone { children_left: left || k.app.is_none() || !k.running.is_empty() }
                    }
                    Step::Timer => match s.timeout() {
                        Some(t) => { s.l.world.now = now.max(t); Event::Timer }
                        None => continue,
                    },
                };
                let mut list = vec![(OUTSIDE, OUTSIDE)];
                list.extend(k.app.is_none().then_some((APP, APP)));
                list.extend(k.running.iter().map(|&h| (h, h)));
                s.l.world.left = leftovers(&list);
                let is_timer = event == Event::Timer;
                let a = s.feed(event);
                check(&policy, pid1, &s, &mut k, a)?;
                let now = s.now();
                if is_timer {
                    // Firing the timer makes progress: it never asks to be
                    // fired again at once (no spinning).
                    prop_assert!(s.timeout().is_none_or(|t| t > now), "timer spins at {:?}", now);
                    // By the drain's end, and by R before the deadline, the
                    // app has been asked to stop, whatever the pre-stop hook.
                    if let (Some(t0), None, None) = (k.t0, k.app, k.exited_with) {
                        let reserve = policy.grace.zip(policy.reserve()).map(|(g, r)| t0 + g - r);
                        let drained = policy.drain().max() + t0;
                        let hook_holds = k.running.contains(&HOOK);
                        prop_assert!(
                            k.forwarded_stop || now < drained || hook_holds && reserve.is_none_or(|p| now < p),
                            "no stop signal at {:?} after the stop", now - t0
                        );
                    }
                }
            }
        }
    }

    /// Checks every action of one step against what the test knows.
    fn check(
        policy: &Policy,
        pid1: bool,
        s: &Sim,
        k: &mut Known,
        actions: Vec<Action>,
    ) -> Result<(), TestCaseError> {
        let now = s.now();
        for a in actions {
            prop_assert!(k.exited_with.is_none(), "no action after Exit: {:?}", a);
            match a {
                Action::Send { signal, to } if signal == TERM || signal == INT => {
                    prop_assert!(pid1 || to != EVERYONE, "kill(-1) outside a namespace");
                    if k.app.is_none() && !k.forwarded_stop {
                        let t0 = k.t0.expect("stop forwarded before any stop");
                        let reserve_point =
                            policy.grace.zip(policy.reserve()).map(|(g, r)| t0 + g - r);
                        let min = match policy.drain() {
                            DrainSpec::Fixed(d) => d,
                            DrainSpec::Range { min, .. } => min,
                        };
                        prop_assert!(
                            now >= t0 + min
                                || k.stops >= 2
                                || reserve_point.is_some_and(|p| now >= p),
                            "stop forwarded at {:?}, before the drain's {:?}, with one stop",
                            now - t0,
                            min
                        );
                        k.forwarded_stop = true;
                    }
                }
                Action::Send {
                    signal: KILL,
                    to: Target::Group(pid),
                } if pid == HOOK || pid == LAST => {
                    k.running.retain(|&p| p != pid);
                }
                Action::Send { signal: KILL, to } => {
                    prop_assert!(pid1 || to != EVERYONE, "kill(-1) outside a namespace");
                    // What a finished post-stop hook leaves goes at once: nothing outlives it.
                    let post_stop_over =
                        k.started.contains(&POST_STOP) && !k.running.contains(&LAST);
                    match (policy.grace, k.t0) {
                        _ if post_stop_over => {}
                        (Some(g), Some(t0)) => {
                            prop_assert!(now >= t0 + g, "SIGKILL before the deadline")
                        }
                        _ => prop_assert!(
                            k.app.is_some(),
                            "SIGKILL while the app lives, without a grace period"
                        ),
                    }
                    k.killed_while_alive |= k.app.is_none();
                    match to {
                        EVERYONE => k.running.clear(),
                        Target::Process(p) | Target::Group(p) => k.running.retain(|&h| h != p),
                    }
                }
                Action::StartHook(kind, _) => {
                    prop_assert!(policy.hook(kind).is_some() && !k.started.contains(&kind));
                    k.started.push(kind);
                    k.running.push(match kind {
                        PRE_STOP => HOOK,
                        POST_START => POST,
                        POST_STOP => LAST,
                    });
                }
                Action::Exit(ending) => {
                    let status = k.app.expect("exit before the app was reaped");
                    let want = if k.start_failed {
                        124
                    } else if k.killed_while_alive && status == KILLED {
                        137
                    } else if policy.remap_exit.contains(&status.code()) {
                        0
                    } else {
                        status.code()
                    };
                    prop_assert_eq!(ending.code, want);
                    prop_assert!(
                        k.running.iter().all(|p| *p == POST),
                        "hooks {:?} outlive the exit",
                        k.running
                    );
                    k.exited_with = Some(ending.code);
                }
                _ => {}
            }
        }
        Ok(())
    }
}
