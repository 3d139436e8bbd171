//! Which principal an administrator means by a subject (`POST /v1/revocations {"subject"}`, the
//! audit trail's `subject=` filter): the full Cedar form jitgate prints (`User::"sue"`,
//! `Service::"deployer"`), or a bare id where only one principal can have it. A value no caller
//! could ever authenticate as is refused, so a block never silently blocks nobody.

use crate::decision::EntityRef;

/// The principal type of every identity-token caller (`sub` → `User::"<sub>"`).
pub const USER_TYPE: &str = "User";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("subject is empty")]
    Empty,
    #[error("subject `{0}` is neither a principal like `User::\"sue\"` nor a bare id")]
    Malformed(String),
    #[error(
        "no caller can be `{0}`: identity tokens are `User` principals and no API key has this principal"
    )]
    NoSuchPrincipal(String),
    #[error("subject `{id}` is ambiguous: name one of {candidates}")]
    Ambiguous { id: String, candidates: String },
}

/// The principal `text` names, given the principals of the configured API keys.
pub fn resolve_subject(
    text: &str,
    api_key_principals: &[EntityRef],
) -> Result<EntityRef, SubjectError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(SubjectError::Empty);
    }
    if text.contains("::") || text.contains('"') {
        let principal: EntityRef = text
            .parse()
            .map_err(|_| SubjectError::Malformed(text.to_owned()))?;
        let possible = principal.type_name == USER_TYPE && !principal.id.is_empty()
            || api_key_principals.contains(&principal);
        return if possible {
            Ok(principal)
        } else {
            Err(SubjectError::NoSuchPrincipal(principal.to_string()))
        };
    }
    let user = EntityRef::new(USER_TYPE, text);
    let mut candidates = vec![user];
    for principal in api_key_principals.iter().filter(|p| p.id == text) {
        if !candidates.contains(principal) {
            candidates.push(principal.clone());
        }
    }
    match candidates.as_slice() {
        [only] => Ok(only.clone()),
        _ => Err(SubjectError::Ambiguous {
            id: text.to_owned(),
            candidates: candidates
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<EntityRef> {
        vec![
            EntityRef::new("Service", "deployer"),
            EntityRef::new(USER_TYPE, "ci"),
        ]
    }

    #[test]
    fn the_printed_form_names_the_principal() {
        assert_eq!(
            resolve_subject(r#"User::"sue""#, &keys()),
            Ok(EntityRef::new("User", "sue"))
        );
        assert_eq!(
            resolve_subject(r#" Service::"deployer" "#, &keys()),
            Ok(EntityRef::new("Service", "deployer"))
        );
        assert_eq!(
            resolve_subject(r#"User::"deployer""#, &keys()),
            Ok(EntityRef::new("User", "deployer"))
        );
    }

    #[test]
    fn a_bare_id_only_where_one_principal_can_have_it() {
        assert_eq!(
            resolve_subject("sue", &keys()),
            Ok(EntityRef::new("User", "sue"))
        );
        // An API key that is itself a User adds no second meaning.
        assert_eq!(
            resolve_subject("ci", &keys()),
            Ok(EntityRef::new("User", "ci"))
        );
        let ambiguous = resolve_subject("deployer", &keys()).unwrap_err();
        assert!(
            ambiguous.to_string().contains(r#"`Service::"deployer"`"#),
            "{ambiguous}"
        );
    }

    #[test]
    fn what_could_never_match_is_refused() {
        for text in [
            "",
            "  ",
            r#"Group::"admins""#,
            r#"Service::"nobody""#,
            r#"User::"sue"#,
            r#"User::"""#,
            "User::sue",
            r#"sue""#,
        ] {
            assert!(resolve_subject(text, &keys()).is_err(), "{text}");
        }
    }
}
