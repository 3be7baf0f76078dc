//! The loop between the state machine and a world, written once: the real world (`driver.rs`) and the tests' in-memory one run this very code.
//!
//! One turn: wait for the next event ([`World::next`]), hand it to the
//! machine, then carry out every action it decided, in order
//! ([`World::perform`]). A question's answer (a hook started, a census, a
//! look at the traffic) is the next event handled, before anything else is
//! waited for — so no action ever runs between an event and the ones its
//! handling decided, and the machine is never re-entered from inside an
//! action.

use alloc::collections::VecDeque;

use crate::machine::{Action, Ending, Event, Machine, Time};

/// The system-facing side: the clock, waiting, and carrying out actions.
pub trait World {
    /// The monotonic clock.
    fn now(&mut self) -> Time;

    /// Waits for the next event: a signal, a reaped child, or — at `until`,
    /// when the machine has a timer — [`Event::Timer`].
    fn next(&mut self, until: Option<Time>) -> Result<Event, Blind>;

    /// Carries out one action (never [`Action::Exit`]); a question's answer
    /// comes back as the event to handle next.
    fn perform(&mut self, action: Action) -> Option<Event>;
}

/// The world can no longer see what happens (it said why in the log):
/// usher must exit (`codes::USHER`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Blind;

/// A machine and the world it acts on.
pub struct EventLoop<W> {
    pub machine: Machine,
    pub world: W,
    /// Answers to questions, handled before anything is waited for.
    answers: VecDeque<Event>,
}

impl<W: World> EventLoop<W> {
    pub fn new(machine: Machine, world: W) -> EventLoop<W> {
        EventLoop {
            machine,
            world,
            answers: VecDeque::with_capacity(4),
        }
    }

    /// Carries out what the machine decided before any event (starting the
    /// post-start hook, a start-up warning), and what that leads to.
    pub fn begin(&mut self) -> Option<Ending> {
        self.carry_out().or_else(|| self.answer())
    }

    /// Handles `event` and everything it leads to; `Some` once the machine
    /// exits.
    pub fn settle(&mut self, event: Event) -> Option<Ending> {
        self.handle(event).or_else(|| self.answer())
    }

    /// Handles the answers to questions, in order, and what they lead to.
    fn answer(&mut self) -> Option<Ending> {
        while let Some(event) = self.answers.pop_front() {
            if let Some(ending) = self.handle(event) {
                return Some(ending);
            }
        }
        None
    }

    fn handle(&mut self, event: Event) -> Option<Ending> {
        let now = self.world.now();
        self.machine.handle(event, now);
        self.carry_out()
    }

    /// Waits for one event and settles it.
    pub fn turn(&mut self) -> Result<Option<Ending>, Blind> {
        let event = self.world.next(self.machine.poll_timeout())?;
        Ok(self.settle(event))
    }

    /// Turns until the machine exits.
    pub fn run(&mut self) -> Result<Ending, Blind> {
        if let Some(ending) = self.begin() {
            return Ok(ending);
        }
        loop {
            if let Some(ending) = self.turn()? {
                return Ok(ending);
            }
        }
    }

    /// Every action queued, in order; answers wait in `answers`.
    fn carry_out(&mut self) -> Option<Ending> {
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::Exit(ending) => return Some(*ending),
                action => {
                    if let Some(answer) = self.world.perform(action) {
                        self.answers.push_back(answer);
                    }
                }
            }
        }
        None
    }
}
