//! The layout ratchet: measures how `src/` (not `src/bin/`) is laid out
//! and fails when it gets worse than today's numbers below.
//!
//! Measured: cycles between top-level modules (and between files of
//! different top-level modules), the length of `src/main.rs`, files over
//! 1000 lines of code and functions over 100 lines. Which top-level
//! modules name the edge crates is only printed. The targets come from
//! issue 24 (DESIGN.md, "Layout"); when a number improves, the test says
//! which constant to lower so that the gain is kept.
//!
//! The scanner is textual: comments, literals and `#[cfg(test)]` items
//! are dropped (tests may import anything), then every `crate::`,
//! `super::`, `self::`, child-module and (from the binary) `assetd::` path
//! is resolved to the longest prefix that is a module file.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

// Target (issue 24): 0 cycles between top-level modules.
const MAX_TOP_LEVEL_CYCLES: usize = 0;
// Target (issue 24): 0. Counted too, so that merging two cycles into one
// bigger one does not read as progress.
const MAX_MODULES_IN_TOP_LEVEL_CYCLES: usize = 0;
// Target (issue 24): 0 imports that point up `LAYERS`.
const MAX_UPWARD_IMPORTS: usize = 0;
// Target (issue 24): 0 files of a pure folder (`PURE`) that name an edge crate.
const MAX_EDGE_CRATES_IN_PURE_FOLDERS: usize = 0;
// Target (issue 24): 0 cycles between files of different top-level modules.
const MAX_FILE_LEVEL_CYCLES: usize = 0;
// Target (issue 24): src/main.rs at most 100 lines.
const MAX_MAIN_RS_LINES: usize = 100;
// Target (issue 24): no file over 1000 lines of code.
const MAX_FILES_OVER_1000: usize = 0;
// Target (issue 24): no function over 100 lines.
const MAX_FUNCTIONS_OVER_100: usize = 0;

/// The library's folders, lowest first (DESIGN.md, "Layout"): a folder
/// may import only from the folders before it.
const LAYERS: [&str; 8] = [
    "model",
    "input",
    "core",
    "store",
    "engine",
    "reconcile",
    "report",
    "daemon",
];
/// The folders that may name no edge crate.
const PURE: [&str; 3] = ["model", "input", "core"];

/// Crates for the edges (engine, store, API, CLI), not the pure modules.
const EDGE_CRATES: [&str; 4] = ["bollard", "sled", "axum", "clap"];
const CFG_TEST: [&str; 7] = ["#", "[", "cfg", "(", "test", ")", "]"];

/// `src/main.rs` and the modules it declares are a second crate, in
/// which `crate::` means `main`.
#[derive(Clone, Copy, PartialEq)]
enum Crate {
    Lib,
    Bin,
}

type Graph = BTreeMap<String, BTreeSet<String>>;

#[derive(Clone)]
struct Tok {
    text: String,
    line: usize,
}

/// A non-test source file.
struct Source {
    rel: String,
    krate: Crate,
    module: Vec<String>,
    /// Without comments, literals' text and `#[cfg(test)]` items.
    toks: Vec<Tok>,
    lines: usize,
}

/// One ratcheted number, and what makes it up.
struct Measure {
    constant: &'static str,
    max: usize,
    value: usize,
    items: Vec<String>,
}

macro_rules! measure {
    ($max:ident, $value:expr, $items:expr) => {
        Measure {
            constant: stringify!($max),
            max: $max,
            value: $value,
            items: $items,
        }
    };
}

#[test]
fn layout_does_not_get_worse() {
    let sources = load();
    let measures = measure(&sources);
    let report: String = measures.iter().map(Measure::report).collect();
    println!("layout of src/ (targets: issue 24, DESIGN.md \"Layout\")\n{report}");
    println!("{}", edge_crates(&sources));
    let mut worse = Vec::new();
    for &Measure {
        constant,
        max,
        value,
        ..
    } in &measures
    {
        if value < max {
            println!("improved: lower {constant} to {value} in tests/layout.rs");
        }
        if value > max {
            worse.push(constant);
        }
    }
    assert!(worse.is_empty(), "worse (issue 24): {worse:?}\n{report}");
}

