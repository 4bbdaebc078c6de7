//! Turns the samples into the markdown tables: medians per variant and
//! workload, the fraction of the same framework's no-session ceiling, the
//! targets, and our ratios to each peer.

use std::fmt::Write;

use crate::driver::{Sample, Workload};
use crate::servers::Variant;

/// The middle value, or the mean of the two middle ones; `None` for none.
pub fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    let m = xs.len() / 2;
    Some(if xs.len() % 2 == 1 {
        xs[m]
    } else {
        (xs[m - 1] + xs[m]) / 2.0
    })
}

/// Medians over rounds of one variant and workload.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub rps: f64,
    pub p99_us: f64,
    pub cpu_us_per_req: f64,
    pub user_cpu_us_per_req: f64,
    pub cpu_util: f64,
    pub redis_cmds_per_req: Option<f64>,
    pub redis_round_trips_per_req: Option<f64>,
    pub redis_cpu_us_per_req: Option<f64>,
    pub steal: Option<f64>,
    pub client_sleeps_per_req: Option<f64>,
    pub errors: u64,
}

pub fn summarize(samples: &[Sample], variant: Variant, workload: Workload) -> Option<Summary> {
    let mine: Vec<&Sample> = cell_samples(samples, variant, workload).collect();
    let med = |f: &dyn Fn(&Sample) -> f64| median(mine.iter().map(|s| f(s)).collect());
    let med_opt =
        |f: &dyn Fn(&Sample) -> Option<f64>| median(mine.iter().filter_map(|s| f(s)).collect());
    Some(Summary {
        rps: med(&|s| s.rps)?,
        p99_us: med(&|s| s.p99_us)?,
        cpu_us_per_req: med(&|s| s.cpu_us_per_req)?,
        user_cpu_us_per_req: med(&|s| s.user_cpu_us_per_req)?,
        cpu_util: med(&|s| s.cpu_util)?,
        redis_cmds_per_req: med_opt(&|s| s.redis_cmds_per_req),
        redis_round_trips_per_req: med_opt(&|s| s.redis_round_trips_per_req),
        redis_cpu_us_per_req: med_opt(&|s| s.redis_cpu_us_per_req),
        steal: med_opt(&|s| s.steal),
        client_sleeps_per_req: med_opt(&|s| s.client_sleeps_per_req),
        errors: mine.iter().map(|s| s.errors).sum(),
    })
}

/// The fraction of the ceiling each sessionkit store must reach (issue 9).
fn target(variant: Variant, workload: Workload) -> Option<f64> {
    let (read, write, new) = match variant {
        Variant::SessionkitMemory | Variant::SessionkitActixMemory => (0.92, 0.85, 0.80),
        Variant::SessionkitRedis
        | Variant::SessionkitActixRedis
        | Variant::SessionkitActixRedisPerWorker => (0.75, 0.60, 0.65),
        Variant::SessionkitCookie
        | Variant::SessionkitCookieCached
        | Variant::SessionkitCookieAes
        | Variant::SessionkitActixCookie => (0.90, 0.75, 0.85),
        // Only reads with a warm cache have a target.
        Variant::SessionkitCluster
        | Variant::SessionkitActixCluster
        | Variant::SessionkitActixClusterPerWorker => {
            return (workload == Workload::Read).then_some(0.90)
        }
        _ => return None,
    };
    Some(match workload {
        Workload::Read => read,
        Workload::Write => write,
        Workload::New => new,
    })
}

/// Pairs compared in the ratio table: (ours, peer).
const PAIRS: &[(Variant, Variant)] = &[
    (Variant::SessionkitMemory, Variant::TowerSessionsMemory),
    (Variant::SessionkitRedis, Variant::TowerSessionsRedis),
    (Variant::SessionkitRedis, Variant::ActixRedis),
    (Variant::SessionkitActixRedis, Variant::ActixRedis),
    (Variant::SessionkitActixRedisPerWorker, Variant::ActixRedis),
    (Variant::SessionkitCookie, Variant::ActixCookie),
    (Variant::SessionkitCookieCached, Variant::ActixCookie),
    // Like for like: the `cookie` crate's private jar seals with AES-256-GCM.
    (Variant::SessionkitCookieAes, Variant::ActixCookie),
    (Variant::SessionkitActixCookie, Variant::ActixCookie),
];

/// The samples of one variant and workload, one per round.
fn cell_samples(samples: &[Sample], v: Variant, w: Workload) -> impl Iterator<Item = &Sample> {
    samples
        .iter()
        .filter(move |s| s.variant == v && s.workload == w)
}

