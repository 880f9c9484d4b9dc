//! The core's top-level modules depend on each other in one direction only: no module reaches,
//! directly or through others, a module that reaches it. A cycle is where a change in one place
//! starts breaking another for no reason a reader can see, so this test refuses every one.
//!
//! It reads `src/` with `syn`, follows `mod` declarations from `lib.rs`, and records every path
//! that starts at `crate::` (or climbs out of a module with `super::`), in code and inside macro
//! calls such as `tracing::error!`. Test code (`#[cfg(test)]`) is left out: tests may use
//! `crate::testing`, which uses everything. Doc links are not dependencies and are not read.
//! The layers the graph forms today are drawn in docs/architecture.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::{self, Visit};

/// An edge `from -> to` between top-level modules, with the files that make it.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

#[test]
fn the_core_modules_depend_on_each_other_without_cycles() {
    let graph = read_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    // The scan itself must see what is there, or an empty graph would pass: one edge in plain
    // code, one seen only inside a macro call.
    assert!(
        has_edge(&graph, "api", "app"),
        "the scan found no api -> app: {graph:#?}"
    );
    assert!(
        has_edge(&graph, "consumer", "error"),
        "the scan missed a path inside a macro call: {graph:#?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("{}", describe(&graph, &cycle));
    }
}

#[test]
fn a_cycle_is_found_and_named() {
    let mut graph = Graph::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "d"), ("d", "b")] {
        add_edge(&mut graph, from, to, "lib.rs");
    }
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["b".into(), "c".into(), "d".into()])
    );
    let acyclic = [("a", "b"), ("a", "c"), ("b", "c")];
    let mut graph = Graph::new();
    for (from, to) in acyclic {
        add_edge(&mut graph, from, to, "lib.rs");
    }
    assert_eq!(find_cycle(&graph), None);
}

#[test]
fn paths_in_code_macros_and_super_are_read_and_test_code_is_not() {
    let source = r#"
        use crate::alpha::Thing;
        use crate::{beta, gamma::Other};
        fn f() { tracing::warn!(error = %crate::delta::Chain(&e), "x"); super::epsilon::g(); }
        #[cfg(test)]
        mod tests { use crate::zeta::Helper; }
    "#;
    let file = syn::parse_file(source).unwrap();
    let mut scan = Scan::new(vec!["own".into(), "child".into()]);
    scan.visit_file(&file);
    let found: Vec<&str> = scan.targets.iter().map(String::as_str).collect();
    assert_eq!(found, ["alpha", "beta", "delta", "gamma", "own"]);
}

fn has_edge(graph: &Graph, from: &str, to: &str) -> bool {
    graph
        .get(from)
        .is_some_and(|targets| targets.contains_key(to))
}

fn add_edge(graph: &mut Graph, from: &str, to: &str, file: &str) {
    graph
        .entry(from.to_owned())
        .or_default()
        .entry(to.to_owned())
        .or_default()
        .insert(file.to_owned());
}

/// Every edge between the top-level modules declared in `src/lib.rs`.
fn read_graph(src: &Path) -> Graph {
    let lib = parse(&src.join("lib.rs"));
    let mut graph = Graph::new();
    let modules: Vec<(String, Option<&Vec<syn::Item>>)> = lib
        .items
        .iter()
        .filter_map(|item| match item {
            syn::Item::Mod(module) if !is_test_only(&module.attrs) => Some((
                module.ident.to_string(),
                module.content.as_ref().map(|(_, items)| items),
            )),
            _ => None,
        })
        .collect();
    let names: BTreeSet<String> = modules.iter().map(|(name, _)| name.clone()).collect();
    for (name, inline) in &modules {
        assert!(inline.is_none(), "module `{name}` is inline in lib.rs");
        let mut files = vec![];
        collect_files(src, std::slice::from_ref(name), &mut files);
        for (path, file) in files {
            let mut scan = Scan::new(path);
            scan.visit_file(&file);
            for target in scan.targets {
                if target != *name && names.contains(&target) {
                    add_edge(&mut graph, name, &target, &file_name(src, &scan.module));
                }
            }
        }
    }
    graph
}

fn file_name(src: &Path, module: &[String]) -> String {
    let direct = src.join(format!("{}.rs", module.join("/")));
    let path = if direct.exists() {
        direct
    } else {
        src.join(module.join("/")).join("mod.rs")
    };
    path.strip_prefix(src.parent().unwrap_or(src))
        .unwrap_or(&path)
        .display()
        .to_string()
}

/// The parsed files of `module` and its submodules (not those only compiled for tests).
fn collect_files(src: &Path, module: &[String], out: &mut Vec<(Vec<String>, syn::File)>) {
    let path = module_file(src, module);
    let file = parse(&path);
    for item in &file.items {
        if let syn::Item::Mod(child) = item
            && child.content.is_none()
            && !is_test_only(&child.attrs)
        {
            let mut path = module.to_vec();
            path.push(child.ident.to_string());
            collect_files(src, &path, out);
        }
    }
    out.push((module.to_vec(), file));
}

fn module_file(src: &Path, module: &[String]) -> PathBuf {
    let direct = src.join(format!("{}.rs", module.join("/")));
    if direct.exists() {
        direct
    } else {
        src.join(module.join("/")).join("mod.rs")
    }
}

fn parse(path: &Path) -> syn::File {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    syn::parse_file(&text).unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()))
}

/// Whether `attrs` compile the item only for tests: `#[cfg(test)]`. An item also built for the
/// `testing` feature (`#[cfg(any(test, feature = "testing"))]`) counts: other crates' tests use
/// it, and it must not close a cycle either.
fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg")
            && attr
                .meta
                .require_list()
                .is_ok_and(|list| list.tokens.to_string() == "test")
    })
}

