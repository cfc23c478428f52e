//! The time-stamp counter as the clock of traced calls ([`install`]): one instruction,
//! where `Instant` goes through `clock_gettime` and its checks (on a virtual machine the
//! four readings of a traced Prepare+End pair cost more than the rest of the pair). Used
//! only where the kernel keeps its own time with the counter (its clocksource is `tsc`:
//! the counter runs at a constant rate and agrees across processors), calibrated once
//! against `Instant`, so that `elapsed_ns` stays in nanoseconds.

/// How long the calibration measures the counter against the monotonic clock.
#[cfg(target_arch = "x86_64")]
const CALIBRATION: std::time::Duration = std::time::Duration::from_millis(2);

/// The counter.
#[cfg(target_arch = "x86_64")]
fn ticks() -> u64 {
    // SAFETY: RDTSC reads the time-stamp counter; it has no operands and no preconditions
    // on x86-64 (every x86-64 processor has it, and user mode may run it unless the
    // kernel sets CR4.TSD, which Linux does not for a process that has not asked for it).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Installs the counter as the clock of traced calls if the kernel keeps time with it
/// (and a clock was not installed already). Takes [`CALIBRATION`] once.
pub(super) fn install() {
    #[cfg(target_arch = "x86_64")]
    {
        let source = "/sys/devices/system/clocksource/clocksource0/current_clocksource";
        if std::fs::read_to_string(source).is_ok_and(|s| s.trim() == "tsc") {
            if let Some(ns_per_tick) = calibrate() {
                crate::api::route::install_clock(ticks, ns_per_tick);
            }
        }
    }
}

/// Nanoseconds per tick (32.32 fixed point), measured against `Instant`.
#[cfg(target_arch = "x86_64")]
fn calibrate() -> Option<u64> {
    let (i0, t0) = (std::time::Instant::now(), ticks());
    std::thread::sleep(CALIBRATION);
    let (t1, ns) = (ticks(), i0.elapsed().as_nanos());
    let per_tick = (ns << 32) / u128::from(t1.checked_sub(t0).filter(|&d| d > 0)?);
    u64::try_from(per_tick).ok().filter(|&p| p > 0)
}

#[cfg(test)]
mod tests {
    use crate::api::route::Clock;
    use std::time::{Duration, Instant};

    #[test]
    fn the_clock_of_traced_calls_keeps_nanoseconds() {
        super::install();
        for _ in 0..3 {
            let (start, clock) = Clock::now();
            let i = Instant::now();
            std::thread::sleep(Duration::from_millis(20));
            let (ns, real) = (clock.since(start), i.elapsed().as_nanos() as u64);
            // Within 2%, on a loaded machine (the two readings of each pair are not taken
            // at the same instant).
            if ns.abs_diff(real) < real / 50 {
                return;
            }
            eprintln!("{ns} ns on the clock of traced calls, {real} ns on Instant");
        }
        panic!("the clock of traced calls and Instant disagree");
    }
}
