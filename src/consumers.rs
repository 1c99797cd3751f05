//! Consumers as the data plane sees them: identity, the headers an authenticated request
//! carries upstream, ACL groups, and one hashed lookup table per credential kind, all built
//! once per configuration. No request ever scans a list of consumers or credentials.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use http::HeaderValue;

use crate::config::ConfigDoc;
use crate::plugins::{basic_auth, hmac_auth, jwt, key_auth};

/// Namespace of the ids generated for entities declared without one (UUID v5, so the same
/// file gives the same ids on every node and every reload).
const ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6761_7465_686f_7573_6520_6964_7321_0001);

/// A deterministic id for an entity declared without one.
pub fn generated_id(kind: &str, natural_key: &str) -> String {
    uuid::Uuid::new_v5(&ID_NAMESPACE, format!("{kind}:{natural_key}").as_bytes()).to_string()
}

/// One consumer.
#[derive(Debug)]
pub struct ConsumerRt {
    pub id: String,
    pub username: Option<String>,
    pub custom_id: Option<String>,
    /// Header values for `X-Consumer-ID`, `X-Consumer-Username` and `X-Consumer-Custom-ID`.
    pub id_header: HeaderValue,
    pub username_header: Option<HeaderValue>,
    pub custom_id_header: Option<HeaderValue>,
    /// ACL groups, sorted and without duplicates.
    pub groups: Vec<String>,
    /// The groups joined by `, ` for `X-Consumer-Groups` (`None` without groups).
    pub groups_header: Option<HeaderValue>,
    /// Whether any plugin is scoped to this consumer (the chain is then resolved again once
    /// the consumer is known).
    pub has_plugins: bool,
}

impl ConsumerRt {
    /// Whether the consumer belongs to `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups
            .binary_search_by(|g| g.as_str().cmp(group))
            .is_ok()
    }
}

/// The id of an authenticating credential, as sent in `X-Credential-Identifier`.
pub type CredentialId = HeaderValue;

/// Every consumer and every credential lookup table of one configuration.
#[derive(Default)]
pub struct Consumers {
    list: Vec<ConsumerRt>,
    /// Consumer index by id and by username (how `anonymous` names a consumer).
    by_key: HashMap<String, usize>,
    pub keyauth: key_auth::KeyIndex,
    pub basicauth: basic_auth::PasswordIndex,
    pub jwt: jwt::credentials::JwtIndex,
    pub hmacauth: hmac_auth::HmacIndex,
}

impl Consumers {
    /// Build the registry; errors are `(field path, message)`.
    pub fn compile(doc: &ConfigDoc) -> Result<Arc<Consumers>, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let mut list: Vec<ConsumerRt> = doc
            .consumers
            .iter()
            .map(|c| {
                let c = &c.item;
                let natural = c
                    .username
                    .as_deref()
                    .or(c.custom_id.as_deref())
                    .unwrap_or("");
                let id =
                    c.id.clone()
                        .unwrap_or_else(|| generated_id("consumers", natural));
                let header = |v: &str| HeaderValue::from_str(v).ok();
                ConsumerRt {
                    id_header: header(&id).unwrap_or_else(|| HeaderValue::from_static("")),
                    username_header: c.username.as_deref().and_then(header),
                    custom_id_header: c.custom_id.as_deref().and_then(header),
                    id,
                    username: c.username.clone(),
                    custom_id: c.custom_id.clone(),
                    groups: Vec::new(),
                    groups_header: None,
                    has_plugins: false,
                }
            })
            .collect();
        for (c, located) in list.iter_mut().zip(&doc.consumers) {
            for (field, value) in [
                ("id", Some(&c.id)),
                ("username", c.username.as_ref()),
                ("custom_id", c.custom_id.as_ref()),
            ] {
                if value.is_some_and(|v| HeaderValue::from_str(v).is_err()) {
                    errors.push((
                        format!("{}.{field}", located.path),
                        "must be printable text without control characters".to_string(),
                    ));
                }
            }
        }
        for acl in &doc.credentials.acls {
            if let Some(c) = acl.parent.and_then(|p| list.get_mut(p)) {
                c.groups.push(acl.item.group.clone());
            }
        }
        // Kong's `acls` are unique by consumer and group (their cache key).
        let mut memberships = HashSet::new();
        for acl in &doc.credentials.acls {
            if acl.item.group.is_empty() || HeaderValue::from_str(&acl.item.group).is_err() {
                errors.push((
                    format!("{}.group", acl.path),
                    "must be non-empty printable text".to_string(),
                ));
            } else if let Some(consumer) = acl.parent
                && !memberships.insert((consumer, acl.item.group.as_str()))
            {
                errors.push((
                    format!("{}.group", acl.path),
                    format!(
                        "duplicate group `{}` for this consumer: already declared",
                        acl.item.group
                    ),
                ));
            }
        }
        for c in &mut list {
            c.groups.sort();
            c.groups.dedup();
            if !c.groups.is_empty() {
                c.groups_header = HeaderValue::from_str(&c.groups.join(", ")).ok();
            }
        }
        for (_, scope) in &doc.plugins {
            if let Some(c) = scope.consumer.and_then(|i| list.get_mut(i)) {
                c.has_plugins = true;
            }
        }
        let mut by_key = HashMap::with_capacity(list.len() * 2);
        for (i, c) in list.iter().enumerate() {
            by_key.insert(c.id.clone(), i);
            if let Some(u) = &c.username {
                by_key.insert(u.clone(), i);
            }
        }
        let consumer_ids: Vec<&str> = list.iter().map(|c| c.id.as_str()).collect();
        let keyauth =
            key_auth::KeyIndex::compile(&doc.credentials.keyauth, &consumer_ids, &mut errors);
        let basicauth = basic_auth::PasswordIndex::compile(
            &doc.credentials.basicauth,
            &consumer_ids,
            &mut errors,
        );
        let jwt =
            jwt::credentials::JwtIndex::compile(&doc.credentials.jwt, &consumer_ids, &mut errors);
        let hmacauth =
            hmac_auth::HmacIndex::compile(&doc.credentials.hmacauth, &consumer_ids, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Arc::new(Consumers {
            list,
            by_key,
            keyauth,
            basicauth,
            jwt,
            hmacauth,
        }))
    }

    pub fn get(&self, index: usize) -> Option<&ConsumerRt> {
        self.list.get(index)
    }

    /// The consumer with this id or username.
    pub fn find(&self, key: &str) -> Option<usize> {
        self.by_key.get(key).copied()
    }
}

