//! Helpers for the Deferred tests.

use std::cell::RefCell;
use std::rc::Rc;

use crate::defer::{set_unhandled_error_hook, Failure, UnhandledErrorHook};

/// A shared log of strings.
pub type Log = Rc<RefCell<Vec<String>>>;

pub fn log() -> Log {
    Rc::default()
}

pub fn push(log: &Log, s: impl Into<String>) {
    log.borrow_mut().push(s.into());
}

/// Captures unhandled failures while alive; restores the previous hook on drop.
pub struct Unhandled {
    pub seen: Log,
    previous: Option<Option<UnhandledErrorHook>>,
}

impl Unhandled {
    pub fn capture() -> Self {
        let seen = log();
        let s = seen.clone();
        let previous =
            set_unhandled_error_hook(Some(Rc::new(move |f: &Failure| push(&s, f.to_string()))));
        Unhandled {
            seen,
            previous: Some(previous),
        }
    }

    pub fn count(&self) -> usize {
        self.seen.borrow().len()
    }
}

impl Drop for Unhandled {
    fn drop(&mut self) {
        if let Some(p) = self.previous.take() {
            set_unhandled_error_hook(p);
        }
    }
}
