//! What an admin command prints: a table for people, or one JSON document for scripts.

use serde_json::{json, Value};

use super::client::error_name;

pub struct Report {
    pub json: Value,
    pub text: String,
    /// Everything asked for succeeded.
    pub ok: bool,
}

impl Report {
    pub fn print(&self, as_json: bool) {
        if as_json {
            println!("{}", self.json);
        } else {
            print!("{}", self.text);
        }
    }
}

/// Columns padded to their widest cell; the header first.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                l.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(headers.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// An error code as JSON: `null` for none, else its code, Kafka name and message.
pub fn error_json(code: i16, message: Option<&str>) -> Value {
    if code == 0 {
        return Value::Null;
    }
    json!({ "code": code, "name": error_name(code), "message": message })
}

/// An error code for a table cell: its Kafka name and message, or empty for none.
pub fn error_text(code: i16, message: Option<&str>) -> String {
    match (code, message) {
        (0, _) => String::new(),
        (c, Some(m)) if !m.is_empty() => format!("{}: {m}", error_name(c)),
        (c, _) => error_name(c),
    }
}

/// Parses KEY=VALUE.
pub fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// A list of broker ids as Kafka's tools print it: `1,2,3`.
pub fn ids(list: &[i32]) -> String {
    list.iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_trim_the_last() {
        let t = table(
            &["TOPIC", "PARTITION", "LEADER"],
            &[
                vec!["a".into(), "0".into(), "1".into()],
                vec!["longer-name".into(), "10".into(), "3".into()],
            ],
        );
        assert_eq!(
            t,
            "TOPIC        PARTITION  LEADER\n\
             a            0          1\n\
             longer-name  10         3\n"
        );
    }

    #[test]
    fn key_values_need_a_key() {
        assert_eq!(key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(key_value("a="), Ok(("a".into(), String::new())));
        assert!(key_value("=b").is_err());
        assert!(key_value("ab").is_err());
    }

    #[test]
    fn errors_carry_kafkas_names() {
        assert_eq!(error_json(0, None), Value::Null);
        assert_eq!(error_json(3, None)["name"], "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(
            error_text(36, Some("exists")),
            "TOPIC_ALREADY_EXISTS: exists"
        );
    }
}
