//! `extends`: a scenario file that starts from another and replaces what it sets.

use std::path::Path;

use super::ScenarioError;

/// How long a chain of `extends` may be.
pub const EXTENDS_DEPTH_MAX: usize = 8;

/// The table of a scenario file with its `extends` chain applied.
pub(super) fn resolve_extends(
    mut table: toml::Table,
    path: &Path,
    read: &mut dyn FnMut(&Path) -> std::io::Result<String>,
    depth: usize,
) -> Result<toml::Table, ScenarioError> {
    let Some(base) = table.remove("extends") else {
        return Ok(table);
    };
    let toml::Value::String(base) = base else {
        return Err(ScenarioError::Parse(format!(
            "{}: extends must be the path of a scenario file, as a string",
            path.display()
        )));
    };
    if depth >= EXTENDS_DEPTH_MAX {
        return Err(ScenarioError::Invalid(format!(
            "{}: extends chains more than {EXTENDS_DEPTH_MAX} files deep (a cycle?)",
            path.display()
        )));
    }
    let base_path = path.parent().unwrap_or(Path::new("")).join(&base);
    let base_text = read(&base_path).map_err(|e| {
        ScenarioError::Invalid(format!(
            "{}: cannot read the scenario it extends, {}: {e}",
            path.display(),
            base_path.display()
        ))
    })?;
    let base_table = parse_table(&base_text, &base_path)?;
    let mut merged = resolve_extends(base_table, &base_path, read, depth + 1)?;
    overlay(&mut merged, table);
    Ok(merged)
}

pub(super) fn parse_table(text: &str, path: &Path) -> Result<toml::Table, ScenarioError> {
    toml::from_str(text).map_err(|e| ScenarioError::Parse(format!("{}: {e}", path.display())))
}

/// `over`'s values replace `base`'s; a table in both is merged the same way, field by field.
fn overlay(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => overlay(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::EXTENDS_DEPTH_MAX;
    use crate::scenario::Scenario;

    /// Reads from an in-memory set of files, recording what was asked for.
    fn files<'a>(
        set: &'a [(&'a str, &'a str)],
        asked: &'a mut Vec<String>,
    ) -> impl FnMut(&Path) -> std::io::Result<String> + 'a {
        move |p: &Path| {
            let p = p.to_string_lossy().into_owned();
            asked.push(p.clone());
            set.iter()
                .find(|(name, _)| *name == p)
                .map(|(_, text)| text.to_string())
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))
        }
    }

    const BASE: &str = r#"
name = "base"
duration_ms = 4000
nodes = 4
[network]
loss = 0.02
duplicate = 0.03
[[faults]]
at_ms = 100
crash = "n1"
"#;

    #[test]
    fn extends_takes_the_base_and_replaces_what_the_file_sets() {
        let child = r#"
extends = "../base.toml"
name = "child"
nodes = 7
[network]
loss = 0.1
[[faults]]
at_ms = 200
crash = "n2"
"#;
        let mut asked = Vec::new();
        let set = [("lab/sub/../base.toml", BASE)];
        let s = Scenario::from_toml_at(
            child,
            Path::new("lab/sub/child.toml"),
            &mut files(&set, &mut asked),
        )
        .unwrap();
        assert_eq!(
            asked,
            ["lab/sub/../base.toml"],
            "relative to the extending file"
        );
        assert_eq!(
            (s.name.as_str(), s.nodes, s.duration_ms),
            ("child", 7, 4000)
        );
        // Tables merge field by field; arrays replace the base's whole.
        assert_eq!((s.network.loss, s.network.duplicate), (0.1, 0.03));
        assert_eq!(s.faults.len(), 1);
        assert_eq!(
            (s.faults[0].at_ms, s.faults[0].crash.as_deref()),
            (200, Some("n2"))
        );
        // A file without `extends` reads as `from_toml` does.
        let plain =
            Scenario::from_toml_at(BASE, Path::new("base.toml"), &mut |_| unreachable!()).unwrap();
        assert_eq!(plain, Scenario::from_toml(BASE).unwrap());
    }

    #[test]
    fn extends_refuses_cycles_missing_bases_and_non_paths() {
        let mut asked = Vec::new();
        let set = [
            ("a.toml", "extends = \"b.toml\""),
            ("b.toml", "extends = \"a.toml\""),
        ];
        let e = Scenario::from_toml_at(
            "extends = \"a.toml\"",
            Path::new("c.toml"),
            &mut files(&set, &mut asked),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("more than 8 files deep"), "{e}");
        assert_eq!(asked.len(), EXTENDS_DEPTH_MAX);

        let e = Scenario::from_toml_at(
            "extends = \"gone.toml\"",
            Path::new("x/c.toml"),
            &mut files(&[], &mut Vec::new()),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("cannot read the scenario it extends, x/gone.toml"),
            "{e}"
        );

        let e = Scenario::from_toml_at("extends = 3", Path::new("c.toml"), &mut |_| unreachable!())
            .unwrap_err()
            .to_string();
        assert!(e.contains("extends must be the path"), "{e}");

        // What the merged file lacks or gets wrong is refused as any scenario's would be.
        let set = [("base.toml", BASE)];
        let extending = |text: &str| {
            Scenario::from_toml_at(text, Path::new("c.toml"), &mut files(&set, &mut Vec::new()))
                .unwrap_err()
                .to_string()
        };
        let e = extending("extends = \"base.toml\"\nnodse = 3");
        assert!(e.contains("nodse"), "{e}");
        let e = extending("extends = \"base.toml\"\nnodes = 0");
        assert!(e.contains("invalid"), "{e}");
    }
}
