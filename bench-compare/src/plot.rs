//! Throughput by entry size: an in-process SPSC sweep of mmring (one entry at a time
//! and in batches of 32), ArrayQueue and rtrb,
//! written as a small hand-made SVG line chart (payload GB/s against entry size, both
//! axes logarithmic) and printed as a table.

use std::fmt::Write as _;
use std::path::Path;

use crate::Config;
use crate::contenders::sweep_point;

const SIZES: [usize; 6] = [8, 64, 256, 1024, 4096, 16384];
const NAMES: [&str; 4] = [
    "mmring",
    "mmring, batches of 32",
    "crossbeam ArrayQueue",
    "rtrb",
];
const COLORS: [&str; 4] = ["#d62728", "#ff7f0e", "#1f77b4", "#2ca02c"];

/// Measures every size (median over the configured rounds) and writes the chart.
pub fn sweep_and_plot(config: &Config, path: &Path) {
    let mut gbps = [[0f64; SIZES.len()]; 4];
    println!();
    println!(
        "| entry size | mmring | mmring, batches of 32 | crossbeam ArrayQueue | rtrb | mmring / ArrayQueue (one at a time / batches) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for (col, &size) in SIZES.iter().enumerate() {
        let n = config.count((200_000_000 / size.max(64)).min(2_000_000));
        let mut rounds: Vec<[f64; 4]> = Vec::new();
        for _ in 0..config.rounds {
            rounds.push(match size {
                8 => sweep_point::<8>(config, n),
                64 => sweep_point::<64>(config, n),
                256 => sweep_point::<256>(config, n),
                1024 => sweep_point::<1024>(config, n),
                4096 => sweep_point::<4096>(config, n),
                16384 => sweep_point::<16384>(config, n),
                _ => unreachable!(),
            });
        }
        for (row, series) in gbps.iter_mut().enumerate() {
            let mut ns: Vec<f64> = rounds.iter().map(|r| r[row]).collect();
            series[col] = size as f64 / crate::median(&mut ns);
        }
        println!(
            "| {size} B | {:.2} GB/s | {:.2} GB/s | {:.2} GB/s | {:.2} GB/s | {:.2}× / {:.2}× |",
            gbps[0][col],
            gbps[1][col],
            gbps[2][col],
            gbps[3][col],
            gbps[0][col] / gbps[2][col],
            gbps[1][col] / gbps[2][col]
        );
    }
    std::fs::write(path, svg(&gbps)).expect("write the plot");
}

fn svg(gbps: &[[f64; SIZES.len()]; 4]) -> String {
    let (width, height) = (720.0, 420.0);
    let (left, right, top, bottom) = (70.0, 200.0, 40.0, 60.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let max = gbps.iter().flatten().copied().fold(0.01, f64::max);
    let min = gbps
        .iter()
        .flatten()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .max(0.001);
    let (y_lo, y_hi) = (min.log10().floor(), max.log10().ceil());
    let x = |i: usize| left + plot_w * i as f64 / (SIZES.len() - 1) as f64;
    let y = |v: f64| top + plot_h * (1.0 - (v.log10() - y_lo) / (y_hi - y_lo));
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="14">In-process SPSC throughput by entry size (payload GB/s, log scale)</text>"#,
        left + plot_w / 2.0
    );
    for decade in y_lo as i32..=y_hi as i32 {
        let v = 10f64.powi(decade);
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{yy}" x2="{}" y2="{yy}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{v}</text>"##,
            left + plot_w,
            left - 6.0,
            yy + 4.0
        );
    }
    for (i, size) in SIZES.iter().enumerate() {
        let label = if *size >= 1024 {
            format!("{} KiB", size / 1024)
        } else {
            format!("{size} B")
        };
        let _ = writeln!(
            s,
            r##"<line x1="{0}" y1="{top}" x2="{0}" y2="{1}" stroke="#eee"/><text x="{0}" y="{2}" text-anchor="middle">{label}</text>"##,
            x(i),
            top + plot_h,
            top + plot_h + 18.0
        );
    }
    let _ = writeln!(
        s,
        r#"<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">entry size</text>"#,
        left + plot_w / 2.0,
        height - 15.0
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{0}" text-anchor="middle" transform="rotate(-90 18 {0})">GB/s</text>"#,
        top + plot_h / 2.0
    );
    for (row, series) in gbps.iter().enumerate() {
        let points: Vec<String> = series
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
            points.join(" "),
            COLORS[row]
        );
        for p in &points {
            let (px, py) = p.split_once(',').expect("x,y");
            let _ = writeln!(
                s,
                r#"<circle cx="{px}" cy="{py}" r="3" fill="{}"/>"#,
                COLORS[row]
            );
        }
        let ly = top + 20.0 + 20.0 * row as f64;
        let lx = left + plot_w + 15.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            lx + 20.0,
            COLORS[row],
            lx + 26.0,
            ly + 4.0,
            NAMES[row]
        );
    }
    s.push_str("</svg>\n");
    s
}