/// The id of a credential: its configured `id`, or one derived from its kind, its consumer and
/// a field that identifies it without revealing a secret.
pub fn credential_id(
    configured: Option<&str>,
    collection: &str,
    consumer_id: &str,
    natural_key: &str,
) -> CredentialId {
    let id = match configured {
        Some(id) => id.to_string(),
        None => generated_id(collection, &format!("{consumer_id}:{natural_key}")),
    };
    HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// What indexing credentials by username needs to know of one kind (basic-auth, hmac-auth).
pub struct UsernameIndexing<'a> {
    /// The collection (`basicauth_credentials`), for generated ids.
    pub collection: &'a str,
    /// The plugin (`basic-auth`), for the duplicate-username error.
    pub plugin: &'a str,
    pub consumer_ids: &'a [&'a str],
}

/// Credentials keyed by username: empty usernames and duplicates are errors naming the field;
/// `build` makes the runtime credential from the entry, its consumer and its id (`None` after
/// reporting its own error).
pub fn index_by_username<C, T>(
    credentials: &[crate::config::model::Located<C>],
    how: &UsernameIndexing<'_>,
    username_and_id: impl Fn(&C) -> (&str, Option<&str>),
    mut build: impl FnMut(
        &crate::config::model::Located<C>,
        usize,
        CredentialId,
        &mut Vec<(String, String)>,
    ) -> Option<T>,
    errors: &mut Vec<(String, String)>,
) -> HashMap<String, T> {
    let mut by_username = HashMap::with_capacity(credentials.len());
    for c in credentials {
        let Some(consumer) = c.parent else { continue };
        let (username, id) = username_and_id(&c.item);
        if username.is_empty() {
            errors.push((format!("{}.username", c.path), "must not be empty".into()));
            continue;
        }
        let id = credential_id(
            id,
            how.collection,
            how.consumer_ids.get(consumer).copied().unwrap_or(""),
            username,
        );
        let Some(cred) = build(c, consumer, id, errors) else {
            continue;
        };
        if by_username.insert(username.to_string(), cred).is_some() {
            errors.push((
                format!("{}.username", c.path),
                format!(
                    "another {} credential has the username `{username}`",
                    how.plugin
                ),
            ));
        }
    }
    by_username
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_is_in_a_group_once() {
        let doc = |acls: &str| {
            crate::config::load_str(
                "t.yaml",
                &format!(
                    "_format_version: \"3.0\"\nconsumers:\n- username: a\n  acls: {acls}\n- username: b\n  acls: [{{group: g}}]\n"
                ),
            )
            .expect("parses")
        };
        let Err(errors) = Consumers::compile(&doc("[{group: g}, {group: g}]")) else {
            panic!("a duplicate membership compiled");
        };
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].0.ends_with("acls[1].group"), "{errors:?}");
        assert!(errors[0].1.starts_with("duplicate group `g`"), "{errors:?}");
        // The same group for another consumer, or another group, is fine.
        assert!(Consumers::compile(&doc("[{group: g}, {group: h}]")).is_ok());
    }
}
