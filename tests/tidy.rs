//! Checks the source tree keeps the rules of ARCHITECTURE.md: who may name io_uring, which
//! layer may use which, a `//!` line atop every file, a SAFETY comment on every unsafe block,
//! and no unfinished-work markers.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rel(path: &Path) -> String {
    path.strip_prefix(src())
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Lines that are code, not comments (a rough but sufficient filter for these checks).
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
}

#[test]
fn only_the_driver_names_io_uring() {
    let mut offenders = Vec::new();
    for path in rust_files(&src()) {
        let name = rel(&path);
        if name.starts_with("driver/") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in code_lines(&text) {
            if line.contains("io_uring::") {
                offenders.push(format!("{name}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "io_uring named outside driver/:\n{}",
        offenders.join("\n")
    );
}

/// The issue that split the drivers: above `driver/`, nothing may read what only io_uring
/// means (CQE flags, `ECANCELED` as "timed out", `EINVAL` as "opcode missing", user_data).
#[test]
fn nothing_above_the_driver_names_an_io_uring_concept() {
    let concepts = [
        "io_uring::",
        "io_uring_",
        "cqe",
        "sqe",
        "ECANCELED",
        "IORING_",
        "user_data",
        ".more()",
        "Some(libc::EINVAL)",
    ];
    let mut offenders = Vec::new();
    for path in rust_files(&src()) {
        let name = rel(&path);
        if name.starts_with("driver/") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in code_lines(&text) {
            let lower = line.to_lowercase();
            for c in concepts {
                if lower.contains(&c.to_lowercase()) {
                    offenders.push(format!("{name}:{}: {c}: {}", n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "io_uring concepts above driver/:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn layers_only_use_the_layers_below() {
    // Layer order (DESIGN.md): buf -> driver -> runtime -> future -> io/fs/net -> pool -> shard.
    let forbidden: &[(&str, &[&str])] = &[
        ("buf.rs", &["crate::"]),
        ("sync.rs", &["crate::"]),
        (
            "driver/",
            &[
                "crate::io",
                "crate::runtime",
                "crate::future",
                "crate::fs",
                "crate::net",
                "crate::pool",
                "crate::shard",
            ],
        ),
        (
            "runtime/",
            &[
                "crate::future",
                "crate::fs",
                "crate::net",
                "crate::pool",
                "crate::shard",
            ],
        ),
        ("future/", &["crate::driver", "crate::fs", "crate::net"]),
        (
            "io/",
            &["crate::pool", "crate::spawn_blocking", "crate::shard"],
        ),
        ("pool/", &["crate::shard", "crate::hyper"]),
        (
            "fs/",
            &["crate::pool", "crate::spawn_blocking", "crate::shard"],
        ),
        ("net/", &["crate::pool", "crate::spawn_blocking"]),
        (
            "signal/",
            &["crate::pool", "crate::spawn_blocking", "crate::shard"],
        ),
    ];
    let mut offenders = Vec::new();
    for path in rust_files(&src()) {
        let name = rel(&path);
        let text = std::fs::read_to_string(&path).unwrap();
        for (prefix, banned) in forbidden {
            if !name.starts_with(prefix) {
                continue;
            }
            for (n, line) in code_lines(&text) {
                for b in *banned {
                    if line.contains(b) {
                        offenders.push(format!("{name}:{}: uses {b}", n + 1));
                    }
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "a layer reaches up:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_scheduler_and_timers_never_touch_the_ring() {
    for file in ["runtime/scheduler.rs", "runtime/timer.rs"] {
        let text = std::fs::read_to_string(src().join(file)).unwrap();
        for (n, line) in code_lines(&text) {
            assert!(!line.contains("io_uring::"), "{file}:{}: {line}", n + 1);
            assert!(
                !line.contains("submission()") && !line.contains("completion()"),
                "{file}:{}",
                n + 1
            );
        }
    }
    let timer = std::fs::read_to_string(src().join("runtime/timer.rs")).unwrap();
    assert!(
        !timer.contains("driver"),
        "timer.rs must not use the driver"
    );
}

#[test]
fn every_file_starts_with_a_module_doc() {
    let missing: Vec<_> = rust_files(&src())
        .into_iter()
        .filter(|p| !std::fs::read_to_string(p).unwrap().starts_with("//!"))
        .map(|p| rel(&p))
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading //! line: {missing:?}"
    );
}

#[test]
fn every_unsafe_block_has_a_safety_comment() {
    let mut offenders = Vec::new();
    for path in rust_files(&src()) {
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if !code.contains("unsafe {") && !code.contains("unsafe impl") {
                continue;
            }
            let window = &lines[i.saturating_sub(6)..=i];
            if !window.iter().any(|l| l.contains("SAFETY:")) {
                offenders.push(format!("{}:{}: {}", rel(&path), i + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "unsafe without // SAFETY:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn every_unsafe_fn_documents_its_contract() {
    let mut offenders = Vec::new();
    for path in rust_files(&src()) {
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.trim_start();
            let is_unsafe_fn = code.starts_with("unsafe fn")
                || code.starts_with("pub(crate) unsafe fn")
                || code.starts_with("pub unsafe fn");
            // Waker vtable functions are documented by the vtable's contract.
            if !is_unsafe_fn || code.contains("fn waker_") {
                continue;
            }
            let window = &lines[i.saturating_sub(12)..i];
            // A trait impl's method inherits the contract written on the trait.
            let in_trait_impl = lines[..i]
                .iter()
                .rev()
                .find(|l| l.starts_with("impl") || l.starts_with("unsafe impl"))
                .is_some_and(|l| l.contains(" for "));
            if !in_trait_impl && !window.iter().any(|l| l.contains("# Safety")) {
                offenders.push(format!("{}:{}: {}", rel(&path), i + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "unsafe fn without # Safety:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn no_unfinished_markers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut offenders = Vec::new();
    for dir in ["src", "tests", "examples", "benches"] {
        for path in rust_files(&root.join(dir)) {
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                // Built from pieces so that this file does not match itself.
                let markers = [
                    concat!("todo", "!("),
                    concat!("unimplemented", "!("),
                    concat!("#[", "ignore"),
                ];
                if markers.iter().any(|m| line.contains(m)) {
                    offenders.push(format!("{}:{}", path.display(), n + 1));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "unfinished markers: {offenders:?}");
}
