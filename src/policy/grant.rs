//! What a policy grants (a [`Grant`]), read from its annotations (`@scope`, `@ttl`,
//! `@audience`, `@approval` or `@stages`, `@break_glass`, `@advice`). Any other annotation is an error unless
//! it starts with `x_`, the prefix for authors' own metadata: a typo such as `@aproval` must
//! never load as a policy without its approval.

use std::time::Duration;

use crate::decision::{Grant, SCOPE_PLACEHOLDERS as PLACEHOLDERS, Stage, is_scope_token};

/// Annotations jitgate reads; `@id` is read by the loader.
const KNOWN: [&str; 8] = [
    "id",
    "scope",
    "ttl",
    "audience",
    "approval",
    "stages",
    "break_glass",
    "advice",
];
/// Most stages one policy may name.
const MAX_STAGES: usize = 10;

/// Annotations starting with this are the authors' own (`@x_owner("team-data")`) and never read.
pub const USER_ANNOTATION_PREFIX: &str = "x_";

/// What a policy is for, which decides the annotations it must or must not carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// A permit for a requestable action: it issues tokens, so it names its scopes.
    Grants,
    /// A permit only for the reserved `approve` or `administer` actions: it issues no token.
    Reserved,
    /// Forbid policies grant nothing; they may advise.
    Forbid,
}

/// One problem with a policy's annotations; `annotation` names the one it is about, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationError {
    pub annotation: Option<String>,
    pub message: String,
}

/// Reads the grant annotations of a policy of `kind`, refusing unknown ones and a granting
/// permit without `@scope` (`@scope("")` says "no scopes" explicitly).
pub fn from_annotations<'a>(
    annotations: impl Iterator<Item = (&'a str, &'a str)>,
    kind: PolicyKind,
) -> Result<Grant, Vec<AnnotationError>> {
    let mut grant = Grant::default();
    let mut errors = Vec::new();
    let mut break_glass_seen = false;
    let mut scope_seen = false;
    let mut fail = |key: &str, message: String| {
        errors.push(AnnotationError {
            annotation: Some(key.to_owned()),
            message,
        });
    };
    for (key, value) in annotations {
        let granting = matches!(
            key,
            "scope" | "ttl" | "audience" | "approval" | "stages" | "break_glass"
        );
        if granting && kind == PolicyKind::Forbid {
            fail(
                key,
                format!("@{key} on a forbid policy: forbid policies grant nothing"),
            );
            continue;
        }
        let result = match key {
            "scope" => {
                scope_seen = true;
                parse_scope(value).map(|s| grant.scopes = s)
            }
            "ttl" => parse_ttl(value).map(|t| grant.ttl = Some(t)),
            "audience" => parse_audience(value).map(|a| grant.audience = Some(a)),
            "approval" | "stages" if grant.stages.is_some() => Err(
                "a policy has either @approval (one stage) or @stages (several), not both".into(),
            ),
            "approval" => parse_approval(value).map(|n| grant.stages = Some(Stage::default_of(n))),
            "stages" => parse_stages(value).map(|stages| grant.stages = Some(stages)),
            "break_glass" => {
                break_glass_seen = true;
                parse_bool(value).map(|b| grant.break_glass = b)
            }
            "advice" => parse_advice(value).map(|a| grant.advice = Some(a)),
            "id" => Ok(()),
            _ if key.starts_with(USER_ANNOTATION_PREFIX) => Ok(()),
            _ => {
                fail(key, unknown_annotation(key));
                continue;
            }
        };
        if let Err(message) = result {
            fail(
                key,
                format!("@{key}(\"{}\"): {message}", value.escape_debug()),
            );
        }
    }
    if break_glass_seen && grant.break_glass && grant.stages.is_none() {
        fail(
            "break_glass",
            "@break_glass(\"true\") needs @approval or @stages: break-glass bypasses an approval"
                .into(),
        );
    }
    if kind == PolicyKind::Grants && !scope_seen {
        errors.push(AnnotationError {
            annotation: None,
            message: "a permit that issues tokens needs @scope(\"…\"); write @scope(\"\") \
                          if it grants no scopes"
                .into(),
        });
    }
    if errors.is_empty() {
        Ok(grant)
    } else {
        Err(errors)
    }
}
/// Why `@key` is refused, with the known annotation it was probably meant to be.
fn unknown_annotation(key: &str) -> String {
    let lower = key.to_ascii_lowercase();
    let closest = KNOWN
        .iter()
        .map(|known| (edit_distance(&lower, known), *known))
        .min();
    match closest {
        Some((distance, known)) if distance <= 1 + known.len() / 4 => {
            format!("unknown annotation @{key}: did you mean `@{known}`?")
        }
        _ => format!(
            "unknown annotation @{key}: jitgate reads @{}; put your own metadata under \
             `@{USER_ANNOTATION_PREFIX}…` (e.g. `@{USER_ANNOTATION_PREFIX}{key}`)",
            KNOWN.join(", @")
        ),
    }
}