impl Measure {
    fn report(&self) -> String {
        let Measure {
            constant,
            max,
            value,
            items,
        } = self;
        let items: String = items.iter().map(|i| format!("\n  {i}")).collect();
        format!("{constant} = {max}, measured {value}{items}\n")
    }
}

fn measure(sources: &[Source]) -> Vec<Measure> {
    let (tops, files) = graphs(sources);
    let upward = upward_imports(&tops);
    let impure = edge_crates_in_pure_folders(sources);
    let (tops, files) = (cycles(&tops), cycles(&files));
    let in_cycles = tops.iter().map(|c| c.matches(", ").count() + 1).sum();
    let main = sources.iter().find(|s| s.rel == "src/main.rs");
    let main_lines = main.map_or(0, |s| s.lines);
    let mut big_files = Vec::new();
    let mut long_fns = Vec::new();
    for s in sources {
        let loc = s.toks.iter().map(|t| t.line).collect::<BTreeSet<_>>().len();
        if loc > 1000 {
            big_files.push(format!("{}: {loc} lines of code", s.rel));
        }
        for (name, line, len) in functions(&s.toks).into_iter().filter(|f| f.2 > 100) {
            long_fns.push(format!("{}:{line} fn {name}: {len} lines", s.rel));
        }
    }
    vec![
        measure!(MAX_TOP_LEVEL_CYCLES, tops.len(), tops.clone()),
        measure!(MAX_MODULES_IN_TOP_LEVEL_CYCLES, in_cycles, tops),
        measure!(MAX_UPWARD_IMPORTS, upward.len(), upward),
        measure!(MAX_EDGE_CRATES_IN_PURE_FOLDERS, impure.len(), impure),
        measure!(MAX_FILE_LEVEL_CYCLES, files.len(), files),
        measure!(MAX_MAIN_RS_LINES, main_lines, vec![]),
        measure!(MAX_FILES_OVER_1000, big_files.len(), big_files),
        measure!(MAX_FUNCTIONS_OVER_100, long_fns.len(), long_fns),
    ]
}

