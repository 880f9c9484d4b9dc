//! Headless Chromium (Debian's `chromium`, which `scripts/tools` installs) to open a page as a
//! browser does and read back the document its scripts built, and a few readers for that
//! document: its elements, their attributes, an SVG path's points.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long Chromium may take to open a page and print it.
const TIMEOUT: Duration = Duration::from_secs(120);

/// `chromium` on `PATH`. When it is missing, `None` with a note on standard error for a bare
/// `cargo test`, but a failure when `SPILLWAY_TOOLS` is set (`scripts/test` sets it, after
/// `scripts/tools` installed Chromium): the test command never skips a test.
pub fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("chromium"))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("SPILLWAY_TOOLS").is_none(),
            "chromium is not on PATH: run `scripts/tools` (`scripts/test` does), which installs \
             Debian's chromium package"
        );
        eprintln!(
            "note: chromium is not on PATH, so this test checks nothing in a browser; \
             `scripts/tools` installs it, and `scripts/test` fails without it"
        );
    }
    found
}

/// Opens the file `page` in headless Chromium, with a fresh profile and every host name
/// unresolvable (the page must need no network), and returns the document as its scripts left
/// it; `None` when [`chromium`] is.
pub fn dump_dom(page: &Path) -> Option<String> {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let chromium = chromium()?;
    let profile = std::env::temp_dir().join(format!(
        "spillway-chromium-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&profile).unwrap();
    // Both outputs go to files, so that neither fills a pipe nobody reads.
    let dom_path = profile.join("dom.html");
    let stderr_path = profile.join("stderr.txt");
    let page = std::fs::canonicalize(page).unwrap();
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&dom_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not print {} in {TIMEOUT:?}", page.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let dom = std::fs::read_to_string(&dom_path).unwrap();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        status.success() && !dom.is_empty(),
        "chromium {status} printed no document for {}:\n{stderr}",
        page.display()
    );
    Some(dom)
}

/// An element of a serialized document: its opening tag, and what lies between it and its
/// closing tag.
#[derive(Debug, Clone, Copy)]
pub struct Element<'a> {
    pub open: &'a str,
    pub inner: &'a str,
}

impl<'a> Element<'a> {
    /// The value of attribute `name`, as serialized (entities left as they are).
    pub fn attr(&self, name: &str) -> Option<&'a str> {
        let key = format!(" {name}=\"");
        let start = self.open.find(&key)? + key.len();
        let length = self.open[start..].find('"')?;
        Some(&self.open[start..start + length])
    }

    /// The elements named `name` inside this one.
    pub fn elements(&self, name: &str) -> Vec<Element<'a>> {
        elements(self.inner, name)
    }

    /// The text inside, tags removed.
    pub fn text(&self) -> String {
        let mut text = String::with_capacity(self.inner.len());
        let mut in_tag = false;
        for c in self.inner.chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                _ if !in_tag => text.push(c),
                _ => {}
            }
        }
        text
    }
}

/// The elements named `name` in `html`, in document order. An element of that name nested in
/// another of the same name is not found, nor is one without a closing tag.
pub fn elements<'a>(html: &'a str, name: &str) -> Vec<Element<'a>> {
    let open = format!("<{name}");
    let close = format!("</{name}>");
    let mut found = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find(&open) {
        let after = &rest[at + open.len()..];
        if !after.starts_with([' ', '>', '/', '\n']) {
            rest = after;
            continue;
        }
        let Some(tag_end) = after.find('>') else {
            break;
        };
        let open_tag = &rest[at..at + open.len() + tag_end + 1];
        let body = &after[tag_end + 1..];
        let Some(end) = body.find(&close) else {
            break;
        };
        found.push(Element {
            open: open_tag,
            inner: &body[..end],
        });
        rest = &body[end + close.len()..];
    }
    found
}

/// The points of an SVG path made of absolute moves and lines (`M1 2L3 4`), or `None` if it
/// holds anything else or a number that does not parse.
pub fn path_points(d: &str) -> Option<Vec<(f64, f64)>> {
    d.split(['M', 'L'])
        .filter(|command| !command.trim().is_empty())
        .map(|command| {
            let mut numbers = command.split([' ', ',']).filter(|n| !n.is_empty());
            let x = numbers.next()?.parse().ok()?;
            let y = numbers.next()?.parse().ok()?;
            numbers.next().is_none().then_some((x, y))
        })
        .collect()
}
