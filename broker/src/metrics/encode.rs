//! The Prometheus text exposition format, version 0.0.4: families with `# HELP` / `# TYPE`,
//! escaped label values, histograms as cumulative `_bucket{le=..}` plus `_sum` and `_count`.
//! Pure string building (any shard; the scrape shard runs it).

use std::fmt::Write as _;

/// The Content-Type a 0.0.4 scrape answer carries.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One histogram's state: per-bucket counts (not cumulative; the last one is the +Inf
/// overflow) and the sum in seconds. The count is the buckets' total.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramValue<'a> {
    /// Inclusive upper bounds in seconds, ascending; one fewer than `bucket_counts`.
    pub bounds_seconds: &'a [f64],
    pub bucket_counts: &'a [u64],
    pub sum_seconds: f64,
}

/// Builds one scrape answer. Each family is opened once with [`TextEncoder::family`] and its
/// samples follow; the format requires a family's samples to be contiguous.
#[derive(Default)]
pub struct TextEncoder {
    out: String,
}

impl TextEncoder {
    pub fn new() -> Self {
        TextEncoder::default()
    }

    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample; `value` is an integer or a float (see [`Value`]).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<Value>) {
        self.out.push_str(name);
        write_labels(&mut self.out, labels, None);
        self.out.push(' ');
        value.into().write(&mut self.out);
        self.out.push('\n');
    }

    /// The `_bucket`, `_sum` and `_count` series of one histogram; buckets become cumulative.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramValue<'_>) {
        debug_assert_eq!(h.bounds_seconds.len() + 1, h.bucket_counts.len());
        let bucket = format!("{name}_bucket");
        let mut cumulative: u64 = 0;
        for (i, count) in h.bucket_counts.iter().enumerate() {
            cumulative = cumulative.saturating_add(*count);
            let le = match h.bounds_seconds.get(i) {
                Some(bound) => format_f64(*bound),
                None => "+Inf".to_string(),
            };
            self.out.push_str(&bucket);
            write_labels(&mut self.out, labels, Some(&le));
            let _ = writeln!(self.out, " {cumulative}");
        }
        self.sample(&format!("{name}_sum"), labels, h.sum_seconds);
        // +Inf and _count must agree, so _count is the buckets' total, not a separate counter
        // that a concurrent observation could have moved.
        self.sample(&format!("{name}_count"), labels, cumulative);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A sample value: offsets and counters stay exact integers; ratios and seconds are floats.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    Uint(u64),
    Float(f64),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Uint(v)
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value::Uint(u64::try_from(v).unwrap_or(u64::MAX))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Uint(u64::from(v))
    }
}

impl Value {
    fn write(self, out: &mut String) {
        match self {
            Value::Int(v) => {
                let _ = write!(out, "{v}");
            }
            Value::Uint(v) => {
                let _ = write!(out, "{v}");
            }
            Value::Float(v) => out.push_str(&format_f64(v)),
        }
    }
}

/// Go's spelling of the special values, which Prometheus parses; Rust's `Display` never uses
/// an exponent, so ordinary values need nothing more.
fn format_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{v}")
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (name, value) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(name);
        out.push_str("=\"");
        escape_label_value(out, value);
        out.push('"');
    }
    out.push('}');
}

/// Label values escape backslash, double quote and line feed (format 0.0.4).
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text escapes backslash and line feed (not quotes).
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut e = TextEncoder::new();
        e.sample("m", &[("topic", "a\"b\\c\nd")], 1u64);
        assert_eq!(e.finish(), "m{topic=\"a\\\"b\\\\c\\nd\"} 1\n");
    }

    #[test]
    fn help_escapes_backslash_and_newline_only() {
        let mut e = TextEncoder::new();
        e.family("m_total", Kind::Counter, "a \"quoted\" \\ line\nbreak");
        assert_eq!(
            e.finish(),
            "# HELP m_total a \"quoted\" \\\\ line\\nbreak\n# TYPE m_total counter\n"
        );
    }

    #[test]
    fn sample_without_labels_has_no_braces() {
        let mut e = TextEncoder::new();
        e.sample("up", &[], 1u64);
        e.sample("offset", &[("a", "b"), ("c", "d")], -1i64);
        assert_eq!(e.finish(), "up 1\noffset{a=\"b\",c=\"d\"} -1\n");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_inf() {
        let mut e = TextEncoder::new();
        let h = HistogramValue {
            bounds_seconds: &[0.001, 0.5, 2.0],
            bucket_counts: &[3, 0, 2, 1],
            sum_seconds: 4.25,
        };
        e.histogram("d_seconds", &[("api", "Produce")], &h);
        let text = e.finish();
        let expected = "d_seconds_bucket{api=\"Produce\",le=\"0.001\"} 3\n\
                        d_seconds_bucket{api=\"Produce\",le=\"0.5\"} 3\n\
                        d_seconds_bucket{api=\"Produce\",le=\"2\"} 5\n\
                        d_seconds_bucket{api=\"Produce\",le=\"+Inf\"} 6\n\
                        d_seconds_sum{api=\"Produce\"} 4.25\n\
                        d_seconds_count{api=\"Produce\"} 6\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn special_floats_use_prometheus_spelling() {
        assert_eq!(format_f64(f64::NAN), "NaN");
        assert_eq!(format_f64(f64::INFINITY), "+Inf");
        assert_eq!(format_f64(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_f64(0.00025), "0.00025");
    }
}