/// The graphs of top-level modules and of files in different ones.
fn graphs(sources: &[Source]) -> (Graph, Graph) {
    let mut modules: BTreeSet<String> = ["lib".into(), "main".into()].into();
    modules.extend(sources.iter().map(|s| key(s.krate, &s.module)));
    let (mut tops, mut files) = (Graph::new(), Graph::new());
    for s in sources {
        let from = key(s.krate, &s.module);
        for (inline, path) in paths_in(&s.toks) {
            let here = [&s.module[..], &inline].concat();
            let to = resolve(&modules, s.krate, &here, &path);
            if let Some(to) = to.filter(|to| top(to) != top(&from)) {
                tops.entry(top(&from)).or_default().insert(top(&to));
                files.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    (tops, files)
}

/// Edges from a folder to one after it in `LAYERS` (a folder outside
/// `LAYERS`, or the binary, may import anything).
fn upward_imports(tops: &Graph) -> Vec<String> {
    let layer = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut up = Vec::new();
    for (from, tos) in tops {
        for to in tos {
            if let (Some(a), Some(b)) = (layer(from), layer(to)) {
                if b > a {
                    up.push(format!("{from} -> {to}"));
                }
            }
        }
    }
    up
}

/// Files of the pure folders that name an edge crate.
fn edge_crates_in_pure_folders(sources: &[Source]) -> Vec<String> {
    let mut found = Vec::new();
    for s in sources.iter().filter(|s| s.krate == Crate::Lib) {
        let folder = top(&key(s.krate, &s.module));
        if !PURE.contains(&folder.as_str()) {
            continue;
        }
        for name in EDGE_CRATES.iter().filter(|c| names(&s.toks, c)) {
            found.push(format!("{}: {name}", s.rel));
        }
    }
    found
}

/// How many files of each top-level module name each edge crate.
fn edge_crates(sources: &[Source]) -> String {
    let mut rows: BTreeMap<String, [usize; 4]> = BTreeMap::new();
    for s in sources {
        for (i, name) in EDGE_CRATES.iter().enumerate() {
            if names(&s.toks, name) {
                rows.entry(top(&key(s.krate, &s.module))).or_default()[i] += 1;
            }
        }
    }
    let mut table = format!("{:<16}", "edge crates");
    table += &EDGE_CRATES.map(|c| format!("{c:>8}")).concat();
    for (module, counts) in rows {
        let counts = counts.map(|n| format!("{n:>8}")).concat();
        table += &format!("\n{module:<16}{counts}");
    }
    table
}

/// Whether code names a crate (`name::`).
fn names(t: &[Tok], name: &str) -> bool {
    t.windows(2).any(|w| w[0].text == name && w[1].text == "::")
}

fn load() -> Vec<Source> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    rust_files(&src, &src.join("bin"), &mut paths);
    paths.sort();
    let bin_mods = declared_mods(&lex(&read(&src.join("main.rs"))));
    let (mut sources, mut test_mods) = (Vec::new(), BTreeSet::new());
    for path in paths {
        let (raw, rel) = (read(&path), path.strip_prefix(&src).expect("under src"));
        let toks = lex(&raw);
        // Modules are found by file name; a #[path] would break that silently.
        let path_attr = toks.windows(3).any(|w| texts(w) == "# [ path");
        assert!(!path_attr, "{rel:?}: #[path] is not supported");
        let (krate, module) = module_of(rel, &bin_mods);
        let (toks, tests) = drop_cfg_test(toks);
        test_mods.extend(tests.iter().map(|t| key(krate, &child(&module, t))));
        let (rel, lines) = (format!("src/{}", rel.display()), raw.lines().count());
        sources.push(Source {
            rel,
            krate,
            module,
            toks,
            lines,
        });
    }
    // Test files: `tests` modules, and files declared under #[cfg(test)].
    sources.retain(|s| {
        let mut prefixes = (1..=s.module.len()).map(|n| key(s.krate, &s.module[..n]));
        !s.module.ends_with(&["tests".into()]) && !prefixes.any(|m| test_mods.contains(&m))
    });
    sources
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn rust_files(dir: &Path, skip: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("a source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() && path != skip {
            rust_files(&path, skip, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `lib.rs` → root, `foo.rs` and `foo/mod.rs` → `foo`, `foo/bar.rs` → `foo::bar`.
fn module_of(rel: &Path, bin_mods: &[String]) -> (Crate, Vec<String>) {
    let segs = rel.with_extension("");
    let mut segs: Vec<String> = segs.iter().map(|s| s.to_string_lossy().into()).collect();
    let bin = segs == ["main"] || bin_mods.contains(&segs[0]);
    if segs == ["lib"] || segs == ["main"] || segs.ends_with(&["mod".into()]) {
        segs.pop();
    }
    (if bin { Crate::Bin } else { Crate::Lib }, segs)
}

/// A module's name; the crate roots are `lib` and `main` (the binary's
/// modules, `cli`, have names of their own).
fn key(krate: Crate, module: &[String]) -> String {
    match (module.is_empty(), krate) {
        (true, Crate::Lib) => "lib".into(),
        (true, Crate::Bin) => "main".into(),
        _ => module.join("::"),
    }
}

fn child(module: &[String], name: &str) -> Vec<String> {
    [module, &[name.to_string()]].concat()
}

fn top(key: &str) -> String {
    key.split("::").next().unwrap_or(key).to_string()
}

/// Words, `::` and single punctuation with their line. Comments are
/// dropped and a literal becomes one `"` per line it spans, so paths in
/// comments and strings do not count but their lines do.
fn lex(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let (mut toks, mut line, mut i) = (Vec::new(), 1, 0);
    while i < c.len() {
        let (rest, literal) = (&c[i..], literal_end(&c, i));
        let comment = c[i] == '/' && matches!(c.get(i + 1), Some('/' | '*'));
        let end = if let Some(end) = literal {
            end
        } else if comment && c[i + 1] == '/' {
            i + rest.iter().take_while(|&&ch| ch != '\n').count()
        } else if comment {
            block_comment_end(&c, i)
        } else if rest.starts_with(&[':', ':']) {
            i + 2
        } else {
            i + rest.iter().take_while(|&&ch| is_ident(ch)).count().max(1)
        };
        let text: String = c[i..end].iter().collect();
        let lines = text.matches('\n').count();
        if literal.is_some() {
            let quote = |line| Tok {
                text: "\"".into(),
                line,
            };
            toks.extend((line..=line + lines).map(quote));
        } else if !comment && !c[i].is_whitespace() {
            toks.push(Tok { text, line });
        }
        line += lines;
        i = end;
    }
    toks
}

/// Block comments nest in Rust.
fn block_comment_end(c: &[char], mut i: usize) -> usize {
    let mut depth = 0;
    while i < c.len() {
        match &c[i..(i + 2).min(c.len())] {
            ['/', '*'] => (depth, i) = (depth + 1, i + 2),
            ['*', '/'] => (depth, i) = (depth - 1, i + 2),
            _ => i += 1,
        }
        if depth == 0 {
            break;
        }
    }
    i
}

/// The end of a string or char literal at `i` (raw, byte and C ones too).
fn literal_end(c: &[char], i: usize) -> Option<usize> {
    if i > 0 && is_ident(c[i - 1]) {
        return None;
    }
    let mut j = i + usize::from(matches!(c[i], 'b' | 'c'));
    if c.get(j) == Some(&'r') {
        let hashes = c[j + 1..].iter().take_while(|&&ch| ch == '#').count();
        j += 1 + hashes;
        if c.get(j) != Some(&'"') {
            return None;
        }
        let close: Vec<char> = std::iter::once('"').chain(vec!['#'; hashes]).collect();
        let end = (j + 1..c.len()).find(|&k| c[k..].starts_with(&close));
        return Some(end.map_or(c.len(), |k| k + close.len()));
    }
    let quote = *c.get(j)?;
    let is_char = quote == '\'' && (c.get(j + 1) == Some(&'\\') || c.get(j + 2) == Some(&'\''));
    if quote != '"' && !is_char {
        return None;
    }
    j += 1;
    while j < c.len() && c[j] != quote {
        j += if c[j] == '\\' { 2 } else { 1 };
    }
    Some((j + 1).min(c.len()))
}

fn is_ident(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

fn is_word(s: &str) -> bool {
    s.starts_with(|ch: char| ch.is_alphabetic() || ch == '_')
}

fn text(t: &[Tok], i: usize) -> &str {
    t.get(i).map_or("", |t| &t.text)
}

fn texts(t: &[Tok]) -> String {
    let words: Vec<&str> = t.iter().map(|t| t.text.as_str()).collect();
    words.join(" ")
}

/// The last token of the item from `i`: its `;`, or the `}` of its block.
fn item_end(t: &[Tok], mut i: usize) -> usize {
    let (mut parens, mut braces) = (0, 0);
    while i < t.len() {
        match t[i].text.as_str() {
            "(" | "[" => parens += 1,
            ")" | "]" => parens -= 1,
            ";" if parens == 0 && braces == 0 => return i,
            "{" if parens == 0 => braces += 1,
            "}" if parens == 0 && braces == 1 => return i,
            "}" if parens == 0 => braces -= 1,
            _ => {}
        }
        i += 1;
    }
    t.len() - 1
}

/// Drops every `#[cfg(test)]` item; returns the `mod NAME;` files so
/// declared, which are test code too.
fn drop_cfg_test(t: Vec<Tok>) -> (Vec<Tok>, Vec<String>) {
    let (mut kept, mut mods, mut i) = (Vec::new(), Vec::new(), 0);
    while i < t.len() {
        if t[i..].iter().take(7).map(|t| &t.text).eq(CFG_TEST) {
            let end = item_end(&t, i + 7);
            mods.extend(declared_mods(&t[end.saturating_sub(2)..=end]));
            i = end + 1;
        } else {
            kept.push(t[i].clone());
            i += 1;
        }
    }
    (kept, mods)
}

/// The `mod NAME;` declarations (files).
fn declared_mods(t: &[Tok]) -> Vec<String> {
    let decl = |w: &[Tok]| (w[0].text == "mod" && w[2].text == ";").then(|| w[1].text.clone());
    t.windows(3).filter_map(decl).collect()
}

/// Every path, with the inline `mod x { }`s it sits in; use trees are
/// expanded: `a::{b, c::D}` → `a::b`, `a::c::D`.
fn paths_in(t: &[Tok]) -> Vec<(Vec<String>, Vec<String>)> {
    // The open braces, each with the name of the inline module it opens.
    let (mut out, mut open, mut i) = (Vec::new(), Vec::new(), 0);
    while i < t.len() {
        match t[i].text.as_str() {
            "{" => open.push((i >= 2 && t[i - 2].text == "mod").then(|| t[i - 1].text.clone())),
            "}" => drop(open.pop()),
            w if is_word(w) && text(t, i + 1) == "::" && (i == 0 || t[i - 1].text != "::") => {
                let here: Vec<String> = open.iter().flatten().cloned().collect();
                let mut paths = Vec::new();
                i = use_tree(t, i, vec![], &mut paths);
                out.extend(paths.into_iter().map(|p| (here.clone(), p)));
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Parses the path or use tree at `i` into `out`; returns the index after it.
fn use_tree(t: &[Tok], mut i: usize, mut path: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    loop {
        match text(t, i) {
            "{" => return use_group(t, i + 1, &path, out),
            "*" => {
                i += 1;
                break;
            }
            w if is_word(w) => path.push(w.to_string()),
            _ => break,
        }
        i += 1;
        if text(t, i) != "::" {
            break;
        }
        i += 1;
    }
    i += if text(t, i) == "as" { 2 } else { 0 };
    out.push(path);
    i
}

fn use_group(t: &[Tok], mut i: usize, path: &[String], out: &mut Vec<Vec<String>>) -> usize {
    while i < t.len() && t[i].text != "}" {
        let comma = t[i].text == ",";
        i = if comma {
            i + 1
        } else {
            use_tree(t, i, path.to_vec(), out).max(i + 1)
        };
    }
    i + 1
}

/// The module file that a path written in module `here` names; `None`
/// for other crates, types and locals.
fn resolve(
    modules: &BTreeSet<String>,
    krate: Crate,
    here: &[String],
    path: &[String],
) -> Option<String> {
    let (first, rest) = path.split_first()?;
    let child = child(here, first);
    let (krate, mut abs) = match first.as_str() {
        "crate" => (krate, vec![]),
        "assetd" if krate == Crate::Bin => (Crate::Lib, vec![]),
        "self" => (krate, here.to_vec()),
        "super" => (krate, here[..here.len().saturating_sub(1)].to_vec()),
        _ if modules.contains(&key(krate, &child)) => (krate, child),
        _ => return None,
    };
    for seg in rest.iter().filter(|s| *s != "self") {
        if seg == "super" {
            abs.pop();
        } else {
            abs.push(seg.clone());
        }
    }
    while !abs.is_empty() && !modules.contains(&key(krate, &abs)) {
        abs.pop();
    }
    Some(key(krate, &abs))
}

/// `(name, first line, lines)` of every `fn` with a body.
fn functions(t: &[Tok]) -> Vec<(String, usize, usize)> {
    let mut fns = Vec::new();
    for i in (0..t.len()).filter(|&i| t[i].text == "fn" && is_word(text(t, i + 1))) {
        let end = item_end(t, i);
        if t[end].text == "}" {
            let (name, line) = (t[i + 1].text.clone(), t[i].line);
            fns.push((name, line, t[end].line - line + 1));
        }
    }
    fns
}

/// Strongly connected components with more than one node (Kosaraju),
/// as `{a, b}`.
fn cycles(g: &Graph) -> Vec<String> {
    let mut reversed = Graph::new();
    for (a, b) in g.iter().flat_map(|(a, bs)| bs.iter().map(move |b| (a, b))) {
        reversed.entry(b.clone()).or_default().insert(a.clone());
    }
    let (mut seen, mut order, mut sccs) = (BTreeSet::new(), Vec::new(), Vec::new());
    for n in g.keys().chain(reversed.keys()) {
        post_order(g, n, &mut seen, &mut order);
    }
    seen.clear();
    for n in order.iter().rev() {
        let mut scc = Vec::new();
        post_order(&reversed, n, &mut seen, &mut scc);
        scc.sort();
        if scc.len() > 1 {
            sccs.push(format!("{{{}}}", scc.join(", ")));
        }
    }
    sccs
}

fn post_order(g: &Graph, n: &str, seen: &mut BTreeSet<String>, out: &mut Vec<String>) {
    if seen.insert(n.to_string()) {
        for m in g.get(n).into_iter().flatten() {
            post_order(g, m, seen, out);
        }
        out.push(n.to_string());
    }
}

fn segs(path: &str) -> Vec<String> {
    let segs = path.split("::").filter(|s| !s.is_empty());
    segs.map(String::from).collect()
}

#[test]
fn comments_and_literals_are_dropped_but_lifetimes_kept() {
    let src = "a // crate::x\n/* /* crate::y */ */ b\"crate::z {\" r#\"crate::w\"# '{' '\\'' &'a c";
    let toks = lex(src);
    assert_eq!(texts(&toks), "a \" \" \" \" & ' a c");
    assert_eq!(toks.iter().map(|t| t.line).max(), Some(2));
}

#[test]
fn grouped_use_trees_expand_to_paths() {
    let src = "use crate::{a::X, b::{self, c as e, d::*}}; fn f() { crate::plan::P::new(); }";
    let paths: Vec<String> = paths_in(&lex(src)).iter().map(|p| p.1.join("::")).collect();
    let want = "crate::a::X crate::b::self crate::b::c crate::b::d crate::plan::P::new";
    assert_eq!(paths.join(" "), want);
}

#[test]
fn paths_resolve_relative_to_the_module() {
    let modules = "lib plan strategy strategy::local strategy::pull".split(' ');
    let modules: BTreeSet<String> = modules.map(String::from).collect();
    let name = |p: &str| resolve(&modules, Crate::Lib, &segs("strategy::local"), &segs(p));
    assert_eq!(name("super::pull::Pull").as_deref(), Some("strategy::pull"));
    assert_eq!(name("super::super::plan::Plan").as_deref(), Some("plan"));
    assert_eq!(name("crate::plan::Plan::default").as_deref(), Some("plan"));
    assert_eq!(name("self::Local").as_deref(), Some("strategy::local"));
    assert_eq!(name("crate::Root").as_deref(), Some("lib"));
    assert_eq!(name("std::fs"), None);
}

#[test]
fn cfg_test_items_are_dropped_and_fns_measured() {
    let src = "use crate::a;\n#[cfg(test)]\nmod tests { use crate::b; }\n#[cfg(test)]\npub mod fake;\nfn f() {\n}\n";
    let (toks, mods) = drop_cfg_test(lex(src));
    assert_eq!(
        (texts(&toks), mods),
        ("use crate :: a ; fn f ( ) { }".into(), segs("fake"))
    );
    assert_eq!(functions(&toks), [("f".to_string(), 6, 2)]);
}

#[test]
fn cycles_are_the_components_of_more_than_one_node() {
    let mut g = Graph::new();
    for edge in ["a b", "b a", "b c", "c d", "d e", "e c", "e f"] {
        let (a, b) = edge.split_once(' ').unwrap();
        g.entry(a.into()).or_default().insert(b.into());
    }
    assert_eq!(cycles(&g), ["{a, b}", "{c, d, e}"]);
}

#[test]
fn imports_may_point_only_down_the_layers() {
    let mut g = Graph::new();
    for edge in ["core model", "model core", "daemon core", "cli daemon"] {
        let (a, b) = edge.split_once(' ').unwrap();
        g.entry(a.into()).or_default().insert(b.into());
    }
    assert_eq!(upward_imports(&g), ["model -> core"]);
}
