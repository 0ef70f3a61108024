//! The report: figures per run, markdown tables (one column per mode, or
//! the spread over several runs), CSV timelines and an SVG timeline.

use std::fmt::Write;
use std::path::Path;

use plotters::prelude::*;

use crate::run::RunResult;

/// p50 / p99 / max of a set of durations (seconds), and how many.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spread {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub n: usize,
}

pub fn spread(mut xs: Vec<f64>) -> Spread {
    if xs.is_empty() {
        return Spread::default();
    }
    xs.sort_by(f64::total_cmp);
    let at = |p: f64| xs[((p * xs.len() as f64).ceil() as usize).clamp(1, xs.len()) - 1];
    Spread { p50: at(0.5), p99: at(0.99), max: xs[xs.len() - 1], n: xs.len() }
}

/// The figures of one run.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub detection: Spread,
    pub undetected: usize,
    /// A mass join: boot -> Ready in the view of every node live at the
    /// boot; and boot -> the new node holds each of those Ready.
    pub join: Spread,
    pub join_learned: Spread,
    /// Joining nodes never Ready to all their witnesses, or never holding
    /// all of them Ready.
    pub unseen_joins: usize,
    pub convergence: Spread,
    pub reschedule: Spread,
    pub unrecovered: usize,
    pub duplicate_secs: f64,
    pub orphan_secs: f64,
    /// An agent back on a host where its pods ran on -> they are all owned
    /// or gone.
    pub orphan_cleanup: Spread,
    pub unclean_returns: usize,
    /// Rolling updates: the fewest Ready replicas during one (of how many
    /// replicas), its duration, and updates that never finished.
    pub update_min_ready: Option<(usize, u32)>,
    pub update_duration: Spread,
    pub unfinished_updates: usize,
    pub missing_secs: f64,
    pub side_missing_secs: f64,
    pub agree_pct: f64,
    pub bytes_per_node_sec: f64,
    pub quiet_bytes_per_node_sec: Option<f64>,
    pub messages_per_node_sec: f64,
    pub false_deaths: usize,
    pub violations: usize,
    pub oversized: u64,
    pub max_syn_bytes: u64,
    pub wall_secs: f64,
    pub cron: crate::cron::CronFigures,
    pub cron_delay: Spread,
}

pub fn figures(r: &RunResult) -> Figures {
    let o = &r.observer;
    Figures {
        detection: spread(o.crashes.iter().filter_map(|c| c.detected).map(|d| d.as_secs_f64()).collect()),
        undetected: o.crashes.iter().filter(|c| c.detected.is_none()).count(),
        join: spread(o.joins.iter().filter_map(|j| j.seen).map(|d| d.as_secs_f64()).collect()),
        join_learned: spread(o.joins.iter().filter_map(|j| j.learned).map(|d| d.as_secs_f64()).collect()),
        unseen_joins: o.joins.iter().filter(|j| j.seen.is_none() || j.learned.is_none()).count(),
        convergence: spread(o.writes.iter().filter_map(|w| w.converged).map(|d| d.as_secs_f64()).collect()),
        reschedule: spread(o.crashes.iter().filter_map(|c| c.rescheduled).map(|d| d.as_secs_f64()).collect()),
        unrecovered: o.crashes.iter().filter(|c| c.replicas && c.rescheduled.is_none()).count(),
        duplicate_secs: o.duplicate_secs,
        orphan_secs: o.orphan_secs,
        orphan_cleanup: spread(o.returns.iter().filter_map(|r| r.clean).map(|d| d.as_secs_f64()).collect()),
        unclean_returns: o.returns.iter().filter(|r| r.clean.is_none()).count(),
        update_min_ready: o.updates.iter().map(|u| (u.min_ready, u.replicas)).min(),
        update_duration: spread(o.updates.iter().filter_map(|u| u.done).map(|d| d.as_secs_f64()).collect()),
        unfinished_updates: o.updates.iter().filter(|u| u.done.is_none()).count(),
        missing_secs: o.missing_secs,
        side_missing_secs: o.side_missing_secs,
        agree_pct: 100.0 * o.agree_secs / o.total_secs.max(1e-9),
        bytes_per_node_sec: r.bytes_per_node_sec,
        quiet_bytes_per_node_sec: r.quiet_bytes_per_node_sec,
        messages_per_node_sec: r.messages_per_node_sec,
        false_deaths: o.false_deaths,
        violations: o.violations.len(),
        oversized: r.oversized,
        max_syn_bytes: r.max_syn_bytes,
        wall_secs: r.wall.as_secs_f64(),
        cron: o.cron_figures.clone(),
        cron_delay: spread(o.cron_figures.delays.clone()),
    }
}

