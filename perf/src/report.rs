//! Results of a run: the terminal summary, `result.json`, and `report.html` with two SVG plots
//! (latency by percentile, throughput over time) that any browser shows; pure formatting.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::Config;
use crate::load::{RunOutput, Sample, MB};
use crate::stats::LatencySummary;

#[derive(Clone, Debug, Serialize)]
pub struct Throughput {
    pub msgs: u64,
    /// Bytes of record values.
    pub bytes: u64,
    pub msgs_per_s: f64,
    /// Decimal megabytes (10^6 bytes) of record values per second of wall time.
    pub mb_per_s: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct LatencyReport {
    /// Produce acknowledgement, from when each record was due (coordinated-omission corrected).
    pub produce: Option<LatencySummary>,
    /// Produce acknowledgement, from when the request was sent (uncorrected service time).
    pub produce_service: Option<LatencySummary>,
    /// Consumed, from when the record was due at the producer.
    pub e2e: Option<LatencySummary>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub hostname: String,
    pub cpu_model: String,
    pub cpus_online: usize,
    pub kernel: String,
    pub memory_gib: f64,
}

impl Machine {
    pub fn detect() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split(':').nth(1))
            })
            .unwrap_or("unknown")
            .trim()
            .to_owned();
        let mem_kib: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        Machine {
            hostname: read("/proc/sys/kernel/hostname").trim().to_owned(),
            cpu_model,
            cpus_online: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            memory_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Preload {
    pub bytes: u64,
    pub seconds: f64,
}

/// Everything `result.json` holds.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub tool: &'static str,
    pub version: &'static str,
    pub label: String,
    pub finished_unix_s: u64,
    pub command: String,
    pub machine: Machine,
    pub config: Config,
    pub client_shards: usize,
    pub partitions_led_by: usize,
    /// Seconds of the measured window (after warm-up, until the stop).
    pub window_s: f64,
    pub produce: Option<Throughput>,
    pub consume: Option<Throughput>,
    pub latency_us: LatencyReport,
    pub errors: u64,
    pub error_messages: Vec<String>,
    pub preload: Option<Preload>,
    pub series: Vec<Sample>,
}

impl Results {
    pub fn new(cfg: &Config, out: &RunOutput, brokers: usize, preload: Option<Preload>) -> Results {
        let w = out.window_s.max(1e-9);
        let tp = |msgs: u64, bytes: u64| {
            (msgs > 0).then(|| Throughput {
                msgs,
                bytes,
                msgs_per_s: msgs as f64 / w,
                mb_per_s: bytes as f64 / MB / w,
            })
        };
        Results {
            tool: "skein-perf",
            version: env!("CARGO_PKG_VERSION"),
            label: cfg.label.clone(),
            finished_unix_s: crate::clock::now_ns() / 1_000_000_000,
            command: std::env::args().collect::<Vec<_>>().join(" "),
            machine: Machine::detect(),
            config: cfg.clone(),
            client_shards: out.shards,
            partitions_led_by: brokers,
            window_s: out.window_s,
            produce: tp(out.window.produced_msgs, out.window.produced_bytes),
            consume: tp(out.window.consumed_msgs, out.window.consumed_bytes),
            latency_us: LatencyReport {
                produce: LatencySummary::of(&out.latencies.produce),
                produce_service: LatencySummary::of(&out.latencies.produce_service),
                e2e: LatencySummary::of(&out.latencies.e2e),
            },
            errors: out.window.errors,
            error_messages: out.errors.clone(),
            preload,
            series: out.series.clone(),
        }
    }

    /// Latency series to plot, named.
    fn latency_series(&self) -> Vec<(&'static str, &LatencySummary)> {
        let l = &self.latency_us;
        [
            ("produce (corrected)", l.produce.as_ref()),
            ("produce (service)", l.produce_service.as_ref()),
            ("end to end", l.e2e.as_ref()),
        ]
        .into_iter()
        .filter_map(|(n, s)| s.map(|s| (n, s)))
        .collect()
    }

