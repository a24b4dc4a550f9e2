//! The crate's layers hold: read from the `crate::` and `super::` paths of every source
//! file (test modules left out), no two modules import each other, no two files import
//! each other, and every import between modules points down the layer list of
//! `docs/architecture.md`. The list is read from the guide itself, so the map and the
//! code cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, as paths relative to `src/` with `/` separators.
fn sources(dir: &Path, root: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).expect("under src");
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// The file's code as the library is built: test modules, `#[cfg(test)]` items and
/// comments left out.
fn production_code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            match lines.peek() {
                // `#[cfg(test)] mod tests;` or a test-only `use`: skip that one line.
                Some(next) if next.trim_end().ends_with(';') => {
                    lines.next();
                    continue;
                }
                // An inline test module: the rest of the file is tests.
                _ => break,
            }
        }
        if trimmed.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The paths a file names: `crate::a::b`, `super::c`, and each member of
/// `crate::{a, b::c}` / `super::{..}`, as (head, segments).
fn named_paths(code: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let rest: String = bytes[i..bytes.len().min(i + 7)].iter().collect();
        let head = if rest.starts_with("crate::") {
            Some("crate")
        } else if rest.starts_with("super::") {
            Some("super")
        } else {
            None
        };
        let boundary = i == 0 || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_');
        let (Some(head), true) = (head, boundary) else {
            i += 1;
            continue;
        };
        i += head.len() + 2;
        if bytes.get(i) == Some(&'{') {
            let end = (i..bytes.len())
                .find(|&k| bytes[k] == '}')
                .unwrap_or(bytes.len());
            let group: String = bytes[i + 1..end].iter().collect();
            for member in group.split(',') {
                let segs = segments(member.trim());
                if !segs.is_empty() {
                    out.push((head.to_string(), segs));
                }
            }
            i = end;
        } else {
            let tail: String = bytes[i..]
                .iter()
                .take_while(|c| c.is_alphanumeric() || **c == '_' || **c == ':')
                .collect();
            i += tail.len();
            let segs = segments(&tail);
            if !segs.is_empty() {
                out.push((head.to_string(), segs));
            }
        }
    }
    out
}