fn s3(s: &Spread) -> String {
    if s.n == 0 { "-".into() } else { format!("{:.2} / {:.2} / {:.2}", s.p50, s.p99, s.max) }
}

/// Rows of the table: (label, value per column).
fn rows(cols: &[Figures]) -> Vec<(&'static str, Vec<String>)> {
    let f = |g: &dyn Fn(&Figures) -> String| cols.iter().map(g).collect::<Vec<_>>();
    vec![
        ("detection: crash -> Dead on all live nodes, s (p50 / p99 / max)", f(&|x| s3(&x.detection))),
        ("crashes never detected by every node", f(&|x| x.undetected.to_string())),
        ("join: boot -> Ready on every node live at the boot, s (p50 / p99 / max)", f(&|x| s3(&x.join))),
        ("join: boot -> the new node holds each of those Ready, s (p50 / p99 / max)", f(&|x| s3(&x.join_learned))),
        (
            "joining nodes never Ready on, or never holding, every node live at the boot",
            f(&|x| x.unseen_joins.to_string()),
        ),
        ("desired-state convergence after a write, s (p50 / p99 / max)", f(&|x| s3(&x.convergence))),
        ("reschedule: crash -> every replica Ready again, s (p50 / p99 / max)", f(&|x| s3(&x.reschedule))),
        ("crashes after which replicas never all came back", f(&|x| x.unrecovered.to_string())),
        ("duplicate replica-seconds", f(&|x| format!("{:.1}", x.duplicate_secs))),
        ("orphan replica-seconds (pods of a dead agent)", f(&|x| format!("{:.1}", x.orphan_secs))),
        (
            "orphan cleanup: agent back -> host runs only what it owns, s (p50 / p99 / max)",
            f(&|x| s3(&x.orphan_cleanup)),
        ),
        (
            "rolling update: fewest Ready replicas (of)",
            f(&|x| x.update_min_ready.map_or("-".into(), |(m, n)| format!("{m} ({n})"))),
        ),
        ("rolling update: duration, s (p50 / p99 / max)", f(&|x| s3(&x.update_duration))),
        ("missing replica-seconds", f(&|x| format!("{:.1}", x.missing_secs))),
        ("partitions: replica-seconds missing on the worse side", f(&|x| format!("{:.1}", x.side_missing_secs))),
        ("time all nodes agree on placement, %", f(&|x| format!("{:.1}", x.agree_pct))),
        ("bytes sent per node per second", f(&|x| format!("{:.0}", x.bytes_per_node_sec))),
        (
            "bytes sent per node per second at rest (the last 20 s, no fault or change in the 40 s before the end)",
            f(&|x| x.quiet_bytes_per_node_sec.map_or("-".into(), |b| format!("{b:.0}"))),
        ),
        ("messages sent per node per second", f(&|x| format!("{:.1}", x.messages_per_node_sec))),
        ("largest digest message (chitchat Syn), bytes", f(&|x| x.max_syn_bytes.to_string())),
        ("gossip messages over the size limit (dropped)", f(&|x| x.oversized.to_string())),
        (
            "cron: scheduled times (run / reported missed / silently missed)",
            f(&|x| {
                let c = &x.cron;
                if c.times == 0 {
                    "-".into()
                } else {
                    format!("{} ({} / {} / {})", c.times, c.run, c.reported_missed, c.silently_missed)
                }
            }),
        ),
        ("cron: times fired by two nodes, collapsed into one Job", f(&|x| x.cron.fired_twice.to_string())),
        ("cron: times reported missed that did run (stale view)", f(&|x| x.cron.false_misses.to_string())),
        ("cron: times with two different Jobs", f(&|x| x.cron.two_jobs.to_string())),
        ("cron: trigger delay after the time, s (p50 / p99 / max)", f(&|x| s3(&x.cron_delay))),
        ("false deaths", f(&|x| x.false_deaths.to_string())),
        ("invariant violations", f(&|x| x.violations.to_string())),
        ("wall time, s", f(&|x| format!("{:.1}", x.wall_secs))),
    ]
}

