//! `Failure`: the error half of a Deferred's result.
//!
//! Twisted's `Failure` wraps an exception with its traceback. torsion's wraps any
//! `std::error::Error + 'static` behind an `Rc`, so cloning one (which every errback that
//! passes a failure on does) costs a reference-count bump. It answers the questions an
//! errback asks: *what is it?* ([`Failure::is`], [`Failure::downcast_ref`]), *is it one of
//! the errors I handle?* ([`Failure::trap`], [`Failure::check`]) and *why?* ([`Failure::causes`],
//! and `Display`, which prints the whole cause chain).
//!
//! `Failure` deliberately does not implement `std::error::Error` itself, so that every error
//! type converts into it with `?` (as `anyhow::Error` does). Layer: engine core; no I/O.

use std::any::{Any, TypeId};
use std::error::Error;
use std::fmt;
use std::rc::Rc;

/// An error carried down a Deferred's errback chain.
///
/// ```
/// use torsion::defer::Failure;
/// use torsion::error::ConnectionDone;
///
/// let f = Failure::new(ConnectionDone);
/// assert!(f.is::<ConnectionDone>());
/// assert!(f.trap::<std::io::Error>().is_err()); // not handled here: passed on
/// assert_eq!(f.to_string(), "connection was closed cleanly");
/// ```
#[derive(Clone)]
pub struct Failure {
    inner: Rc<dyn Wrapped>,
}

impl Failure {
    /// Wraps an error.
    pub fn new<E: Error + 'static>(error: E) -> Self {
        Failure {
            inner: Rc::new(error),
        }
    }

    /// A failure whose error is only a message (Twisted's `Failure(Exception("..."))`).
    pub fn msg(message: impl Into<String>) -> Self {
        Failure::new(Message(message.into()))
    }

    /// A failure that wraps `error` with `context` as the outer message; `causes()` yields
    /// the context first, then `error` and its own causes.
    pub fn context(self, context: impl Into<String>) -> Self {
        Failure::new(Context {
            message: context.into(),
            source: self,
        })
    }

    /// Builds a failure from a caught panic payload (as `std::panic::catch_unwind` returns).
    pub fn from_panic(payload: Box<dyn Any + Send>) -> Self {
        Failure::new(crate::error::Panicked::from_payload(payload))
    }

    /// Whether the wrapped error (the outermost one, not its causes) is an `E`.
    pub fn is<E: Error + 'static>(&self) -> bool {
        self.inner.concrete_type_id() == TypeId::of::<E>()
    }

    /// The wrapped error as an `E`, if it is one.
    pub fn downcast_ref<E: Error + 'static>(&self) -> Option<&E> {
        self.inner.as_error().downcast_ref::<E>()
    }

    /// The first error in the cause chain (starting with the wrapped one) that is an `E`.
    pub fn find<E: Error + 'static>(&self) -> Option<&E> {
        self.causes().find_map(|e| e.downcast_ref::<E>())
    }

    /// Twisted's `trap`: `Ok` with the error if it is an `E`, else `Err` with this failure, so
    /// an errback can handle the errors it knows and pass the rest on with `?`. Several types
    /// chain with `or_else`:
    ///
    /// ```
    /// use torsion::defer::Failure;
    /// use torsion::error::{ConnectionDone, ConnectionLost};
    ///
    /// let f = Failure::new(ConnectionLost::new("reset by peer"));
    /// let handled = f.trap::<ConnectionDone>().map(|_| "clean")
    ///     .or_else(|f| f.trap::<ConnectionLost>().map(|_| "lost"));
    /// assert_eq!(handled.ok(), Some("lost"));
    /// ```
    pub fn trap<E: Error + 'static>(&self) -> Result<&E, Failure> {
        self.inner
            .as_error()
            .downcast_ref::<E>()
            .ok_or_else(|| self.clone())
    }

    /// Twisted's `check`: which of the given error types (by `TypeId`, from
    /// [`std::any::TypeId::of`]) the wrapped error is, if any.
    pub fn check(&self, types: &[TypeId]) -> Option<TypeId> {
        let id = self.error_type_id();
        types.iter().copied().find(|t| *t == id)
    }

    /// The `TypeId` of the wrapped error.
    pub fn error_type_id(&self) -> TypeId {
        self.inner.concrete_type_id()
    }

    /// The wrapped error.
    pub fn error(&self) -> &(dyn Error + 'static) {
        self.inner.as_error()
    }

    /// The wrapped error, then each of its `source()`s in turn.
    pub fn causes(&self) -> Causes<'_> {
        Causes {
            next: Some(self.inner.as_error()),
        }
    }

    /// Whether two failures are the same failure (one was cloned from the other).
    pub fn ptr_eq(&self, other: &Failure) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}

/// `dyn Error` cannot name its concrete type on stable Rust (`Error::type_id` is unstable),
/// so the wrapped value is stored behind this trait, which records it.
trait Wrapped {
    fn as_error(&self) -> &(dyn Error + 'static);
    fn concrete_type_id(&self) -> TypeId;
}

impl<E: Error + 'static> Wrapped for E {
    fn as_error(&self) -> &(dyn Error + 'static) {
        self
    }
    fn concrete_type_id(&self) -> TypeId {
        TypeId::of::<E>()
    }
}

/// Iterator over a failure's cause chain, outermost first.
pub struct Causes<'a> {
    next: Option<&'a (dyn Error + 'static)>,
}

impl<'a> Iterator for Causes<'a> {
    type Item = &'a (dyn Error + 'static);

    fn next(&mut self) -> Option<Self::Item> {
        let cur = self.next?;
        self.next = cur.source();
        Some(cur)
    }
}

impl fmt::Display for Failure {
    /// The error, then each cause, joined by `": "`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for cause in self.causes() {
            if !first {
                f.write_str(": ")?;
            }
            first = false;
            write!(f, "{cause}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Failure({:?})", self.inner.as_error())
    }
}

impl<E: Error + 'static> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure::new(error)
    }
}

/// A plain message as an error (what [`Failure::msg`] wraps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message(pub String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for Message {}

/// An outer message over an inner failure (what [`Failure::context`] builds).
#[derive(Debug)]
struct Context {
    message: String,
    source: Failure,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for Context {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.source.error())
    }
}
