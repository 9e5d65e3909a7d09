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

/// The layers of ARCHITECTURE.md, bottom first, read from its first `text` block: each line
/// starts with the layer's folders (`driver/`) or files (`buf.rs`); several on one line are
/// one rank ("fs/ net/"). Returns (module name, rank).
fn layers() -> Vec<(String, usize)> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"))
            .unwrap();
    let block = doc
        .split("```text\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("ARCHITECTURE.md has a text block with the layers");
    let mut out = Vec::new();
    for (rank, line) in block.lines().enumerate() {
        for word in line.split_whitespace() {
            let name = if let Some(dir) = word.strip_suffix('/') {
                dir
            } else if let Some(file) = word.strip_suffix(".rs") {
                file
            } else {
                break;
            };
            out.push((name.to_owned(), rank));
        }
    }
    assert!(
        out.len() >= 10,
        "too few layers read from ARCHITECTURE.md: {out:?}"
    );
    out
}

/// The crate root's re-exports (`pub use runtime::task::{spawn, ..};` in lib.rs): name ->
/// the module it comes from, so `crate::spawn` counts as a use of `runtime`.
fn root_reexports() -> Vec<(String, String)> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let mut out = Vec::new();
    for stmt in lib.split("pub use ").skip(1) {
        let stmt = stmt.split(';').next().unwrap();
        let module = stmt.split("::").next().unwrap().trim().to_owned();
        let names = match (stmt.find('{'), stmt.rfind('}')) {
            (Some(a), Some(b)) => stmt[a + 1..b].to_owned(),
            _ => stmt.rsplit("::").next().unwrap().to_owned(),
        };
        for name in names.split(',') {
            let name = name.trim();
            if !name.is_empty() {
                out.push((name.to_owned(), module.clone()));
            }
        }
    }
    out
}

/// The crate-level names a line of code reaches: `crate::x` and, from a module at `path`,
/// `super::` chains that climb to the crate root.
fn crate_level_uses(line: &str, path: &[String]) -> Vec<String> {
    let bytes = line.as_bytes();
    let ident_end = |from: usize| {
        from + line[from..]
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(line.len() - from)
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < line.len() {
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if boundary && line[i..].starts_with("crate::") {
            let from = i + "crate::".len();
            let end = ident_end(from);
            out.push(line[from..end].to_owned());
            i = end;
        } else if boundary && line[i..].starts_with("super::") {
            let mut depth = path.len();
            let mut j = i;
            while line[j..].starts_with("super::") {
                depth = depth.saturating_sub(1);
                j += "super::".len();
            }
            let end = ident_end(j);
            if depth == 0 {
                out.push(line[j..end].to_owned());
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// ARCHITECTURE.md: "Its layers are the folders of `src/`; each depends only on the ones
/// listed before it". Every `crate::` path (and every `super::` that climbs to the crate
/// root), also through the root's re-exports, must name the file's own layer or one of a
/// lower rank. Layers on one line (fs/ and net/) do not use each other.
#[test]
fn layers_only_use_the_layers_below() {
    let layers = layers();
    let rank = |name: &str| layers.iter().find(|(n, _)| n == name).map(|(_, r)| *r);
    let reexports = root_reexports();
    let mut offenders = Vec::new();
    let mut checked = 0;
    for path in rust_files(&src()) {
        let name = rel(&path);
        let mut module: Vec<String> = name
            .trim_end_matches(".rs")
            .split('/')
            .map(str::to_owned)
            .collect();
        if module.last().is_some_and(|m| m == "mod") {
            module.pop();
        }
        let own = module[0].clone();
        // lib.rs is the root, above every layer; loom.rs is the loom/std switch of the
        // runtime's atomics, not a layer.
        let Some(own_rank) = rank(&own) else {
            assert!(
                name == "lib.rs" || name == "loom.rs",
                "{name}: not in ARCHITECTURE.md's layers"
            );
            continue;
        };
        checked += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in code_lines(&text) {
            for used in crate_level_uses(line, &module) {
                let target = match rank(&used) {
                    Some(_) => used.clone(),
                    None => match reexports.iter().find(|(r, _)| *r == used) {
                        Some((_, module)) => module.clone(),
                        // Macros and the loom switch.
                        None => continue,
                    },
                };
                if target == own {
                    continue;
                }
                let target_rank = rank(&target).unwrap_or_else(|| {
                    panic!("lib.rs re-exports {used} from {target}, which is not a layer")
                });
                if target_rank >= own_rank {
                    offenders.push(format!(
                        "{name}:{}: {own}/ uses {target} (crate::{used}), not below it",
                        n + 1
                    ));
                }
            }
            // ARCHITECTURE.md, future/: "they use the runtime ... but never the driver".
            if own == "future" && line.contains("crate::driver") {
                offenders.push(format!("{name}:{}: future/ uses the driver", n + 1));
            }
        }
    }
    assert!(checked > 40, "only {checked} files were checked");
    assert!(
        offenders.is_empty(),
        "a layer reaches up (ARCHITECTURE.md lists the order):\n{}",
        offenders.join("\n")
    );
}

/// The check above must catch a use of a higher layer, direct or through a re-export.
#[test]
fn the_layer_check_sees_crate_and_super_paths() {
    let net_tcp = ["net".to_owned(), "tcp".to_owned()];
    assert_eq!(
        crate_level_uses("use crate::pool::ThreadPool; crate::spawn(x)", &net_tcp),
        ["pool", "spawn"]
    );
    assert_eq!(
        crate_level_uses("use super::super::shard; use super::addr;", &net_tcp),
        ["shard"]
    );
    assert!(crate_level_uses("my_crate::pool", &net_tcp).is_empty());
    let reexports = root_reexports();
    assert!(reexports.contains(&("spawn_blocking".to_owned(), "pool".to_owned())));
    assert!(reexports.contains(&("spawn".to_owned(), "runtime".to_owned())));
    let layers = layers();
    let rank = |n: &str| layers.iter().find(|(l, _)| l == n).unwrap().1;
    assert!(rank("buf") < rank("driver") && rank("driver") < rank("runtime"));
    assert_eq!(rank("fs"), rank("net"));
    assert!(rank("net") < rank("pool") && rank("pool") < rank("shard"));
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
