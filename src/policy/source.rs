//! Pack files on disk: discovery, reading, and turning byte offsets into `file:line:col`.

use std::fs;
use std::path::{Path, PathBuf};

use super::error::LoadError;

/// One file of a policy pack, read whole into memory.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path as it is shown in errors (the pack dir joined with the file's relative path).
    pub path: PathBuf,
    /// The path relative to its pack dir, prefixed by the dir's role (`policies/…`, `schemas/…`);
    /// stable across checkouts, so it feeds the version hash.
    pub key: String,
    pub text: String,
}

impl SourceFile {
    /// 1-based line and column (in characters) of a byte offset into the file.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = self.text.get(..offset).unwrap_or(&self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        (line, col)
    }

    /// An error located at a byte offset of this file.
    pub fn error_at(&self, offset: usize, message: impl Into<String>) -> LoadError {
        let (line, col) = self.line_col(offset);
        LoadError::at(&self.path, Some((line, col)), message)
    }

    /// An error about the file as a whole.
    pub fn error(&self, message: impl Into<String>) -> LoadError {
        LoadError::at(&self.path, None, message)
    }
}

/// The error for a policy that ends without its `;` when the parser stopped at `next`, the
/// start of the following policy (`@…`, `permit`, `forbid`): reported where the `;` belongs,
/// after the last token before `next`, rather than at the next policy. `None` when that token
/// is a `;` (the parser stopped for another reason).
pub fn missing_semicolon(file: &SourceFile, next: usize) -> Option<LoadError> {
    let text = file.text.get(..next)?;
    let mut last: Option<(usize, char)> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '/' if chars.peek().is_some_and(|(_, n)| *n == '/') => {
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' => {
                let mut end = at;
                while let Some((i, c)) = chars.next() {
                    end = i;
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                last = Some((end, '"'));
            }
            c if c.is_whitespace() => {}
            c => last = Some((at, c)),
        }
    }
    let (at, c) = last?;
    if c == ';' {
        return None;
    }
    let after = at + c.len_utf8();
    let (line, _) = file.line_col(next);
    Some(file.error_at(
        after,
        format!("missing `;` at the end of this policy (the next one starts at line {line})"),
    ))
}

/// An error Cedar found in `entities.json`, at the place it concerns: the line and column a
/// JSON syntax error names, else the entity the message names (`Group::"oncall"`), else the
/// file as a whole.
pub fn entities_error(file: &SourceFile, message: String) -> LoadError {
    if let Some((line, col)) = json_position(&message) {
        return LoadError::at(&file.path, Some((line, col)), message);
    }
    let named = entity_offsets(&file.text)
        .into_iter()
        .filter_map(|(uid, offset)| Some((message.find(&uid)?, offset)))
        .min();
    match named {
        Some((_, offset)) => file.error_at(offset, message),
        None => file.error(message),
    }
}

/// `line L column C` in serde_json's words.
fn json_position(message: &str) -> Option<(usize, usize)> {
    let rest = message.get(message.find(" at line ")? + " at line ".len()..)?;
    let (line, rest) = rest.split_once(" column ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((line.parse().ok()?, column.parse().ok()?))
}

/// Each entity of an `entities.json` array, as `Type::"id"`, with the byte offset it starts at.
fn entity_offsets(text: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    let Some(open) = text.find('[') else {
        return found;
    };
    let mut at = open + 1;
    loop {
        let rest = text.get(at..).unwrap_or_default();
        let skipped = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_whitespace() || c == ',')
                .len();
        at += skipped;
        let mut values = serde_json::Deserializer::from_str(text.get(at..).unwrap_or_default())
            .into_iter::<serde_json::Value>();
        let Some(Ok(entity)) = values.next() else {
            return found;
        };
        let field = |name: &str| entity.get("uid")?.get(name)?.as_str();
        if let (Some(kind), Some(id)) = (field("type"), field("id")) {
            found.push((crate::decision::EntityRef::new(kind, id).to_string(), at));
        }
        at += values.byte_offset();
    }
}

