//! A node's log lines: every one names the node, as text for people (the default) or as one
//! JSON object per line for machines (`DRIFTKV_LOG_FORMAT=json`). `DRIFTKV_LOG` filters them
//! (`info` by default, `debug`, `driftkv_server=debug`, ...).

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

impl Format {
    /// From `DRIFTKV_LOG_FORMAT`: `json`, or `text` (also when unset). Anything else is an
    /// error naming the choices.
    pub fn from_env() -> anyhow::Result<Format> {
        match std::env::var("DRIFTKV_LOG_FORMAT") {
            Err(_) => Ok(Format::Text),
            Ok(v) if v.eq_ignore_ascii_case("text") || v.is_empty() => Ok(Format::Text),
            Ok(v) if v.eq_ignore_ascii_case("json") => Ok(Format::Json),
            Ok(v) => anyhow::bail!("DRIFTKV_LOG_FORMAT={v:?}: expected \"text\" or \"json\""),
        }
    }
}

/// Installs the global subscriber for a node named `node`.
pub fn install(node: &str, format: Format) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DRIFTKV_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .event_format(NodeLines::new(node, format))
        .init();
}

/// The event formatter: a timestamp, the level, the node, the message and the fields.
pub struct NodeLines {
    node: String,
    format: Format,
}

impl NodeLines {
    pub fn new(node: &str, format: Format) -> NodeLines {
        NodeLines {
            node: node.to_string(),
            format,
        }
    }
}

/// An event's message and other fields (numbers and booleans kept as JSON values).
#[derive(Default)]
struct Fields {
    message: String,
    others: Vec<(&'static str, serde_json::Value)>,
}

/// The fields a line leaves out: where a library's `log` record came from in its source
/// (`log.target`, `log.file`, ...), which says nothing to an operator.
fn skipped(field: &Field) -> bool {
    field.name().starts_with("log.")
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if skipped(field) {
            return;
        }
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.others.push((field.name(), value.into()));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if skipped(field) {
            return;
        }
        self.others.push((field.name(), value.into()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.others.push((field.name(), value.into()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.others.push((field.name(), value.into()));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.others.push((field.name(), value.into()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if skipped(field) {
            return;
        }
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.others
                .push((field.name(), format!("{value:?}").into()));
        }
    }
}

impl<S, N> FormatEvent<S, N> for NodeLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut time = String::new();
        SystemTime.format_time(&mut Writer::new(&mut time))?;
        let level = event.metadata().level().as_str();
        writer.write_str(&self.line(&time, level, &fields))
    }
}

impl NodeLines {
    fn line(&self, time: &str, level: &str, fields: &Fields) -> String {
        match self.format {
            Format::Text => {
                let mut line = format!("{time} {level:>5} node={} {}", self.node, fields.message);
                for (name, value) in fields.others.iter().filter(|(n, _)| *n != "node") {
                    match value {
                        serde_json::Value::String(text) => {
                            let _ = write!(line, " {name}={text}");
                        }
                        other => {
                            let _ = write!(line, " {name}={other}");
                        }
                    }
                }
                line.push('\n');
                line
            }
            Format::Json => {
                let mut object = serde_json::Map::new();
                object.insert("ts".into(), time.into());
                object.insert("level".into(), level.into());
                object.insert("node".into(), self.node.as_str().into());
                object.insert("message".into(), fields.message.as_str().into());
                for (name, value) in &fields.others {
                    // A field named like one of the line's own keeps the line's value.
                    object
                        .entry(name.to_string())
                        .or_insert_with(|| value.clone());
                }
                let mut line = serde_json::Value::Object(object).to_string();
                line.push('\n');
                line
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields {
        Fields {
            message: "node started \"quoted\"\nsecond line".into(),
            others: vec![
                ("peer", "127.0.0.1:7070".into()),
                ("node", "forged".into()),
                ("bytes", 42u64.into()),
            ],
        }
    }

    #[test]
    fn a_json_line_is_one_object_naming_the_node_with_every_field() {
        let lines = NodeLines::new("n1", Format::Json);
        let line = lines.line("2026-12-07T00:00:00Z", "INFO", &fields());
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1, "one line: {line}");
        let value: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(value["node"], "n1", "a field cannot rename the node");
        assert_eq!(value["level"], "INFO");
        assert_eq!(value["ts"], "2026-12-07T00:00:00Z");
        assert_eq!(value["message"], "node started \"quoted\"\nsecond line");
        assert_eq!(value["peer"], "127.0.0.1:7070");
        assert_eq!(value["bytes"], 42, "a number stays a number");
    }

    #[test]
    fn a_text_line_names_the_node() {
        let lines = NodeLines::new("n2", Format::Text);
        let line = lines.line("T", "WARN", &fields());
        assert!(line.starts_with("T  WARN node=n2 node started"), "{line}");
        assert!(line.contains(" peer=127.0.0.1:7070"), "{line}");
    }
}
