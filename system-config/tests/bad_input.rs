//! Promise: a missing, empty, unreadable or non-Nickel config gives one clear error, never a
//! panic.

use testudo_config::{load_plan, ConfigError};

fn only_error(path: &std::path::Path) -> ConfigError {
    let mut errors = load_plan(path).expect_err("config must be refused").0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors.remove(0)
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = only_error(&dir.path().join("nope.ncl"));
    assert!(
        matches!(&err, ConfigError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .ends_with("nope.ncl: cannot read the config"));
}

#[test]
fn directory_instead_of_file() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(only_error(dir.path()), ConfigError::Read { .. }));
}

#[test]
fn path_through_a_file_is_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "1").unwrap();
    assert!(matches!(
        only_error(&file.join("x.ncl")),
        ConfigError::Read { .. }
    ));
}

#[test]
fn empty_and_blank_files() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [("empty.ncl", ""), ("blank.ncl", " \n\t\n")] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let err = only_error(&path);
        assert!(matches!(err, ConfigError::Empty { .. }), "{name}: {err:?}");
        assert!(err.to_string().ends_with("the config file is empty"));
    }
}

#[test]
fn binary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob.ncl");
    std::fs::write(&path, [0x7f, b'E', b'L', b'F', 0xff, 0xfe, 0]).unwrap();
    let err = only_error(&path);
    assert!(
        matches!(err, ConfigError::NotText { offset: 4, .. }),
        "{err:?}"
    );
}

#[test]
fn text_that_is_not_nickel() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.ncl");
    std::fs::write(&path, "This is a shopping list:\n- eggs\n- milk }\n").unwrap();
    let err = only_error(&path);
    let ConfigError::Evaluate {
        location: Some(location),
        report,
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert!(location.file.ends_with("notes.ncl"));
    assert!(!report.is_empty());
}

#[test]
fn yaml_file_is_not_a_system() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("system.yaml");
    std::fs::write(&path, "name: gateway\nversion: 1.0.0\n").unwrap();
    let err = only_error(&path);
    assert!(
        matches!(
            err,
            ConfigError::Shape { .. } | ConfigError::Evaluate { .. }
        ),
        "{err:?}"
    );
}

#[test]
fn pathological_nesting_is_refused_before_nickel_parses_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep.ncl");
    std::fs::write(
        &path,
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
    )
    .unwrap();
    let err = only_error(&path);
    assert!(
        matches!(
            err,
            ConfigError::TooDeep {
                line: 1,
                depth: 257,
                ..
            }
        ),
        "{err:?}"
    );
}
