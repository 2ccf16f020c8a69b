//! The walls between proofrig's crates, and between the modules inside each crate,
//! checked on every `cargo test --workspace`.
//!
//! Why: a verifier (a regulator's, or the lab service) checks bundles without linking
//! libssh2, serial ports, Modbus or the simulated lab, and a crate reads best when its
//! modules import one another one way. Both stay true only if nothing quietly adds an
//! upward dependency or an import back; the compiler allows both, so this test refuses
//! them. ARCHITECTURE.md describes the layering ("Code Map"); `LAYERS` below is the
//! same layering as data, and the one place it is enforced.
//!
//! Three checks, each naming the crate, the offending dependency or cycle, and what
//! to do:
//! - the verifier's crates reach no device-I/O crate, directly or transitively
//!   (normal dependencies of `cargo metadata`'s resolve graph);
//! - every workspace crate depends (normal dependencies) only on workspace crates
//!   strictly below it in `LAYERS`, which also rules out crate cycles; a crate the
//!   table does not know fails too, so a new crate gets placed;
//! - inside each crate, the top-level modules of `src/` import each other without a
//!   cycle (`modules` below: a small, documented parser, right for this code base).
//!
//! The checks are plain functions over plain data; the unit tests at the end feed
//! them hand-made inputs, so a check that stopped finding anything would fail there.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The layering of ARCHITECTURE.md's Code Map, bottom up: each workspace crate and the
/// crates it sits on directly. A crate may have normal dependencies only on crates
/// strictly below it: what it sits on and, transitively, what those sit on. Keep this
/// table and ARCHITECTURE.md in step; a new crate must be placed here (and described
/// there). `simlab` sits on nothing of proofrig's: it is the device side, and shares
/// no code with what it is used to test.
const LAYERS: &[(&str, &[&str])] = &[
    ("proofrig-model", &[]),
    ("proofrig-verdict", &["proofrig-model"]),
    ("proofrig-plan", &["proofrig-verdict"]),
    ("proofrig-evidence", &["proofrig-plan"]),
    ("proofrig-report", &["proofrig-evidence"]),
    // The server <-> lab host contract and the API's types; the server (which never
    // touches a device) sits on it and, next, on the verifier's crates.
    ("proofrig-proto", &["proofrig-verdict"]),
    ("proofrig-server", &["proofrig-proto", "proofrig-report"]),
    ("proofrig-agents", &["proofrig-model"]),
    ("proofrig-run", &["proofrig-report", "proofrig-agents"]),
    // The lab host: runs the server's jobs with the engine, so above `run` and `proto`.
    ("proofrig-labhost", &["proofrig-run", "proofrig-proto"]),
    ("proofrig-simlab", &[]),
    ("proofrig-testpeers", &["proofrig-simlab"]),
    ("proofrig", &["proofrig-labhost", "proofrig-server", "proofrig-simlab"]),
];

/// The crates that link no device I/O: what a verifier links (ARCHITECTURE.md:
/// "Architecture Invariant" of each), and the lab service's contract and server, which
/// never touch a device.
const NO_DEVICE_IO_CRATES: &[&str] =
    &["proofrig-model", "proofrig-verdict", "proofrig-plan", "proofrig-evidence", "proofrig-report", "proofrig-proto", "proofrig-server"];

/// What a verifier must not link: the libraries that talk to devices, and the crates
/// of proofrig that drive devices, simulate them or start test peers.
const DEVICE_IO: &[&str] = &[
    "ssh2",
    "libssh2-sys",
    "serialport",
    "tokio-serial",
    "mio-serial",
    "tokio-modbus",
    "proofrig-agents",
    "proofrig-simlab",
    "proofrig-testpeers",
    "proofrig-run",
];

