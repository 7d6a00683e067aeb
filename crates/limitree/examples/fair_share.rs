//! Fair sharing vs the strict hierarchy, replayed on the seed's situation
//! (issue 13): 20 categories under a global 100 per 30 min, categories of 10.
//! Ten noisy categories fire early and often; ten quiet ones fire late. The
//! strict tree lets the noisy ones take the whole global; with shares (4
//! guaranteed each, ceiling 10, pool 20) the quiet ones still get their 4.
//!
//! Deterministic (a manual clock, a fixed schedule) and bounded (one window).
//! Prints the admitted count per category side by side and draws them to an
//! SVG (default `docs/fair_share.svg`):
//!
//! ```text
//! cargo run -p limitree --example fair_share -- [OUT.svg]
//! ```

use std::sync::Arc;

use limitree::{ManualClock, MemoryStore, Mode, Policy};
use plotters::prelude::*;

const CATEGORIES: usize = 20;
/// Noisy categories send this many requests each in the first 10 minutes.
const NOISY_REQUESTS: usize = 30;
/// Quiet categories send this many each in minutes 20–29.
const QUIET_REQUESTS: usize = 6;
const MINUTE: u64 = 60_000_000;

fn policy(shares: bool) -> Policy {
    let mut text = String::from(
        "[[trees]]\nname = \"notifications\"\n\
         [[trees.levels]]\nname = \"global\"\nlimit = 100\nwindow = \"30m\"\n\
         [[trees.levels]]\nname = \"category\"\nby = [\"category\"]\nlimit = 10\nwindow = \"30m\"\n",
    );
    if shares {
        let each: Vec<String> = (0..CATEGORIES).map(|c| format!("c{c:02} = 4")).collect();
        text.push_str(&format!("shares = {{ {} }}\n", each.join(", ")));
    }
    match Policy::from_toml_str(&text, "fair_share example") {
        Ok(policy) => policy,
        Err(e) => panic!("the example's policy is invalid: {e}"),
    }
}

/// The schedule: (time, category), in time order. Noisy c00–c09 round-robin
/// over minutes 0–10, quiet c10–c19 round-robin over minutes 20–29.
fn schedule() -> Vec<(u64, usize)> {
    let mut events = Vec::new();
    let noisy = NOISY_REQUESTS * 10;
    for i in 0..noisy {
        events.push((i as u64 * 10 * MINUTE / noisy as u64, i % 10));
    }
    let quiet = QUIET_REQUESTS * 10;
    for i in 0..quiet {
        events.push((
            20 * MINUTE + i as u64 * 9 * MINUTE / quiet as u64,
            10 + i % 10,
        ));
    }
    events
}

/// Admitted requests per category under `policy`.
fn replay(policy: &Policy) -> [u64; CATEGORIES] {
    let start = 1_700_000_000_000_000;
    let clock = ManualClock::new(start);
    let store = MemoryStore::with_clock(policy, Arc::new(clock.clone()));
    let tree = &policy.trees()[0];
    let mut admitted = [0; CATEGORIES];
    for (at, category) in schedule() {
        clock.set(start + at);
        let name = format!("c{category:02}");
        let descriptors = [("category", name.as_str())];
        let chain = match tree.chain(&descriptors, 1) {
            Ok(chain) => chain,
            Err(e) => panic!("{e}"),
        };
        match store.decide_chain(&chain, Mode::Commit) {
            Ok(outcome) if outcome.allowed => admitted[category] += 1,
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    }
    admitted
}

fn draw(path: &str, strict: &[u64], shared: &[u64]) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Admitted per category: global 100/30m, categories 10/30m",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(40)
        .build_cartesian_2d(0f64..CATEGORIES as f64, 0u64..12)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(CATEGORIES)
        .x_label_formatter(&|x| format!("c{:02}", *x as usize))
        .x_desc("categories c00–c09 noisy (early), c10–c19 quiet (late)")
        .y_desc("admitted")
        .draw()?;
    let bars = |values: &[u64], offset: f64, color: RGBColor| {
        values
            .iter()
            .enumerate()
            .map(move |(i, &v)| {
                let x = i as f64 + offset;
                Rectangle::new([(x, 0), (x + 0.4, v)], color.filled())
            })
            .collect::<Vec<_>>()
    };
    let red = RGBColor(200, 70, 60);
    let blue = RGBColor(50, 110, 190);
    chart
        .draw_series(bars(strict, 0.1, red))?
        .label("strict hierarchy")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], red.filled()));
    chart
        .draw_series(bars(shared, 0.5, blue))?
        .label("shares: 4 guaranteed, ceiling 10, pool 20")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], blue.filled()));
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    root.present()?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "docs/fair_share.svg".to_owned());
    let strict = replay(&policy(false));
    let shared = replay(&policy(true));
    println!("| category | sent | strict | shares |");
    println!("|---|---|---|---|");
    for c in 0..CATEGORIES {
        let sent = if c < 10 {
            NOISY_REQUESTS
        } else {
            QUIET_REQUESTS
        };
        println!("| c{c:02} | {sent} | {} | {} |", strict[c], shared[c]);
    }
    let total = |v: &[u64]| v.iter().sum::<u64>();
    println!(
        "| total | {} | {} | {} |",
        10 * (NOISY_REQUESTS + QUIET_REQUESTS),
        total(&strict),
        total(&shared)
    );
    draw(&out, &strict, &shared)?;
    println!("drawn to {out}");
    Ok(())
}