/// The lowest and highest paired CPU fraction over rounds: how far one
/// cell moved while the code did not.
fn cpu_fraction_range(samples: &[Sample], v: Variant, w: Workload) -> Option<(f64, f64)> {
    cell_samples(samples, v, w)
        .filter_map(Sample::cpu_fraction)
        .fold(None, |acc, f| match acc {
            None => Some((f, f)),
            Some((lo, hi)) => Some((f64::min(lo, f), f64::max(hi, f))),
        })
}

/// How many rounds reached `target` by CPU, of how many were measured.
fn rounds_at_target(samples: &[Sample], v: Variant, w: Workload, target: f64) -> (usize, usize) {
    cell_samples(samples, v, w)
        .filter_map(Sample::cpu_fraction)
        .fold((0, 0), |(met, all), f| {
            (met + usize::from(f >= target), all + 1)
        })
}

/// The target cell: judged on both medians (met, missed, or met on one
/// only), and, when the rounds by CPU disagree among themselves, how many
/// reached the target: a median a round or two decide is within the host's
/// noise, and the table says so instead of printing a bare verdict.
fn verdict(target: f64, rps: Option<f64>, cpu: Option<f64>, (met, all): (usize, usize)) -> String {
    let (Some(f), Some(c)) = (rps, cpu) else {
        return format!("≥ {target:.2}");
    };
    let word = match (f >= target, c >= target) {
        (true, true) => "met",
        (false, false) => "**missed**",
        (true, false) => "met by req/s, missed by CPU",
        (false, true) => "missed by req/s, met by CPU",
    };
    if met == 0 || met == all {
        format!("≥ {target:.2} {word}")
    } else {
        format!("≥ {target:.2} {word} ({met} of {all} rounds by CPU)")
    }
}

/// req/s as a fraction of the same framework's ceiling: the median over
/// rounds of each sample against the ceiling measured beside it.
fn fraction(samples: &[Sample], v: Variant, w: Workload) -> Option<f64> {
    median(
        cell_samples(samples, v, w)
            .filter_map(Sample::rps_fraction)
            .collect(),
    )
}

/// The same fraction from server CPU per request (ceiling µs ÷ variant µs,
/// paired the same way): the throughput the variant would reach on a core
/// of its own, relative to the ceiling. Steadier than req/s while other
/// processes share the cores.
fn cpu_fraction(samples: &[Sample], v: Variant, w: Workload) -> Option<f64> {
    median(
        cell_samples(samples, v, w)
            .filter_map(Sample::cpu_fraction)
            .collect(),
    )
}

/// [`cpu_fraction`] with the CPU Redis spent on the variant's requests
/// added to the server's.
fn cpu_fraction_with_redis(samples: &[Sample], v: Variant, w: Workload) -> Option<f64> {
    median(
        cell_samples(samples, v, w)
            .filter_map(Sample::cpu_fraction_with_redis)
            .collect(),
    )
}

