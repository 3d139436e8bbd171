//! `jitgate check` (a pack load) on mutated `.cedar` files, schemas and `entities.json`.

use std::fs;
use std::path::{Path, PathBuf};

use jitgate::policy::{PackPaths, PolicyPack};
use proptest::prelude::*;
use tempfile::TempDir;

use super::mutation::{self, Edit};
use super::{proptest_config, repo};

const TOKENS: &[&str] = &[
    "@",
    "@id(\"x\")",
    "@scope(\"\")",
    "@aproval(\"1\")",
    "@approval(\"0\")",
    "@ttl(\"1s\")",
    "@break_glass(\"true\")",
    "@x_owner(\"a\")",
    "permit",
    "forbid",
    "(",
    ")",
    "{",
    "}",
    ";",
    ",",
    "\"",
    "::",
    "when",
    "unless",
    "principal",
    "action",
    "resource",
    " in ",
    "==",
    " is ",
    "?principal",
    "Action::\"read\"",
    "Action::\"approve\"",
    "context.",
    "context.risk_score",
    "-9223372036854775808",
    "99999999999999999999",
    "\\u{0}",
    "\\",
    "ip(\"::1/200\")",
    "decimal(\"1.00001\")",
    "[",
    "]",
    ".contains(",
    "&&",
    "||",
    "!",
    " has ",
    " like \"*\"",
    "\n",
    "//",
    "/*",
    "entity ",
    "action ",
    "type ",
    "namespace ",
    "appliesTo",
    "Set<",
    "Long",
    "String",
    "Bool",
    "ipaddr",
    "decimal",
    "{\"uid\":",
    "\"parents\"",
    "\"attrs\"",
    "\"__entity\"",
    "\"__extn\"",
    "null",
    "true",
    "[]",
    "{}",
    ":",
    "é",
    "\u{202e}",
];

/// A copy of the shipped pack that each case edits one file of, then restores.
struct Pack {
    dir: TempDir,
    files: Vec<(PathBuf, Vec<u8>)>,
}

impl Pack {
    fn shipped() -> Self {
        let dir = TempDir::new().unwrap();
        let mut files = Vec::new();
        for sub in ["policies", "schemas"] {
            fs::create_dir_all(dir.path().join(sub)).unwrap();
            for entry in fs::read_dir(repo().join(sub)).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() {
                    let target = dir.path().join(sub).join(path.file_name().unwrap());
                    let text = fs::read(&path).unwrap();
                    fs::write(&target, &text).unwrap();
                    files.push((target, text));
                }
            }
        }
        files.sort();
        Self { dir, files }
    }

    fn paths(&self) -> PackPaths {
        PackPaths::new(
            self.dir.path().join("policies"),
            self.dir.path().join("schemas"),
        )
    }

    /// Loads the pack with `file` holding `contents`, and puts the file back.
    fn load_with(&self, file: &Path, contents: &[u8]) -> Result<PolicyPack, String> {
        fs::write(file, contents).unwrap();
        let result = PolicyPack::load(&self.paths());
        let original = &self.files.iter().find(|(p, _)| p == file).unwrap().1;
        fs::write(file, original).unwrap();
        match result {
            Ok(pack) => Ok(pack),
            Err(errors) => {
                // Every problem is located in the pack and says something.
                assert!(!errors.0.is_empty());
                for error in &errors.0 {
                    assert!(
                        error.file.starts_with(self.dir.path()),
                        "{error} is outside the pack"
                    );
                    assert!(!error.message.trim().is_empty(), "{error} says nothing");
                }
                Err(errors.to_string())
            }
        }
    }
}

/// Which file to edit, and how.
fn input() -> impl Strategy<Value = (usize, Option<Vec<Edit>>, Vec<u8>)> {
    (
        any::<usize>(),
        prop_oneof![4 => mutation::edits().prop_map(Some), 1 => Just(None)],
        mutation::arbitrary_input(),
    )
}

#[test]
fn a_mutated_pack_loads_or_says_where_it_is_wrong() {
    let pack = Pack::shipped();
    assert!(pack.load_with(&pack.files[0].0, &pack.files[0].1).is_ok());
    proptest!(proptest_config(), |((index, edits, arbitrary) in input())| {
        let (file, base) = &pack.files[index % pack.files.len()];
        let contents = match &edits {
            Some(edits) => mutation::apply(base, edits, TOKENS),
            None => arbitrary,
        };
        let _ = pack.load_with(file, &contents);
    });
}