/// Levenshtein distance in characters.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let cost = |d: Option<&usize>, add: usize| d.map_or(usize::MAX, |d| d + add);
            let substitute = cost(previous.get(j), usize::from(ca != *cb));
            let delete = cost(previous.get(j + 1), 1);
            let insert = cost(current.last(), 1);
            current.push(substitute.min(delete).min(insert));
        }
        previous = current;
    }
    previous.last().copied().unwrap_or_default()
}

/// `@scope("")` (or only spaces) is the explicit "no scopes".
fn parse_scope(value: &str) -> Result<Vec<String>, String> {
    let words: Vec<String> = value.split_whitespace().map(str::to_owned).collect();
    for word in &words {
        let mut rest = word.as_str();
        while let Some(start) = rest.find('{') {
            let tail = rest.get(start..).unwrap_or_default();
            let Some(placeholder) = PLACEHOLDERS.iter().find(|p| tail.starts_with(**p)) else {
                let end = tail.find('}').map_or(tail.len(), |i| i + 1);
                return Err(format!(
                    "unknown placeholder `{}`; known: {}",
                    tail.get(..end).unwrap_or(tail),
                    PLACEHOLDERS.join(", ")
                ));
            };
            rest = tail.get(placeholder.len()..).unwrap_or_default();
        }
        let literal = PLACEHOLDERS
            .iter()
            .fold(word.clone(), |w, p| w.replace(p, "x"));
        if !is_scope_token(&literal) {
            return Err(format!(
                "`{word}` is not a valid scope token (RFC 6749 §3.3 allows printable ASCII but `\"` and `\\`)"
            ));
        }
    }
    Ok(words)
}

fn parse_ttl(value: &str) -> Result<Duration, String> {
    let ttl =
        humantime::parse_duration(value.trim()).map_err(|e| format!("not a duration: {e}"))?;
    if ttl.as_secs() == 0 || ttl.subsec_nanos() != 0 {
        return Err("must be a whole number of seconds, at least 1s".into());
    }
    Ok(ttl)
}

fn parse_audience(value: &str) -> Result<String, String> {
    let audience = value.trim();
    if audience.is_empty() || audience.chars().any(char::is_whitespace) {
        return Err("must be one non-empty word (a URI or name)".into());
    }
    Ok(audience.to_owned())
}

fn parse_approval(value: &str) -> Result<u32, String> {
    match value.trim().parse::<u32>() {
        Ok(n) if (1..=100).contains(&n) => Ok(n),
        _ => Err("must be a whole number of approvals from 1 to 100".into()),
    }
}

/// `"lead:1, security:2"`: ordered stages, each a name (lowercase letters, digits, `_`, `-`)
/// and a quorum.
fn parse_stages(value: &str) -> Result<Vec<Stage>, String> {
    let mut stages: Vec<Stage> = Vec::new();
    for part in value.split(',') {
        let part = part.trim();
        let Some((name, required)) = part.split_once(':') else {
            return Err(format!(
                "`{part}` is not `name:approvals`; write e.g. \"lead:1, security:2\""
            ));
        };
        let name = name.trim();
        let named = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !named {
            return Err(format!(
                "stage name `{name}`: use 1 to 32 lowercase letters, digits, `_` or `-`"
            ));
        }
        if stages.iter().any(|s| s.name == name) {
            return Err(format!("stage `{name}` is named twice"));
        }
        let required = parse_approval(required).map_err(|e| format!("stage `{name}`: {e}"))?;
        stages.push(Stage {
            name: name.to_owned(),
            required,
        });
    }
    if stages.len() > MAX_STAGES {
        return Err(format!("at most {MAX_STAGES} stages"));
    }
    Ok(stages)
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("must be \"true\" or \"false\"".into()),
    }
}