    pub fn summary(&self) -> String {
        let mut s = String::new();
        let c = &self.config;
        let _ = writeln!(
            s,
            "\n== skein-perf {:?} {}: {} partitions, {} B messages, {} records/batch, acks {}, {:?}",
            c.mode,
            c.workload.unwrap_or(""),
            c.partitions,
            c.message_bytes,
            c.batch_records,
            c.acks,
            c.compression
        );
        let rate = c
            .rate
            .map_or("max rate".to_owned(), |r| format!("{r:.0} msg/s open loop"));
        let _ = writeln!(
            s,
            "   {} producers, {} consumers on {} client shards; {rate}; window {:.2} s",
            c.producers, c.consumers, self.client_shards, self.window_s
        );
        for (name, t) in [("produce", &self.produce), ("consume", &self.consume)] {
            if let Some(t) = t {
                let _ = writeln!(
                    s,
                    "   {name:<8} {:10.1} MB/s {:12.0} msg/s  ({} msgs, {} bytes)",
                    t.mb_per_s, t.msgs_per_s, t.msgs, t.bytes
                );
            }
        }
        let _ = writeln!(
            s,
            "   latency µs           p50        p90        p99      p99.9     p99.99        max"
        );
        for (name, l) in self.latency_series() {
            let _ = writeln!(
                s,
                "   {name:<19} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10}",
                l.p50_us, l.p90_us, l.p99_us, l.p99_9_us, l.p99_99_us, l.max_us
            );
        }
        if self.errors > 0 || !self.error_messages.is_empty() {
            let _ = writeln!(s, "   errors: {}", self.errors);
            for m in &self.error_messages {
                let _ = writeln!(s, "     {m}");
            }
        }
        s
    }

    /// Writes result.json, latency.svg, throughput.svg and report.html into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let json = serde_json::to_string_pretty(self).context("serializing results")?;
        let write = |name: &str, body: &str| {
            let p = dir.join(name);
            std::fs::write(&p, body).with_context(|| format!("writing {}", p.display()))
        };
        write("result.json", &json)?;
        let (lat, tp) = (self.latency_svg(), self.throughput_svg());
        write("latency.svg", &lat)?;
        write("throughput.svg", &tp)?;
        write("report.html", &self.html(&lat, &tp))?;
        Ok(())
    }

    pub fn latency_svg(&self) -> String {
        latency_svg(&self.latency_series())
    }

    pub fn throughput_svg(&self) -> String {
        throughput_svg(&self.series)
    }

    pub fn html(&self, latency_svg: &str, throughput_svg: &str) -> String {
        let c = &self.config;
        let mut h = String::new();
        let title = format!("skein-perf {:?} {}", c.mode, escape(&self.label));
        let _ = write!(
            h,
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
             <style>body{{font-family:sans-serif;max-width:900px;margin:2em auto}}\
             table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;\
             text-align:right}}th{{background:#f4f4f4}}</style></head><body><h1>{title}</h1>"
        );
        let _ = write!(
            h,
            "<p>{} — {} ({} CPUs, {} GiB, Linux {})<br><code>{}</code></p>",
            escape(&self.machine.hostname),
            escape(&self.machine.cpu_model),
            self.machine.cpus_online,
            self.machine.memory_gib,
            escape(&self.machine.kernel),
            escape(&self.command)
        );
        let _ =
            write!(
            h,
            "<p>{} partitions, {} B messages, {} records per batch, acks {}, {:?}, {} producers, \
             {} consumers, {} client shards, {}; measured {:.2} s after {:.1} s warm-up. \
             MB = 10<sup>6</sup> bytes of record values.</p>",
            c.partitions,
            c.message_bytes,
            c.batch_records,
            c.acks,
            c.compression,
            c.producers,
            c.consumers,
            self.client_shards,
            c.rate.map_or("max rate".to_owned(), |r| format!("open loop at {r:.0} msg/s")),
            self.window_s,
            c.warmup_s
        );
        h += "<table><tr><th></th><th>MB/s</th><th>msg/s</th><th>messages</th></tr>";
        for (name, t) in [("produce", &self.produce), ("consume", &self.consume)] {
            if let Some(t) = t {
                let _ = write!(
                    h,
                    "<tr><th>{name}</th><td>{:.1}</td><td>{:.0}</td><td>{}</td></tr>",
                    t.mb_per_s, t.msgs_per_s, t.msgs
                );
            }
        }
        h += "</table><h2>Latency (µs)</h2><table><tr><th></th><th>p50</th><th>p90</th>\
              <th>p99</th><th>p99.9</th><th>p99.99</th><th>max</th><th>count</th></tr>";
        for (name, l) in self.latency_series() {
            let _ = write!(
                h,
                "<tr><th>{name}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td></tr>",
                l.p50_us, l.p90_us, l.p99_us, l.p99_9_us, l.p99_99_us, l.max_us, l.count
            );
        }
        h += "</table>";
        let _ = write!(
            h,
            "{latency_svg}<h2>Throughput over time</h2>{throughput_svg}"
        );
        if self.errors > 0 || !self.error_messages.is_empty() {
            let _ = write!(h, "<h2>Errors: {}</h2><ul>", self.errors);
            for m in &self.error_messages {
                let _ = write!(h, "<li>{}</li>", escape(m));
            }
            h += "</ul>";
        }
        h += "</body></html>\n";
        h
    }
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const W: f64 = 760.0;
const H: f64 = 400.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 50.0;
const COLORS: [&str; 4] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"];
/// Nines shown on the percentile axis (99.9999%).
const NINES_MAX: f64 = 6.0;

