//! Integration tests: the `jitgate` binary and the library against real pack files in temp dirs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed step should fail the test loudly"
)]

mod approvals;
mod audit;
mod cli;
mod cluster;
mod connections;
mod events;
mod explain;
mod extend;
mod harness;
mod issuers;
mod load;
mod oauth;
mod oauth_clients;
mod oidc;
mod openapi;
mod privileges;
mod reload;
mod replay;
mod replicas;
mod requestable;
mod requester;
mod revocation;
mod schedule;
mod server;
mod shadow;
mod sign_in;
mod store;
mod ui;
mod verifier;
mod webhooks;
mod wycheproof;

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// Says that `test` skipped itself, past the test harness's output capture so that the
/// message shows in a passing run.
fn skipped(test: &str, why: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// The repository root, where the shipped `policies/` and `schemas/` live.
fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A copy of the shipped pack in a temp dir, to edit freely.
struct TempPack {
    dir: TempDir,
}

impl TempPack {
    fn shipped() -> Self {
        let dir = TempDir::new().unwrap();
        copy_dir(&repo().join("policies"), &dir.path().join("policies"));
        copy_dir(&repo().join("schemas"), &dir.path().join("schemas"));
        Self { dir }
    }

    fn policies(&self) -> PathBuf {
        self.dir.path().join("policies")
    }

    fn schemas(&self) -> PathBuf {
        self.dir.path().join("schemas")
    }

    fn write(&self, relative: &str, text: &str) {
        let path = self.dir.path().join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn read(&self, relative: &str) -> String {
        fs::read_to_string(self.dir.path().join(relative)).unwrap()
    }

    /// Removes the policy `@id(id)` (up to its closing `;`) from a file, insisting it is there.
    fn remove_policy(&self, relative: &str, id: &str) {
        let text = self.read(relative);
        let start = text
            .find(&format!("@id(\"{id}\")"))
            .unwrap_or_else(|| panic!("{relative} has no policy `{id}`"));
        let end = start + text[start..].find(";\n").unwrap() + 2;
        self.write(relative, &format!("{}{}", &text[..start], &text[end..]));
    }

    /// Replaces `from` by `to` in a file, insisting that `from` is there.
    fn edit(&self, relative: &str, from: &str, to: &str) {
        let text = self.read(relative);
        assert!(text.contains(from), "{relative} has no `{from}`");
        self.write(relative, &text.replacen(from, to, 1));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}