#[test]
fn the_verifier_s_crates_link_no_device_io() {
    let ws = Workspace::load();
    let (roots, forbidden) = (ws.ids_of(NO_DEVICE_IO_CRATES), ws.ids_of(DEVICE_IO));
    assert_eq!(roots.len(), NO_DEVICE_IO_CRATES.len(), "NO_DEVICE_IO_CRATES names a crate cargo metadata does not know");
    // The check on data that must fail it: the agents do link device I/O. Without this,
    // names that matched nothing in the graph would pass silently.
    let agents = ws.ids_of(&["proofrig-agents"]);
    let io_libraries: BTreeSet<String> = forbidden.difference(&agents).cloned().collect();
    assert!(
        !device_io_paths(&ws.normal_deps, &agents, &io_libraries, &ws.names).is_empty(),
        "proofrig-agents reaches none of {DEVICE_IO:?} in cargo metadata's resolve graph: the graph is misread"
    );
    let problems = device_io_paths(&ws.normal_deps, &roots, &forbidden, &ws.names);
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn every_crate_depends_only_on_crates_below_it() {
    let ws = Workspace::load();
    let problems = layering_violations(LAYERS, &ws.member_deps());
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn the_top_level_modules_of_each_crate_import_each_other_without_cycles() {
    let ws = Workspace::load();
    let mut problems = Vec::new();
    for member in &ws.members {
        let files = modules::read_src(&member.src);
        assert!(!files.is_empty(), "crate {}: no Rust files under {}", member.name, member.src.display());
        let graph = modules::graph(&files);
        problems.extend(modules::cycles(&graph).iter().map(|cycle| cycle.describe(&member.name)));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

// ---- the crate graph -----------------------------------------------------------

/// What `cargo metadata` says about the workspace, reduced to what the checks need.
struct Workspace {
    /// Package id -> package name.
    names: BTreeMap<String, String>,
    /// Package id -> the package ids it has a normal (not dev, not build) dependency
    /// on, for any platform, with the workspace's features.
    normal_deps: BTreeMap<String, Vec<String>>,
    members: Vec<Member>,
}

struct Member {
    id: String,
    name: String,
    src: PathBuf,
}

impl Workspace {
    fn load() -> Workspace {
        let out = Command::new(env!("CARGO"))
            .args(["metadata", "--format-version", "1"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run cargo metadata");
        assert!(out.status.success(), "cargo metadata failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
        let str_of = |v: &serde_json::Value| v.as_str().expect("a string in cargo metadata").to_string();
        let mut names = BTreeMap::new();
        let mut manifests = BTreeMap::new();
        for package in meta["packages"].as_array().expect("packages") {
            names.insert(str_of(&package["id"]), str_of(&package["name"]));
            manifests.insert(str_of(&package["id"]), PathBuf::from(str_of(&package["manifest_path"])));
        }
        let mut normal_deps = BTreeMap::new();
        for node in meta["resolve"]["nodes"].as_array().expect("resolve.nodes") {
            let deps = node["deps"].as_array().expect("deps");
            let normal = deps.iter().filter(|dep| dep["dep_kinds"].as_array().expect("dep_kinds").iter().any(|k| k["kind"].is_null()));
            normal_deps.insert(str_of(&node["id"]), normal.map(|dep| str_of(&dep["pkg"])).collect());
        }
        let members = meta["workspace_members"]
            .as_array()
            .expect("workspace_members")
            .iter()
            .map(|id| {
                let id = str_of(id);
                let src = manifests[&id].parent().expect("a manifest's directory").join("src");
                Member { name: names[&id].clone(), id, src }
            })
            .collect();
        Workspace { names, normal_deps, members }
    }

    /// The ids of the packages with these names (any version).
    fn ids_of(&self, wanted: &[&str]) -> BTreeSet<String> {
        self.names.iter().filter(|(_, name)| wanted.contains(&name.as_str())).map(|(id, _)| id.clone()).collect()
    }

    /// Each workspace crate with the workspace crates it has a normal dependency on.
    fn member_deps(&self) -> Vec<(String, Vec<String>)> {
        let members: BTreeSet<&str> = self.members.iter().map(|m| m.id.as_str()).collect();
        self.members
            .iter()
            .map(|m| {
                let deps = self.normal_deps.get(&m.id).map(Vec::as_slice).unwrap_or_default();
                (m.name.clone(), deps.iter().filter(|d| members.contains(d.as_str())).map(|d| self.names[d].clone()).collect())
            })
            .collect()
    }
}

/// For each root that reaches a forbidden package through normal dependencies, the
/// shortest such path, as a message. `names` maps ids to what the message prints.
fn device_io_paths(
    deps: &BTreeMap<String, Vec<String>>,
    roots: &BTreeSet<String>,
    forbidden: &BTreeSet<String>,
    names: &BTreeMap<String, String>,
) -> Vec<String> {
    let name = |id: &String| names.get(id).cloned().unwrap_or_else(|| id.clone());
    let mut problems = Vec::new();
    for root in roots {
        // Breadth first, so the path printed is a shortest one.
        let mut came_from: BTreeMap<&String, &String> = BTreeMap::new();
        let mut queue = VecDeque::from([root]);
        let mut seen = BTreeSet::from([root]);
        while let Some(id) = queue.pop_front() {
            for dep in deps.get(id).into_iter().flatten() {
                if !seen.insert(dep) {
                    continue;
                }
                came_from.insert(dep, id);
                if forbidden.contains(dep) {
                    let mut path = vec![name(dep)];
                    let mut at = dep;
                    while let Some(prev) = came_from.get(at) {
                        path.push(name(prev));
                        at = prev;
                    }
                    path.reverse();
                    problems.push(format!(
                        "crate {root_name} links device I/O: {chain}.\n\
                         A verifier links {root_name} and must not need SSH, serial, Modbus or the simulated lab \
                         (ARCHITECTURE.md, Architecture Invariant of {root_name}). Remove this dependency: move the code \
                         that needs {dep_name} up into proofrig-agents or proofrig-run, or take from it only what is pure \
                         (into proofrig-model).",
                        root_name = name(root),
                        chain = path.join(" -> "),
                        dep_name = name(dep),
                    ));
                } else {
                    queue.push_back(dep);
                }
            }
        }
    }
    problems
}

/// Every way the crates' dependencies break the layering: a dependency on a crate not
/// strictly below, a crate the layering does not know, a layering entry naming no
/// crate of the workspace. `crates` is each workspace crate with the workspace crates
/// it depends on.
fn layering_violations(layers: &[(&str, &[&str])], crates: &[(String, Vec<String>)]) -> Vec<String> {
    let mut problems = Vec::new();
    let sits_on: BTreeMap<&str, &[&str]> = layers.iter().copied().collect();
    for (name, _) in layers {
        if !crates.iter().any(|(c, _)| c == name) {
            problems.push(format!(
                "LAYERS in crates/proofrig/tests/architecture.rs names {name}, which is not a workspace crate: \
                 remove it there and from ARCHITECTURE.md's Code Map, or fix the name."
            ));
        }
    }
    for (name, deps) in crates {
        let Some(below) = below(&sits_on, name) else {
            problems.push(format!(
                "workspace crate {name} is not in the layering: place it in LAYERS in crates/proofrig/tests/architecture.rs \
                 (which crates it sits on) and describe it in ARCHITECTURE.md's Code Map."
            ));
            continue;
        };
        for dep in deps {
            if !below.contains(dep.as_str()) {
                let allowed = if below.is_empty() {
                    "none of the workspace".to_string()
                } else {
                    below.iter().copied().collect::<Vec<_>>().join(", ")
                };
                problems.push(format!(
                    "crate {name} depends on {dep}, which is not below it in the layering (crates below {name}: {allowed}).\n\
                     Move the code of {name} that needs {dep} up into a crate above both, or move what it uses from {dep} \
                     down into a crate below {name}; if the layering itself should change, change LAYERS in \
                     crates/proofrig/tests/architecture.rs and ARCHITECTURE.md together."
                ));
            }
        }
    }
    problems
}

/// The crates strictly below `name` in the layering: what it sits on, transitively.
/// `None` when the layering does not know `name`. A cycle in the table itself shows
/// up as a crate below itself, which the caller reports as a dependency on itself.
fn below<'a>(sits_on: &BTreeMap<&'a str, &'a [&'a str]>, name: &str) -> Option<BTreeSet<&'a str>> {
    let direct = sits_on.get(name)?;
    let mut found = BTreeSet::new();
    let mut todo: Vec<&str> = direct.to_vec();
    while let Some(next) = todo.pop() {
        if found.insert(next) {
            todo.extend(sits_on.get(next).copied().unwrap_or_default());
        }
    }
    Some(found)
}

// ---- the module graph inside a crate ---------------------------------------------

/// The import graph between the top-level modules of one crate's `src/`.
///
/// A module is a top-level file or directory of `src/` (`src/journal.rs`,
/// `src/ssh/` with everything in it); the crate root (`lib.rs`, or `main.rs` when
/// there is no `lib.rs`) is a module too, called `lib` (`main`), because code in it
/// can import modules and be imported by them. A `main.rs` beside a `lib.rs` is a
/// separate binary crate that reaches the library by its name; it is left out.
///
/// An edge `a -> b` is a path in a file of `a` that names module `b`:
/// - `crate::b...`, and `crate::{b, ...}` groups;
/// - `super::b...` where `super` reaches the crate root (`super` from `src/a.rs` or
///   `src/a/mod.rs`, `super::super` from `src/a/x.rs`); a shallower `super` stays
///   inside `a`;
/// - `crate::Name` (or `super::Name` as above) where `Name` is defined in the root
///   (an edge to `lib`) or brought into the root by a `use b::...` (`pub use` or not,
///   aliases and `b::*` globs over the top-level items of `b`'s file): an edge to `b`;
/// - in the root only: `b::...` and `self::b::...` (the root names its modules bare).
///
/// Not counted: comments (doc comments included), string and char literals, items
/// under `#[cfg(test)]` (the `mod tests` blocks), `mod b;` declarations, `use`s of
/// other crates, and inline `mod x { }` blocks are read as part of their file (none
/// here uses `super::`). Macros' bodies are read as tokens like any code.
mod modules {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    enum Tok {
        Ident(String),
        /// `::`
        PathSep,
        Punct(char),
    }

    #[derive(Clone, Debug)]
    struct Token {
        tok: Tok,
        line: usize,
    }

    impl Token {
        fn is(&self, c: char) -> bool {
            self.tok == Tok::Punct(c)
        }

        fn ident(&self) -> Option<&str> {
            match &self.tok {
                Tok::Ident(s) => Some(s),
                _ => None,
            }
        }
    }

    /// A source file: its path relative to `src/` (with `/`), and its text.
    pub struct SourceFile {
        pub path: String,
        pub text: String,
    }

    /// Every `.rs` file under `src`, sorted by path.
    pub fn read_src(src: &Path) -> Vec<SourceFile> {
        let mut files = Vec::new();
        let mut dirs = vec![src.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
                let path = entry.expect("a directory entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|x| x == "rs") {
                    let rel = path.strip_prefix(src).expect("under src").to_string_lossy().replace('\\', "/");
                    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
                    files.push(SourceFile { path: rel, text });
                }
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        files
    }

    /// Where one import of `to` by `from` is written (`src/` relative path, line).
    #[derive(Clone, Debug, PartialEq)]
    pub struct Site {
        pub file: String,
        pub line: usize,
    }

    /// Module -> module it imports -> where, in file and line order.
    pub type Graph = BTreeMap<String, BTreeMap<String, Vec<Site>>>;

    /// The crate's module graph (see the module doc for what counts as an edge).
    pub fn graph(files: &[SourceFile]) -> Graph {
        let root_file = ["lib.rs", "main.rs"].into_iter().find(|r| files.iter().any(|f| f.path == *r));
        let root = root_file.map(|r| r.trim_end_matches(".rs").to_string()).unwrap_or_else(|| "lib".into());
        let files: Vec<&SourceFile> = files.iter().filter(|f| f.path != "main.rs" || root_file == Some("main.rs")).collect();
        let tokens: BTreeMap<&str, Vec<Token>> = files.iter().map(|f| (f.path.as_str(), strip_test_items(lex(&f.text)))).collect();
        let modules: BTreeSet<String> = files.iter().map(|f| module_of(&f.path, &root)).filter(|m| *m != root).collect();
        let names = root_names(&tokens, root_file, &root, &modules);
        let mut graph: Graph = BTreeMap::new();
        for file in &files {
            let from = module_of(&file.path, &root);
            let ctx =
                FileCtx { depth: depth_of(&file.path, from == root), is_root: from == root, modules: &modules, names: &names, root: &root };
            graph.entry(from.clone()).or_default();
            for (to, line) in ctx.edges(&tokens[file.path.as_str()]) {
                if to != from {
                    graph.entry(from.clone()).or_default().entry(to).or_default().push(Site { file: file.path.clone(), line });
                }
            }
        }
        graph
    }

    /// `ssh/session.rs` -> `ssh`, `journal.rs` -> `journal`, `lib.rs` -> the root.
    fn module_of(path: &str, root: &str) -> String {
        let first = path.split('/').next().unwrap_or(path);
        match first.strip_suffix(".rs") {
            Some(stem) if stem == "lib" || stem == "main" => root.to_string(),
            Some(stem) => stem.to_string(),
            None => first.to_string(),
        }
    }

    /// How many `super`s reach the crate root from this file: 1 for `a.rs` and
    /// `a/mod.rs`, 2 for `a/x.rs`, 0 for the root.
    fn depth_of(path: &str, is_root: bool) -> usize {
        if is_root {
            return 0;
        }
        let parts: Vec<&str> = path.split('/').collect();
        parts.len() - usize::from(parts.last() == Some(&"mod.rs"))
    }

    /// What the root brings into scope: name -> the module it comes from (the root
    /// itself for items defined there).
    fn root_names(
        tokens: &BTreeMap<&str, Vec<Token>>,
        root_file: Option<&str>,
        root: &str,
        modules: &BTreeSet<String>,
    ) -> BTreeMap<String, String> {
        let mut names = BTreeMap::new();
        let Some(root_tokens) = root_file.and_then(|r| tokens.get(r)) else { return names };
        for item in top_level_items(root_tokens) {
            names.insert(item, root.to_string());
        }
        let mut i = 0;
        while i < root_tokens.len() {
            if root_tokens[i].ident() == Some("use") && depth_at(root_tokens, i) == 0 {
                let mut pos = i + 1;
                let mut paths = Vec::new();
                use_tree(root_tokens, &mut pos, Vec::new(), &mut paths);
                for path in paths {
                    let segs: Vec<&str> = path.segments.iter().map(String::as_str).skip_while(|s| *s == "crate" || *s == "self").collect();
                    let (Some(&module), Some(&leaf)) = (segs.first(), segs.last()) else { continue };
                    if !modules.contains(module) || segs.len() < 2 {
                        continue;
                    }
                    if leaf == "*" {
                        if segs.len() == 2 {
                            let file =
                                [format!("{module}.rs"), format!("{module}/mod.rs")].into_iter().find_map(|f| tokens.get(f.as_str()));
                            for item in file.map(|t| top_level_items(t)).unwrap_or_default() {
                                names.entry(item).or_insert_with(|| module.to_string());
                            }
                        }
                    } else if leaf != "self" {
                        names.insert(path.alias.unwrap_or_else(|| leaf.to_string()), module.to_string());
                    }
                }
                i = pos;
            }
            i += 1;
        }
        names
    }

    /// Brace depth of token `i` (0 = at the top level of its file).
    fn depth_at(tokens: &[Token], i: usize) -> usize {
        let mut depth: usize = 0;
        for t in &tokens[..i] {
            if t.is('{') {
                depth += 1;
            } else if t.is('}') {
                depth = depth.saturating_sub(1);
            }
        }
        depth
    }

    /// The names of the items a file defines at its top level (`struct`, `enum`,
    /// `fn`, `const`, `static`, `type`, `trait`, `union`, `mod`, `macro_rules!`).
    fn top_level_items(tokens: &[Token]) -> Vec<String> {
        const ITEMS: &[&str] = &["struct", "enum", "fn", "const", "static", "type", "trait", "union", "mod"];
        let mut items = Vec::new();
        let mut depth: usize = 0;
        for (i, t) in tokens.iter().enumerate() {
            if t.is('{') {
                depth += 1;
            } else if t.is('}') {
                depth = depth.saturating_sub(1);
            }
            if depth != 0 {
                continue;
            }
            let next = |k: usize| tokens.get(i + k).and_then(Token::ident);
            match t.ident() {
                Some(kw) if ITEMS.contains(&kw) => {
                    let name = if next(1) == Some("mut") { next(2) } else { next(1) };
                    if let Some(name) = name.filter(|n| !ITEMS.contains(n)) {
                        items.push(name.to_string());
                    }
                }
                Some("macro_rules") if tokens.get(i + 1).is_some_and(|t| t.is('!')) => items.extend(next(2).map(String::from)),
                _ => {}
            }
        }
        items
    }

    /// One path of a `use` tree: its segments (a glob ends in `*`), its alias, the
    /// line of its last segment.
    struct UsePath {
        segments: Vec<String>,
        alias: Option<String>,
        line: usize,
    }

    /// Parses a `use` tree starting at `tokens[*pos]` (after `use`, or at a `{`),
    /// appending each path to `out`; leaves `*pos` after the tree.
    fn use_tree(tokens: &[Token], pos: &mut usize, mut prefix: Vec<String>, out: &mut Vec<UsePath>) {
        while let Some(t) = tokens.get(*pos) {
            match &t.tok {
                Tok::PathSep => *pos += 1,
                Tok::Ident(name) => {
                    prefix.push(name.clone());
                    *pos += 1;
                    match tokens.get(*pos).map(|t| &t.tok) {
                        Some(Tok::PathSep) => *pos += 1,
                        Some(Tok::Ident(kw)) if kw == "as" => {
                            let alias = tokens.get(*pos + 1).and_then(Token::ident).map(String::from);
                            *pos += 2;
                            out.push(UsePath { segments: prefix, alias, line: t.line });
                            return;
                        }
                        _ => {
                            out.push(UsePath { segments: prefix, alias: None, line: t.line });
                            return;
                        }
                    }
                }
                Tok::Punct('*') => {
                    prefix.push("*".into());
                    *pos += 1;
                    out.push(UsePath { segments: prefix, alias: None, line: t.line });
                    return;
                }
                Tok::Punct('{') => {
                    *pos += 1;
                    while let Some(t) = tokens.get(*pos) {
                        if t.is('}') {
                            *pos += 1;
                            return;
                        }
                        let before = *pos;
                        use_tree(tokens, pos, prefix.clone(), out);
                        if tokens.get(*pos).is_some_and(|t| t.is(',')) {
                            *pos += 1;
                        }
                        if *pos == before {
                            *pos += 1;
                        }
                    }
                    return;
                }
                _ => return,
            }
        }
    }

    /// What one file needs to turn its paths into edges.
    struct FileCtx<'a> {
        /// How many `super`s reach the crate root from this file.
        depth: usize,
        is_root: bool,
        modules: &'a BTreeSet<String>,
        names: &'a BTreeMap<String, String>,
        root: &'a str,
    }

    impl FileCtx<'_> {
        /// Every (module, line) this file's paths name.
        fn edges(&self, tokens: &[Token]) -> Vec<(String, usize)> {
            let mut edges = Vec::new();
            let mut i = 0;
            while i < tokens.len() {
                let after_sep = i > 0 && tokens[i - 1].tok == Tok::PathSep;
                if after_sep || tokens[i].ident().is_none() {
                    i += 1;
                    continue;
                }
                let paths = if tokens[i].ident() == Some("use") {
                    let mut pos = i + 1;
                    let mut paths = Vec::new();
                    use_tree(tokens, &mut pos, Vec::new(), &mut paths);
                    i = pos;
                    paths
                } else {
                    let (path, end) = expression_path(tokens, i);
                    i = end;
                    vec![path]
                };
                edges.extend(paths.iter().filter_map(|p| self.target(&p.segments).map(|m| (m, p.line))));
            }
            edges
        }

        /// The module a path names, if it names one of this crate's.
        fn target(&self, segs: &[String]) -> Option<String> {
            let first = segs.first()?.as_str();
            match first {
                "crate" => self.resolve(segs.get(1)?),
                "super" => {
                    let supers = segs.iter().take_while(|s| *s == "super").count();
                    if supers == self.depth {
                        self.resolve(segs.get(supers)?)
                    } else {
                        None
                    }
                }
                "self" if self.is_root => self.resolve(segs.get(1)?),
                _ if self.is_root && segs.len() > 1 && self.modules.contains(first) => Some(first.to_string()),
                _ => None,
            }
        }

        /// The module a name at the crate root stands for.
        fn resolve(&self, name: &str) -> Option<String> {
            if self.modules.contains(name) {
                Some(name.to_string())
            } else if name == "*" {
                Some(self.root.to_string())
            } else {
                self.names.get(name).cloned()
            }
        }
    }

    /// The path starting at `tokens[i]` in code (`a::b::c`, a `crate::{..}` group
    /// read as a use tree), and the index after it.
    fn expression_path(tokens: &[Token], i: usize) -> (UsePath, usize) {
        let mut segments = vec![tokens[i].ident().unwrap_or_default().to_string()];
        let mut line = tokens[i].line;
        let mut j = i + 1;
        while tokens.get(j).is_some_and(|t| t.tok == Tok::PathSep) {
            match tokens.get(j + 1) {
                Some(t) if t.ident().is_some() => {
                    segments.push(t.ident().unwrap_or_default().to_string());
                    line = t.line;
                    j += 2;
                }
                Some(t) if t.is('{') => {
                    // Only `use` trees have groups; read it as one, keep the first path.
                    let mut pos = j + 1;
                    let mut paths = Vec::new();
                    use_tree(tokens, &mut pos, segments.clone(), &mut paths);
                    let first = paths.into_iter().next().unwrap_or(UsePath { segments, alias: None, line });
                    return (first, pos);
                }
                _ => break,
            }
        }
        (UsePath { segments, alias: None, line }, j)
    }

    /// Tokens of Rust source: identifiers (keywords too), `::`, and single-character
    /// punctuation, each with its line. Comments, string literals (plain, byte, raw)
    /// and char literals are dropped, lifetimes and numbers too.
    fn lex(text: &str) -> Vec<Token> {
        let s: Vec<char> = text.chars().collect();
        let at = |k: usize| s.get(k).copied().unwrap_or('\0');
        let mut out = Vec::new();
        let (mut i, mut line) = (0, 1);
        while i < s.len() {
            let c = s[i];
            if c == '\n' {
                line += 1;
                i += 1;
            } else if c.is_whitespace() {
                i += 1;
            } else if c == '/' && at(i + 1) == '/' {
                while i < s.len() && s[i] != '\n' {
                    i += 1;
                }
            } else if c == '/' && at(i + 1) == '*' {
                let mut depth = 1;
                i += 2;
                while i < s.len() && depth > 0 {
                    if s[i] == '/' && at(i + 1) == '*' {
                        depth += 1;
                        i += 2;
                    } else if s[i] == '*' && at(i + 1) == '/' {
                        depth -= 1;
                        i += 2;
                    } else {
                        line += usize::from(s[i] == '\n');
                        i += 1;
                    }
                }
            } else if c == '"' {
                i = skip_string(&s, i + 1, &mut line);
            } else if c == '\'' {
                i = if at(i + 1) == '\\' {
                    // '\n', '\'', '\u{..}': to the closing quote after the escape.
                    let mut j = i + 3;
                    while j < s.len() && s[j] != '\'' {
                        j += 1;
                    }
                    j + 1
                } else if at(i + 2) == '\'' {
                    i + 3
                } else {
                    // A lifetime or label: the quote, then its name below as an identifier
                    // would be; drop both.
                    let mut j = i + 1;
                    while j < s.len() && (s[j].is_alphanumeric() || s[j] == '_') {
                        j += 1;
                    }
                    j
                };
            } else if c.is_alphabetic() || c == '_' {
                let start = i;
                while i < s.len() && (s[i].is_alphanumeric() || s[i] == '_') {
                    i += 1;
                }
                let word: String = s[start..i].iter().collect();
                let hashes = s[i..].iter().take_while(|c| **c == '#').count();
                if matches!(word.as_str(), "r" | "br" | "cr") && at(i + hashes) == '"' {
                    i = skip_raw_string(&s, i + hashes + 1, hashes, &mut line);
                } else if matches!(word.as_str(), "b" | "c") && at(i) == '"' {
                    i = skip_string(&s, i + 1, &mut line);
                } else if word == "b" && at(i) == '\'' {
                    // A byte literal: the quote branch drops it next.
                } else if word == "r" && hashes == 1 && (at(i + 1).is_alphabetic() || at(i + 1) == '_') {
                    // A raw identifier, `r#type`: the identifier follows.
                    i += 1;
                } else {
                    out.push(Token { tok: Tok::Ident(word), line });
                }
            } else if c.is_ascii_digit() {
                while i < s.len() && (s[i].is_alphanumeric() || s[i] == '_') {
                    i += 1;
                }
            } else if c == ':' && at(i + 1) == ':' {
                out.push(Token { tok: Tok::PathSep, line });
                i += 2;
            } else {
                out.push(Token { tok: Tok::Punct(c), line });
                i += 1;
            }
        }
        out
    }

    /// From just after an opening `"` to just after its closing one.
    fn skip_string(s: &[char], mut i: usize, line: &mut usize) -> usize {
        while i < s.len() && s[i] != '"' {
            if s[i] == '\\' {
                i += 1;
            }
            *line += usize::from(s.get(i) == Some(&'\n'));
            i += 1;
        }
        i + 1
    }

    /// From just after the opening `"` of a raw string with `hashes` `#`s to just after
    /// its end.
    fn skip_raw_string(s: &[char], mut i: usize, hashes: usize, line: &mut usize) -> usize {
        while i < s.len() {
            if s[i] == '"' && s[i + 1..].iter().take(hashes).filter(|c| **c == '#').count() == hashes {
                return i + 1 + hashes;
            }
            *line += usize::from(s[i] == '\n');
            i += 1;
        }
        i
    }

    /// The tokens without the items under `#[cfg(test)]`: the attribute, any
    /// attributes after it, and the item up to its `;` or its closing `}`.
    fn strip_test_items(tokens: Vec<Token>) -> Vec<Token> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            if is_cfg_test(&tokens, i) {
                i = skip_item(&tokens, i);
            } else {
                out.push(tokens[i].clone());
                i += 1;
            }
        }
        out
    }

    fn is_cfg_test(t: &[Token], i: usize) -> bool {
        let ident = |k: usize, s: &str| t.get(i + k).and_then(Token::ident) == Some(s);
        let punct = |k: usize, c: char| t.get(i + k).is_some_and(|t| t.is(c));
        punct(0, '#') && punct(1, '[') && ident(2, "cfg") && punct(3, '(') && ident(4, "test") && punct(5, ')') && punct(6, ']')
    }

    /// The index after the attributes from `i` on and the item they are on.
    fn skip_item(t: &[Token], mut i: usize) -> usize {
        while t.get(i).is_some_and(|x| x.is('#')) && t.get(i + 1).is_some_and(|x| x.is('[')) {
            i = after_group(t, i + 1);
        }
        let mut depth = 0usize;
        while let Some(x) = t.get(i) {
            i += 1;
            match &x.tok {
                Tok::Punct('(' | '[' | '{') => depth += 1,
                Tok::Punct(')' | ']') => depth = depth.saturating_sub(1),
                Tok::Punct('}') => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return i;
                    }
                }
                Tok::Punct(';') if depth == 0 => return i,
                _ => {}
            }
        }
        i
    }

    /// The index after the bracketed group opening at `t[open]`.
    fn after_group(t: &[Token], open: usize) -> usize {
        let mut depth = 0usize;
        let mut i = open;
        while let Some(x) = t.get(i) {
            i += 1;
            match &x.tok {
                Tok::Punct('(' | '[' | '{') => depth += 1,
                Tok::Punct(')' | ']' | '}') => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return i;
                    }
                }
                _ => {}
            }
        }
        i
    }

    /// A cycle of imports: modules in order, the first one again at the end.
    #[derive(Debug)]
    pub struct Cycle {
        pub modules: Vec<String>,
        /// Every module of the strongly connected set the cycle lies in.
        pub component: Vec<String>,
        /// For each edge of `modules`, where it is written.
        pub sites: Vec<Vec<Site>>,
    }

    impl Cycle {
        /// `a -> b -> a`
        pub fn chain(&self) -> String {
            self.modules.join(" -> ")
        }

        pub fn describe(&self, crate_name: &str) -> String {
            let mut text = format!("crate {crate_name}: its top-level modules import each other in a cycle: {}\n", self.chain());
            for (pair, sites) in self.modules.windows(2).zip(&self.sites) {
                let more = if sites.len() > 1 { format!(" (and {} more)", sites.len() - 1) } else { String::new() };
                text.push_str(&format!("  {} -> {}: src/{}:{}{more}\n", pair[0], pair[1], sites[0].file, sites[0].line));
            }
            if self.component.len() > self.modules.len() - 1 {
                text.push_str(&format!("  (these modules are all on cycles with each other: {})\n", self.component.join(", ")));
            }
            text.push_str(
                "  Make the imports point one way: move what one of these modules takes from the other into the module \
                 that uses it, or into a module below both (a crate's modules form a layering as the crates do; see \
                 ARCHITECTURE.md).",
            );
            text
        }
    }

    /// The cycles of a module graph: for each strongly connected set of two or more
    /// modules, the shortest cycle through each of its modules, each cycle once.
    pub fn cycles(graph: &Graph) -> Vec<Cycle> {
        let mut found: Vec<Cycle> = Vec::new();
        for component in components(graph) {
            if component.len() < 2 {
                continue;
            }
            let inside: BTreeSet<&str> = component.iter().map(String::as_str).collect();
            for start in &component {
                let modules = shortest_cycle(graph, start, &inside);
                let key: BTreeSet<(String, String)> = modules.windows(2).map(|p| (p[0].clone(), p[1].clone())).collect();
                let seen = found.iter().any(|c| c.modules.windows(2).map(|p| (p[0].clone(), p[1].clone())).collect::<BTreeSet<_>>() == key);
                if !seen {
                    let sites = modules.windows(2).map(|p| graph[&p[0]][&p[1]].clone()).collect();
                    found.push(Cycle { modules, component: component.clone(), sites });
                }
            }
        }
        found
    }

    /// The shortest cycle from `start` back to it, inside `inside` (breadth first).
    fn shortest_cycle(graph: &Graph, start: &str, inside: &BTreeSet<&str>) -> Vec<String> {
        let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([start]);
        while let Some(at) = queue.pop_front() {
            for next in graph.get(at).into_iter().flat_map(|e| e.keys()).map(String::as_str) {
                if !inside.contains(next) || came_from.contains_key(next) {
                    continue;
                }
                came_from.insert(next, at);
                if next == start {
                    let mut path = vec![start.to_string()];
                    let mut back = at;
                    while back != start {
                        path.push(back.to_string());
                        back = came_from[back];
                    }
                    path.push(start.to_string());
                    path.reverse();
                    return path;
                }
                queue.push_back(next);
            }
        }
        unreachable!("{start} is in a strongly connected set of two or more, so on a cycle")
    }

    /// The strongly connected components of the graph (Tarjan), each sorted.
    fn components(graph: &Graph) -> Vec<Vec<String>> {
        struct State<'g> {
            graph: &'g Graph,
            index: BTreeMap<&'g str, usize>,
            low: BTreeMap<&'g str, usize>,
            stack: Vec<&'g str>,
            on_stack: BTreeSet<&'g str>,
            out: Vec<Vec<String>>,
        }
        fn visit<'g>(st: &mut State<'g>, v: &'g str) {
            let n = st.index.len();
            st.index.insert(v, n);
            st.low.insert(v, n);
            st.stack.push(v);
            st.on_stack.insert(v);
            for w in st.graph.get(v).into_iter().flat_map(|e| e.keys()).map(String::as_str) {
                if !st.index.contains_key(w) {
                    visit(st, w);
                    let low = st.low[v].min(st.low[w]);
                    st.low.insert(v, low);
                } else if st.on_stack.contains(w) {
                    let low = st.low[v].min(st.index[w]);
                    st.low.insert(v, low);
                }
            }
            if st.low[v] == st.index[v] {
                let mut component = Vec::new();
                while let Some(w) = st.stack.pop() {
                    st.on_stack.remove(w);
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                component.sort();
                st.out.push(component);
            }
        }
        let mut st =
            State { graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on_stack: BTreeSet::new(), out: Vec::new() };
        for v in graph.keys() {
            if !st.index.contains_key(v.as_str()) {
                visit(&mut st, v);
            }
        }
        st.out.sort();
        st.out
    }
}

