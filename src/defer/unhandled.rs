//! Reporting failures nobody handled.
//!
//! When the last handle to a Deferred goes away while its result is a failure, that failure
//! was never handled: Twisted logs "Unhandled error in Deferred". torsion passes it to the
//! current thread's hook. The default hook emits an `error` event through `tracing`; the real
//! reactor logs it, and the simulator installs a hook that fails the run.

use std::cell::RefCell;
use std::rc::Rc;

use crate::defer::Failure;

/// A function that receives unhandled failures.
pub type UnhandledErrorHook = Rc<dyn Fn(&Failure)>;

thread_local! {
    static HOOK: RefCell<Option<UnhandledErrorHook>> = const { RefCell::new(None) };
}

/// Installs `hook` for this thread, returning the previous one (`None`: the default).
///
/// ```
/// use std::{cell::RefCell, rc::Rc};
/// use torsion::defer::{set_unhandled_error_hook, Deferred, Failure};
///
/// let seen = Rc::new(RefCell::new(Vec::new()));
/// let s = seen.clone();
/// let previous = set_unhandled_error_hook(Some(Rc::new(move |f: &Failure| {
///     s.borrow_mut().push(f.to_string())
/// })));
/// let d = Deferred::<()>::new();
/// d.errback(Failure::msg("boom")).unwrap();
/// drop(d); // the last handle goes; nobody handled the failure
/// set_unhandled_error_hook(previous);
/// assert_eq!(*seen.borrow(), vec!["boom".to_string()]);
/// ```
pub fn set_unhandled_error_hook(hook: Option<UnhandledErrorHook>) -> Option<UnhandledErrorHook> {
    HOOK.with(|h| std::mem::replace(&mut *h.borrow_mut(), hook))
}

/// Reports `failure` through this thread's hook.
pub(crate) fn report(failure: &Failure) {
    let hook = HOOK.try_with(|h| h.borrow().clone()).ok().flatten();
    match hook {
        Some(hook) => hook(failure),
        None => tracing::error!(failure = %failure, "Unhandled error in Deferred"),
    }
}
