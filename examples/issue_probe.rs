use certadm_emu::EmulatedCa;
use std::time::Instant;
fn main() {
    let ca = EmulatedCa::builder().records(1000).build().unwrap();
    for round in 0..5 {
        let t = Instant::now();
        for _ in 0..100 {
            ca.issue(64).unwrap();
        }
        println!(
            "round {round}: {:.1} us/cert, logs {}",
            t.elapsed().as_secs_f64() * 1e6 / 6400.0,
            ca.log_generations().len()
        );
    }
}