fn segments(path: &str) -> Vec<String> {
    path.split("::")
        .map(|s| {
            s.chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .take_while(|s| !s.is_empty())
        .collect()
}

/// A file's module path: `controller/mod.rs` -> [controller], `sim/engine.rs` -> [sim, engine].
fn module_path(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_string)
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The file that defines the longest prefix of a module path.
fn file_of(parts: &[String], files: &BTreeSet<String>) -> Option<String> {
    (1..=parts.len()).rev().find_map(|k| {
        let stem = parts[..k].join("/");
        [format!("{stem}.rs"), format!("{stem}/mod.rs")]
            .into_iter()
            .find(|f| files.contains(f))
    })
}

/// The layer list: the fenced block after `<!-- layers -->` in docs/architecture.md, top
/// layer first; each line not starting with a space names its modules before the first
/// run of two spaces (`http/, jobs.rs`).
fn layers(guide: &str) -> Vec<Vec<String>> {
    let start = guide
        .find("<!-- layers -->")
        .expect("docs/architecture.md marks its layer list with <!-- layers -->");
    let block = &guide[start..];
    let open = block.find("```").expect("the layer list is a fenced block");
    let body = &block[open + 3..];
    let body = &body[body.find('\n').expect("fence line") + 1..];
    let body = &body[..body.find("```").expect("the fence closes")];
    body.lines()
        .filter(|l| !l.is_empty() && !l.starts_with(' '))
        .map(|l| {
            let names = l.split("  ").next().unwrap_or("");
            names
                .split(',')
                .map(|n| n.trim().trim_end_matches('/').trim_end_matches(".rs"))
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect()
}

struct Graph {
    /// Module -> modules it imports, with the files that do.
    modules: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    /// File -> files it imports (never its own parent or child module).
    files: BTreeMap<String, BTreeSet<String>>,
    all: BTreeSet<String>,
}

fn graph() -> Graph {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut list = Vec::new();
    sources(&root, &root, &mut list);
    let all: BTreeSet<String> = list
        .into_iter()
        .filter(|f| f != "main.rs" && !f.ends_with("/tests.rs") && f != "lib.rs")
        .collect();
    let mut modules: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let mut files: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for rel in &all {
        let text = std::fs::read_to_string(root.join(rel)).expect("read source");
        let me = module_path(rel);
        let top = me[0].clone();
        modules.entry(top.clone()).or_default();
        for (head, segs) in named_paths(&production_code(&text)) {
            let parts: Vec<String> = if head == "crate" {
                segs
            } else {
                me[..me.len() - 1].iter().cloned().chain(segs).collect()
            };
            let Some(first) = parts.first() else { continue };
            if first != &top && all.iter().any(|f| module_path(f)[0] == *first) {
                modules
                    .entry(top.clone())
                    .or_default()
                    .entry(first.clone())
                    .or_default()
                    .insert(rel.clone());
            }
            if let Some(target) = file_of(&parts, &all) {
                let them = module_path(&target);
                let related = them.starts_with(&me) || me.starts_with(&them);
                if !related {
                    files.entry(rel.clone()).or_default().insert(target);
                }
            }
        }
    }
    Graph {
        modules,
        files,
        all,
    }
}

/// Groups of two or more nodes that reach each other (Tarjan's strongly connected
/// components).
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        on: BTreeSet<String>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    fn visit(s: &mut State<'_>, v: &str) {
        s.index.insert(v.to_string(), s.next);
        s.low.insert(v.to_string(), s.next);
        s.next += 1;
        s.stack.push(v.to_string());
        s.on.insert(v.to_string());
        let targets: Vec<String> = s
            .edges
            .get(v)
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default();
        for w in targets {
            if !s.index.contains_key(&w) {
                visit(s, &w);
                let lw = s.low[&w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on.contains(&w) {
                let iw = s.index[&w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut group = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(&w);
                let done = w == v;
                group.push(w);
                if done {
                    break;
                }
            }
            if group.len() > 1 {
                group.sort();
                s.found.push(group);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    let nodes: Vec<String> = edges.keys().cloned().collect();
    for v in nodes {
        if !s.index.contains_key(&v) {
            visit(&mut s, &v);
        }
    }
    s.found
}

#[test]
fn no_two_modules_import_each_other() {
    let g = graph();
    let edges: BTreeMap<String, BTreeSet<String>> = g
        .modules
        .iter()
        .map(|(m, to)| (m.clone(), to.keys().cloned().collect()))
        .collect();
    let found = circles(&edges);
    assert!(
        found.is_empty(),
        "modules that import each other (directly or round a circle): {found:?}; arrows: {:#?}",
        found
            .iter()
            .flatten()
            .map(|m| (m, &g.modules[m]))
            .collect::<Vec<_>>()
    );
}

#[test]
fn no_two_files_import_each_other() {
    let g = graph();
    let found = circles(&g.files);
    assert!(found.is_empty(), "files in a circle of imports: {found:?}");
}

#[test]
fn every_import_between_modules_points_down_the_layers_of_the_guide() {
    let guide = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md"),
    )
    .expect("read docs/architecture.md");
    let layers = layers(&guide);
    let floor: BTreeMap<&str, usize> = layers
        .iter()
        .enumerate()
        .flat_map(|(i, names)| names.iter().map(move |n| (n.as_str(), i)))
        .collect();
    let g = graph();
    let tops: BTreeSet<String> = g.all.iter().map(|f| module_path(f)[0].clone()).collect();
    let unplaced: Vec<&String> = tops
        .iter()
        .filter(|m| !floor.contains_key(m.as_str()))
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules the guide's layer list does not place: {unplaced:?}"
    );
    let mut upward = Vec::new();
    for (from, to) in &g.modules {
        for (target, by) in to {
            if floor[target.as_str()] <= floor[from.as_str()] {
                upward.push(format!("{from} -> {target} ({by:?})"));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that do not point to a lower layer of docs/architecture.md:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_reader_finds_imports_circles_and_layers() {
    // The checks above pass on a tree that is right; these show they would fail on one
    // that is not.
    let code = production_code(
        "use crate::store::Store;\n// crate::http is only named in a comment\nuse super::{plan, warm::Warm};\nfn f() { crate::domain::Timestamp::now(); }\n#[cfg(test)]\nmod tests { use crate::config::Settings; }\n",
    );
    let found = named_paths(&code);
    let heads: Vec<String> = found
        .iter()
        .map(|(h, s)| format!("{h}::{}", s.join("::")))
        .collect();
    assert_eq!(
        heads,
        [
            "crate::store::Store",
            "super::plan",
            "super::warm::Warm",
            "crate::domain::Timestamp::now"
        ]
    );
    let edges: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(str::to_string).collect()))
    .collect();
    assert_eq!(circles(&edges), vec![vec!["a", "b", "c"]]);
    let guide = "x\n<!-- layers -->\n```text\nhttp/, jobs.rs   routes\n                 more\ndomain/          types\n```\n";
    assert_eq!(layers(guide), vec![vec!["http", "jobs"], vec!["domain"]]);
}