/// A markdown table with one column per result (e.g. per mode).
pub fn markdown(title: &str, headers: &[String], cols: &[Figures]) -> String {
    let mut out =
        format!("### {title}\n\n| figure | {} |\n|---|{}\n", headers.join(" | "), "---|".repeat(headers.len()));
    for (label, vals) in rows(cols) {
        let _ = writeln!(out, "| {label} | {} |", vals.join(" | "));
    }
    out
}

/// The spread of each figure over several runs: min / median / max.
pub fn markdown_spread(title: &str, runs: &[Figures]) -> String {
    let mut out = format!("### {title} ({} runs, min / median / max)\n\n| figure | spread |\n|---|---|\n", runs.len());
    type Pick = (&'static str, Box<dyn Fn(&Figures) -> f64>);
    let pick: Vec<Pick> = vec![
        ("detection p50, s", Box::new(|x| x.detection.p50)),
        ("detection max, s", Box::new(|x| x.detection.max)),
        ("reschedule p50, s", Box::new(|x| x.reschedule.p50)),
        ("reschedule max, s", Box::new(|x| x.reschedule.max)),
        ("convergence max, s", Box::new(|x| x.convergence.max)),
        ("duplicate replica-seconds", Box::new(|x| x.duplicate_secs)),
        ("orphan replica-seconds", Box::new(|x| x.orphan_secs)),
        ("rolling update duration max, s", Box::new(|x| x.update_duration.max)),
        ("rolling update fewest Ready", Box::new(|x| x.update_min_ready.map_or(0.0, |(m, _)| m as f64))),
        ("missing replica-seconds", Box::new(|x| x.missing_secs)),
        ("missing on the worse side of partitions", Box::new(|x| x.side_missing_secs)),
        ("agreement, %", Box::new(|x| x.agree_pct)),
        ("bytes per node per second", Box::new(|x| x.bytes_per_node_sec)),
        ("false deaths", Box::new(|x| x.false_deaths as f64)),
        ("invariant violations", Box::new(|x| x.violations as f64)),
    ];
    for (label, g) in pick {
        let mut v: Vec<f64> = runs.iter().map(&g).collect();
        v.sort_by(f64::total_cmp);
        let _ = writeln!(out, "| {label} | {:.2} / {:.2} / {:.2} |", v[0], v[v.len() / 2], v[v.len() - 1]);
    }
    out
}

/// The timeline of a run as CSV.
pub fn csv(r: &RunResult) -> String {
    let mut out = String::from("t_secs,live_nodes,desired,running,missing,duplicates,orphans,agree\n");
    for s in &r.observer.samples {
        let _ = writeln!(
            out,
            "{:.1},{},{},{},{},{},{},{}",
            s.t,
            s.up,
            s.desired,
            s.running,
            s.missing,
            s.duplicates,
            s.orphans,
            u8::from(s.agree)
        );
    }
    out
}

/// The chart could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the chart: {0}")]
pub struct DrawError(String);

fn draw(e: impl std::fmt::Display) -> DrawError {
    DrawError(e.to_string())
}

/// An SVG timeline: missing and duplicate replicas over time, per run.
pub fn svg(path: &Path, title: &str, runs: &[(&str, &RunResult)]) -> Result<(), DrawError> {
    let root = SVGBackend::new(path, (1000, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(draw)?;
    let tmax = runs.iter().flat_map(|(_, r)| r.observer.samples.last().map(|s| s.t)).fold(1.0, f64::max);
    let ymax = runs
        .iter()
        .flat_map(|(_, r)| r.observer.samples.iter().map(|s| s.missing.max(s.duplicates)))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..tmax, 0.0..ymax * 1.1)
        .map_err(draw)?;
    chart.configure_mesh().x_desc("virtual time, s").y_desc("replicas").draw().map_err(draw)?;
    let colors = [RED, BLUE, GREEN, MAGENTA];
    for (i, (label, r)) in runs.iter().enumerate() {
        let c = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(r.observer.samples.iter().map(|s| (s.t, s.missing as f64)), c.stroke_width(2)))
            .map_err(draw)?
            .label(format!("{label}: missing"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        let c2 = c.mix(0.4);
        chart
            .draw_series(LineSeries::new(
                r.observer.samples.iter().map(|s| (s.t, s.duplicates as f64)),
                c2.stroke_width(1),
            ))
            .map_err(draw)?
            .label(format!("{label}: duplicates"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c2.stroke_width(1)));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(draw)?;
    root.present().map_err(draw)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads() {
        let s = spread(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.p50, s.p99, s.max, s.n), (2.0, 3.0, 3.0, 3));
        assert_eq!(spread(vec![]).n, 0);
    }
}