pub fn markdown(samples: &[Sample], variants: &[Variant]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| variant | workload | req/s | × ceiling | target | p99 ms | server CPU µs/req | of it user | × ceiling by CPU (lowest–highest round) | server CPU use | Redis round trips/req | Redis cmds run/req | Redis CPU µs/req | host steal | wrk sleeps/req |"
    );
    let _ = writeln!(
        out,
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for &v in variants {
        for &w in Workload::ALL {
            let Some(s) = summarize(samples, v, w) else {
                continue;
            };
            let frac = fraction(samples, v, w);
            let cpu_frac = cpu_fraction(samples, v, w);
            let cell = |f: Option<f64>| match (v.is_ceiling(), f) {
                (true, _) => "1 (ceiling)".to_owned(),
                (false, Some(f)) => format!("{f:.2}"),
                (false, None) => "–".to_owned(),
            };
            let target_cell = match target(v, w) {
                // Lost sessions or writes answer fast: such a figure says
                // nothing about the target.
                Some(t) if s.errors > 0 => {
                    format!("≥ {t:.2} **not judged: {} errors**", s.errors)
                }
                Some(t) => verdict(t, frac, cpu_frac, rounds_at_target(samples, v, w, t)),
                None => String::new(),
            };
            let opt = |x: Option<f64>, prec: usize| {
                x.map(|x| format!("{x:.prec$}"))
                    .unwrap_or_else(|| "–".into())
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {} | {} | {:.2} | {:.1} | {:.2} | {} | {:.0}% | {} | {} | {} | {} | {} |{}",
                v.name(),
                w.name(),
                s.rps,
                cell(frac),
                target_cell,
                s.p99_us / 1000.0,
                s.cpu_us_per_req,
                s.user_cpu_us_per_req,
                match (cell(cpu_frac), cpu_fraction_range(samples, v, w)) {
                    (c, Some((lo, hi))) if hi > lo => format!("{c} ({lo:.2}–{hi:.2})"),
                    (c, _) => c,
                },
                s.cpu_util * 100.0,
                opt(s.redis_round_trips_per_req, 2),
                opt(s.redis_cmds_per_req, 2),
                opt(s.redis_cpu_us_per_req, 1),
                s.steal
                    .map(|st| format!("{:.0}%", st * 100.0))
                    .unwrap_or_else(|| "–".into()),
                opt(s.client_sleeps_per_req, 3),
                if s.errors > 0 {
                    format!(" {} errors", s.errors)
                } else {
                    String::new()
                }
            );
        }
    }
    let pairs: Vec<_> = PAIRS
        .iter()
        .filter(|(a, b)| variants.contains(a) && variants.contains(b))
        .collect();
    if !pairs.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "The paired CPU columns are the ones to quote: each side's share of its own \
             framework's ceiling measured beside it; for Redis pairs, the last one also counts \
             the CPU Redis spent on each side's requests (a script moves work into Redis). The \
             CPU/req ratio divides medians of windows taken minutes apart. A pair marked \
             \"axum vs actix-web\" compares shares of two different ceilings (the frameworks' \
             floors differ): quote the same-framework pair beside it."
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| ours vs peer | workload | req/s ratio | × ceiling ratio | CPU/req ratio (peer ÷ ours, unpaired) | × ceiling by CPU ratio (paired) | same, server + Redis CPU |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|");
        for &&(ours, peer) in &pairs {
            for &w in Workload::ALL {
                let (Some(a), Some(b)) = (summarize(samples, ours, w), summarize(samples, peer, w))
                else {
                    continue;
                };
                let frac_ratio = fraction(samples, ours, w)
                    .zip(fraction(samples, peer, w))
                    .map(|(x, y)| format!("{:.2}", x / y))
                    .unwrap_or_else(|| "–".into());
                let cpu_frac_ratio = cpu_fraction(samples, ours, w)
                    .zip(cpu_fraction(samples, peer, w))
                    .map(|(x, y)| format!("{:.2}", x / y))
                    .unwrap_or_else(|| "–".into());
                let with_redis = if ours.uses_redis() && peer.uses_redis() {
                    cpu_fraction_with_redis(samples, ours, w)
                        .zip(cpu_fraction_with_redis(samples, peer, w))
                        .map(|(x, y)| format!("{:.2}", x / y))
                        .unwrap_or_else(|| "–".into())
                } else {
                    "–".into()
                };
                let across = if ours.framework() == peer.framework() {
                    ""
                } else {
                    " (axum vs actix-web)"
                };
                // A side that answered errors may have answered them fast:
                // its ratio is not to be quoted.
                let errors = match a.errors + b.errors {
                    0 => String::new(),
                    n => format!(" **not comparable: {n} errors**"),
                };
                let _ = writeln!(
                    out,
                    "| {} vs {}{}{} | {} | {:.2} | {} | {:.2} | {} | {} |",
                    ours.name(),
                    peer.name(),
                    across,
                    errors,
                    w.name(),
                    a.rps / b.rps,
                    frac_ratio,
                    b.cpu_us_per_req / a.cpu_us_per_req,
                    cpu_frac_ratio,
                    with_redis,
                );
            }
        }
    }
    budgets(&mut out, samples, variants);
    out
}

/// A target as server CPU over the floor, in µs per request: what the
/// target allows a request to spend on top of what a layer doing no session
/// work spends, against what the variant spends. With `C` the ceiling's CPU
/// per request, `f` the floor's fraction, `v` the variant's and `t` the
/// target: allowed `C·(1/t − 1/f)`, spent `C·(1/v − 1/f)`. Negative allowed:
/// the target is above the floor, out of reach of any layer of this shape.
pub fn budget(ceiling_cpu: f64, floor: f64, variant: f64, target: f64) -> (f64, f64) {
    (
        ceiling_cpu * (1.0 / target - 1.0 / floor),
        ceiling_cpu * (1.0 / variant - 1.0 / floor),
    )
}