// ---- the checks on hand-made inputs ------------------------------------------------

fn src(files: &[(&str, &str)]) -> Vec<modules::SourceFile> {
    files.iter().map(|(path, text)| modules::SourceFile { path: path.to_string(), text: text.to_string() }).collect()
}

fn edges_of(graph: &modules::Graph) -> Vec<String> {
    graph.iter().flat_map(|(from, to)| to.keys().map(move |t| format!("{from} -> {t}"))).collect()
}

#[test]
fn the_cycle_finder_names_each_edge_of_a_cycle_with_its_file_and_line() {
    let files = src(&[
        ("lib.rs", "pub mod record;\npub mod checkpoint;\npub mod journal;\n"),
        ("record.rs", "//! Records.\nuse std::fmt;\n\nuse crate::checkpoint::Checkpoint;\n"),
        ("checkpoint.rs", "use crate::journal::Head;\n\npub struct Checkpoint;\n"),
        ("journal/mod.rs", "mod writer;\npub struct Head;\n"),
        ("journal/writer.rs", "use super::Head;\n\nfn f() -> super::super::record::Record { todo!() }\n"),
    ]);
    let graph = modules::graph(&files);
    assert_eq!(edges_of(&graph), ["checkpoint -> journal", "journal -> record", "record -> checkpoint"]);
    let cycles = modules::cycles(&graph);
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert_eq!(cycles[0].chain(), "checkpoint -> journal -> record -> checkpoint");
    let text = cycles[0].describe("proofrig-evidence");
    assert!(text.contains("crate proofrig-evidence"), "{text}");
    assert!(text.contains("checkpoint -> journal: src/checkpoint.rs:1"), "{text}");
    assert!(text.contains("journal -> record: src/journal/writer.rs:3"), "{text}");
    assert!(text.contains("record -> checkpoint: src/record.rs:4"), "{text}");
    assert!(text.contains("move what one of these modules takes"), "{text}");

    // Breaking one edge breaks the cycle.
    let acyclic = src(&[("lib.rs", "pub mod a;\npub mod b;\n"), ("a.rs", "use crate::b::B;\n"), ("b.rs", "pub struct B;\n")]);
    assert!(modules::cycles(&modules::graph(&acyclic)).is_empty());
}

