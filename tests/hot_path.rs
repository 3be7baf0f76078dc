//! The path an init takes most, forwarding a signal, allocates nothing: the very loop usher runs, counted by a global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use usher::event_loop::{Blind, EventLoop, World};
use usher::machine::{Action, Event, Machine, Policy, Start, Time};
use usher::signals::Signal;

thread_local! {
    /// Allocations made by this thread.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's layout, as given.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: a pointer this allocator gave, with its layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// A world that only counts what it is asked to send (recording the
/// actions, as the tests' in-memory world does, would allocate itself).
struct Signals {
    next: u32,
    sent: u64,
}

impl World for Signals {
    fn now(&mut self) -> Time {
        Duration::from_secs(1)
    }

    fn next(&mut self, _: Option<Time>) -> Result<Event, Blind> {
        self.next += 1;
        let signal = [Signal::HUP, Signal::USR1][self.next as usize % 2];
        Ok(Event::Signal {
            signal,
            sender: Some(100),
        })
    }

    fn perform(&mut self, action: Action) -> Option<Event> {
        self.sent += u64::from(matches!(action, Action::Send { .. }));
        None
    }
}

#[test]
fn forwarding_a_signal_allocates_nothing() {
    let start = Start {
        app: 7,
        me: 1,
        terminal: false,
        memory: None,
    };
    // As usher runs at its default log level, where a forwarded signal's
    // debug line is not written (and so not noted).
    let policy = Policy {
        note_forwards: false,
        ..Policy::default()
    };
    let machine = Machine::new(policy, start, Duration::from_secs(1));
    let mut l = EventLoop::new(machine, Signals { next: 0, sent: 0 });
    // The first turns may size the action queue once.
    for _ in 0..100 {
        assert!(l.turn().is_ok());
    }
    let before = ALLOCATIONS.with(Cell::get);
    for _ in 0..10_000 {
        assert!(l.turn().is_ok());
    }
    let allocated = ALLOCATIONS.with(Cell::get) - before;
    assert_eq!(l.world.sent, 10_100, "every signal forwarded");
    assert_eq!(allocated, 0, "allocations while forwarding 10,000 signals");
}

#[test]
fn the_counter_counts() {
    let before = ALLOCATIONS.with(Cell::get);
    let v: Vec<u8> = Vec::with_capacity(std::hint::black_box(8));
    drop(v);
    assert_eq!(ALLOCATIONS.with(Cell::get) - before, 1);
}
