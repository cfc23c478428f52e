//! `certadm-emu bench`: runs the figures of [`certadm_emu::bench`] and prints their
//! ratio table. `--quick` uses 64 MiB instead of 1 GiB and 256 MiB instead of 4 GiB;
//! `--figure N` (repeatable) runs only those figures.

use certadm_emu::bench::{self, Plan};

/// Runs the benchmarks and prints the table. Missed targets are reported, not errors.
pub fn run(quick: bool, figures: &[u32]) -> Result<(), String> {
    let plan = Plan::new(quick).only(figures)?;
    if cfg!(debug_assertions) {
        println!(
            "note: this is a debug build; run `cargo run --release -- bench` for real numbers"
        );
    }
    println!("{plan}");
    let table = bench::run(&plan, &mut |step| println!("{step}"))?;
    println!();
    print!("{table}");
    let (met, scored) = table.score();
    println!(
        "\n{met} of {scored} targets met (ratios against baselines measured in this run; timing is noisy on a loaded machine)"
    );
    Ok(())
}
