//! The conformance suite: the reactor contract (`torsion::reactor`), as test bodies written
//! once against the reactor traits and run on every backend.
//!
//! Each body takes an [`Env`]: two reactors (a server side and a client side; on the real
//! reactor both are the same loop over loopback) and a way to run until a condition holds.
//! The `conformance!` macro instantiates each body per backend: today the simulator, over
//! many seeds each (hostile schedules: fragmentation, latency, reordering of independent
//! events), and the real `mio` reactor over 127.0.0.1.

mod bodies;
mod env;

use env::{MioEnv, SimEnv};

/// Runs a body on the simulator over 50 seeds (each seed a different schedule), and on the
/// real reactor.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sim {
            $(
                #[test]
                fn $name() {
                    for seed in 0..50 {
                        let env = super::SimEnv::new(seed);
                        super::bodies::$name(&env);
                        env.finish(stringify!($name));
                    }
                }
            )*
        }
        mod mio {
            $(
                #[test]
                fn $name() {
                    let env = super::MioEnv::new();
                    super::bodies::$name(&env);
                }
            )*
        }
    };
}

conformance!(
    timers_run_in_deadline_then_fifo_order,
    call_soon_runs_after_the_current_call,
    cancelled_and_reset_calls,
    connect_accept_and_echo,
    connect_to_closed_port_is_refused,
    data_integrity_under_fragmentation,
    close_after_pending_data,
    abort_drops_pending_data_and_reports_aborted,
    half_close,
    half_close_both_directions,
    producer_pause_and_resume_under_backpressure,
    connection_scoped_timer_is_cancelled_on_loss,
    factory_start_and_stop_are_counted,
    stop_listening_refuses_new_connections,
    shutdown_triggers_and_stop,
    stop_before_run_returns_after_startup,
    panicking_protocol_loses_only_its_connection,
    defer_to_thread_fires_on_the_reactor,
    call_from_thread_runs_on_the_reactor,
    reconnecting_client_factory_retry_timing,
    connections_are_freed_after_connection_lost,
    read_backpressure_holds_a_peer_that_does_not_read,
);