fn svg_open(title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
         viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">\
         <rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>\
         <text x=\"{}\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">{}</text>",
        W / 2.0,
        escape(title)
    )
}

/// Latency against percentile: x is the number of nines (log of 1 / (1 - p)), y is log µs.
pub fn latency_svg(series: &[(&str, &LatencySummary)]) -> String {
    let mut s = svg_open("Latency by percentile");
    let (lo, hi) = series
        .iter()
        .flat_map(|(_, l)| l.curve.iter().map(|c| c.1.max(1)))
        .fold((u64::MAX, 1u64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if series.is_empty() {
        s += "<text x=\"380\" y=\"200\" text-anchor=\"middle\">no latency samples</text></svg>";
        return s;
    }
    let (y0, y1) = (
        (lo as f64).log10().floor(),
        (hi as f64).log10().ceil().max(1.0),
    );
    let y1 = if y1 <= y0 { y0 + 1.0 } else { y1 };
    let px = |nines: f64| LEFT + (W - LEFT - RIGHT) * nines / (NINES_MAX + 0.3);
    let py = |us: u64| {
        let v = (us.max(1) as f64).log10();
        H - BOTTOM - (H - TOP - BOTTOM) * (v - y0) / (y1 - y0)
    };
    for (k, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"]
        .iter()
        .enumerate()
    {
        let x = px(k as f64);
        let _ = write!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            H - BOTTOM,
            H - BOTTOM + 16.0
        );
    }
    let mut e = y0 as i32;
    while f64::from(e) <= y1 {
        let y = py(10u64.pow(e.max(0) as u32));
        let _ = write!(
            s,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            us_label(10u64.pow(e.max(0) as u32))
        );
        e += 1;
    }
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">percentile</text>",
        LEFT + (W - LEFT - RIGHT) / 2.0,
        H - 12.0
    );
    for (i, (name, l)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = l
            .curve
            .iter()
            .filter(|(p, _)| *p < 100.0)
            .map(|&(p, us)| {
                let nines = (1.0 / (1.0 - p / 100.0)).log10().min(NINES_MAX);
                format!("{:.1},{:.1}", px(nines), py(us))
            })
            .collect();
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\
             <circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"><title>max {} µs</title>\
             </circle>",
            points.join(" "),
            px(NINES_MAX + 0.2),
            py(l.max_us),
            l.max_us
        );
        legend(
            &mut s,
            i,
            &format!("{name}: p99 {}", us_label(l.p99_us)),
            color,
        );
    }
    s += "</svg>";
    s
}

fn legend(s: &mut String, i: usize, text: &str, color: &str) {
    let y = TOP + 12.0 + 16.0 * i as f64;
    let _ = write!(
        s,
        "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"12\" height=\"4\" fill=\"{color}\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
        LEFT + 10.0,
        y - 4.0,
        LEFT + 28.0,
        y,
        escape(text)
    );
}

