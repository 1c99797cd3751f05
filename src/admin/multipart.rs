//! `multipart/form-data` bodies (`curl -F`), which Kong's Admin API takes as it takes forms:
//! `curl -F config=@kong.yml /config`, `curl -F cert=@site.pem -F key=@site.key -F
//! snis[]=example.com /certificates`. The parts become the pairs of an
//! `application/x-www-form-urlencoded` body, so the rest of the API knows one form encoding.

use bytes::Bytes;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

/// The form-encoded equivalent of a `multipart/form-data` body with this `Content-Type`, or
/// why it cannot be read (a `400`). Parts without a name are skipped; a part (a file) must be
/// UTF-8 text, as every Admin API field is.
pub async fn to_form(content_type: &str, body: Bytes) -> Result<Bytes, String> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| format!("cannot read the multipart body: {e}"))?;
    let stream = futures_util::stream::iter([Ok::<Bytes, std::convert::Infallible>(body)]);
    let mut parts = multer::Multipart::new(stream, boundary);
    let mut form = String::new();
    loop {
        let field = match parts.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(format!("cannot read the multipart body: {e}")),
        };
        let Some(name) = field.name().map(str::to_owned) else {
            continue;
        };
        let value = field
            .bytes()
            .await
            .map_err(|e| format!("cannot read the multipart body: {e}"))?;
        let value = std::str::from_utf8(&value)
            .map_err(|_| format!("the multipart field `{name}` is not UTF-8 text"))?;
        if !form.is_empty() {
            form.push('&');
        }
        form.extend(utf8_percent_encode(&name, NON_ALPHANUMERIC));
        form.push('=');
        form.extend(utf8_percent_encode(value, NON_ALPHANUMERIC));
    }
    Ok(Bytes::from(form))
}

/// Whether `content_type` is `multipart/form-data`.
pub fn is_multipart(content_type: &str) -> bool {
    super::form::media_is(content_type, "multipart/form-data")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::form::body_object;

    #[tokio::test]
    async fn parts_become_kongs_form_keys() {
        let body = "--XyZ\r\n\
            Content-Disposition: form-data; name=\"name\"\r\n\r\n\
            my service\r\n\
            --XyZ\r\n\
            Content-Disposition: form-data; name=\"snis[]\"\r\n\r\n\
            a.example\r\n\
            --XyZ\r\n\
            Content-Disposition: form-data; name=\"snis[]\"\r\n\r\n\
            b.example\r\n\
            --XyZ\r\n\
            Content-Disposition: form-data; name=\"cert\"; filename=\"site.pem\"\r\n\
            Content-Type: application/x-pem-file\r\n\r\n\
            -----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n\r\n\
            --XyZ--\r\n";
        let content_type = "multipart/form-data; boundary=XyZ";
        assert!(is_multipart(content_type));
        assert!(!is_multipart("application/x-www-form-urlencoded"));
        let form = to_form(content_type, Bytes::from(body))
            .await
            .expect("form");
        let object = body_object("application/x-www-form-urlencoded", &form).expect("form object");
        assert_eq!(object["name"], "my service");
        assert_eq!(
            object["snis"],
            serde_json::json!(["a.example", "b.example"])
        );
        assert_eq!(
            object["cert"],
            "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"
        );
    }

    #[tokio::test]
    async fn broken_bodies_are_refused_with_a_reason() {
        for (content_type, body) in [
            ("multipart/form-data", "--x\r\n"),
            ("multipart/form-data; boundary=x", "not multipart at all"),
            (
                "multipart/form-data; boundary=x",
                "--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n\u{0}\u{ff}",
            ),
        ] {
            let result = to_form(content_type, Bytes::from(body)).await;
            assert!(
                result.as_ref().is_err_and(|e| e.contains("multipart")),
                "{content_type}: {result:?}"
            );
        }
    }
}