/// The last column of the budget table: how what a variant spends over the
/// floor compares with what its target allows.
fn budget_verdict(allowed: f64, spent: f64) -> String {
    if allowed <= 0.0 {
        "out of reach: the floor itself is below the target".to_owned()
    } else if spent <= 0.0 {
        // A ratio would read "-0.0×": the variant measured at or under the
        // floor, which happens on a noisy host.
        "spends no more than the floor: within the target".to_owned()
    } else {
        format!("spends {:.1}× what the target allows", spent / allowed)
    }
}

/// The targets as CPU budgets over the floor, for every variant with a
/// target whose framework's floor ran too.
fn budgets(out: &mut String, samples: &[Sample], variants: &[Variant]) {
    let mut rows = Vec::new();
    for &v in variants {
        if !variants.contains(&v.floor()) {
            continue;
        }
        for &w in Workload::ALL {
            let (Some(t), Some(c), Some(f), Some(x)) = (
                target(v, w),
                summarize(samples, v.ceiling(), w).map(|s| s.cpu_us_per_req),
                cpu_fraction(samples, v.floor(), w),
                cpu_fraction(samples, v, w),
            ) else {
                continue;
            };
            let (allowed, spent) = budget(c, f, x, t);
            let verdict = budget_verdict(allowed, spent);
            rows.push(format!(
                "| {} | {} | {t:.2} | {f:.2} | {x:.2} | {allowed:.2} | {spent:.2} | {verdict} |",
                v.name(),
                w.name(),
            ));
        }
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| variant | workload | target | floor (× ceiling by CPU) | ours | allowed over the floor (µs/req) | spent over the floor (µs/req) | |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---|");
    for row in rows {
        let _ = writeln!(out, "{row}");
    }
}

#[cfg(test)]
mod tests {
    use super::{
        budget, budget_verdict, cpu_fraction, cpu_fraction_range, fraction, markdown, median,
        rounds_at_target, verdict,
    };
    use crate::driver::{Sample, Workload};
    use crate::servers::Variant;

    fn sample(variant: Variant, rps: f64, cpu: f64, ceiling: Option<(f64, f64)>) -> Sample {
        Sample {
            variant,
            workload: Workload::Read,
            rps,
            p99_us: 1000.0,
            cpu_us_per_req: cpu,
            user_cpu_us_per_req: cpu / 4.0,
            cpu_util: 1.0,
            redis_cmds_per_req: None,
            redis_round_trips_per_req: None,
            redis_cpu_us_per_req: None,
            paired_ceiling: ceiling,
            steal: None,
            client_sleeps_per_req: None,
            errors: 0,
            requests: 0,
            windows: 0,
        }
    }

    #[test]
    fn fractions_pair_each_sample_with_the_ceiling_measured_beside_it() {
        // The host ran at full speed, then at half, then at full: each
        // variant sample is half the ceiling beside it, whatever the speed.
        let v = Variant::SessionkitMemory;
        let samples = vec![
            sample(v, 50.0, 20.0, Some((100.0, 10.0))),
            sample(v, 25.0, 40.0, Some((50.0, 20.0))),
            sample(v, 50.0, 20.0, Some((100.0, 10.0))),
        ];
        assert_eq!(fraction(&samples, v, Workload::Read), Some(0.5));
        assert_eq!(cpu_fraction(&samples, v, Workload::Read), Some(0.5));
        assert_eq!(
            cpu_fraction_range(&samples, v, Workload::Read),
            Some((0.5, 0.5))
        );
        // One round on a quiet host: the median holds, the range shows it.
        let mut noisy = samples.clone();
        noisy.push(sample(v, 100.0, 10.0, Some((100.0, 10.0))));
        assert_eq!(cpu_fraction(&noisy, v, Workload::Read), Some(0.5));
        assert_eq!(
            cpu_fraction_range(&noisy, v, Workload::Read),
            Some((0.5, 1.0))
        );
        // Ceilings carry no pair, so they have no fraction of their own.
        let c = vec![sample(Variant::NoneAxum, 100.0, 10.0, None)];
        assert_eq!(fraction(&c, Variant::NoneAxum, Workload::Read), None);
    }

    #[test]
    fn targets_become_cpu_budgets_over_the_floor() {
        // Ceiling 5 µs; floor at 0.9 (5.56 µs); ours at 0.5 (10 µs).
        let (allowed, spent) = budget(5.0, 0.9, 0.5, 0.8);
        assert!((allowed - 5.0 * (1.25 - 1.0 / 0.9)).abs() < 1e-9);
        assert!((spent - (10.0 - 5.0 / 0.9)).abs() < 1e-9);
        // A target above the floor leaves a negative budget.
        assert!(budget(5.0, 0.9, 0.5, 0.95).0 < 0.0);

        // The table appears when the floor ran, with both figures.
        let (ceiling, floor, ours) = (
            Variant::NoneAxum,
            Variant::FloorAxum,
            Variant::SessionkitMemory,
        );
        let samples = vec![
            sample(ceiling, 100.0, 5.0, None),
            sample(floor, 90.0, 5.0 / 0.9, Some((100.0, 5.0))),
            sample(ours, 50.0, 10.0, Some((100.0, 5.0))),
        ];
        let table = markdown(&samples, &[ceiling, floor, ours]);
        assert!(
            table.contains(
                "| sessionkit-memory | read | 0.92 | 0.90 | 0.50 | -0.12 | 4.44 | out of reach"
            ),
            "{table}"
        );
        // Without the floor, no budget table.
        let without = markdown(
            &samples[..1]
                .iter()
                .chain(&samples[2..])
                .cloned()
                .collect::<Vec<_>>(),
            &[ceiling, ours],
        );
        assert!(!without.contains("allowed over the floor"), "{without}");
    }

    #[test]
    fn a_pair_with_errors_on_either_side_is_not_comparable_and_frameworks_are_named() {
        let axum = sample(Variant::NoneAxum, 100.0, 10.0, None);
        let actix = sample(Variant::NoneActix, 100.0, 10.0, None);
        let ours = sample(Variant::SessionkitCookie, 80.0, 12.5, Some((100.0, 10.0)));
        let mut peer = sample(Variant::ActixCookie, 70.0, 14.0, Some((100.0, 10.0)));
        peer.errors = 3;
        let table = markdown(
            &[axum, actix, ours, peer],
            &[
                Variant::NoneAxum,
                Variant::NoneActix,
                Variant::SessionkitCookie,
                Variant::ActixCookie,
            ],
        );
        assert!(
            table.contains("(axum vs actix-web) **not comparable: 3 errors**"),
            "{table}"
        );
    }

    #[test]
    fn a_variant_with_errors_is_not_judged_against_its_target() {
        let ceiling = sample(Variant::NoneAxum, 100.0, 10.0, None);
        let mut ours = sample(Variant::SessionkitMemory, 99.0, 10.1, Some((100.0, 10.0)));
        ours.errors = 7;
        let table = markdown(
            &[ceiling, ours],
            &[Variant::NoneAxum, Variant::SessionkitMemory],
        );
        assert!(table.contains("≥ 0.92 **not judged: 7 errors**"), "{table}");
        assert!(!table.contains(" met"), "{table}");
    }

    #[test]
    fn a_verdict_says_how_many_rounds_reached_a_target_they_disagree_on() {
        assert_eq!(verdict(0.85, Some(0.9), Some(0.9), (3, 3)), "≥ 0.85 met");
        assert_eq!(
            verdict(0.85, Some(0.8), Some(0.8), (0, 3)),
            "≥ 0.85 **missed**"
        );
        assert_eq!(
            verdict(0.85, Some(0.86), Some(0.84), (2, 5)),
            "≥ 0.85 met by req/s, missed by CPU (2 of 5 rounds by CPU)"
        );
        assert_eq!(verdict(0.85, None, Some(0.9), (1, 1)), "≥ 0.85");
        let samples: Vec<Sample> = [0.80, 0.86, 0.90]
            .iter()
            .map(|&f| {
                sample(
                    Variant::SessionkitMemory,
                    100.0,
                    10.0 / f,
                    Some((100.0, 10.0)),
                )
            })
            .collect();
        assert_eq!(
            rounds_at_target(&samples, Variant::SessionkitMemory, Workload::Read, 0.85),
            (2, 3)
        );
    }

    #[test]
    fn median_takes_the_middle_or_the_mean_of_the_two_middles() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn a_variant_at_or_under_its_floor_reads_as_within_the_target() {
        assert_eq!(
            budget_verdict(0.33, -0.004),
            "spends no more than the floor: within the target"
        );
        assert_eq!(
            budget_verdict(0.33, 0.0),
            "spends no more than the floor: within the target"
        );
        assert_eq!(
            budget_verdict(1.0, 2.25),
            "spends 2.2× what the target allows"
        );
        assert!(budget_verdict(-0.1, 3.0).starts_with("out of reach"));
    }
}