#[test]
fn the_module_parser_follows_root_names_and_skips_tests_comments_and_literals() {
    let files = src(&[
        (
            "lib.rs",
            "pub mod model;\npub mod scope;\npub mod library;\npub mod other;\n\
             pub use model::*;\npub use other::Thing as Renamed;\n\
             pub struct Plan;\nfn check(p: &Plan) { scope::check(p) }\n",
        ),
        ("model.rs", "pub struct Step;\npub(crate) enum OnFailure { Stop }\nimpl Step { fn f() {} }\n"),
        ("scope.rs", "use crate::{Step, Plan};\npub fn check(_: &crate::Plan) {}\n"),
        ("library.rs", "use super::Renamed;\n"),
        ("other.rs", "pub struct Thing;\n"),
    ]);
    let graph = modules::graph(&files);
    assert_eq!(edges_of(&graph), ["lib -> model", "lib -> other", "lib -> scope", "library -> other", "scope -> lib", "scope -> model"]);
    let cycles = modules::cycles(&graph);
    assert_eq!(cycles.iter().map(|c| c.chain()).collect::<Vec<_>>(), ["lib -> scope -> lib"]);

    let ignored = src(&[
        ("lib.rs", "pub mod a;\npub mod b;\n"),
        ("a.rs", "pub fn a() {}\n"),
        (
            "b.rs",
            "/// Calls [`crate::a::a`].\n// crate::a::a();\n/* crate::a /* nested */ crate::a */\n\
             const S: &str = \"crate::a::a\";\nconst R: &str = r#\"crate::a \"quoted\" \"#;\nconst C: char = '\"';\n\
             fn f<'x>(s: &'x str) -> &'x str { s }\n\
             #[cfg(test)]\nmod tests {\n    use super::*;\n    use crate::a::a;\n    fn g() { let _ = '}'; }\n}\n\
             #[cfg(test)]\nuse crate::a::a as helper;\n",
        ),
    ]);
    assert_eq!(edges_of(&modules::graph(&ignored)), Vec::<String>::new());
}