/// The top-level modules one file's code names.
struct Scan {
    /// The module the file is, from the crate root: `["api", "submit"]`.
    module: Vec<String>,
    targets: BTreeSet<String>,
}

impl Scan {
    fn new(module: Vec<String>) -> Self {
        Self {
            module,
            targets: BTreeSet::new(),
        }
    }

    /// Records the top-level module a path starting with `first`, `rest` reaches, if it starts
    /// at the crate root or climbs to it with `super`.
    fn record<'a>(&mut self, first: &str, mut rest: impl Iterator<Item = &'a str>) {
        match first {
            "crate" => {
                if let Some(top) = rest.next() {
                    self.targets.insert(top.to_owned());
                }
            }
            "super" => {
                let mut depth = self.module.len().saturating_sub(1);
                let mut next = rest.next();
                while next == Some("super") {
                    depth = depth.saturating_sub(1);
                    next = rest.next();
                }
                let top = if depth == 0 {
                    next.map(str::to_owned)
                } else {
                    self.module.first().cloned()
                };
                if let Some(top) = top {
                    self.targets.insert(top);
                }
            }
            _ => {}
        }
    }

    /// Paths inside a macro call's tokens: `crate :: name` and `super :: name`.
    fn scan_tokens(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        for (i, token) in tokens.iter().enumerate() {
            match token {
                TokenTree::Group(group) => self.scan_tokens(group.stream()),
                TokenTree::Ident(ident) if ident == "crate" || ident == "super" => {
                    let idents = tokens[i + 1..].chunks(3).map_while(|chunk| match chunk {
                        [
                            TokenTree::Punct(a),
                            TokenTree::Punct(b),
                            TokenTree::Ident(name),
                        ] if a.as_char() == ':' && b.as_char() == ':' => Some(name.to_string()),
                        _ => None,
                    });
                    let idents: Vec<String> = idents.collect();
                    self.record(&ident.to_string(), idents.iter().map(String::as_str));
                }
                _ => {}
            }
        }
    }
}

impl<'ast> Visit<'ast> for Scan {
    fn visit_item_mod(&mut self, module: &'ast syn::ItemMod) {
        if !is_test_only(&module.attrs) {
            visit::visit_item_mod(self, module);
        }
    }

    fn visit_item_fn(&mut self, function: &'ast syn::ItemFn) {
        if !is_test_only(&function.attrs) {
            visit::visit_item_fn(self, function);
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        if !is_test_only(&item.attrs) {
            visit::visit_item_use(self, item);
        }
    }

    fn visit_item_impl(&mut self, item: &'ast syn::ItemImpl) {
        if !is_test_only(&item.attrs) {
            visit::visit_item_impl(self, item);
        }
    }

    fn visit_use_tree(&mut self, tree: &'ast syn::UseTree) {
        if let syn::UseTree::Path(path) = tree {
            let first = path.ident.to_string();
            if first == "crate" || first == "super" {
                for name in use_heads(&path.tree, first == "super") {
                    self.record(&first, name.iter().map(String::as_str));
                }
                return;
            }
        }
        visit::visit_use_tree(self, tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if let Some((first, rest)) = segments.split_first() {
            self.record(first, rest.iter().map(String::as_str));
        }
        visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.scan_tokens(mac.tokens.clone());
        visit::visit_macro(self, mac);
    }
}

/// The paths below `crate::` (or `super::`) in a `use` tree, each as far as the climb needs:
/// `crate::{a, b::c}` gives `[a]` and `[b]`; `super::super::x` gives `[super, x]`.
fn use_heads(tree: &syn::UseTree, climbing: bool) -> Vec<Vec<String>> {
    match tree {
        syn::UseTree::Path(path) => {
            let head = path.ident.to_string();
            if climbing && head == "super" {
                use_heads(&path.tree, true)
                    .into_iter()
                    .map(|rest| std::iter::once(head.clone()).chain(rest).collect())
                    .collect()
            } else {
                vec![vec![head]]
            }
        }
        syn::UseTree::Name(name) => vec![vec![name.ident.to_string()]],
        syn::UseTree::Rename(rename) => vec![vec![rename.ident.to_string()]],
        syn::UseTree::Group(group) => group
            .items
            .iter()
            .flat_map(|item| use_heads(item, climbing))
            .collect(),
        syn::UseTree::Glob(_) => vec![],
    }
}

/// A cycle of modules, if the graph has one: depth-first, reported from its first module.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn walk(
        graph: &Graph,
        node: &str,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_owned(), Mark::Open);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flat_map(BTreeMap::keys) {
            match marks.get(next) {
                Some(Mark::Open) => {
                    let start = stack.iter().position(|n| n == next).unwrap_or(0);
                    return Some(stack[start..].to_vec());
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(cycle) = walk(graph, next, marks, stack) {
                        return Some(cycle);
                    }
                }
            }
        }
        stack.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if !marks.contains_key(node)
            && let Some(cycle) = walk(graph, node, &mut marks, &mut vec![])
        {
            return Some(cycle);
        }
    }
    None
}

fn describe(graph: &Graph, cycle: &[String]) -> String {
    let mut text = format!(
        "the core's modules form a cycle: {} -> {}\n",
        cycle.join(" -> "),
        cycle[0]
    );
    for (i, from) in cycle.iter().enumerate() {
        let to = &cycle[(i + 1) % cycle.len()];
        let files = &graph[from][to];
        let files: Vec<&str> = files.iter().map(String::as_str).collect();
        text.push_str(&format!("  {from} -> {to} in {}\n", files.join(", ")));
    }
    text.push_str(
        "move what both sides need into the lower module (or a leaf of its own); \
         docs/architecture.md shows the layers",
    );
    text
}
