//! The hot path: a Prepare+End pair through the exports allocates nothing once warm, with
//! tracing off or on (the counting allocator of `prop_protocol`, which counts the bytes
//! this thread holds).

use crate::prop_protocol::peak;
use certadm_emu::abi::call::{self, WStr};
use certadm_emu::conformance::MAX_VIOLATIONS;
use certadm_emu::core::consts::CSBACKUP_TYPE_FULL;
use certadm_emu::EmulatedCa;

/// Pairs in a measured round.
const ROUND: usize = 100;

#[test]
fn a_prepare_end_pair_allocates_nothing_once_warm() {
    let ca = EmulatedCa::builder().build().unwrap();
    let server = WStr::new(ca.server_name());
    let pair = || {
        let h = call::backup_prepare(&server, 0, CSBACKUP_TYPE_FULL).unwrap();
        call::backup_end(h).unwrap();
    };
    for tracing in [false, true] {
        ca.set_tracing(tracing);
        // Warm: this thread's routes, the trace's ring (4,096 events) and the checker's
        // findings (a full backup ended without its locations is one, kept up to
        // MAX_VIOLATIONS).
        for _ in 0..MAX_VIOLATIONS + 4096 {
            pair();
        }
        // Other tests register machines meanwhile, which makes this thread route from the
        // tables once (and remember the route, which allocates): a round without one
        // allocates nothing.
        let rounds: Vec<usize> = (0..50)
            .map(|_| peak(|| (0..ROUND).for_each(|_| pair())).1)
            .take_while(|&bytes| bytes > 0)
            .collect();
        assert!(
            rounds.len() < 50,
            "tracing {tracing}: every round of {ROUND} pairs allocated (peaks {rounds:?})"
        );
    }
}