#[test]
fn the_layering_check_refuses_upward_sideways_and_unknown_crates() {
    let layers: &[(&str, &[&str])] =
        &[("model", &[]), ("verdict", &["model"]), ("evidence", &["verdict"]), ("agents", &["model"]), ("run", &["evidence", "agents"])];
    let ok =
        |deps: &[(&str, &[&str])]| deps.iter().map(|(c, d)| (c.to_string(), d.iter().map(|s| s.to_string()).collect())).collect::<Vec<_>>();
    let fine = ok(&[
        ("model", &[]),
        ("verdict", &["model"]),
        ("evidence", &["verdict", "model"]),
        ("agents", &["model"]),
        ("run", &["evidence", "agents", "model"]),
    ]);
    assert_eq!(layering_violations(layers, &fine), Vec::<String>::new());

    let upward =
        ok(&[("model", &[]), ("verdict", &["model"]), ("evidence", &["verdict", "run"]), ("agents", &["model"]), ("run", &["evidence"])]);
    let problems = layering_violations(layers, &upward);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("crate evidence depends on run, which is not below it"), "{}", problems[0]);
    assert!(problems[0].contains("crates below evidence: model, verdict"), "{}", problems[0]);

    let sideways = ok(&[("model", &[]), ("verdict", &["model"]), ("evidence", &["agents"]), ("agents", &["model"]), ("run", &[])]);
    assert_eq!(layering_violations(layers, &sideways).len(), 1);

    let unknown = ok(&[("model", &[]), ("verdict", &[]), ("evidence", &[]), ("agents", &[]), ("run", &[]), ("server", &["run"])]);
    let problems = layering_violations(layers, &unknown);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("workspace crate server is not in the layering"), "{}", problems[0]);

    let gone = ok(&[("model", &[]), ("verdict", &[]), ("evidence", &[]), ("run", &[])]);
    assert!(layering_violations(layers, &gone)[0].contains("names agents, which is not a workspace crate"));
}

#[test]
fn the_device_io_check_finds_a_transitive_path() {
    let ids = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let deps: BTreeMap<String, Vec<String>> = [
        ("evidence", ids(&["plan", "serde"])),
        ("plan", ids(&["model", "helper"])),
        ("helper", ids(&["tokio-serial"])),
        ("tokio-serial", ids(&["serialport"])),
        ("model", ids(&["serde"])),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let names = BTreeMap::new();
    let problems = device_io_paths(&deps, &set(&["evidence", "model"]), &set(&["tokio-serial", "serialport"]), &names);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("crate evidence links device I/O: evidence -> plan -> helper -> tokio-serial."), "{}", problems[0]);
    assert!(device_io_paths(&deps, &set(&["model"]), &set(&["tokio-serial"]), &names).is_empty());
}

#[test]
fn the_layering_table_is_a_layering() {
    // Every crate named as a floor is itself placed, and no crate is below itself.
    let sits_on: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    for (name, floors) in LAYERS {
        for floor in *floors {
            assert!(sits_on.contains_key(floor), "LAYERS: {name} sits on {floor}, which LAYERS does not place");
        }
        assert!(!below(&sits_on, name).unwrap().contains(name), "LAYERS: {name} is below itself");
    }
}