fn parse_advice(value: &str) -> Result<String, String> {
    let advice = value.trim();
    if advice.is_empty() {
        return Err("advice text is empty".into());
    }
    Ok(advice.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(annotations: &[(&str, &str)]) -> Result<Grant, Vec<String>> {
        let with_scope = [("scope", "x")];
        let scope = if annotations.iter().any(|(k, _)| *k == "scope") {
            &[][..]
        } else {
            &with_scope[..]
        };
        from_annotations(annotations.iter().chain(scope).copied(), PolicyKind::Grants)
            .map_err(messages)
    }

    fn messages(errors: Vec<AnnotationError>) -> Vec<String> {
        errors.into_iter().map(|e| e.message).collect()
    }

    #[test]
    fn reads_every_annotation_and_ignores_the_authors_own() {
        let g = grant(&[
            ("id", "p"),
            ("scope", "db:{action}:{resource.id}  audit:read"),
            ("ttl", "15m"),
            ("audience", "db-proxy"),
            ("approval", "2"),
            ("break_glass", "true"),
            ("advice", "Ask the DBA on call."),
            ("x_owner", "team-data"),
        ])
        .unwrap();
        assert_eq!(g.scopes, ["db:{action}:{resource.id}", "audit:read"]);
        assert_eq!(g.ttl, Some(Duration::from_secs(900)));
        assert_eq!(g.audience.as_deref(), Some("db-proxy"));
        assert_eq!(g.stages, Some(crate::decision::Stage::default_of(2)));
        assert!(g.break_glass);
        assert_eq!(g.advice.as_deref(), Some("Ask the DBA on call."));
    }

    #[test]
    fn rejects_malformed_values() {
        for (key, value, needle) in [
            ("ttl", "15x", "not a duration"),
            ("ttl", "0s", "at least 1s"),
            ("ttl", "1500ms", "whole number of seconds"),
            ("approval", "0", "from 1 to 100"),
            ("approval", "-1", "from 1 to 100"),
            ("approval", "two", "from 1 to 100"),
            ("stages", "", "is not `name:approvals`"),
            ("stages", "lead", "is not `name:approvals`"),
            ("stages", "Lead:1", "stage name `Lead`"),
            ("stages", "lead:1, lead:2", "named twice"),
            ("stages", "lead:0", "stage `lead`: must be a whole number"),
            (
                "stages",
                "a:1,b:1,c:1,d:1,e:1,f:1,g:1,h:1,i:1,j:1,k:1",
                "at most 10 stages",
            ),
            ("break_glass", "yes", "\"true\" or \"false\""),
            (
                "scope",
                "db:{resource.name}",
                "unknown placeholder `{resource.name}`",
            ),
            ("scope", "db:\"x\"", "not a valid scope token"),
            ("audience", "a b", "one non-empty word"),
            ("advice", " ", "empty"),
        ] {
            let errors = grant(&[(key, value)]).unwrap_err();
            assert!(
                errors
                    .iter()
                    .any(|e| e.contains(needle) && e.starts_with(&format!("@{key}"))),
                "{key}={value:?}: {errors:?}"
            );
        }
    }

    #[test]
    fn stages_are_read_in_order() {
        let g = grant(&[
            ("stages", " lead:1 , security-team:2"),
            ("break_glass", "true"),
        ])
        .unwrap();
        let stages: Vec<(String, u32)> = (g.stages.unwrap().into_iter())
            .map(|s| (s.name, s.required))
            .collect();
        assert_eq!(
            stages,
            [("lead".to_owned(), 1), ("security-team".to_owned(), 2)]
        );
        let errors = grant(&[("approval", "1"), ("stages", "lead:1")]).unwrap_err();
        assert!(errors[0].contains("not both"), "{errors:?}");
    }

    #[test]
    fn break_glass_needs_approval() {
        let errors = grant(&[("break_glass", "true")]).unwrap_err();
        assert!(errors[0].contains("needs @approval"), "{errors:?}");
        assert!(grant(&[("break_glass", "false")]).is_ok());
    }

    #[test]
    fn forbid_policies_may_advise_but_not_grant() {
        let ok = from_annotations([("advice", "use MFA")].into_iter(), PolicyKind::Forbid).unwrap();
        assert_eq!(ok.advice.as_deref(), Some("use MFA"));
        let errors =
            from_annotations([("scope", "x")].into_iter(), PolicyKind::Forbid).unwrap_err();
        assert_eq!(errors[0].annotation.as_deref(), Some("scope"));
        assert!(errors[0].message.contains("forbid policies grant nothing"));
    }

    #[test]
    fn a_typo_is_refused_with_the_annotation_it_was_meant_to_be() {
        for (typo, meant) in [
            ("aproval", "approval"),
            ("scopes", "scope"),
            ("audiance", "audience"),
            ("Approval", "approval"),
            ("breakglass", "break_glass"),
            ("tl", "ttl"),
        ] {
            let errors = grant(&[(typo, "1")]).unwrap_err();
            assert_eq!(
                errors,
                [format!(
                    "unknown annotation @{typo}: did you mean `@{meant}`?"
                )]
            );
        }
    }

    #[test]
    fn other_unknown_annotations_are_refused_unless_prefixed() {
        let errors = grant(&[("owner", "team-data")]).unwrap_err();
        assert!(
            errors[0].starts_with("unknown annotation @owner: jitgate reads @id, @scope")
                && errors[0].contains("`@x_owner`"),
            "{errors:?}"
        );
        assert!(grant(&[("x_owner", "team-data"), ("x_ticket", "")]).is_ok());
    }

    #[test]
    fn a_granting_permit_names_its_scopes_even_when_none() {
        let errors = from_annotations([("ttl", "1h")].into_iter(), PolicyKind::Grants).unwrap_err();
        assert_eq!(errors[0].annotation, None);
        assert!(errors[0].message.contains("needs @scope"), "{errors:?}");
        let none = from_annotations([("scope", "")].into_iter(), PolicyKind::Grants).unwrap();
        assert!(none.scopes.is_empty());
        assert!(from_annotations(std::iter::empty(), PolicyKind::Reserved).is_ok());
    }
}
