//! Reading and editing query strings (`application/x-www-form-urlencoded` pairs) for plugins
//! that take credentials from the query, without parsing the whole string into a map.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// Decode one form-encoded component: `+` is a space, `%XX` a byte (invalid UTF-8 is replaced).
pub fn decode(component: &str) -> Cow<'_, str> {
    if !component.contains(['+', '%']) {
        return Cow::Borrowed(component);
    }
    let spaced = component.replace('+', " ");
    Cow::Owned(percent_decode_str(&spaced).decode_utf8_lossy().into_owned())
}

/// Every `(name, value)` pair, undecoded.
pub fn pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// The decoded values of every parameter whose decoded name is `name`.
pub fn values<'q>(query: &'q str, name: &str) -> Vec<Cow<'q, str>> {
    pairs(query)
        .filter(|(k, _)| decode(k) == name)
        .map(|(_, v)| decode(v))
        .collect()
}

/// The query without the parameters whose decoded name is `name`; `None` when nothing is left.
pub fn without(query: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| decode(p.split_once('=').map_or(*p, |(k, _)| k)) != name)
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// Replace the query of a request URI (the path is kept as it is).
pub fn set_query(uri: &mut http::Uri, query: Option<&str>) {
    let path = uri.path();
    let target = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    // A path and query taken from a valid URI, minus some parameters, is still valid.
    if let Ok(new) = target.parse() {
        *uri = new;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_decoded_values_by_decoded_name() {
        let q = "a=1&api%5Fkey=x%2By&api_key=two+words&b";
        assert_eq!(values(q, "api_key"), vec!["x+y", "two words"]);
        assert_eq!(values(q, "b"), vec![""]);
        assert!(values(q, "c").is_empty());
    }

    #[test]
    fn removes_a_parameter_everywhere() {
        assert_eq!(without("a=1&k=2&b=3&k", "k").as_deref(), Some("a=1&b=3"));
        assert_eq!(without("k=2", "k"), None);
        let mut uri: http::Uri = "/p/a?k=1&z=2".parse().unwrap();
        let rest = without(uri.query().unwrap(), "k");
        set_query(&mut uri, rest.as_deref());
        assert_eq!(uri.to_string(), "/p/a?z=2");
    }
}
