//! The documentation (docs/, the book; README.md): the book builds with no warnings, its
//! generated reference is the code's, every internal link and anchor of the built book and of
//! the README resolves, and every command block of the getting-started page says how it is
//! checked. Fast, and no cluster: hack/test.sh runs these before the behaviour tests.
//!
//! mdBook comes from `REPORT_OPERATOR_DOCS_BUILT` (a book hack/test.sh built) or is run here
//! through `hack/docs.sh build`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The built book: a directory of HTML files, built once per test run.
fn book() -> &'static Path {
    static BOOK: OnceLock<PathBuf> = OnceLock::new();
    BOOK.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("report-operator-book-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new("bash")
            .arg(repo_root().join("hack/docs.sh"))
            .arg("build")
            .arg(&dir)
            .output()
            .expect("run hack/docs.sh build");
        let log = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "hack/docs.sh build failed:\n{log}");
        let problems: Vec<&str> = log
            .lines()
            .filter(|l| {
                let level = l.split_whitespace().next().unwrap_or_default();
                level == "WARN" || level == "ERROR" || l.contains("Warning")
            })
            .collect();
        assert!(
            problems.is_empty(),
            "the book builds with warnings:\n{}",
            problems.join("\n")
        );
        dir
    })
}

#[test]
fn the_book_builds_without_warnings() {
    assert!(book().join("index.html").is_file());
}

#[test]
fn the_reference_is_the_codes() {
    let committed = repo_root().join("docs/src/reference");
    let fresh = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_report-operator"))
        .args(["docs", "reference", "--out"])
        .arg(fresh.path())
        .output()
        .expect("run report-operator docs reference");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let files = |dir: &Path| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
            .collect()
    };
    let (want, have) = (files(fresh.path()), files(&committed));
    let mut stale: Vec<String> = want.symmetric_difference(&have).cloned().collect();
    for name in want.intersection(&have) {
        let a = std::fs::read_to_string(fresh.path().join(name)).expect("generated page");
        let b = std::fs::read_to_string(committed.join(name)).expect("committed page");
        if a != b {
            stale.push(name.clone());
        }
    }
    assert!(
        stale.is_empty(),
        "docs/src/reference is stale ({}): run `hack/docs.sh reference` and commit the result",
        stale.join(", ")
    );
}

/// Every `href` of the built book that stays inside it names a file that exists and, with a
/// `#fragment`, an id in that file.
#[test]
fn every_link_and_anchor_in_the_book_resolves() {
    let broken = broken_links(book());
    assert!(
        broken.is_empty(),
        "broken links in the book:\n{}",
        broken.join("\n")
    );
}

/// The README's links into the book (`docs/src/….md#…`) name pages and anchors that exist.
#[test]
fn the_readmes_links_into_the_book_resolve() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README");
    let mut ids = Ids::default();
    let mut broken = Vec::new();
    let mut seen = 0;
    for target in markdown_links(&readme) {
        if target.contains("://") {
            continue;
        }
        seen += 1;
        let (path, fragment) = target.split_once('#').unwrap_or((&target, ""));
        let Some(page) = path.strip_prefix("docs/src/").and_then(|p| p.strip_suffix(".md")) else {
            if !repo_root().join(path).exists() {
                broken.push(format!("{target}: no such file"));
            }
            continue;
        };
        let html = book().join(format!("{page}.html"));
        if !html.is_file() {
            broken.push(format!("{target}: no page {page} in the book"));
        } else if !fragment.is_empty() && !ids.of(&html).contains(fragment) {
            broken.push(format!("{target}: no anchor #{fragment}"));
        }
    }
    assert!(seen > 10, "the README links into the book ({seen} links)");
    assert!(
        broken.is_empty(),
        "broken links in README.md:\n{}",
        broken.join("\n")
    );
}

