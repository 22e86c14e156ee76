//! Step 1: read a config file and evaluate it with Nickel into JSON.
//!
//! Bad input never panics: the file is checked to exist, be readable, non-empty UTF-8 text
//! before Nickel sees it, and Nickel's errors are turned into [`ConfigError::Evaluate`] with
//! the first location in the user's files (not the schema's or the standard library's).

use std::path::Path;

use nickel_lang_core::error::report::{report_as_str, ColorOpt};
use nickel_lang_core::error::{Diagnostic, Error as NickelError, IntoDiagnostics, LabelStyle};
use nickel_lang_core::eval::cache::CacheImpl;
use nickel_lang_core::files::{FileId, Files};
use nickel_lang_core::program::{Program, ProgramBuilder};
use nickel_lang_core::serialize::{self, ExportFormat};

use crate::error::{ConfigError, Location};

/// Checks the file is readable, non-empty UTF-8, then evaluates it fully with Nickel and
/// returns the exported JSON text.
pub fn evaluate(path: &Path) -> Result<String, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError::Empty {
            path: path.to_owned(),
        });
    }
    if let Err(err) = std::str::from_utf8(&bytes) {
        return Err(ConfigError::NotText {
            path: path.to_owned(),
            offset: err.valid_up_to(),
        });
    }

    let text = String::from_utf8_lossy(&bytes);
    if let Some((line, depth)) = too_deep(&text) {
        return Err(ConfigError::TooDeep {
            path: path.to_owned(),
            line,
            depth,
        });
    }

    // Nickel's parser and evaluator recurse; a roomy stack keeps imported files with deep
    // (but sane) nesting from overflowing the main thread's 8 MiB. Only touched pages are
    // committed.
    let owned = path.to_owned();
    std::thread::Builder::new()
        .name("nickel-eval".into())
        .stack_size(EVAL_STACK_BYTES)
        .spawn(move || evaluate_nickel(&owned))
        .map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?
        .join()
        .unwrap_or_else(|_| {
            Err(ConfigError::Evaluate {
                path: path.to_owned(),
                location: None,
                message: "the Nickel evaluator panicked (a nickel-lang-core bug)".to_owned(),
                report: String::new(),
            })
        })
}

/// Stack for the evaluation thread.
const EVAL_STACK_BYTES: usize = 256 * 1024 * 1024;

pub use crate::error::MAX_NESTING;

/// The line where nesting of `{`, `[`, `(` first exceeds [`MAX_NESTING`], with the depth.
/// Brackets inside strings and comments are counted too: harmless, since the limit is far
/// above what real configs use.
fn too_deep(text: &str) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    let mut line = 1usize;
    for c in text.chars() {
        match c {
            '\n' => line += 1,
            '{' | '[' | '(' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some((line, depth));
                }
            }
            '}' | ']' | ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

fn evaluate_nickel(path: &Path) -> Result<String, ConfigError> {
    let mut program: Program<CacheImpl> = ProgramBuilder::new()
        .add_path(path.as_os_str())
        .build()
        .map_err(|err| ConfigError::Evaluate {
            path: path.to_owned(),
            location: None,
            message: err.to_string(),
            report: err.to_string(),
        })?;
    let value = match program.eval_full_for_export() {
        Ok(value) => value,
        Err(err) => return Err(nickel_error(path, &program.files(), err)),
    };
    serialize::to_string(ExportFormat::Json, &value).map_err(|data| {
        let err = NickelError::export_error(program.pos_table().clone(), data);
        nickel_error(path, &program.files(), err)
    })
}

/// Converts a Nickel error into a located [`ConfigError::Evaluate`]. File names are shown
/// relative to the working directory when they are under it (as the user typed them).
fn nickel_error(path: &Path, files: &Files, error: NickelError) -> ConfigError {
    let mut files = files.clone();
    let diagnostics = error.into_diagnostics(&mut files);
    let cwd = std::env::current_dir()
        .ok()
        .map(|d| format!("{}/", d.display()));
    let relative = |text: String| match &cwd {
        Some(prefix) => text.replace(prefix.as_str(), ""),
        None => text,
    };
    let location = diagnostics
        .iter()
        .find_map(|d| first_location(&files, d, true))
        .or_else(|| {
            diagnostics
                .iter()
                .find_map(|d| first_location(&files, d, false))
        })
        .map(|l| Location {
            file: relative(l.file),
            ..l
        });
    let message = diagnostics
        .first()
        .map(|d| {
            d.message
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(": ")
        })
        .unwrap_or_else(|| "Nickel evaluation failed".to_owned());
    let report = diagnostics
        .into_iter()
        .map(|d| report_as_str(&mut files, d, ColorOpt::Never))
        .collect::<String>();
    ConfigError::Evaluate {
        path: path.to_owned(),
        location,
        message: relative(message),
        report: relative(report),
    }
}

/// The first label of `diagnostic` (primary labels first) as a 1-based location. With
/// `user_only`, only labels in the user's files count: not the standard library, not the
/// testudo schema, not text generated during evaluation.
fn first_location(
    files: &Files,
    diagnostic: &Diagnostic<FileId>,
    user_only: bool,
) -> Option<Location> {
    let mut labels: Vec<_> = diagnostic.labels.iter().collect();
    labels.sort_by_key(|l| l.style != LabelStyle::Primary);
    labels
        .into_iter()
        .filter(|l| !user_only || is_user_file(files, l.file_id))
        .find_map(|l| locate(files, l.file_id, l.range.start))
}

fn is_user_file(files: &Files, id: FileId) -> bool {
    if files.is_stdlib(id) {
        return false;
    }
    let name = files.name(id).to_string_lossy();
    !name.starts_with('<') && !name.contains("system-config/schema/")
}

fn locate(files: &Files, id: FileId, byte: usize) -> Option<Location> {
    let source = files.source(id);
    let before = source.get(..byte)?;
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = source.get(line_start..byte)?.chars().count() + 1;
    Some(Location {
        file: files.name(id).to_string_lossy().into_owned(),
        line,
        column,
    })
}
