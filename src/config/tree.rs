//! The merged settings tree: the embedded defaults, YAML files, paths in the tree, and the
//! deserializing that reports every bad field at once.

use super::*;

/// The embedded defaults as one tree, parsed once.
pub(super) fn defaults_tree() -> &'static Value {
    static TREE: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    TREE.get_or_init(|| {
        let mut defaults = Value::Object(Default::default());
        for (name, text) in DEFAULTS_YAML {
            let file: Value = serde_yaml::from_str(text)
                .unwrap_or_else(|e| panic!("embedded defaults {name} are not valid YAML: {e}"));
            let Value::Object(map) = file else {
                panic!("embedded defaults {name} are not a mapping");
            };
            for (section, value) in map {
                merge(&mut defaults, &section, value);
            }
        }
        defaults
    })
}

/// A settings file's YAML. A key given twice in one mapping is an error (the YAML spec
/// says keys are unique; taking either silently would hide a mistake).
pub(super) fn yaml_mapping(text: &str) -> Result<Value, serde_yaml::Error> {
    serde_yaml::from_str::<serde_yaml::Value>(text)?;
    serde_yaml::from_str::<Value>(text)
}

pub(super) fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, crate::domain::FileError> {
    let entries = std::fs::read_dir(dir).map_err(crate::domain::FileError::at(
        "reading the config directory",
        dir,
    ))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    files.sort();
    Ok(files)
}

pub(super) fn merge(tree: &mut Value, key: &str, value: Value) {
    let Value::Object(map) = tree else { return };
    match (map.get_mut(key), value) {
        (Some(existing @ Value::Object(_)), Value::Object(incoming)) => {
            for (k, v) in incoming {
                merge(existing, &k, v);
            }
        }
        (_, v) => {
            map.insert(key.to_string(), v);
        }
    }
}

pub(super) fn collect_leaves(value: &Value, prefix: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                collect_leaves(v, &format!("{prefix}.{k}"), out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

pub(super) fn lookup<'a>(tree: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(tree, |node, key| node.get(key))
}

pub(super) fn set_path(tree: &mut Value, path: &[String], value: Value) {
    let mut node = tree;
    for key in &path[..path.len() - 1] {
        if !node.is_object() {
            *node = Value::Object(Default::default());
        }
        let map = node.as_object_mut().expect("just made an object");
        node = map
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    if !node.is_object() {
        *node = Value::Object(Default::default());
    }
    node.as_object_mut()
        .expect("just made an object")
        .insert(path[path.len() - 1].clone(), value);
}

pub(super) fn remove_path(tree: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = tree;
    for key in parents {
        match node.get_mut(key) {
            Some(n) => node = n,
            None => return,
        }
    }
    if let Some(map) = node.as_object_mut() {
        map.remove(last);
    }
}

/// Deserializes `tree`, collecting every unknown field (via serde_ignored) and every
/// invalid one (via serde_path_to_error): each invalid field is put back to its default
/// and the tree tried again, so one run reports them all.
pub(super) fn deserialize_reporting_all<T: serde::de::DeserializeOwned>(
    mut tree: Value,
    defaults: &Value,
    origins: &Origins,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    for _ in 0..64 {
        let mut unknown: Vec<String> = Vec::new();
        let result: Result<T, _> = {
            let mut note = |path: serde_ignored::Path| unknown.push(path.to_string());
            let ignoring = serde_ignored::Deserializer::new(&tree, &mut note);
            serde_path_to_error::deserialize(ignoring)
        };
        match result {
            Ok(value) => {
                for path in unknown {
                    errors.push(FieldError {
                        path: format!("{}: {path}", origins.of(&path)),
                        reason: "is not a known setting".into(),
                    });
                }
                return Some(value);
            }
            Err(err) => {
                let path = err.path().to_string();
                let reason = err.into_inner().to_string();
                errors.push(FieldError {
                    path: format!("{}: {path}", origins.of(&path)),
                    reason,
                });
                let keys: Vec<String> = path.split('.').map(str::to_string).collect();
                match lookup(defaults, &keys) {
                    Some(default) if path != "?" && !path.is_empty() => {
                        set_path(&mut tree, &keys, default.clone())
                    }
                    _ if path != "?" && !path.is_empty() => remove_path(&mut tree, &keys),
                    _ => return None,
                }
            }
        }
    }
    None
}