fn us_label(us: u64) -> String {
    match us {
        0..=999 => format!("{us} µs"),
        1_000..=999_999 => format!("{} ms", trim(us as f64 / 1e3)),
        _ => format!("{} s", trim(us as f64 / 1e6)),
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

type SeriesFn = fn(&Sample) -> f64;

/// MB/s per interval; the warm-up and drain intervals are shaded.
pub fn throughput_svg(samples: &[Sample]) -> String {
    let mut s = svg_open("Throughput over time (MB/s of record values)");
    let t_max = samples.iter().map(|x| x.t_s).fold(1.0, f64::max);
    let y_max = samples
        .iter()
        .map(|x| x.produce_mb_s.max(x.consume_mb_s))
        .fold(1.0, f64::max);
    let y_top = nice_ceiling(y_max);
    let px = |t: f64| LEFT + (W - LEFT - RIGHT) * t / t_max;
    let py = |v: f64| H - BOTTOM - (H - TOP - BOTTOM) * v / y_top;
    let mut prev_t = 0.0;
    for x in samples {
        if !x.measuring {
            let _ = write!(
                s,
                "<rect x=\"{:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#eee\"/>",
                px(prev_t),
                px(x.t_s) - px(prev_t),
                H - TOP - BOTTOM
            );
        }
        prev_t = x.t_s;
    }
    for k in 0..=5 {
        let v = y_top * f64::from(k) / 5.0;
        let y = py(v);
        let _ = write!(
            s,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            trim(v)
        );
    }
    let step = nice_ceiling(t_max / 8.0).max(1.0);
    let mut t = 0.0;
    while t <= t_max + 1e-9 {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            px(t),
            H - BOTTOM + 16.0,
            trim(t)
        );
        t += step;
    }
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">seconds (shaded: warm-up, drain)\
         </text>",
        LEFT + (W - LEFT - RIGHT) / 2.0,
        H - 12.0
    );
    let lines: [(&str, SeriesFn); 2] = [
        ("produce", |x| x.produce_mb_s),
        ("consume", |x| x.consume_mb_s),
    ];
    let mut shown = 0;
    for (name, f) in lines {
        if samples.iter().all(|x| f(x) == 0.0) {
            continue;
        }
        let color = COLORS[shown];
        let pts: Vec<String> = samples
            .iter()
            .map(|x| format!("{:.1},{:.1}", px(x.t_s), py(f(x))))
            .collect();
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            pts.join(" ")
        );
        legend(&mut s, shown, name, color);
        shown += 1;
    }
    s += "</svg>";
    s
}

/// 1, 2 or 5 times a power of ten, at least `v`.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::Histogram;

    fn summary() -> LatencySummary {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for v in 1..=10_000u64 {
            h.record(50 + v / 10).unwrap();
        }
        h.record(25_000).unwrap();
        LatencySummary::of(&h).unwrap()
    }

    fn sample(t: f64, measuring: bool) -> Sample {
        Sample {
            t_s: t,
            measuring,
            produce_mb_s: 100.0 * t,
            produce_msgs_s: 1000.0,
            consume_mb_s: 0.0,
            consume_msgs_s: 0.0,
            errors: 0,
        }
    }

    #[test]
    fn svgs_are_well_formed_and_labelled() {
        let l = summary();
        let svg = latency_svg(&[("end to end", &l)]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("99.99%") && svg.contains("<polyline"));
        assert!(svg.contains(&format!("max {} µs", l.max_us)));
        assert!((25_000..25_100).contains(&l.max_us));
        assert_eq!(svg.matches("<svg").count(), svg.matches("</svg>").count());
        let tp = throughput_svg(&[sample(1.0, false), sample(2.0, true), sample(3.0, true)]);
        assert!(tp.contains("produce") && !tp.contains(">consume<"));
        assert_eq!(tp.matches("fill=\"#eee\"").count(), 1); // one warm-up interval
        assert!(latency_svg(&[]).contains("no latency samples"));
    }

    #[test]
    fn labels_and_scales() {
        assert_eq!(us_label(999), "999 µs");
        assert_eq!(us_label(1_500), "1.5 ms");
        assert_eq!(us_label(2_000_000), "2 s");
        assert_eq!(nice_ceiling(1234.0), 2000.0);
        assert_eq!(nice_ceiling(5.0), 5.0);
        assert_eq!(nice_ceiling(0.3), 0.5);
        assert_eq!(escape("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
    }
}