/// Files under `dir` (recursively) whose name ends in `.{extension}`, sorted by path.
///
/// Hidden entries (editor swap and lock files such as `.#x.cedar`) are skipped, and so is the
/// top-level directory named in `skip_top_dir` (`policies/tests` holds test cases, not policies).
pub fn discover(
    dir: &Path,
    role: &str,
    extension: &str,
    skip_top_dir: Option<&str>,
) -> Result<Vec<SourceFile>, Vec<LoadError>> {
    let mut paths = Vec::new();
    let mut errors = Vec::new();
    walk(dir, dir, extension, skip_top_dir, &mut paths, &mut errors);
    paths.sort();
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        match read(dir, role, &path) {
            Ok(file) => files.push(file),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

/// Reads one file of the pack; `dir` is the pack dir it belongs to.
pub fn read(dir: &Path, role: &str, path: &Path) -> Result<SourceFile, LoadError> {
    let text = fs::read_to_string(path)
        .map_err(|e| LoadError::at(path, None, format!("cannot read file: {e}")))?;
    let relative = path.strip_prefix(dir).unwrap_or(path);
    let key = format!("{role}/{}", relative.to_string_lossy().replace('\\', "/"));
    Ok(SourceFile {
        path: path.to_path_buf(),
        key,
        text,
    })
}

fn walk(
    root: &Path,
    dir: &Path,
    extension: &str,
    skip_top_dir: Option<&str>,
    out: &mut Vec<PathBuf>,
    errors: &mut Vec<LoadError>,
) {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(LoadError::at(
                dir,
                None,
                format!("cannot read directory: {e}"),
            ));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                errors.push(LoadError::at(
                    dir,
                    None,
                    format!("cannot read directory: {e}"),
                ));
                continue;
            }
        };
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        // Follow symlinks: Kubernetes mounts config maps as links into a hidden `..data` dir.
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            // A dangling link may be a policy file that is gone: never skip it silently.
            Err(e) => {
                errors.push(LoadError::at(&path, None, format!("cannot read: {e}")));
                continue;
            }
        };
        if meta.is_dir() {
            if dir == root && skip_top_dir == Some(name.as_ref()) {
                continue;
            }
            walk(root, &path, extension, skip_top_dir, out, errors);
        } else if meta.is_file() && path.extension().and_then(|e| e.to_str()) == Some(extension) {
            out.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> SourceFile {
        SourceFile {
            path: PathBuf::from("p.cedar"),
            key: "policies/p.cedar".into(),
            text: text.into(),
        }
    }

    #[test]
    fn a_missing_semicolon_is_reported_where_it_belongs() {
        let text = "permit (principal, action, resource)\nwhen { context.reason == \"a;//b\" } // done\n\n@id(\"next\")\npermit (principal, action, resource);\n";
        let f = file(text);
        let next = text.find('@').unwrap();
        let error = missing_semicolon(&f, next).unwrap();
        assert_eq!(error.position, Some((2, 35)));
        assert!(
            error.message.contains("next one starts at line 4"),
            "{}",
            error.message
        );
        let fine = file("permit (principal, action, resource); // x\n@id(\"y\")");
        assert!(missing_semicolon(&fine, fine.text.find('@').unwrap()).is_none());
    }

    #[test]
    fn entity_errors_point_at_the_entity_or_the_json_position() {
        let f = SourceFile {
            path: "policies/entities.json".into(),
            ..file(
                "[\n  { \"uid\": { \"type\": \"Group\", \"id\": \"a\" } },\n  { \"uid\": { \"type\": \"Group\", \"id\": \"b\" } }\n]",
            )
        };
        let named = entities_error(&f, "`Group::\"b\"` is not allowed an ancestor".into());
        assert_eq!(named.position, Some((3, 3)));
        let syntax = entities_error(&f, "expected `,` or `}` at line 2 column 7".into());
        assert_eq!(syntax.position, Some((2, 7)));
        let neither = entities_error(&f, "something else".into());
        assert_eq!(neither.position, None);
    }

    #[test]
    fn line_col_counts_from_one_in_characters() {
        let f = file("ab\ncdé\nx");
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(3), (2, 1));
        assert_eq!(f.line_col(5), (2, 3));
        // after the two-byte `é`
        assert_eq!(f.line_col(7), (2, 4));
        assert_eq!(f.line_col(8), (3, 1));
        assert_eq!(f.line_col(1000), (3, 2));
    }
}