/// Every `sh` block of the getting-started page is run by a test, is CI's own command, or
/// says it is illustrative (and why), in its first line.
#[test]
fn every_getting_started_command_is_tested_or_illustrative() {
    let page = std::fs::read_to_string(repo_root().join("docs/src/getting-started.md")).expect("page");
    let ci = std::fs::read_to_string(repo_root().join(".ci/run")).expect(".ci/run");
    let runner = std::fs::read_to_string(repo_root().join("tests/getting_started.rs")).expect("its test");
    let mut problems = Vec::new();
    let mut blocks = 0;
    for block in page.split("```").skip(1).step_by(2) {
        let Some(body) = block.strip_prefix("sh\n") else {
            continue;
        };
        blocks += 1;
        let first = body.lines().next().unwrap_or_default();
        let commands: Vec<&str> = body
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .collect();
        match first {
            "# tested by tests/getting_started.rs" => {
                if !runner.contains("# tested by tests/getting_started.rs") {
                    problems.push("tests/getting_started.rs does not run the marked blocks".into());
                }
            }
            "# tested by .ci/run" => {
                for c in commands {
                    if !ci
                        .lines()
                        .any(|l| l.trim() == c || l.trim() == format!("exec {c}"))
                    {
                        problems.push(format!("{c:?} is not what .ci/run runs"));
                    }
                }
            }
            f if f.starts_with("# illustrative: ") => {}
            _ => problems.push(format!(
                "a block starts {first:?}, not `# tested by …` or `# illustrative: why`"
            )),
        }
    }
    assert!(blocks > 0, "no sh blocks in the getting-started page");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The ids of HTML files, read once each.
#[derive(Default)]
struct Ids(HashMap<PathBuf, BTreeSet<String>>);

impl Ids {
    fn of(&mut self, file: &Path) -> &BTreeSet<String> {
        self.0.entry(file.to_path_buf()).or_insert_with(|| {
            let html = std::fs::read_to_string(file).unwrap_or_default();
            attributes(&html, "id").into_iter().collect()
        })
    }
}

fn broken_links(root: &Path) -> Vec<String> {
    let mut ids = Ids::default();
    let mut broken = Vec::new();
    let mut pages = Vec::new();
    html_files(root, &mut pages);
    assert!(pages.len() > 20, "only {} pages in the book", pages.len());
    for page in &pages {
        // The print page repeats every page; its links are mdBook's rewriting, not ours.
        if page.file_name().is_some_and(|n| n == "print.html") {
            continue;
        }
        let html = std::fs::read_to_string(page).expect("read page");
        for href in attributes(&html, "href") {
            let href = href.replace("&amp;", "&");
            if href.contains("://") || href.starts_with("mailto:") || href.starts_with("javascript:") {
                continue;
            }
            let (path, fragment) = href.split_once('#').unwrap_or((&href, ""));
            let path = path.split('?').next().unwrap_or_default();
            let mut target = if path.is_empty() {
                page.clone()
            } else if let Some(absolute) = path.strip_prefix('/') {
                // The 404 page's links start at the site's root.
                root.join(absolute)
            } else {
                page.parent().expect("a directory").join(path)
            };
            if target.is_dir() {
                target = target.join("index.html");
            }
            let from = page.strip_prefix(root).unwrap_or(page).display();
            if !target.is_file() {
                broken.push(format!("{from}: {href}: no such file"));
            } else if !fragment.is_empty() && !ids.of(&target).contains(fragment) {
                broken.push(format!("{from}: {href}: no such anchor"));
            }
        }
    }
    broken
}

fn html_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            html_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "html") {
            out.push(path);
        }
    }
}

/// The values of every `name="…"` attribute in `html`.
fn attributes(html: &str, name: &str) -> Vec<String> {
    let needle = format!(" {name}=\"");
    html.match_indices(&needle)
        .filter_map(|(at, _)| {
            let rest = &html[at + needle.len()..];
            rest.find('"').map(|end| rest[..end].to_string())
        })
        .collect()
}

/// The targets of the Markdown links `[text](target)` in `md`.
fn markdown_links(md: &str) -> Vec<String> {
    md.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &md[at + 2..];
            rest.find(')').map(|end| rest[..end].to_string())
        })
        .collect()
}

#[test]
fn the_checker_finds_a_missing_page_and_a_missing_anchor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let page = |name: &str, html: &str| std::fs::write(dir.path().join(name), html).expect("write");
    page(
        "a.html",
        r#"<h1 id="top">A</h1><a href="b.html#here">b</a><a href="c.html">c</a>"#,
    );
    page(
        "b.html",
        r#"<p id="there"></p><a href="a.html#top">a</a><a href="https://x.example/">x</a>"#,
    );
    for i in 0..20 {
        page(&format!("p{i}.html"), "");
    }
    let mut broken = broken_links(dir.path());
    broken.sort();
    assert_eq!(
        broken,
        vec![
            "a.html: b.html#here: no such anchor",
            "a.html: c.html: no such file"
        ]
    );
    assert_eq!(
        markdown_links("see [a](docs/src/a.md#b) and [c](x)"),
        vec!["docs/src/a.md#b", "x"]
    );
}
