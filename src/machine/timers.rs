//! The machine's named timers, handed back in time order.

use super::Time;

/// The machine's timers, each with its own meaning. When several are due at
/// the same moment they are handled in this order: evidence first, then the
/// stop signal, and SIGKILL last, so the app is always asked before it is
/// killed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Timer {
    /// The next look at the app's traffic (an adaptive drain).
    Sample,
    /// The stop signal is held until then (`--drain`; an adaptive drain's MAX).
    Drain,
    /// The stop signal goes out now, even if the drain or the pre-stop hook
    /// is not over (the stop reserve before the deadline).
    Reserve,
    /// Everything left is SIGKILLed (`--grace-period`); in the post-stop
    /// phase, the post-stop hook is cut short.
    Deadline,
}

impl Timer {
    pub const ALL: [Timer; 4] = [Timer::Sample, Timer::Drain, Timer::Reserve, Timer::Deadline];
}

/// At most one time per timer.
#[derive(Clone, Copy, Default, Debug)]
pub struct Timers([Option<Time>; Timer::ALL.len()]);

impl Timers {
    pub fn set(&mut self, timer: Timer, at: Time) {
        self.0[timer as usize] = Some(at);
    }

    pub fn clear(&mut self, timer: Timer) {
        self.0[timer as usize] = None;
    }

    pub fn get(&self, timer: Timer) -> Option<Time> {
        self.0[timer as usize]
    }

    /// The earliest time any timer is set for.
    pub fn next(&self) -> Option<Time> {
        self.0.iter().flatten().min().copied()
    }

    /// Clears and returns the earliest timer due at `now` (ties in
    /// [`Timer::ALL`] order), with the time it was due.
    pub fn take_due(&mut self, now: Time) -> Option<(Timer, Time)> {
        let due = Timer::ALL
            .into_iter()
            .filter_map(|t| Some((t, self.get(t)?)))
            .filter(|(_, at)| *at <= now)
            .min_by_key(|(t, at)| (*at, *t as usize))?;
        self.clear(due.0);
        Some(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn due_timers_come_earliest_first_and_ties_ask_before_killing() {
        let s = Duration::from_secs;
        let mut t = Timers::default();
        t.set(Timer::Deadline, s(5));
        t.set(Timer::Reserve, s(3));
        t.set(Timer::Drain, s(4));
        assert_eq!(t.take_due(s(2)), None);
        assert_eq!(t.take_due(s(9)), Some((Timer::Reserve, s(3))));
        assert_eq!(t.take_due(s(9)), Some((Timer::Drain, s(4))));
        assert_eq!(t.take_due(s(9)), Some((Timer::Deadline, s(5))));
        assert_eq!(t.take_due(s(9)), None);
        t.set(Timer::Deadline, s(5));
        t.set(Timer::Reserve, s(5));
        assert_eq!(t.take_due(s(5)).map(|d| d.0), Some(Timer::Reserve));
        assert_eq!(t.next(), Some(s(5)));
    }
}
